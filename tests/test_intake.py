"""Partner availability and intake in the engine (docs/domain.md, "Partner availability
and intake"): pauses and monthly quotas, hand-computed.

A pause is read against the date a run is given (the engine never reads the clock); a
quota against the referrals made to the partner this month (MONTH_REFERRALS, which the
store counts) plus those given in the run. The fast engine and the naive reference
must agree on every scenario here; the store's side (the month's count, the clock) is
in tests/test_store_intake.py.
"""

from __future__ import annotations

import io
from datetime import date

import polars as pl
import pytest

from engine.assign import simulate
from engine.columns import MONTH_REFERRALS, PARTNER_SCHEMA
from engine.explain import explain, render
from engine.reasons import Policy, Reason
from engine.reference import reference_simulate
from engine.rules import RulesError, load_rules, parse_rules, to_toml
from engine.schema import InputError, validate_partners
from tests.test_engine import customer, customers_frame, partner, partners_frame

RULES = load_rules()
POLICIES = list(Policy)
REFERENCE_POLICIES = [Policy.ROUND_ROBIN, Policy.WEIGHTED, Policy.LEAST_LOADED]
JUNE_9, JUNE_10 = date(2025, 6, 9), date(2025, 6, 10)


def month(frame: pl.DataFrame, made: dict[str, int]) -> pl.DataFrame:
    """``frame`` with the referrals made to each partner this month (0 when not given)."""
    counts = pl.col("partner_id").replace_strict(made, default=0, return_dtype=pl.Int64)
    return frame.with_columns(counts.alias(MONTH_REFERRALS))


def cohort(n: int) -> pl.DataFrame:
    return customers_frame(*(customer(f"T{k}") for k in range(1, n + 1)))


def outcomes(frame: pl.DataFrame) -> list[tuple[str | None, str]]:
    return list(frame.select("partner_id", "reason").iter_rows())


def both(
    partners: pl.DataFrame, customers: pl.DataFrame, policy: Policy, today: date | None
) -> list[tuple[str | None, str]]:
    """The engine's outcomes, checked against the reference's where it has the policy."""
    sim = simulate(partners, customers, RULES, policy, today=today)
    got = outcomes(sim.assignments)
    if policy in REFERENCE_POLICIES:
        expected = reference_simulate(partners, customers, RULES, policy, today=today)
        assert got == outcomes(expected)
    assert [render(explain(sim, i)) for i in range(sim.rows.height)] == (
        sim.assignments["trace"].to_list()
    )
    return got


# --- pauses ------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.value)
def test_a_pause_ends_on_its_date(policy: Policy) -> None:
    partners = partners_frame(partner("P1", paused_until=JUNE_10), partner("P2", capacity=0))
    day_before = both(partners, cohort(1), policy, JUNE_9)
    assert day_before == [(None, Reason.CAPACITY_EXHAUSTED.value)]  # only P2 left, full
    on_the_day = both(partners, cohort(1), policy, JUNE_10)
    assert on_the_day == [("P1", Reason.ASSIGNED.value)]
    # Without a date (a what-if on files that do not care) no pause is considered.
    assert both(partners, cohort(1), policy, None) == [("P1", Reason.ASSIGNED.value)]


def test_a_paused_partner_is_removed_by_the_referral_ready_rule_and_named() -> None:
    partners = partners_frame(
        partner("P1", paused_until=JUNE_10),
        partner("P2"),
        partner("P3", referral_ready=False, paused_until=JUNE_10),
    )
    sim = simulate(partners, cohort(1), RULES, today=JUNE_9)
    trace = sim.assignments["trace"][0]
    assert trace.startswith("Referral Ready: 1 left, 2 removed (1 paused: P1); country SE")
    e = explain(sim, 0)
    assert e.matching is not None
    ready = e.matching.steps[0]
    assert (ready.rule, ready.kept, ready.n_removed) == ("Referral Ready", 1, 2)
    assert (ready.paused, ready.n_paused) == (("P1",), 1)  # P3 is off, not paused
    assert e.matching.unavailable == ("P1", "P3")
    state = dict(sim.partners.select("partner_id", "paused").iter_rows())
    assert state == {"P1": True, "P2": False, "P3": False}


