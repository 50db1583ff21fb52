"""Customer size and the split by workload, case by case (docs/domain.md, "Customer size"
and "Split by workload"); tests/test_properties.py holds the engine to the naive
reference on random split worlds, and tests/golden/split_by_workload pins the words.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.assign import simulate
from engine.columns import ASSIGNMENT_COLUMNS
from engine.explain import explain
from engine.reasons import Policy, Reason
from engine.rules import load_rules
from engine.schema import InputError, validate_partners
from engine.simulation import OUTPUT_DETAIL
from engine.sizes import SIZE_BUCKETS, size_bucket
from engine.split import cover_exists, greedy_cover
from tests.scenarios import as_text, customer, customers_frame, partner
from tests.scenarios import partners_frame as typed_partners

POLICIES = list(Policy)
RULES = load_rules()


def partners_with_sizes(*rows: dict[str, Any]) -> pl.DataFrame:
    """Typed partners with the optional ``sizes`` column (absent key: every size)."""
    sizes = [r.pop("sizes", None) for r in rows]
    return typed_partners(*rows).with_columns(pl.Series("sizes", sizes, dtype=pl.List(pl.String)))


# --- size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seats", "bucket"),
    [
        (150, "XS"),
        (499, "XS"),
        (500, "S"),
        (4_999, "S"),
        (5_000, "M"),
        (9_999, "M"),
        (10_000, "L"),
        (2_000_000, "L"),
        (100, "XS"),
    ],
)
def test_size_buckets_by_seats(seats: int, bucket: str) -> None:
    assert size_bucket(seats) == bucket
    assert SIZE_BUCKETS == ("XS", "S", "M", "L")


def test_partner_sizes_are_read_and_an_unknown_bucket_names_row_and_column() -> None:
    base = {k: "x" for k in ("partner_id", "name", "psm_name")}
    raw = pl.DataFrame(
        {
            **{k: [f"P{i}" for i in (1, 2, 3)] if k == "partner_id" else ["x"] * 3 for k in base},
            "countries": ["SE"] * 3,
            "languages": ["sv"] * 3,
            "workloads": ["exchange"] * 3,
            "capacity": ["1"] * 3,
            "active_referrals": ["0"] * 3,
            "referral_ready": ["true"] * 3,
            "psm_email": ["p@x.example"] * 3,
            "contact_email": ["c@x.example"] * 3,
            "sizes": ["xs; M", "", "XL"],
        }
    )
    with pytest.raises(InputError) as caught:
        validate_partners(raw, "partners.csv")
    (problem,) = caught.value.problems
    assert (problem.row, problem.column, problem.value) == (3, "sizes", "XL")
    assert "XS, S, M, L" in problem.expected
    typed = validate_partners(raw.head(2))
    assert typed["sizes"].to_list() == [["XS", "M"], []]
    assert "sizes" not in validate_partners(raw.drop("sizes").head(2)).columns


def test_size_is_a_matching_rule_after_workloads_and_named_in_the_trace() -> None:
    partners = partners_with_sizes(
        partner("P1", sizes=["L"]), partner("P2", sizes=["XS", "S"]), partner("P3")
    )
    customers = customers_frame(customer("T1", seats=6_000), customer("T2", seats=20_000))
    sim = simulate(partners, customers, RULES)
    assert sim.assignments["partner_id"].to_list() == ["P3", "P1"]
    e = explain(sim, "T1")
    assert e.matching is not None
    size_step = e.matching.steps[4]
    assert (size_step.rule, size_step.kept, size_step.n_removed) == ("size M", 1, 2)
    assert size_step.removed == ("P1", "P2")
    assert "size M: 1 left, 2 removed (P1, P2)" in sim.assignments["trace"][0]
    assert sim.detail["size"].to_list() == ["M", "L"]


def test_without_listed_sizes_the_trace_has_no_size_rule() -> None:
    sim = simulate(typed_partners(partner("P1")), customers_frame(customer("T1")), RULES)
    assert "size" not in sim.assignments["trace"][0]
    assert sim.assignments.columns == [*ASSIGNMENT_COLUMNS, "trace"]


# --- the greedy cover --------------------------------------------------------------------


def test_the_cover_takes_the_most_uncovered_first_ties_by_turn() -> None:
    # masks: 0b011 (two), 0b011 (two, earlier turn), 0b100, 0b110
    parts = greedy_cover(0b111, [0b011, 0b011, 0b100, 0b110], [5, 2, 1, 9], limit=3)
    assert parts == [(1, 0b011, 2, 3), (2, 0b100, 1, 1)]
    assert greedy_cover(0b1111, [0b0001, 0b0010, 0b0100, 0b1000], [1, 2, 3, 4], 3) is None
    assert greedy_cover(0b111, [0b011], [1], 3) is None


def test_a_cover_exists_within_the_limit_exactly() -> None:
    # Greedy would take 0b0111 first and then need two more; two masks do it.
    masks = [0b0111, 0b1100, 0b0011, 0b1000]
    assert cover_exists(0b1111, masks, 2)
    assert not cover_exists(0b1111, [0b0001, 0b0010, 0b0100, 0b1000], 3)


# --- the split in every policy ---------------------------------------------------------


def split_rules(limit: int = 2, css: tuple[str, ...] = ()) -> Any:
    return RULES.replace(max_partners_per_customer=limit, css_workloads=css)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_single_partner_with_room_is_preferred_to_a_split(policy: Policy) -> None:
    partners = typed_partners(
        partner("P1", workloads=["exchange"]),
        partner("P2", workloads=["teams"]),
        partner("P3", workloads=["exchange", "teams"], capacity=1),
    )
    wants = ["exchange", "teams"]
    customers = customers_frame(customer("T1", workloads=wants), customer("T2", workloads=wants))
    sim = simulate(partners, customers, split_rules(), policy)
    out = sim.assignments
    assert out["partner_id"].to_list() == ["P3", "P1", "P2"]
    assert out["part"].to_list() == [1, 1, 2]
    assert out["workloads"].to_list() == [wants, ["exchange"], ["teams"]]
    assert sim.placed == 2
    assert sim.part_counts() == {"split_customers": 1, "partner_parts": 3, "css_parts": 0}
    assert sim.partners["assigned"].to_list() == [1, 1, 1]
    e = explain(sim, "T2")
    assert e.split and e.selection is None
    assert [(p.partner_id, p.workloads, p.gain, p.uncovered) for p in e.parts] == [
        ("P1", ("exchange",), 1, 2),
        ("P2", ("teams",), 1, 1),
    ]


@pytest.mark.parametrize("policy", POLICIES)
def test_each_part_takes_a_seat_and_a_turn(policy: Policy) -> None:
    """Two split customers: the second finds the first's partners full (1 seat each) and
    falls to CSS, capacity_exhausted (a cover exists, without room)."""
    partners = typed_partners(
        partner("P1", workloads=["exchange"], capacity=1),
        partner("P2", workloads=["teams"], capacity=1, last_assigned=7),
    )
    wants = ["exchange", "teams"]
    customers = customers_frame(customer("T1", workloads=wants), customer("T2", workloads=wants))
    sim = simulate(partners, customers, split_rules(), policy)
    assert sim.assignments["reason"].to_list() == ["assigned", "assigned", "capacity_exhausted"]
    assert sim.partners["last_assigned_after"].to_list() == [8, 9]
    limited = simulate(partners, customers, split_rules(limit=1), policy)
    assert limited.assignments["reason"].to_list() == ["no_partner_match"] * 2


def test_css_workloads_form_a_css_part_and_all_css_customers_go_to_css() -> None:
    partners = typed_partners(partner("P1", workloads=["exchange"]))
    customers = customers_frame(
        customer("T1", workloads=["exchange", "defender"]),
        customer("T2", workloads=["defender"]),
        customer("T3", workloads=["teams", "defender"]),
    )
    sim = simulate(partners, customers, split_rules(limit=1, css=("defender",)))
    out = sim.assignments
    assert out.select("tenant_id", "partner_id", "queue", "reason", "part").rows() == [
        ("T1", "P1", "FRP", "assigned", 1),
        ("T1", None, "CSS EMEA", "css_workload", 2),
        ("T2", None, "CSS EMEA", "css_workload", 1),
        ("T3", None, "CSS EMEA", "no_partner_match", 1),
    ]
    assert out["workloads"].to_list() == [
        ["exchange"],
        ["defender"],
        ["defender"],
        ["defender", "teams"],
    ]
    assert sim.counts()[Reason.CSS_WORKLOAD.value] == 1
    assert sim.part_counts()["css_parts"] == 1
    assert "every eligible workload (defender) is one CSS delivers" in out["trace"][2]


def test_a_declined_partner_takes_no_part() -> None:
    partners = typed_partners(
        partner("P1", workloads=["exchange"]),
        partner("P2", workloads=["exchange"]),
        partner("P3", workloads=["teams"]),
    )
    customers = customers_frame(customer("T1", workloads=["exchange", "teams"]))
    sim = simulate(partners, customers, split_rules(), excluded={"T1": ["P1"]})
    assert sim.assignments["partner_id"].to_list() == ["P2", "P3"]


def test_optimal_splits_only_with_seats_its_plan_leaves_free() -> None:
    """T1 needs P1 and P2 together; T2 can only go to P1. The plan keeps P1's one seat
    for T2, so T1 is not split: optimal places one customer, as without a split."""
    partners = typed_partners(
        partner("P1", workloads=["exchange"], capacity=1),
        partner("P2", workloads=["teams"], capacity=1),
    )
    customers = customers_frame(
        customer("T1", workloads=["exchange", "teams"]), customer("T2", workloads=["exchange"])
    )
    sim = simulate(partners, customers, split_rules(), Policy.OPTIMAL)
    assert sim.assignments["partner_id"].to_list() == [None, "P1"]
    assert sim.assignments["reason"].to_list() == ["capacity_exhausted", "assigned"]
    rr = simulate(partners, customers, split_rules(), Policy.ROUND_ROBIN)
    assert rr.assignments["reason"].to_list() == ["assigned", "assigned", "capacity_exhausted"]


def test_output_with_parts_has_a_row_per_part_in_the_result_file() -> None:
    partners = typed_partners(
        partner("P1", workloads=["exchange"]), partner("P2", workloads=["teams"])
    )
    customers = customers_frame(customer("T1", workloads=["exchange", "teams"]))
    out = simulate(partners, customers, split_rules()).output()
    assert out.height == 2
    assert out.columns[:9] == [*ASSIGNMENT_COLUMNS, "trace", "part", "workloads"]
    assert out["pool_key"].to_list() == [None, None]


@settings(max_examples=300, deadline=None)
@given(
    wanted=st.integers(1, 63),
    masks=st.lists(st.integers(0, 127), max_size=12),
    limit=st.integers(1, 3),
)
def test_cover_exists_equals_trying_every_combination(
    wanted: int, masks: list[int], limit: int
) -> None:
    def covers(combo: tuple[int, ...]) -> bool:
        got = 0
        for m in combo:
            got |= m
        return got & wanted == wanted

    brute = any(covers(c) for n in range(1, limit + 1) for c in combinations(masks, n))
    assert cover_exists(wanted, masks, limit) == brute


def test_with_detail_gives_each_part_its_customers_detail() -> None:
    partners = typed_partners(
        partner("P1", workloads=["exchange"]), partner("P2", workloads=["teams"])
    )
    customers = customers_frame(
        customer("T1", workloads=["exchange", "teams"]), customer("T2", country="FR")
    )
    both = simulate(partners, customers, split_rules()).with_detail("country", "size")
    assert both.select("tenant_id", "partner_id", "country", "size").rows() == [
        ("T1", "P1", "DE", "S"),
        ("T1", "P2", "DE", "S"),
        ("T2", None, "FR", "S"),
    ]


def test_the_fairness_headline_of_a_split_run_counts_customers_not_parts() -> None:
    """A split customer took two turns but is one customer placed."""
    from engine.fairness import report_for

    partners = typed_partners(
        partner("P1", workloads=["exchange"], capacity=1),
        partner("P2", workloads=["teams"], capacity=1),
    )
    wants = ["exchange", "teams"]
    customers = customers_frame(customer("T1", workloads=wants), customer("T2", workloads=wants))
    sim = simulate(partners, customers, split_rules())
    assert sim.parts is not None and sim.parts.height > 0
    rep = report_for(sim)
    assert rep.customers == sim.rows.height
    assert rep.placed == sim.placed
    assert rep.css == sim.rows.height - sim.placed
    assert (rep.customers, rep.placed, rep.css) == (2, 1, 1)
    assert sim.assignments.height == 3  # T1's two parts, T2 in CSS


@pytest.mark.parametrize("policy", POLICIES)
def test_the_result_with_parts_is_the_same_streamed_a_slice_at_a_time(policy: Policy) -> None:
    """The result file with parts is spelled out a slice of customers at a time; slices
    that cut through no customer, through split customers and through CSS parts give
    the same rows, each part beside its customer's detail, as the whole."""
    partners = typed_partners(
        partner("P1", workloads=["exchange", "defender"], capacity=2),
        partner("P2", workloads=["teams"], capacity=3),
        partner("P3", workloads=["intune"], capacity=1),
    )
    customers = customers_frame(
        customer("T1", workloads=["exchange", "teams"]),  # split: P1 and P2
        customer("T2", workloads=["exchange", "defender"]),  # P1, and a CSS part
        customer("T3", workloads=["teams"]),  # one part
        customer("T4", workloads=["exchange", "teams", "intune"]),  # P1 is full: no split
        customer("T5", workloads=["teams", "intune"]),  # split: P2 and P3
        customer("T6", seats=10),  # not eligible
    )
    sim = simulate(partners, customers, split_rules(css=("defender",)), policy)
    whole = sim.output()
    detail = sim.detail.select("tenant_id", *OUTPUT_DETAIL)
    spec = sim.assignments.join(detail, on="tenant_id", how="left", maintain_order="left")
    assert whole.equals(spec)
    assert whole.select("tenant_id", "part").rows() == [
        ("T1", 1), ("T1", 2), ("T2", 1), ("T2", 2), ("T3", 1), ("T4", 1), ("T5", 1), ("T5", 2),
        ("T6", 1),
    ]  # fmt: skip
    assert whole["reason"][3] == "css_workload" and whole["workloads"][3].to_list() == ["defender"]
    for slice_rows in (1, 2, 3, 4, 100):
        assert sim.output_lazy(slice_rows).collect().equals(whole), slice_rows
        assert as_text(sim.output_lazy(slice_rows, coded=True).collect()).equals(whole)


def test_an_empty_cohort_with_parts_has_an_empty_result_with_the_part_columns() -> None:
    sim = simulate(
        typed_partners(partner("P1")), customers_frame(customer("T1")).clear(), split_rules()
    )
    out = sim.output()
    assert out.height == 0
    assert out.columns == [*ASSIGNMENT_COLUMNS, "trace", "part", "workloads", *OUTPUT_DETAIL]
    assert sim.output_lazy().collect().equals(out)
