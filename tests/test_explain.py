"""One home for a decision's explanation (engine/explain.py).

The run writes every customer's trace column-wise; :func:`engine.explain.explain` builds
one customer's decision as data and :func:`engine.explain.render` gives its sentence.
Here the two agree on every row of every golden scenario and of random worlds, under
every policy (declines included), and the data says what the hand-built scenarios show.
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.assign import simulate
from engine.explain import Explanation, explain, render
from engine.reasons import Outcome, Policy, Reason
from engine.rules import load_rules
from engine.schema import validate_customers, validate_partners
from engine.simulation import Simulation
from tests.strategies import World, split_worlds, worlds
from tests.test_engine import TRACE_PARTNERS, customer, customers_frame, partner, partners_frame
from tests.test_golden import GOLDEN, SCENARIOS, read_csv

POLICIES = list(Policy)
RULES = load_rules()


def per_customer(sim: Simulation) -> pl.DataFrame:
    """The output's first row of each customer (a customer in parts has one per part,
    each with the customer's trace)."""
    return sim.assignments.unique("tenant_id", keep="first", maintain_order=True)


def every_row_renders_its_trace(sim: Simulation) -> list[Explanation]:
    traces = per_customer(sim)["trace"].to_list()
    got = [explain(sim, i) for i in range(sim.rows.height)]
    assert [render(e) for e in got] == traces
    return got


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.value)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_golden_row_renders_to_its_trace(scenario: str, policy: Policy) -> None:
    folder = GOLDEN / scenario
    partners = validate_partners(read_csv(folder / "partners.csv"))
    customers = validate_customers(read_csv(folder / "customers.csv"))
    rules_path = folder / "rules.toml"
    rules = load_rules(rules_path if rules_path.exists() else None)
    sim = simulate(partners, customers, rules, policy)
    explained = every_row_renders_its_trace(sim)
    a = per_customer(sim)
    assert [e.reason.value for e in explained] == a["reason"].to_list()
    assert [e.queue for e in explained] == a["queue"].to_list()
    assert [first_partner(e) for e in explained] == a["partner_id"].to_list()


def first_partner(e: Explanation) -> str | None:
    """The partner of the customer's first row: the chosen one, or its first part's."""
    if e.selection is not None:
        return e.selection.partner_id
    return e.parts[0].partner_id if e.split else None


@st.composite
def declined_worlds(draw: st.DrawFn, split: bool = False) -> tuple[World, dict[str, list[str]]]:
    """A world (a split world with ``split``), and some customers that partners declined
    before (up to three each)."""
    world = draw(split_worlds() if split else worlds())
    partner_ids = world.partners["partner_id"].to_list()
    excluded: dict[str, list[str]] = {}
    for tenant in world.customers["tenant_id"].to_list():
        if draw(st.integers(0, 3)) == 0:
            excluded[tenant] = draw(st.lists(st.sampled_from(partner_ids), min_size=1, max_size=3))
    return world, excluded


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.value)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(intake=True))
def test_every_row_of_a_world_with_pauses_and_quotas_renders_to_its_trace(
    policy: Policy, world: World
) -> None:
    sim = simulate(world.partners, world.customers, world.rules, policy, today=world.today)
    n_paused = int(sim.partners["paused"].sum())
    for e in every_row_renders_its_trace(sim):
        if e.matching is not None:
            assert e.matching.steps[0].n_paused == n_paused


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.value)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=declined_worlds())
def test_every_row_of_a_random_world_renders_to_its_trace(
    policy: Policy, drawn: tuple[World, dict[str, list[str]]]
) -> None:
    world, excluded = drawn
    sim = simulate(world.partners, world.customers, world.rules, policy, excluded=excluded)
    for e in every_row_renders_its_trace(sim):
        assert e.eligibility.declined_by == tuple(sorted(set(excluded.get(e.tenant_id, ()))))
        assert (e.matching is None) == (e.reason in e.eligibility.failed[:1])
        if e.capacity is not None and e.selection is None:
            assert e.capacity.n_full == e.capacity.n_matching or policy is Policy.OPTIMAL


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.value)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=declined_worlds(split=True))
def test_every_row_of_a_split_world_renders_to_its_trace(
    policy: Policy, drawn: tuple[World, dict[str, list[str]]]
) -> None:
    """Sizes, CSS workloads and splits (docs/domain.md, "Split by workload"): a split
    customer's explanation lists its parts as the output's rows have them."""
    world, excluded = drawn
    sim = simulate(world.partners, world.customers, world.rules, policy, excluded=excluded)
    explained = every_row_renders_its_trace(sim)
    rows_of = sim.assignments.partition_by("tenant_id", maintain_order=True, as_dict=True)
    for e in explained:
        mine = rows_of[(e.tenant_id,)]
        if e.parts:
            assert [p.partner_id for p in e.parts] == mine["partner_id"].to_list()
            assert [list(p.workloads) for p in e.parts] == mine["workloads"].to_list()
            assert all(p.partner_id not in e.eligibility.declined_by for p in e.parts)
        else:
            assert mine.height == 1


