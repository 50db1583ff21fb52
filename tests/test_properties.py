"""Properties of ``engine.assign.simulate`` that hold on every input
(docs/domain.md, "The process").

Each property is checked on small random worlds (tests/strategies.py) against facts
recomputed here from the inputs, never from the engine's own intermediate frames: one
row per customer in cohort order, capacity respected, only matching partners chosen,
the first failing eligibility check as the reason, round robin taking turns, the same
output for the same input, ``optimal`` placing the most, agreement with the naive
reference (engine/reference.py), and the round-robin order carrying across runs; and on
worlds whose partners pause and have monthly quotas, that no paused partner is given a
customer, no quota is overrun, and the engine still agrees with the reference.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.assign import simulate
from engine.columns import ASSIGNMENT_COLUMNS, MONTH_REFERRALS
from engine.reasons import Outcome, Policy, Reason
from engine.reference import reference_simulate_with_order
from engine.rules import Rules
from engine.simulation import Simulation
from tests.strategies import World, single_pool_worlds, split_worlds, worlds

POLICIES = list(Policy)
REFERENCE_POLICIES = [Policy.ROUND_ROBIN, Policy.WEIGHTED, Policy.LEAST_LOADED]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ELIGIBILITY_REASONS = {
    Reason.BELOW_SEAT_THRESHOLD.value,
    Reason.NO_ELIGIBLE_WORKLOAD.value,
    Reason.NO_REFERRAL_CONSENT.value,
}


# --- facts recomputed from the inputs --------------------------------------------------


def effective_capacity(partner: dict[str, Any], rules: Rules) -> int:
    return math.floor(partner["capacity"] * rules.capacity_scale)


def eligible_workloads(customer: dict[str, Any], rules: Rules) -> set[str]:
    return set(customer["workloads"]) & set(rules.eligible_workloads)


def expected_pre_reason(customer: dict[str, Any], rules: Rules) -> str | None:
    """The first failing eligibility check, in docs/domain.md's order ("Eligibility"), or None."""
    consent = customer["referral_consent"]
    if consent is None:
        consent = rules.referral_consent_default
    if customer["seats"] < rules.min_seats:
        return Reason.BELOW_SEAT_THRESHOLD.value
    if not eligible_workloads(customer, rules):
        return Reason.NO_ELIGIBLE_WORKLOAD.value
    if not consent:
        return Reason.NO_REFERRAL_CONSENT.value
    return None


def matches(partner: dict[str, Any], customer: dict[str, Any], rules: Rules) -> bool:
    return (
        partner["referral_ready"]
        and partner["partner_id"] not in rules.disabled_partners
        and customer["country"] in partner["countries"]
        and customer["language"] in partner["languages"]
        and eligible_workloads(customer, rules) <= set(partner["workloads"])
    )


def assigned_counts(sim: Simulation) -> Counter[str]:
    return Counter(p for p in sim.assignments["partner_id"].to_list() if p is not None)


def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


# --- shape -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(world=worlds())
def test_one_row_per_customer_in_cohort_order(policy: Policy, world: World) -> None:
    sim = simulate(world.partners, world.customers, world.rules, policy)
    assert sim.assignments.columns == [*ASSIGNMENT_COLUMNS, "trace"]
    assert sim.assignments["tenant_id"].to_list() == world.customers["tenant_id"].to_list()
    assert sim.detail["tenant_id"].to_list() == world.customers["tenant_id"].to_list()
    assert sum(sim.counts().values()) == world.customers.height
    assert sim.placed == sim.counts()[Reason.ASSIGNED.value]