def test_a_trace_names_five_paused_partners_then_counts_the_rest() -> None:
    paused = [partner(f"P{k}", paused_until=JUNE_10) for k in range(1, 8)]
    sim = simulate(partners_frame(*paused, partner("P8")), cohort(1), RULES, today=JUNE_9)
    trace = sim.assignments["trace"][0]
    assert "Referral Ready: 1 left, 7 removed (7 paused: P1, P2, P3, P4, P5 +2 more)" in trace
    assert render(explain(sim, 0, keep_ids=20)) == trace


def test_a_pause_in_the_past_changes_nothing() -> None:
    partners = partners_frame(partner("P1", paused_until=date(2025, 1, 1)))
    sim = simulate(partners, cohort(1), RULES, today=JUNE_9)
    assert outcomes(sim.assignments) == [("P1", Reason.ASSIGNED.value)]
    assert sim.assignments["trace"][0].startswith("Referral Ready: 1 left; ")


# --- quotas ------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.value)
def test_a_quota_counts_this_months_referrals_and_this_run(policy: Policy) -> None:
    # P1: 10 seats, quota 3 of which 1 used this month -> 2 more. P2: quota 0 -> full.
    partners = month(
        partners_frame(
            partner("P1", capacity=10, monthly_quota=3),
            partner("P2", capacity=10, monthly_quota=0),
        ),
        {"P1": 1},
    )
    got = both(partners, cohort(3), policy, None)
    assert got == [
        ("P1", Reason.ASSIGNED.value),
        ("P1", Reason.ASSIGNED.value),
        (None, Reason.CAPACITY_EXHAUSTED.value),
    ]


def test_a_partner_at_its_quota_is_full_in_the_trace() -> None:
    partners = month(partners_frame(partner("P1", capacity=10, monthly_quota=2)), {"P1": 2})
    sim = simulate(partners, cohort(1), RULES)
    assert sim.assignments["trace"][0].endswith("1 of 1 full (P1): capacity exhausted -> CSS EMEA")
    row = sim.partners.row(0, named=True)
    assert (row["capacity"], row["seat_limit"], row["assigned"]) == (10, 0, 0)


def test_capacity_still_binds_below_the_quota() -> None:
    # Quota 5, nothing this month, but one seat left: one referral.
    partners = partners_frame(partner("P1", capacity=2, active_referrals=1, monthly_quota=5))
    assert both(partners, cohort(2), Policy.ROUND_ROBIN, None) == [
        ("P1", Reason.ASSIGNED.value),
        (None, Reason.CAPACITY_EXHAUSTED.value),
    ]


def test_without_the_months_count_a_quota_counts_from_zero() -> None:
    partners = partners_frame(partner("P1", capacity=10, monthly_quota=1))
    assert MONTH_REFERRALS not in partners.columns
    assert both(partners, cohort(2), Policy.ROUND_ROBIN, None) == [
        ("P1", Reason.ASSIGNED.value),
        (None, Reason.CAPACITY_EXHAUSTED.value),
    ]


def test_a_quota_spreads_round_robin_to_the_next_partner() -> None:
    # P1 comes first every turn (never assigned) until its quota of 1 is used.
    partners = partners_frame(
        partner("P1", capacity=5, monthly_quota=1), partner("P2", capacity=5, last_assigned=3)
    )
    got = both(partners, cohort(3), Policy.ROUND_ROBIN, None)
    assert [p for p, _ in got] == ["P1", "P2", "P2"]


def test_least_loaded_still_measures_utilisation_against_capacity() -> None:
    # P1 (capacity 10, quota 4) stays the least loaded by capacity (4/10 < 1/2), so it
    # takes its whole quota first; against its quota it would tie with P2 at the second.
    partners = partners_frame(
        partner("P1", capacity=10, monthly_quota=4), partner("P2", capacity=2, last_assigned=1)
    )
    got = both(partners, cohort(6), Policy.LEAST_LOADED, None)
    assert [p for p, _ in got] == ["P1", "P1", "P1", "P1", "P2", "P2"]


# --- validation --------------------------------------------------------------------------