def test_an_assigned_customer_step_by_step() -> None:
    customers = customers_frame(customer("T1"), customer("T2", workloads=["teams", "exchange"]))
    sim = simulate(TRACE_PARTNERS, customers, RULES)
    e = explain(sim, "T2")
    assert e == explain(sim, 1)
    assert e.eligibility.failed == ()
    assert e.eligibility.eligible == ("exchange", "teams")
    assert e.matching is not None and e.capacity is not None and e.selection is not None
    assert [(s.rule, s.kept, s.removed, s.n_removed) for s in e.matching.steps] == [
        ("Referral Ready", 4, (), 1),
        ("country SE", 3, (), 1),
        ("language sv", 2, ("P2",), 1),
        ("workloads exchange+teams", 1, ("P3",), 1),
    ]
    assert e.matching.partners == ("P1",)
    assert e.matching.unavailable == ("P4",)
    assert (e.capacity.n_matching, e.capacity.n_full, e.capacity.full) == (1, 0, ())
    assert e.selection.partner_id == "P1"
    assert (e.selection.previous_turn, e.selection.load_after, e.selection.capacity) == (1, 2, 2)
    assert (e.outcome, e.queue, e.reason) == (Outcome.FRP, "FRP", Reason.ASSIGNED)


def test_the_full_partners_are_named_in_the_order_they_ran_out_of_room() -> None:
    # P3 is full before the run; P1 fills with T2; P2 with T3, T4 finds all three full.
    partners = partners_frame(
        partner("P1", capacity=2, active_referrals=1),
        partner("P2", capacity=1, last_assigned=5),
        partner("P3", capacity=1, active_referrals=1),
    )
    customers = customers_frame(*(customer(f"T{k}") for k in range(1, 5)))
    sim = simulate(partners, customers, RULES)
    assert sim.assignments["partner_id"].to_list() == ["P1", "P2", None, None]
    last = explain(sim, "T4")
    assert last.capacity is not None
    assert (last.capacity.n_full, last.capacity.full) == (3, ("P3", "P1", "P2"))
    assert render(last).endswith("3 of 3 full (P3, P1, P2): capacity exhausted -> CSS EMEA")
    first = explain(sim, "T1")
    assert first.capacity is not None and first.capacity.full == ("P3",)


def test_every_check_before_matching_is_shown_with_what_it_compared() -> None:
    rules = RULES.replace(max_declines=2)
    sim = simulate(
        TRACE_PARTNERS,
        customers_frame(customer("T1", seats=10, referral_consent=None)),
        rules,
        excluded={"T1": ["P3", "P1"]},
    )
    el = explain(sim, "T1").eligibility
    assert el.failed == (Reason.BELOW_SEAT_THRESHOLD, Reason.DECLINED_BY_PARTNERS)
    assert (el.seats, el.min_seats) == (10, rules.min_seats)
    assert (el.consent, el.consent_default) == (None, rules.referral_consent_default)
    assert (el.declined_by, el.max_declines) == (("P1", "P3"), 2)
    assert not el.passed(Reason.DECLINED_BY_PARTNERS) and el.passed(Reason.NO_REFERRAL_CONSENT)

    declined = simulate(
        TRACE_PARTNERS, customers_frame(customer("T1")), rules, excluded={"T1": ["P3", "P1"]}
    )
    e = explain(declined, 0)
    assert e.reason is Reason.DECLINED_BY_PARTNERS and e.matching is None
    assert render(e) == "declined by 2 partners (P1, P3), the most allowed is 2 -> CSS EMEA"


def test_an_unknown_tenant_is_a_key_error() -> None:
    sim = simulate(TRACE_PARTNERS, customers_frame(customer("T1")), RULES)
    with pytest.raises(KeyError):
        explain(sim, "T9")
    with pytest.raises(ValueError, match="keep_ids"):
        explain(sim, 0, keep_ids=1)


def test_more_ids_can_be_kept_than_a_trace_names() -> None:
    partners = partners_frame(
        *(partner(f"P{k}", languages=["en"]) for k in range(1, 9)), partner("P9")
    )
    sim = simulate(partners, customers_frame(customer("T1")), RULES)
    e = explain(sim, 0, keep_ids=30)
    assert e.matching is not None
    language = e.matching.steps[2]
    assert language.removed == tuple(f"P{k}" for k in range(1, 9))
    assert render(e) == sim.assignments["trace"][0]
    assert "(P1, P2, P3, P4, P5 +3 more)" in render(e)
    assert pl.Series(e.matching.partners).to_list() == ["P9"]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.value)
def test_a_trace_names_five_full_partners_then_counts_the_rest(policy: Policy) -> None:
    # P1..P7 share one pool; P7 and P6 are full before the run, the rest fill in turn.
    partners = partners_frame(
        *(partner(f"P{k}", capacity=1, last_assigned=10 - k) for k in range(1, 6)),
        partner("P6", capacity=1, active_referrals=1),
        partner("P7", capacity=0),
    )
    customers = customers_frame(*(customer(f"T{k}") for k in range(1, 8)))
    sim = simulate(partners, customers, RULES, policy)
    explained = every_row_renders_its_trace(sim)
    last = explained[-1].capacity
    assert last is not None and last.n_full == 7
    assert last.full[:2] == ("P6", "P7")
    assert "7 of 7 full (P6, P7, " in sim.assignments["trace"][-1]
    assert sim.assignments["trace"][-1].endswith(" +2 more): capacity exhausted -> CSS EMEA")
