"""Hand-computed scenarios for the naive reference run (engine/reference.py).

Every expected value here was worked out on paper from the rules in docs/domain.md, so these
tests pin the meaning that the fast engine is later compared against.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import polars as pl
import pytest

from engine.columns import ASSIGNMENT_COLUMNS
from engine.reasons import Policy, Reason
from engine.reference import reference_simulate, reference_simulate_with_order
from engine.rules import Rules
from tests.scenarios import customer, customers_frame, partner, partners_frame

RULES = Rules(
    region_of_country={"DE": "EMEA", "FR": "EMEA", "US": "Americas", "JP": "APAC"},
    queue_of_region={"EMEA": "CSS EMEA", "Americas": "CSS Americas", "APAC": "CSS APAC"},
)


def cohort(n: int, **overrides: Any) -> pl.DataFrame:
    return customers_frame(*(customer(f"T{i:06d}", **overrides) for i in range(1, n + 1)))


def chosen(result: pl.DataFrame) -> list[str | None]:
    return result["partner_id"].to_list()


def reasons(result: pl.DataFrame) -> list[str]:
    return result["reason"].to_list()


# --- output shape -------------------------------------------------------------------


def test_output_columns_types_and_order() -> None:
    partners = partners_frame(partner("P1"))
    customers = customers_frame(customer("T2"), customer("T1", country="US"), customer("T3"))
    result = reference_simulate(partners, customers, RULES)
    assert result.columns == list(ASSIGNMENT_COLUMNS)
    assert all(dtype == pl.String() for dtype in result.dtypes)
    assert result["tenant_id"].to_list() == ["T2", "T1", "T3"]
    assert result.row(0, named=True) == {
        "tenant_id": "T2",
        "outcome": "frp",
        "partner_id": "P1",
        "psm_email": "psm.p1@psm.example",
        "queue": "FRP",
        "reason": "assigned",
    }
    assert result.row(1, named=True) == {
        "tenant_id": "T1",
        "outcome": "css",
        "partner_id": None,
        "psm_email": None,
        "queue": "CSS Americas",
        "reason": "no_partner_match",
    }


def test_empty_cohort() -> None:
    result = reference_simulate(partners_frame(partner("P1")), customers_frame(), RULES)
    assert result.height == 0
    assert result.columns == list(ASSIGNMENT_COLUMNS)


def test_optimal_is_not_supported() -> None:
    with pytest.raises(ValueError, match="optimal"):
        reference_simulate(partners_frame(partner("P1")), cohort(1), RULES, Policy.OPTIMAL)


# --- eligibility ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"seats": 149}, Reason.BELOW_SEAT_THRESHOLD),
        ({"seats": 150}, Reason.ASSIGNED),
        ({"workloads": ["dynamics-365", "power-bi"]}, Reason.NO_ELIGIBLE_WORKLOAD),
        ({"workloads": []}, Reason.NO_ELIGIBLE_WORKLOAD),
        ({"referral_consent": False}, Reason.NO_REFERRAL_CONSENT),
        ({"referral_consent": None}, Reason.ASSIGNED),
        # The first failing check is the reason.
        (
            {"seats": 10, "workloads": ["power-bi"], "referral_consent": False},
            Reason.BELOW_SEAT_THRESHOLD,
        ),
        ({"workloads": ["power-bi"], "referral_consent": False}, Reason.NO_ELIGIBLE_WORKLOAD),
    ],
)
def test_eligibility_reasons(overrides: dict[str, Any], reason: Reason) -> None:
    result = reference_simulate(
        partners_frame(partner("P1")), customers_frame(customer("T1", **overrides)), RULES
    )
    assert reasons(result) == [reason.value]
    assert result["outcome"].to_list() == [reason.outcome.value]


def test_null_consent_follows_the_rules_default() -> None:
    rules = dataclasses.replace(RULES, referral_consent_default=False)
    customers = customers_frame(
        customer("T1", referral_consent=None), customer("T2", referral_consent=True)
    )
    result = reference_simulate(partners_frame(partner("P1")), customers, rules)
    assert reasons(result) == ["no_referral_consent", "assigned"]


def test_min_seats_comes_from_the_rules() -> None:
    rules = dataclasses.replace(RULES, min_seats=1000)
    customers = customers_frame(customer("T1", seats=999), customer("T2", seats=1000))
    result = reference_simulate(partners_frame(partner("P1")), customers, rules)
    assert reasons(result) == ["below_seat_threshold", "assigned"]


# --- matching -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partner_overrides", "customer_overrides"),
    [
        ({}, {"country": "FR"}),
        ({}, {"language": "en"}),
        ({}, {"workloads": ["exchange", "intune"]}),
        ({"referral_ready": False}, {}),
        ({"countries": ["DE"], "languages": ["fr"]}, {"country": "FR", "language": "fr"}),
    ],
)
def test_no_partner_match(
    partner_overrides: dict[str, Any], customer_overrides: dict[str, Any]
) -> None:
    partners = partners_frame(partner("P1", **partner_overrides))
    result = reference_simulate(
        partners, customers_frame(customer("T1", **customer_overrides)), RULES
    )
    assert reasons(result) == ["no_partner_match"]
    assert result["queue"].to_list() == ["CSS EMEA"]


def test_every_eligible_workload_must_be_covered() -> None:
    partners = partners_frame(
        partner("P1", workloads=["exchange"]), partner("P2", workloads=["exchange", "intune"])
    )
    customers = customers_frame(customer("T1", workloads=["exchange", "intune"]))
    assert chosen(reference_simulate(partners, customers, RULES)) == ["P2"]


def test_non_eligible_workloads_are_ignored_for_matching() -> None:
    # dynamics-365 is accepted in input but no partner needs to cover it.
    partners = partners_frame(partner("P1", workloads=["EXCHANGE"]))
    customers = customers_frame(customer("T1", workloads=[" Exchange ", "dynamics-365"]))
    result = reference_simulate(partners, customers, RULES)
    assert chosen(result) == ["P1"]
    assert reasons(result) == ["assigned"]


def test_disabled_partners_are_skipped() -> None:
    rules = dataclasses.replace(RULES, disabled_partners=frozenset({"P1"}))
    partners = partners_frame(partner("P1"), partner("P2"))
    assert chosen(reference_simulate(partners, cohort(2), rules)) == ["P2", "P2"]
    only_p1 = partners_frame(partner("P1"))
    assert reasons(reference_simulate(only_p1, cohort(1), rules)) == ["no_partner_match"]


# --- capacity -------------------------------------------------------------------------


def test_capacity_exhausted_after_remaining_runs_out() -> None:
    partners = partners_frame(partner("P1", capacity=5, active_referrals=3))
    result = reference_simulate(partners, cohort(3), RULES)
    assert reasons(result) == ["assigned", "assigned", "capacity_exhausted"]
    assert result["queue"].to_list() == ["FRP", "FRP", "CSS EMEA"]


def test_full_partner_is_skipped_for_one_with_room() -> None:
    partners = partners_frame(
        partner("P1", capacity=2, active_referrals=2), partner("P2", last_assigned=9)
    )
    assert chosen(reference_simulate(partners, cohort(2), RULES)) == ["P2", "P2"]


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        (1.0, ["assigned"] * 3),
        (0.5, ["assigned", "capacity_exhausted", "capacity_exhausted"]),  # floor(5.0) - 4 = 1
        (0.45, ["capacity_exhausted"] * 3),  # floor(4.5) - 4 = 0
        (1.5, ["assigned"] * 3),  # floor(15.0) - 4 = 11
    ],
)
def test_capacity_scale(scale: float, expected: list[str]) -> None:
    rules = dataclasses.replace(RULES, capacity_scale=scale)
    partners = partners_frame(partner("P1", capacity=10, active_referrals=4))
    assert reasons(reference_simulate(partners, cohort(3), rules)) == expected


# --- round robin ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_assigned", "picks", "order_after"),
    [
        pytest.param(
            {}, ["A", "B", "C", "A"], {"A": 4, "B": 2, "C": 3}, id="cycles_through_the_pool"
        ),
        # The counter starts after the largest known value (5).
        pytest.param(
            {"A": 5, "B": 2},
            ["C", "B", "A", "C"],
            {"A": 8, "B": 7, "C": 9},
            id="never_assigned_first_then_least_recent",
        ),
    ],
)
def test_round_robin_turns(
    last_assigned: dict[str, int], picks: list[str], order_after: dict[str, int]
) -> None:
    partners = partners_frame(*(partner(p, last_assigned=last_assigned.get(p)) for p in "ABC"))
    result, order = reference_simulate_with_order(partners, cohort(4), RULES)
    assert chosen(result) == picks
    assert order == order_after


def test_round_robin_ties_by_partner_id() -> None:
    partners = partners_frame(
        partner("P3", last_assigned=1), partner("P2", last_assigned=1), partner("P1")
    )
    assert chosen(reference_simulate(partners, cohort(3), RULES)) == ["P1", "P2", "P3"]


def test_round_robin_order_carries_across_runs_but_not_into_the_input() -> None:
    partners = partners_frame(partner("A"), partner("B"), partner("C"))
    first, order = reference_simulate_with_order(partners, cohort(2), RULES)
    assert chosen(first) == ["A", "B"]
    moved = partners.with_columns(
        pl.col("partner_id").replace_strict(order, return_dtype=pl.Int64).alias("last_assigned")
    )
    second = reference_simulate(moved, cohort(3), RULES)
    assert chosen(second) == ["C", "A", "B"]
    # A simulation does not change its input frame.
    assert partners["last_assigned"].null_count() == 3


def test_partners_outside_the_pool_keep_their_order() -> None:
    partners = partners_frame(
        partner("A", last_assigned=3), partner("Z", countries=["FR"], last_assigned=7)
    )
    _, order = reference_simulate_with_order(partners, cohort(2), RULES)
    assert order == {"A": 9, "Z": 7}


def test_round_robin_counts_assignments_under_any_policy() -> None:
    partners = partners_frame(partner("A"), partner("B"))
    _, order = reference_simulate_with_order(partners, cohort(3), RULES, Policy.LEAST_LOADED)
    assert sorted(v for v in order.values() if v is not None) == [2, 3]


# --- weighted -------------------------------------------------------------------------


def test_weighted_smooth_order_three_to_one() -> None:
    # Weights 30 and 10 (total 40). current A/B after each pick:
    # +w: 30/10 -> A, -40: -10/10 | +w: 20/20 tie -> B (never assigned), -40: 20/-20
    # +w: 50/-10 -> A: 10/-10 | +w: 40/0 -> A: 0/0, and the cycle repeats.
    partners = partners_frame(partner("A", capacity=30), partner("B", capacity=10))
    result = reference_simulate(partners, cohort(8), RULES, Policy.WEIGHTED)
    assert chosen(result) == ["A", "B", "A", "A", "A", "B", "A", "A"]


def test_weighted_full_partner_leaves_the_candidates() -> None:
    # Capacities 3 and 1: A, B (tie won by never-assigned B), then B is full and only A
    # is a candidate until it is full too.
    partners = partners_frame(partner("A", capacity=3), partner("B", capacity=1))
    result = reference_simulate(partners, cohort(5), RULES, Policy.WEIGHTED)
    assert chosen(result) == ["A", "B", "A", "A", None]
    assert reasons(result)[-1] == "capacity_exhausted"


def test_weighted_uses_effective_capacity_as_weight() -> None:
    # capacity_scale 0.5 turns 60/20 into 30/10: same order as the three-to-one case.
    rules = dataclasses.replace(RULES, capacity_scale=0.5)
    partners = partners_frame(partner("A", capacity=60), partner("B", capacity=20))
    result = reference_simulate(partners, cohort(4), rules, Policy.WEIGHTED)
    assert chosen(result) == ["A", "B", "A", "A"]


def test_weighted_state_is_kept_per_pool() -> None:
    # German customers have pool {A, B}, French ones pool {A, C}; each pool has its own
    # current weights. By hand (pool: current after the +w step -> pick, after -total):
    # DE 30/10 -> A, -10/10 | FR 30/10 -> A, -10/10 | FR 20/20 tie -> C (never assigned)
    # DE 20/20 tie -> B (never assigned) | DE 50/-10 -> A.
    # One shared table would give A at the fourth pick (A 40 vs B 20).
    partners = partners_frame(
        partner("A", capacity=30, countries=["DE", "FR"], languages=["de", "fr"]),
        partner("B", capacity=10),
        partner("C", capacity=10, countries=["FR"], languages=["fr"]),
    )
    french = {"country": "FR", "language": "fr"}
    customers = customers_frame(
        customer("T1"),
        customer("T2", **french),
        customer("T3", **french),
        customer("T4"),
        customer("T5"),
    )
    result = reference_simulate(partners, customers, RULES, Policy.WEIGHTED)
    assert chosen(result) == ["A", "A", "C", "B", "A"]


# --- least loaded ---------------------------------------------------------------------


def test_least_loaded_prefers_lower_utilisation_after_assignment() -> None:
    # After assignment: A 6/10 vs B 2/4 -> B; A 6/10 vs B 3/4 -> A; 7/10 vs 3/4 -> A;
    # 8/10 vs 3/4 -> B.
    partners = partners_frame(
        partner("A", capacity=10, active_referrals=5),
        partner("B", capacity=4, active_referrals=1),
    )
    result = reference_simulate(partners, cohort(4), RULES, Policy.LEAST_LOADED)
    assert chosen(result) == ["B", "A", "A", "B"]


def test_least_loaded_exact_ties_fall_back_to_round_robin() -> None:
    # 2/6 and 1/3 are equal; B was never assigned, A was, so B goes first.
    partners = partners_frame(
        partner("A", capacity=6, active_referrals=1, last_assigned=1),
        partner("B", capacity=3, active_referrals=0),
    )
    result = reference_simulate(partners, cohort(1), RULES, Policy.LEAST_LOADED)
    assert chosen(result) == ["B"]


@pytest.mark.parametrize("policy", [Policy.ROUND_ROBIN, Policy.WEIGHTED, Policy.LEAST_LOADED])
def test_every_policy_respects_capacity(policy: Policy) -> None:
    partners = partners_frame(
        partner("A", capacity=3, active_referrals=1), partner("B", capacity=2)
    )
    result = reference_simulate(partners, cohort(6), RULES, policy)
    counts = result.group_by("partner_id").len().sort("partner_id")
    assert dict(counts.iter_rows()) == {None: 2, "A": 2, "B": 2}
    assert reasons(result)[-2:] == ["capacity_exhausted", "capacity_exhausted"]


# --- size and the split by workload (docs/domain.md) ----------------------------------


def test_split_worked_example_with_a_css_part_and_sizes() -> None:
    """P1 and P2 both cover exchange+teams, P2 less recently assigned: it takes them; P3
    takes intune; defender goes to CSS. P4 takes only L customers, so T2 (M) cannot use
    it: no 2 partners cover T2. For T3, P3 and P4 tie at one workload each, and P4, never
    assigned, goes first."""
    partners = partners_frame(
        partner("P1", workloads=["exchange", "teams"], last_assigned=5),
        partner("P2", workloads=["exchange", "teams"], last_assigned=2),
        partner("P3", workloads=["intune"]),
        partner("P4", workloads=["sharepoint"]),
    ).with_columns(pl.Series("sizes", [[], [], [], ["L"]], dtype=pl.List(pl.String)))
    customers = customers_frame(
        customer("T1", workloads=["exchange", "teams", "intune", "defender"]),
        customer("T2", seats=6_000, workloads=["teams", "intune", "sharepoint"]),
        customer("T3", seats=20_000, workloads=["intune", "sharepoint"]),
    )
    rules = dataclasses.replace(RULES, max_partners_per_customer=2, css_workloads=("defender",))
    result, order = reference_simulate_with_order(partners, customers, rules)
    assert result.select("tenant_id", "partner_id", "reason", "part", "workloads").rows() == [
        ("T1", "P2", "assigned", 1, ["exchange", "teams"]),
        ("T1", "P3", "assigned", 2, ["intune"]),
        ("T1", None, "css_workload", 3, ["defender"]),
        ("T2", None, "no_partner_match", 1, ["intune", "sharepoint", "teams"]),
        ("T3", "P4", "assigned", 1, ["sharepoint"]),
        ("T3", "P3", "assigned", 2, ["intune"]),
    ]
    assert order == {"P1": 5, "P2": 6, "P3": 9, "P4": 8}