HEADER = (
    "partner_id,name,countries,languages,workloads,capacity,active_referrals,referral_ready,"
    "psm_name,psm_email,contact_email,paused_until,monthly_quota"
)


def partner_csv(*cells: tuple[str, str]) -> pl.DataFrame:
    """Raw partner rows P1.. as CSV text gives them, with (paused_until, monthly_quota)."""
    lines = [HEADER] + [
        f"P{k},Partner {k},SE,sv,exchange,5,0,true,Ann,ann@psm.example,p{k}@p.example,{p},{q}"
        for k, (p, q) in enumerate(cells, 1)
    ]
    return pl.read_csv(io.StringIO("\n".join(lines) + "\n"), infer_schema=False)


def test_the_new_columns_are_read_typed_and_optional() -> None:
    typed = validate_partners(partner_csv(("2025-07-09", "10"), ("", "")), today=JUNE_9)
    assert typed.schema == PARTNER_SCHEMA
    assert typed["paused_until"].to_list() == [date(2025, 7, 9), None]
    assert typed["monthly_quota"].to_list() == [10, None]
    without = validate_partners(partner_csv(("", "")).drop("paused_until", "monthly_quota"))
    assert without["paused_until"].to_list() == [None]
    assert without["monthly_quota"].to_list() == [None]


def test_a_pause_beyond_max_pause_days_is_a_row_error() -> None:
    raw = partner_csv(("2025-07-09", "1"), ("2025-07-10", "2"))  # 30 and 31 days after June 9
    with pytest.raises(InputError) as caught:
        validate_partners(raw, "partners.csv", today=JUNE_9)
    assert [(p.row, p.column, p.value) for p in caught.value.problems] == [
        (2, "paused_until", "2025-07-10")
    ]
    expected = caught.value.problems[0].expected
    assert "no later than 2025-07-09" in expected and "max_pause_days 30" in expected
    assert validate_partners(raw, today=JUNE_9, max_pause_days=31).height == 2
    assert validate_partners(raw).height == 2  # no date given: no limit to check
    with pytest.raises(InputError, match="max_pause_days 0"):
        validate_partners(raw, today=JUNE_9, max_pause_days=0)


@pytest.mark.parametrize(
    ("paused_until", "monthly_quota", "column"),
    [
        ("2025-7-1", "", "paused_until"),
        ("09/06/2025", "", "paused_until"),
        ("2025-02-30", "", "paused_until"),
        ("soon", "", "paused_until"),
        ("", "-1", "monthly_quota"),
        ("", "2.5", "monthly_quota"),
        ("", "lots", "monthly_quota"),
        ("", "100001", "monthly_quota"),
    ],
)
def test_bad_pauses_and_quotas_name_row_column_and_value(
    paused_until: str, monthly_quota: str, column: str
) -> None:
    with pytest.raises(InputError) as caught:
        validate_partners(partner_csv((paused_until, monthly_quota)), today=JUNE_9)
    (problem,) = caught.value.problems
    assert (problem.row, problem.column) == (1, column)
    assert problem.value == (paused_until or monthly_quota)
    kind = "a date as YYYY-MM-DD" if column == "paused_until" else "a whole number >= 0"
    assert problem.expected.startswith(kind)


def test_parquet_dates_are_read_as_they_are() -> None:
    raw = partner_csv(("", "3")).with_columns(pl.lit(JUNE_10).alias("paused_until"))
    typed = validate_partners(raw, today=JUNE_9)
    assert typed["paused_until"].to_list() == [JUNE_10]
    with pytest.raises(InputError, match="paused_until"):
        validate_partners(
            raw.with_columns(pl.lit(date(2026, 1, 1)).alias("paused_until")), today=JUNE_9
        )


# --- the rules key -------------------------------------------------------------------------


def test_max_pause_days_defaults_to_30_and_is_checked() -> None:
    assert RULES.max_pause_days == 30
    assert RULES.replace(max_pause_days=0).max_pause_days == 0
    for bad in (-1, 366, True, "30", 1.5):
        with pytest.raises(RulesError, match="max_pause_days"):
            RULES.replace(max_pause_days=bad)
    assert parse_rules(to_toml(RULES.replace(max_pause_days=14))).max_pause_days == 14
