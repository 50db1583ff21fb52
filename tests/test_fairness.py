"""Fairness: the inequality measures, a hand-checked report, and a report of a real run."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.assign import simulate
from engine.fairness import (
    ACCEPTANCE_SCHEMA,
    PER_POOL_SCHEMA,
    POOL_MEMBER_SCHEMA,
    WEIGHT,
    FairnessReport,
    acceptance,
    gini,
    jain_index,
    report,
    report_for,
    verdict,
)
from engine.rules import load_rules
from engine.schema import validate_customers, validate_partners

# --- Jain's index and Gini -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.5, 0.5, 0.5, 0.5], 1.0),
        ([3.0], 1.0),
        ([1.0, 0.0, 0.0, 0.0], 0.25),  # one takes all: 1/n
        ([1.0, 0.0], 0.5),
        ([0.75, 0.5, 0.5], 49 / 51),  # (1.75)^2 / (3 * 1.0625)
        ([], 1.0),  # defined: nobody is treated worse than anyone
        ([0.0, 0.0, 0.0], 1.0),
    ],
)
def test_jain_index_known_values(values: list[float], expected: float) -> None:
    assert jain_index(values) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.5, 0.5, 0.5, 0.5], 0.0),
        # Population formula with n = 4: sum((2i - n - 1) x_i) / (n * sum x) = 3 * 1 / (4 * 1)
        # = 0.75, i.e. (n - 1) / n, the largest value the population Gini can take.
        ([0.0, 0.0, 0.0, 1.0], 0.75),
        ([1.0, 0.0, 0.0, 0.0], 0.75),  # order does not matter
        ([0.75, 0.5, 0.5], 2 / 21),  # (-2 * 0.5 + 0 * 0.5 + 2 * 0.75) / (3 * 1.75)
        ([1.0, 3.0], 0.25),  # (-1 * 1 + 1 * 3) / (2 * 4)
        ([], 0.0),
        ([0.0, 0.0], 0.0),
    ],
)
def test_gini_known_values(values: list[float], expected: float) -> None:
    assert gini(values) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("measure", [jain_index, gini])
@pytest.mark.parametrize("bad", [[1.0, -0.5], [1.0, float("nan")], [float("inf")]])
def test_measures_refuse_negative_or_non_finite(measure, bad: list[float]) -> None:
    with pytest.raises(ValueError, match="finite values >= 0"):
        measure(bad)


utilisations = st.lists(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_subnormal=False),
    min_size=1,
    max_size=50,
)
scales = st.floats(min_value=1e-3, max_value=1e3, allow_subnormal=False)


@given(utilisations)
def test_jain_is_between_one_over_n_and_one(values: list[float]) -> None:
    assert 1 / len(values) <= jain_index(values) <= 1.0


@given(utilisations)
def test_gini_is_between_zero_and_one(values: list[float]) -> None:
    g = gini(values)
    assert 0.0 <= g < 1.0
    assert g <= (len(values) - 1) / len(values) + 1e-12


@given(utilisations, scales)
def test_measures_do_not_depend_on_scale(values: list[float], scale: float) -> None:
    scaled = [v * scale for v in values]
    assert jain_index(scaled) == pytest.approx(jain_index(values), rel=1e-9, abs=1e-12)
    assert gini(scaled) == pytest.approx(gini(values), rel=1e-9, abs=1e-12)


# --- A hand-built report ---------------------------------------------------------------------


def _hand_inputs() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    # A, B, C take part; D is switched off and E has no capacity, so neither is measured.
    partners = pl.DataFrame(
        {
            "partner_id": ["E", "D", "C", "B", "A"],
            "available": [True, False, True, True, True],
            "capacity": [0, 10, 2, 4, 4],
            "active_before": [0, 10, 0, 2, 0],
            "assigned": [0, 0, 1, 0, 3],
        }
    )
    pools = pl.DataFrame(
        {"pool_key": ["p1", "p2", "p3"], "partner_ids": [["A", "B", "C"], ["C", "E"], ["B"]]}
    )
    rows = [
        # tenant, outcome, partner, reason, region, language, eligible workloads, pool
        ("t1", "frp", "A", "assigned", "EMEA", "en", ["teams"], "p1"),
        ("t2", "frp", "A", "assigned", "EMEA", "en", ["teams", "exchange"], "p1"),
        ("t3", "frp", "A", "assigned", "Americas", "en", ["exchange"], "p1"),
        ("t4", "css", None, "capacity_exhausted", "Americas", "fr", ["teams"], "p1"),
        ("t5", "frp", "C", "assigned", "EMEA", "de", ["intune"], "p2"),
        ("t6", "css", None, "no_partner_match", "APAC", "ja", ["intune"], None),
        ("t7", "css", None, "below_seat_threshold", "APAC", "ja", [], None),
        ("t8", "css", None, "below_seat_threshold", "EMEA", "en", ["teams"], None),
    ]
    outcomes = pl.DataFrame(
        {
            "tenant_id": [r[0] for r in rows],
            "outcome": [r[1] for r in rows],
            "partner_id": [r[2] for r in rows],
            "reason": [r[3] for r in rows],
            "region": [r[4] for r in rows],
            "country": ["SE"] * len(rows),
            "language": [r[5] for r in rows],
            "eligible_workloads": [r[6] for r in rows],
            "pool_key": [r[7] for r in rows],
        },
        schema_overrides={"eligible_workloads": pl.List(pl.String)},
    )
    return outcomes, partners, pools


@pytest.fixture(scope="module")
def hand() -> FairnessReport:
    return report(*_hand_inputs())


def _counted(outcomes: pl.DataFrame) -> pl.DataFrame:
    """One row per distinct outcome (without tenant_id), with how many customers it stands for."""
    rest = [c for c in outcomes.columns if c != "tenant_id"]
    return outcomes.group_by(rest).agg(pl.len().alias(WEIGHT))


def _same(a: FairnessReport, b: FairnessReport) -> None:
    assert a.headline() == b.headline()
    for name in ("per_partner", "per_pool", "pool_members"):
        assert getattr(a, name).equals(getattr(b, name)), name
    assert set(a.css_by) == set(b.css_by)
    for dim, frame in a.css_by.items():
        assert frame.equals(b.css_by[dim]), dim
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize("copies", [1, 3])
def test_counted_outcomes_give_the_same_report(copies: int) -> None:
    outcomes, partners, pools = _hand_inputs()
    many = pl.concat([outcomes] * copies)
    counted = _counted(many)
    assert counted.height < many.height or copies == 1
    _same(report(many, partners, pools), report(counted, partners, pools))
    assert report(counted, partners, pools).customers == 8 * copies


def test_counted_workloads_in_another_order_count_the_same() -> None:
    outcomes, partners, pools = _hand_inputs()
    flipped = outcomes.with_columns(pl.col("eligible_workloads").list.reverse())
    both = pl.concat([outcomes, flipped])
    _same(report(both, partners, pools), report(_counted(both), partners, pools))


@pytest.mark.parametrize("bad", [[-1], [None]])
def test_counted_outcomes_refuse_bad_counts(bad: list) -> None:
    outcomes, partners, pools = _hand_inputs()
    counted = _counted(outcomes.head(1)).with_columns(pl.Series(WEIGHT, bad, dtype=pl.Int64))
    with pytest.raises(ValueError, match="customers must be whole numbers"):
        report(counted, partners, pools)


def test_hand_headline(hand: FairnessReport) -> None:
    assert (hand.customers, hand.placed, hand.css) == (8, 4, 4)
    assert hand.css_rate == 0.5
    # Measured utilisations after the run: A 3/4, B 2/4, C 1/2.
    assert hand.jain == pytest.approx(49 / 51)
    assert hand.gini == pytest.approx(2 / 21)
    assert hand.max_utilisation == 0.75
    assert hand.mean_utilisation == pytest.approx(1.75 / 3)


def test_hand_per_partner(hand: FairnessReport) -> None:
    assert hand.per_partner.to_dicts() == [
        {
            "partner_id": "A",
            "capacity": 4,
            "active_before": 0,
            "assigned": 3,
            "active_after": 3,
            "utilisation_before": 0.0,
            "utilisation_after": 0.75,
            "available": True,
        },
        {
            "partner_id": "B",
            "capacity": 4,
            "active_before": 2,
            "assigned": 0,
            "active_after": 2,
            "utilisation_before": 0.5,
            "utilisation_after": 0.5,
            "available": True,
        },
        {
            "partner_id": "C",
            "capacity": 2,
            "active_before": 0,
            "assigned": 1,
            "active_after": 1,
            "utilisation_before": 0.0,
            "utilisation_after": 0.5,
            "available": True,
        },
        {
            "partner_id": "D",
            "capacity": 10,
            "active_before": 10,
            "assigned": 0,
            "active_after": 10,
            "utilisation_before": 1.0,
            "utilisation_after": 1.0,
            "available": False,
        },
        {
            "partner_id": "E",
            "capacity": 0,
            "active_before": 0,
            "assigned": 0,
            "active_after": 0,
            "utilisation_before": None,
            "utilisation_after": None,
            "available": True,
        },
    ]


def test_hand_per_pool(hand: FairnessReport) -> None:
    # p1: A got all three placed customers, B and C none: spread 3, ideal 1, A is +2.
    # p2: C got its one customer, E (no capacity) none: spread 1, ideal 0.5.
    # p3: no customers routed, nothing to be unfair about.
    assert hand.per_pool.schema == pl.Schema(PER_POOL_SCHEMA)
    assert hand.per_pool.rows() == [
        ("p1", 3, 4, 3, 0, 3, 3, 1.0, 2.0),
        ("p2", 2, 1, 1, 0, 1, 1, 0.5, 0.5),
        ("p3", 1, 0, 0, 0, 0, 0, 0.0, 0.0),
    ]
    assert hand.pool_members.rows() == [
        ("p1", "A", 3, 1.0, 2.0),
        ("p1", "B", 0, 1.0, -1.0),
        ("p1", "C", 0, 1.0, -1.0),
        ("p2", "C", 1, 0.5, 0.5),
        ("p2", "E", 0, 0.5, -0.5),
        ("p3", "B", 0, 0.0, 0.0),
    ]


def test_hand_css_by_region_language_workload(hand: FairnessReport) -> None:
    assert hand.css_by["region"].rows() == [
        ("APAC", 2, 2, 1.0),
        ("Americas", 2, 1, 0.5),
        ("EMEA", 4, 1, 0.25),
    ]
    assert hand.css_by["language"].rows() == [
        ("fr", 1, 1, 1.0),
        ("ja", 2, 2, 1.0),
        ("en", 4, 1, 0.25),
        ("de", 1, 0, 0.0),
    ]
    # t2 counts under both of its workloads; t7 has none.
    assert hand.css_by["workload"].rows() == [
        ("(none)", 1, 1, 1.0),
        ("intune", 2, 1, 0.5),
        ("teams", 4, 2, 0.5),
        ("exchange", 2, 0, 0.0),
    ]


def test_hand_css_by_reason(hand: FairnessReport) -> None:
    assert hand.css_by["reason"].rows() == [
        ("below_seat_threshold", 2, 0.5, "Below the seat threshold"),
        ("capacity_exhausted", 1, 0.25, "Matching partners are all full"),
        ("no_partner_match", 1, 0.25, "No partner matches"),
    ]


def test_hand_to_dict_is_json(hand: FairnessReport) -> None:
    data = json.loads(json.dumps(hand.to_dict()))
    assert data["customers"] == 8
    assert data["jain"] == 0.9608  # 49/51 rounded to 4 places
    assert data["gini"] == 0.0952
    assert data["mean_utilisation"] == 0.5833
    assert data["per_pool"][0] == {
        "pool_key": "p1",
        "size": 3,
        "customers": 4,
        "placed": 3,
        "min_given": 0,
        "max_given": 3,
        "spread": 3,
        "ideal_share": 1.0,
        "max_deviation": 2.0,
    }
    assert data["per_partner"][4]["utilisation_after"] is None
    assert set(data["css_by"]) == {"region", "language", "workload", "reason"}
    assert data["css_by"]["region"][2] == {
        "key": "EMEA",
        "customers": 4,
        "css": 1,
        "css_rate": 0.25,
    }


def test_hand_to_text(hand: FairnessReport) -> None:
    text = hand.to_text()
    lines = text.splitlines()
    assert len(lines) < 60
    assert "Jain index 0.9608" in text
    assert "Gini 0.0952" in text
    # Partners at capacity, as the JSON has them (`at_capacity`): none of A, B, C is full.
    assert hand.at_capacity == 0 and "at capacity 0 of 3 " in lines[3], lines[3]
    full = replace(hand, at_capacity=2).to_text().splitlines()[3]
    assert "at capacity 2 of 3 " in full, full
    assert "Below the seat threshold" in text
    assert "Matching partners are all full" in text
    # Busiest first; D (switched off) is shown but marked, E (no capacity) is left out.
    partners = lines.index("Top 4 partners by utilisation after the run")
    assert lines[partners + 2].split()[0] == "D"
    assert lines[partners + 2].endswith("100.0% (off)")
    assert lines[partners + 3].split()[0] == "A"
    # Widest pool first, with its members named.
    pools = next(i for i, line in enumerate(lines) if line.startswith("Pools with"))
    assert lines[pools + 2].split()[:2] == ["p1", "3"]
    assert lines[pools + 2].endswith("A, B, C")


def test_report_without_pools_has_empty_pool_frames(hand: FairnessReport) -> None:
    outcomes = pl.DataFrame(
        {
            "tenant_id": ["t1"],
            "outcome": ["css"],
            "partner_id": [None],
            "reason": ["no_partner_match"],
            "region": ["EMEA"],
            "country": ["SE"],
            "language": ["sv"],
            "eligible_workloads": [["teams"]],
            "pool_key": [None],
        }
    )
    partners = pl.DataFrame(
        {
            "partner_id": ["A"],
            "available": [True],
            "capacity": [4],
            "active_before": [2],
            "assigned": [0],
        }
    )
    got = report(outcomes, partners)
    assert got.per_pool.is_empty() and got.per_pool.schema == pl.Schema(PER_POOL_SCHEMA)
    assert got.pool_members.is_empty()
    assert got.pool_members.schema == pl.Schema(POOL_MEMBER_SCHEMA)
    assert (got.jain, got.gini, got.max_utilisation, got.css_rate) == (1.0, 0.0, 0.5, 1.0)
    assert "Pools with" not in got.to_text()


def test_report_of_nothing() -> None:
    outcomes = pl.DataFrame(
        schema={
            "tenant_id": pl.String,
            "outcome": pl.String,
            "partner_id": pl.String,
            "reason": pl.String,
            "region": pl.String,
            "country": pl.String,
            "language": pl.String,
            "eligible_workloads": pl.List(pl.String),
            "pool_key": pl.String,
        }
    )
    partners = pl.DataFrame(
        schema={
            "partner_id": pl.String,
            "available": pl.Boolean,
            "capacity": pl.Int64,
            "active_before": pl.Int64,
            "assigned": pl.Int64,
        }
    )
    got = report(outcomes, partners, pl.DataFrame({"pool_key": [], "partner_ids": []}))
    assert (got.customers, got.css_rate, got.jain, got.gini) == (0, 0.0, 1.0, 0.0)
    assert (got.max_utilisation, got.mean_utilisation) == (0.0, 0.0)
    assert all(frame.is_empty() for frame in got.css_by.values())
    assert json.dumps(got.to_dict())
    assert "Jain index 1.0000" in got.to_text()


def test_missing_column_is_named() -> None:
    outcome_columns = ("tenant_id", "outcome", "partner_id", "reason")
    with pytest.raises(ValueError, match=r"outcomes: missing column\(s\) region, country"):
        report(pl.DataFrame({c: [] for c in outcome_columns}), pl.DataFrame())
    outcomes = pl.DataFrame(
        {c: [] for c in outcome_columns}
        | {c: [] for c in ("region", "country", "language", "eligible_workloads", "pool_key")}
    )
    with pytest.raises(ValueError, match=r"partners: missing column\(s\) available, capacity"):
        report(outcomes, pl.DataFrame({"partner_id": ["A"], "assigned": [1]}))


# --- A real run ------------------------------------------------------------------------------


def _partners(rows: list[tuple[str, str, str, str, int, int]]) -> pl.DataFrame:
    """Validated partners from (id, countries, languages, workloads, capacity, active)."""
    return validate_partners(
        pl.DataFrame(
            {
                "partner_id": [r[0] for r in rows],
                "name": [f"Partner {r[0]}" for r in rows],
                "countries": [r[1] for r in rows],
                "languages": [r[2] for r in rows],
                "workloads": [r[3] for r in rows],
                "capacity": [str(r[4]) for r in rows],
                "active_referrals": [str(r[5]) for r in rows],
                "referral_ready": ["true"] * len(rows),
                "psm_name": ["Pat Example"] * len(rows),
                "psm_email": [f"psm.{r[0].lower()}@example.com" for r in rows],
                "contact_email": [f"hello@{r[0].lower()}.example.com" for r in rows],
            }
        )
    )


def _customers(rows: list[tuple[str, str, str, int, str]]) -> pl.DataFrame:
    """Validated customers from (tenant, country, language, seats, workloads)."""
    return validate_customers(
        pl.DataFrame(
            {
                "tenant_id": [r[0] for r in rows],
                "name": [f"Customer {r[0]}" for r in rows],
                "country": [r[1] for r in rows],
                "language": [r[2] for r in rows],
                "seats": [str(r[3]) for r in rows],
                "workloads": [r[4] for r in rows],
                "gateway": ["false"] * len(rows),
                "contact_email": [f"it@{r[0].lower()}.example.com" for r in rows],
            }
        )
    )


def test_report_for_a_round_robin_run() -> None:
    partners = _partners(
        [
            ("P1", "SE;NO", "sv;en", "exchange;teams", 4, 0),
            ("P2", "SE", "sv", "exchange;teams;intune", 4, 0),
            ("P3", "SE;NO", "sv", "teams", 4, 0),
            ("P9", "US", "en", "teams", 0, 0),  # no capacity: not measured
        ]
    )
    customers = _customers(
        [
            ("T1", "SE", "sv", 200, "teams"),
            ("T2", "SE", "sv", 300, "teams"),
            ("T3", "SE", "sv", 400, "teams;dynamics-365"),  # dynamics is ignored
            ("T4", "SE", "sv", 500, "teams"),
            ("T5", "SE", "sv", 600, "exchange"),  # only P1 and P2 match
            ("T6", "US", "en", 100, "teams"),  # below the seat threshold
            ("T7", "DE", "de", 500, "teams"),  # nobody speaks German
        ]
    )
    sim = simulate(partners, customers, load_rules())
    got = report_for(sim)

    assert (got.customers, got.placed, got.css) == (7, 5, 2)
    assert got.css_rate == pytest.approx(2 / 7)
    # Round robin over the teams pool: P1, P2, P3, then P1 again; T5 goes to P2 (P1 is
    # more recently assigned). Loads 2, 2, 1 of 4 each.
    assert dict(got.per_partner.select("partner_id", "assigned").iter_rows()) == {
        "P1": 2,
        "P2": 2,
        "P3": 1,
        "P9": 0,
    }
    assert got.per_partner.filter(pl.col("partner_id") == "P9")["utilisation_after"][0] is None
    assert got.max_utilisation == 0.5
    assert got.mean_utilisation == pytest.approx(5 / 12)
    assert got.jain == pytest.approx(25 / 27)  # (2+2+1)^2 / (3 * 9)
    assert got.gini == pytest.approx(2 / 15)  # (-2*1 + 0*2 + 2*2) / (3 * 5)

    # Two pools: the teams pool (4 customers, each member given at most 2) and the
    # exchange pool (1 customer, given to P2).
    assert got.per_pool.select(
        "size", "customers", "placed", "min_given", "max_given", "spread"
    ).rows() == [(3, 4, 4, 1, 2, 1), (2, 1, 1, 0, 1, 1)]
    teams_pool = got.per_pool["pool_key"][0]
    members = got.pool_members.filter(pl.col("pool_key") == teams_pool)
    assert members.select("partner_id", "given").rows() == [("P1", 2), ("P2", 1), ("P3", 1)]
    assert members["deviation"].to_list() == pytest.approx([2 / 3, -1 / 3, -1 / 3])
    assert got.per_pool["max_deviation"].to_list() == pytest.approx([2 / 3, 0.5])

    assert got.css_by["reason"].select("key", "css").rows() == [
        ("below_seat_threshold", 1),
        ("no_partner_match", 1),
    ]
    assert got.css_by["region"].rows() == [("Americas", 1, 1, 1.0), ("EMEA", 6, 1, 1 / 6)]
    assert ("dynamics-365" in got.css_by["workload"]["key"].to_list()) is False
    assert json.dumps(got.to_dict())
    assert f"Jain index {25 / 27:.4f}" in got.to_text()


def test_report_for_agrees_with_simulation_partner_state() -> None:
    partners = _partners([("P1", "SE", "sv", "teams", 3, 1), ("P2", "SE", "sv", "teams", 5, 0)])
    customers = _customers([(f"T{i}", "SE", "sv", 200, "teams") for i in range(6)])
    sim = simulate(partners, customers, load_rules(), "least-loaded")
    got = report_for(sim)
    expected = sim.partners.select("partner_id", "utilisation_after").sort("partner_id")
    assert got.per_partner["utilisation_after"].to_list() == pytest.approx(
        expected["utilisation_after"].to_list()
    )
    assert got.placed == sim.placed == 6
    assert got.max_utilisation == max(expected["utilisation_after"].to_list())
    assert not math.isnan(got.jain)


# --- Partners' answers over time -------------------------------------------------------------


def _responses(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["partner_id", "response", "referrals"], orient="row")


def test_acceptance_counts_expiries_as_declines_and_waits_for_an_answer() -> None:
    got = acceptance(
        _responses(
            [
                ("A", "accepted", 6),
                ("A", "declined", 1),
                ("A", "expired", 1),
                ("A", "waiting", 4),
                ("B", "waiting", 2),  # nothing answered yet: no rate
                ("C", "expired", 3),
                ("C", "handed_over", 1),  # unknown to this version: made, nothing else
            ]
        )
    )
    assert got.schema == ACCEPTANCE_SCHEMA
    assert got.rows() == [
        ("A", 12, 4, 6, 1, 1, 8, 0.75),
        ("B", 2, 2, 0, 0, 0, 0, None),
        ("C", 4, 0, 0, 0, 3, 3, 0.0),
    ]
    assert acceptance(_responses([])).height == 0


def test_a_report_with_responses_shows_them_and_the_css_after_declines() -> None:
    outcomes, partners, pools = _hand_inputs()
    outcomes = outcomes.with_columns(
        pl.when(pl.col("tenant_id") == "t8")
        .then(pl.lit("declined_by_partners"))
        .otherwise(pl.col("reason"))
        .alias("reason")
    )
    responses = _responses([("A", "accepted", 2), ("A", "expired", 2), ("C", "declined", 1)])
    got = report(outcomes, partners, pools, responses)
    assert got.css_after_declines == 1
    data = json.loads(json.dumps(got.to_dict()))
    assert data["css_after_declines"] == 1
    assert data["acceptance"][0]["acceptance_rate"] == 0.5
    text = got.to_text()
    assert "acceptance rate 40.0% of 5 answered (expired 2; CSS after declines and expiries 1)" in (
        text
    )
    assert len(text.splitlines()) < 60
    # Without responses (a simulation): no answers, in the dict or the text.
    plain = report(outcomes, partners, pools)
    assert plain.acceptance is None and "acceptance" not in plain.to_dict()
    assert "Partner responses" not in plain.to_text()


# --- The verdict --------------------------------------------------------------------------


def _pools(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    """per_pool rows (pool_key, placed, max_deviation); the other columns do not matter."""
    return pl.DataFrame(
        {
            "pool_key": [r[0] for r in rows],
            "placed": [r[1] for r in rows],
            "max_deviation": [r[2] for r in rows],
        }
    )


def test_the_verdict_counts_pools_within_one_turn_and_lists_the_others_furthest_first() -> None:
    v = verdict(_pools([("a", 7, 0.67), ("b", 9, 1.0), ("c", 5, 2.4), ("d", 3, 1.5), ("e", 0, 0)]))
    assert (v.pools, v.within) == (4, 2)  # a pool where nobody was placed is not judged
    assert v.off == (("c", 2.4), ("d", 1.5))
    words = v.sentence({"c": "US · en · teams", "d": "SE · sv · exchange"})
    assert words == (
        "2 of 4 pools are within one turn of their fair share; 2 pools are off by more than "
        "one turn: US · en · teams (2.4 turns); SE · sv · exchange (1.5 turns)."
    )


def test_the_verdict_of_fair_pools_and_of_none() -> None:
    assert verdict(_pools([("a", 4, 0.5)])).sentence() == (
        "The only pool is within one turn of its fair share: every partner got its turns."
    )
    assert verdict(_pools([("a", 4, 0.5), ("b", 2, 0)])).sentence().startswith("All 2 pools")
    assert verdict(_pools([])).sentence().startswith("No customer was placed in a pool")