# --- capacity ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(world=worlds())
def test_capacity_is_never_exceeded(policy: Policy, world: World) -> None:
    sim = simulate(world.partners, world.customers, world.rules, policy)
    given_to = assigned_counts(sim)
    for partner in rows(world.partners):
        pid = partner["partner_id"]
        cap = effective_capacity(partner, world.rules)
        if partner["active_referrals"] >= cap:
            assert given_to[pid] == 0, pid
        else:
            assert partner["active_referrals"] + given_to[pid] <= cap, pid
    # The engine's own per-partner summary agrees with the assignments.
    state = {r["partner_id"]: r for r in rows(sim.partners)}
    assert {pid: state[pid]["assigned"] for pid in state if state[pid]["assigned"]} == dict(
        given_to
    )
    assert sum(r["assigned"] for r in state.values()) == sim.placed


# --- matching, reasons and outcomes --------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(world=worlds())
def test_only_matching_partners_are_chosen_and_reasons_fit(policy: Policy, world: World) -> None:
    rules = world.rules
    sim = simulate(world.partners, world.customers, rules, policy)
    partners = {p["partner_id"]: p for p in rows(world.partners)}
    given_to = assigned_counts(sim)
    for customer, out in zip(rows(world.customers), rows(sim.assignments), strict=True):
        frp = out["outcome"] == Outcome.FRP.value
        assert frp == (out["reason"] == Reason.ASSIGNED.value)
        assert frp == (out["partner_id"] is not None)
        assert frp == (out["psm_email"] is not None)
        assert frp == (out["queue"] == "FRP")
        if frp:
            chosen = partners[out["partner_id"]]
            assert matches(chosen, customer, rules)
            assert out["psm_email"] == chosen["psm_email"]
        else:
            assert out["outcome"] == Outcome.CSS.value
            assert out["queue"] == rules.queue_for(customer["country"])

        pre = expected_pre_reason(customer, rules)
        matching = [p for p in partners.values() if matches(p, customer, rules)]
        if pre is not None:
            assert out["reason"] == pre
        elif not matching:
            assert out["reason"] == Reason.NO_PARTNER_MATCH.value
        else:
            assert out["reason"] in (Reason.ASSIGNED.value, Reason.CAPACITY_EXHAUSTED.value)
        if out["reason"] == Reason.CAPACITY_EXHAUSTED.value:
            # Full means full: no matching partner still has room at the end of the run
            # (capacity never grows within a run, so it had none when this customer came).
            for p in matching:
                used = p["active_referrals"] + given_to[p["partner_id"]]
                assert used >= effective_capacity(p, rules), (out["tenant_id"], p["partner_id"])


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(world=worlds())
def test_eligibility_is_checked_in_order(policy: Policy, world: World) -> None:
    rules = world.rules
    sim = simulate(world.partners, world.customers, rules, policy)
    for customer, out in zip(rows(world.customers), rows(sim.assignments), strict=True):
        if customer["seats"] < rules.min_seats:
            assert out["reason"] == Reason.BELOW_SEAT_THRESHOLD.value
        elif not eligible_workloads(customer, rules):
            assert out["reason"] == Reason.NO_ELIGIBLE_WORKLOAD.value
        elif customer["referral_consent"] is False or (
            customer["referral_consent"] is None and not rules.referral_consent_default
        ):
            assert out["reason"] == Reason.NO_REFERRAL_CONSENT.value
        else:
            assert out["reason"] not in ELIGIBILITY_REASONS
        if out["reason"] in ELIGIBILITY_REASONS:
            # An ineligible customer is never given (or charged to) a partner.
            assert out["partner_id"] is None
            assert out["trace"].startswith("not FRP-eligible: ")


# --- round robin ---------------------------------------------------------------------------


@SETTINGS
@given(world=single_pool_worlds())
def test_round_robin_gives_every_partner_its_turn(world: World) -> None:
    sim = simulate(world.partners, world.customers, world.rules, Policy.ROUND_ROBIN)
    partners = rows(world.partners)
    n, m = len(partners), world.customers.height
    # Least recently assigned first: never assigned (by id), then by last_assigned.
    order = [
        p["partner_id"]
        for p in sorted(
            partners,
            key=lambda p: (
                p["last_assigned"] is not None,
                p["last_assigned"] or 0,
                p["partner_id"],
            ),
        )
    ]
    assert sim.assignments["partner_id"].to_list() == [order[k % n] for k in range(m)]
    counts = assigned_counts(sim)
    per_partner = [counts[pid] for pid in order]
    assert max(per_partner) - min(per_partner) <= 1
    # The extra customers (m mod n) go to the partners whose turn came first.
    assert per_partner == [m // n + (1 if k < m % n else 0) for k in range(n)]
    never = [counts[p["partner_id"]] for p in partners if p["last_assigned"] is None]
    assert not never or max(never) - min(never) <= 1


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(world=worlds())
def test_same_input_same_output(policy: Policy, world: World) -> None:
    first = simulate(world.partners, world.customers, world.rules, policy)
    again = simulate(world.partners.clone(), world.customers.clone(), world.rules, policy)
    assert first.assignments.equals(again.assignments, null_equal=True)
    assert first.partners.equals(again.partners, null_equal=True)
    assert first.pools.equals(again.pools, null_equal=True)


# --- optimal ---------------------------------------------------------------------------------


@SETTINGS
@given(world=worlds())
def test_optimal_places_at_least_as_many_as_any_other_policy(world: World) -> None:
    best = simulate(world.partners, world.customers, world.rules, Policy.OPTIMAL).placed
    for policy in (Policy.ROUND_ROBIN, Policy.WEIGHTED, Policy.LEAST_LOADED):
        placed = simulate(world.partners, world.customers, world.rules, policy).placed
        assert best >= placed, policy


# --- the naive reference -----------------------------------------------------------------------


@pytest.mark.parametrize("policy", REFERENCE_POLICIES)
@SETTINGS
@given(world=worlds())
def test_engine_equals_the_naive_reference(policy: Policy, world: World) -> None:
    sim = simulate(world.partners, world.customers, world.rules, policy)
    expected, order = reference_simulate_with_order(
        world.partners, world.customers, world.rules, policy
    )
    got = sim.assignments.select(ASSIGNMENT_COLUMNS)
    assert got.to_dicts() == expected.select(ASSIGNMENT_COLUMNS).to_dicts()
    after = dict(sim.partners.select("partner_id", "last_assigned_after").iter_rows())
    assert after == order


# --- pauses and quotas ----------------------------------------------------------------------


def paused(partner: dict[str, Any], world: World) -> bool:
    until = partner["paused_until"]
    return world.today is not None and until is not None and world.today < until


def room(partner: dict[str, Any], world: World) -> int:
    """What the partner could take at the start of the run: seats, or its quota's room."""
    seats = effective_capacity(partner, world.rules) - partner["active_referrals"]
    quota = partner["monthly_quota"]
    return seats if quota is None else min(seats, quota - partner[MONTH_REFERRALS])


@pytest.mark.parametrize("policy", REFERENCE_POLICIES)
@SETTINGS
@given(world=worlds(intake=True))
def test_engine_equals_the_naive_reference_with_pauses_and_quotas(
    policy: Policy, world: World
) -> None:
    sim = simulate(world.partners, world.customers, world.rules, policy, today=world.today)
    expected, order = reference_simulate_with_order(
        world.partners, world.customers, world.rules, policy, today=world.today
    )
    got = sim.assignments.select(ASSIGNMENT_COLUMNS)
    assert got.to_dicts() == expected.select(ASSIGNMENT_COLUMNS).to_dicts()
    after = dict(sim.partners.select("partner_id", "last_assigned_after").iter_rows())
    assert after == order


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(world=worlds(intake=True))
def test_no_paused_partner_is_chosen_and_no_quota_is_overrun(policy: Policy, world: World) -> None:
    sim = simulate(world.partners, world.customers, world.rules, policy, today=world.today)
    given_to = assigned_counts(sim)
    partners = {p["partner_id"]: p for p in rows(world.partners)}
    for pid, partner in partners.items():
        assert given_to[pid] <= max(room(partner, world), 0), pid
        if paused(partner, world):
            assert given_to[pid] == 0, pid
    for customer, out in zip(rows(world.customers), rows(sim.assignments), strict=True):
        if out["reason"] != Reason.CAPACITY_EXHAUSTED.value or policy is Policy.OPTIMAL:
            continue
        # Full means full: every matching partner not paused is at capacity or at quota.
        for p in partners.values():
            if matches(p, customer, world.rules) and not paused(p, world):
                assert given_to[p["partner_id"]] >= room(p, world), p["partner_id"]
    again = simulate(world.partners, world.customers, world.rules, policy, today=world.today)
    assert again.assignments.equals(sim.assignments, null_equal=True)


# --- the round-robin order across runs ----------------------------------------------------------


def carried_over(partners: pl.DataFrame, sim: Simulation) -> pl.DataFrame:
    """The partners as a commit of ``sim`` leaves them: more active, the order moved on."""
    state = sim.partners.select("partner_id", "assigned", "last_assigned_after")
    return (
        partners.join(state, on="partner_id", how="left", maintain_order="left")
        .with_columns(
            (pl.col("active_referrals") + pl.col("assigned")).alias("active_referrals"),
            pl.col("last_assigned_after").alias("last_assigned"),
        )
        .select(partners.columns)
    )


@pytest.mark.parametrize("policy", [Policy.ROUND_ROBIN, Policy.LEAST_LOADED])
@SETTINGS
@given(world=worlds(), cut=st.floats(0, 1))
def test_round_robin_order_carries_across_runs(policy: Policy, world: World, cut: float) -> None:
    customers = world.customers
    k = round(cut * customers.height)
    first, second = customers.head(k), customers.slice(k)
    whole = simulate(world.partners, customers, world.rules, policy)
    a = simulate(world.partners, first, world.rules, policy)
    b = simulate(carried_over(world.partners, a), second, world.rules, policy)
    split = pl.concat([a.assignments, b.assignments]).select(ASSIGNMENT_COLUMNS)
    assert split.to_dicts() == whole.assignments.select(ASSIGNMENT_COLUMNS).to_dicts()
    assert dict(b.partners.select("partner_id", "last_assigned_after").iter_rows()) == dict(
        whole.partners.select("partner_id", "last_assigned_after").iter_rows()
    )


@SETTINGS
@given(world=worlds(), declined=st.lists(st.integers(0, 11), max_size=3))
def test_matching_a_whole_cohort_equals_matching_each_signature(
    world: World, declined: list[int]
) -> None:
    """``Matcher.match_cohort`` (one boolean matrix per country and language) finds, for
    every signature, the partners and the text that matching it alone finds, and numbers
    the distinct partner sets by first appearance."""
    import numpy as np

    from engine.matching import Matcher, SignatureColumns, index_partners, prepare_customers

    index = index_partners(world.partners, world.rules)
    rows = prepare_customers(world.customers, world.rules).filter(pl.col("mask") > 0)
    declined_ids = [index.ids[i % index.size] for i in declined] if index.size else []
    eligible = [tuple(e) for e in rows["eligible"].to_list()]
    columns = SignatureColumns(
        countries=rows["country"].to_list(),
        languages=rows["language"].to_list(),
        masks=rows["mask"].to_numpy(),
        wid=np.arange(rows.height),
        eligible=eligible,
        excluded=[";".join(declined_ids[:k]) for k in range(rows.height)],
        sizes=np.zeros(rows.height, dtype=np.int64),
    )
    signatures = [columns.signature(j) for j in range(rows.height)]
    matcher = Matcher(index)
    sig_pool, pools, texts = matcher.match_cohort(columns)
    numbered: dict[bytes, int] = {}
    for j, sig in enumerate(signatures):
        alone = matcher.match(sig)
        assert texts[j] == matcher.describe(sig, alone)
        if alone.partners.size == 0:
            assert sig_pool[j] == -1
            continue
        expected = numbered.setdefault(alone.partners.tobytes(), len(numbered))
        assert sig_pool[j] == expected
        assert pools[expected].tolist() == alone.partners.tolist()
    assert len(pools) == len(numbered)


# --- split by workload and size (docs/domain.md, "Customer size", "Split by workload") ---


def by_part(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as comparable dicts; the engine's trace left out (the reference has none)."""
    return frame.select(
        *ASSIGNMENT_COLUMNS, *(c for c in ("part", "workloads") if c in frame.columns)
    ).to_dicts()


@pytest.mark.parametrize("policy", REFERENCE_POLICIES)
@SETTINGS
@given(world=split_worlds())
def test_engine_equals_the_naive_reference_with_sizes_and_splits(
    policy: Policy, world: World
) -> None:
    """Every part, its partner and workloads, and the order carried on, as the naive
    reference decides them customer by customer."""
    expected, order = reference_simulate_with_order(
        world.partners, world.customers, world.rules, policy
    )
    sim = simulate(world.partners, world.customers, world.rules, policy)
    assert by_part(sim.assignments) == by_part(expected)
    assert dict(sim.partners.select("partner_id", "last_assigned_after").iter_rows()) == order


@pytest.mark.parametrize("policy", POLICIES)
@SETTINGS
@given(world=split_worlds())
def test_every_part_is_covered_and_within_the_limits(policy: Policy, world: World) -> None:
    """Each placed part's partner covers its workloads, serves the customer and takes its
    size; no workload is in two parts of a customer; parts within the limit; no partner
    over its seats; a split customer's workloads are all covered, CSS ones by CSS."""
    from engine.sizes import size_bucket

    sim = simulate(world.partners, world.customers, world.rules, policy)
    rules = world.rules
    partners = {p["partner_id"]: p for p in rows(world.partners)}
    customers = {c["tenant_id"]: c for c in rows(world.customers)}
    out = sim.assignments
    if "workloads" not in out.columns:  # the rules make no parts: one row, every workload
        every = [sorted(eligible_workloads(customers[t], rules)) for t in out["tenant_id"]]
        out = out.with_columns(pl.Series("workloads", every, dtype=pl.List(pl.String)))
    assert out.get_column("tenant_id").unique(maintain_order=True).to_list() == list(customers)
    for tenant, parts in out.group_by("tenant_id", maintain_order=True):
        customer = customers[str(tenant[0])]
        frp = parts.filter(pl.col("outcome") == "frp")
        assert frp.height <= rules.max_partners_per_customer
        seen: list[str] = [w for ws in parts["workloads"].to_list() for w in ws]
        assert len(seen) == len(set(seen))
        for part in frp.iter_rows(named=True):
            partner = partners[part["partner_id"]]
            assert set(part["workloads"]) <= set(partner["workloads"])
            assert customer["country"] in partner["countries"]
            assert customer["language"] in partner["languages"]
            sizes = partner["sizes"] or []
            assert not sizes or size_bucket(customer["seats"]) in sizes
        if frp.height:
            assert set(seen) == eligible_workloads(customer, rules)
            css = parts.filter(pl.col("outcome") == "css")
            assert set(css["reason"]) <= {Reason.CSS_WORKLOAD.value}
            assert {w for ws in css["workloads"] for w in ws} == (
                eligible_workloads(customer, rules) & set(rules.css_workloads)
            )
    given_to = assigned_counts(sim)
    for partner in rows(world.partners):
        room = effective_capacity(partner, rules) - partner["active_referrals"]
        assert given_to[partner["partner_id"]] <= max(room, 0)


@SETTINGS
@given(world=split_worlds())
def test_optimal_with_a_split_places_every_customer_it_places_without(world: World) -> None:
    """A split under ``optimal`` takes only seats its plan leaves free, so it never
    places fewer customers than ``optimal`` without a split, nor than any policy without."""
    unsplit = world.rules.replace(max_partners_per_customer=1)
    with_split = simulate(world.partners, world.customers, world.rules, Policy.OPTIMAL).placed
    for policy in POLICIES:
        assert with_split >= simulate(world.partners, world.customers, unsplit, policy).placed
