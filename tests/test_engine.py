"""Hand-built scenarios for the fast engine (engine/assign.py) and input validation.

Each scenario is small enough to work out on paper: which reason each customer gets,
what its trace says, what the what-if knobs (capacity_scale, disabled_partners, the
consent default) change, the summary frames of a ``Simulation``, and the problems
``engine.schema`` reports for bad cells.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl
import pytest

from engine.assign import simulate
from engine.columns import ASSIGNMENT_COLUMNS, CUSTOMER_SCHEMA, PARTNER_SCHEMA
from engine.reasons import Policy, Reason
from engine.rules import load_rules
from engine.schema import InputError, validate_customers, validate_partners
from engine.simulation import OUTPUT_DETAIL, Simulation
from tests import scenarios
from tests.scenarios import CODED, as_text, customers_frame, partners_frame

RULES = load_rules()
POLICIES = list(Policy)


def partner(partner_id: str, **overrides: Any) -> dict[str, Any]:
    """A Swedish partner speaking Swedish and English, for Exchange and Teams, 2 seats."""
    swedish = {
        "countries": ["SE"],
        "languages": ["sv", "en"],
        "capacity": 2,
        "psm_name": f"PSM {partner_id}",
    }
    return scenarios.partner(partner_id, **(swedish | overrides))


def customer(tenant_id: str, **overrides: Any) -> dict[str, Any]:
    """An FRP-eligible Swedish customer wanting Exchange."""
    return scenarios.customer(tenant_id, **({"country": "SE", "language": "sv"} | overrides))


def column(sim: Simulation, name: str) -> list[Any]:
    return sim.assignments[name].to_list()


# --- reason codes ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    ("partner_overrides", "customer_overrides", "reason"),
    [
        ({}, {}, Reason.ASSIGNED),
        ({}, {"seats": 149}, Reason.BELOW_SEAT_THRESHOLD),
        ({}, {"seats": 150}, Reason.ASSIGNED),
        ({}, {"workloads": ["dynamics-365"]}, Reason.NO_ELIGIBLE_WORKLOAD),
        ({}, {"workloads": []}, Reason.NO_ELIGIBLE_WORKLOAD),
        ({}, {"referral_consent": False}, Reason.NO_REFERRAL_CONSENT),
        ({}, {"referral_consent": None}, Reason.ASSIGNED),
        ({}, {"country": "NO"}, Reason.NO_PARTNER_MATCH),
        ({}, {"language": "de"}, Reason.NO_PARTNER_MATCH),
        ({}, {"workloads": ["exchange", "intune"]}, Reason.NO_PARTNER_MATCH),
        ({"referral_ready": False}, {}, Reason.NO_PARTNER_MATCH),
        ({"active_referrals": 2}, {}, Reason.CAPACITY_EXHAUSTED),
        ({"active_referrals": 5}, {}, Reason.CAPACITY_EXHAUSTED),
        ({"capacity": 0}, {}, Reason.CAPACITY_EXHAUSTED),
        # The first failing check is the reason.
        (
            {},
            {"seats": 10, "workloads": [], "referral_consent": False},
            Reason.BELOW_SEAT_THRESHOLD,
        ),
        (
            {},
            {"workloads": ["dynamics-365"], "referral_consent": False},
            Reason.NO_ELIGIBLE_WORKLOAD,
        ),
        ({"capacity": 0}, {"referral_consent": False}, Reason.NO_REFERRAL_CONSENT),
        ({"active_referrals": 2}, {"country": "US"}, Reason.NO_PARTNER_MATCH),
    ],
)
def test_each_reason_occurs_when_expected(
    policy: Policy,
    partner_overrides: dict[str, Any],
    customer_overrides: dict[str, Any],
    reason: Reason,
) -> None:
    sim = simulate(
        partners_frame(partner("P1", **partner_overrides)),
        customers_frame(customer("T1", **customer_overrides)),
        RULES,
        policy,
    )
    queue = (
        "FRP"
        if reason is Reason.ASSIGNED
        else RULES.queue_for(customer_overrides.get("country", "SE"))
    )
    assert sim.assignments.select(ASSIGNMENT_COLUMNS).row(0) == (
        "T1",
        reason.outcome.value,
        "P1" if reason is Reason.ASSIGNED else None,
        "psm.p1@psm.example" if reason is Reason.ASSIGNED else None,
        queue,
        reason.value,
    )


@pytest.mark.parametrize(
    ("country", "queue"),
    [
        ("SE", "CSS EMEA"),
        ("US", "CSS Americas"),
        ("BR", "CSS Americas"),
        ("JP", "CSS APAC"),
        ("AU", "CSS APAC"),
        ("ZA", "CSS EMEA"),
    ],
)
def test_css_customers_go_to_their_regions_queue(country: str, queue: str) -> None:
    sim = simulate(
        partners_frame(partner("P1")),
        customers_frame(customer("T1", country=country, seats=1)),
        RULES,
    )
    assert column(sim, "queue") == [queue]
    assert column(sim, "reason") == ["below_seat_threshold"]


# --- traces ---------------------------------------------------------------------------

# P1 and P3 match a Swedish Exchange customer; P2 speaks no Swedish, P3 lacks Teams,
# P4 is not Referral Ready and P5 serves Norway only.
TRACE_PARTNERS = partners_frame(
    partner("P1"),
    partner("P2", languages=["en"]),
    partner("P3", workloads=["exchange"]),
    partner("P4", referral_ready=False),
    partner("P5", countries=["NO"]),
)
MATCH_TRACE = (
    "Referral Ready: 4 left, 1 removed; country SE: 3 left, 1 removed; "
    "language sv: 2 left, 1 removed (P2); workloads exchange: 2 left"
)


def test_the_trace_of_an_assigned_customer_names_the_partner_and_the_removing_rules() -> None:
    sim = simulate(TRACE_PARTNERS, customers_frame(customer("T1")), RULES)
    (trace,) = column(sim, "trace")
    assert trace == (
        MATCH_TRACE + "; none of 2 full; chose P1: least recently assigned of those with room "
        "(never assigned before)"
    )
    assert "language sv" in trace and "(P2)" in trace


def test_the_trace_names_the_workload_rule_and_the_previous_turn() -> None:
    customers = customers_frame(customer("T1"), customer("T2", workloads=["teams", "exchange"]))
    sim = simulate(TRACE_PARTNERS, customers, RULES)
    assert column(sim, "partner_id") == ["P1", "P1"]
    assert column(sim, "trace")[1] == (
        "Referral Ready: 4 left, 1 removed; country SE: 3 left, 1 removed; "
        "language sv: 2 left, 1 removed (P2); workloads exchange+teams: 1 left, 1 removed (P3); "
        "none of 1 full; chose P1: least recently assigned of those with room "
        "(last assigned at turn 1)"
    )


def test_the_trace_of_capacity_exhausted_names_the_full_partners() -> None:
    customers = customers_frame(*(customer(f"T{k}") for k in range(1, 6)))
    sim = simulate(TRACE_PARTNERS, customers, RULES)
    assert column(sim, "partner_id") == ["P1", "P3", "P1", "P3", None]
    assert column(sim, "reason")[-1] == "capacity_exhausted"
    assert column(sim, "trace")[-1] == (
        MATCH_TRACE + "; 2 of 2 full (P1, P3): capacity exhausted -> CSS EMEA"
    )
    # Partners full before the run are named too, in partner order.
    full = TRACE_PARTNERS.with_columns(active_referrals=pl.lit(2, dtype=pl.Int64))
    sim = simulate(full, customers_frame(customer("T1")), RULES)
    assert column(sim, "trace") == [
        MATCH_TRACE + "; 2 of 2 full (P1, P3): capacity exhausted -> CSS EMEA"
    ]


@pytest.mark.parametrize(
    ("overrides", "trace"),
    [
        ({"seats": 10}, "not FRP-eligible: seats 10 < minimum 150 -> CSS EMEA"),
        (
            {"workloads": ["dynamics-365"]},
            "not FRP-eligible: no eligible workload among [dynamics-365] (eligible: exchange, "
            "sharepoint, onedrive, teams, m365-apps, intune, entra-id, windows, defender, "
            "purview, viva) -> CSS EMEA",
        ),
        (
            {"referral_consent": False},
            "not FRP-eligible: no consent to share contact details with a partner -> CSS EMEA",
        ),
        (
            {"country": "DE", "language": "de"},
            "Referral Ready: 4 left, 1 removed; country DE: 0 left, 4 removed; "
            "language de: 0 left; workloads exchange: 0 left; no partner matches -> CSS EMEA",
        ),
    ],
)
def test_the_trace_of_a_css_customer_says_why(overrides: dict[str, Any], trace: str) -> None:
    sim = simulate(TRACE_PARTNERS, customers_frame(customer("T1", **overrides)), RULES)
    assert column(sim, "trace") == [trace]


# --- what-if knobs and defaults ----------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "capacity", "placed"),
    [(0.5, 3, 1), (0.5, 1, 0), (1.0, 3, 3), (2.0, 3, 6), (0.0, 3, 0)],
)
def test_capacity_scale_multiplies_capacity_rounded_down(
    scale: float, capacity: int, placed: int
) -> None:
    customers = customers_frame(*(customer(f"T{k}") for k in range(1, 9)))
    sim = simulate(
        partners_frame(partner("P1", capacity=capacity)),
        customers,
        RULES.replace(capacity_scale=scale),
    )
    assert column(sim, "reason") == ["assigned"] * placed + ["capacity_exhausted"] * (8 - placed)
    assert sim.partners["capacity"].to_list() == [int(capacity * scale)]


def test_disabled_partners_are_treated_as_not_referral_ready() -> None:
    partners = partners_frame(partner("P1"), partner("P2"))
    customers = customers_frame(customer("T1"), customer("T2"), customer("T3"))
    sim = simulate(partners, customers, RULES.replace(disabled_partners=["P1"]))
    assert column(sim, "partner_id") == ["P2", "P2", None]
    assert column(sim, "reason") == ["assigned", "assigned", "capacity_exhausted"]
    assert column(sim, "trace")[0].startswith("Referral Ready: 1 left, 1 removed;")
    assert sim.partners["available"].to_list() == [False, True]
    off = simulate(partners, customers, RULES.replace(disabled_partners=["P1", "P2"]))
    assert column(off, "reason") == ["no_partner_match"] * 3


@pytest.mark.parametrize(
    ("default", "consent", "reason"),
    [
        (True, None, "assigned"),
        (False, None, "no_referral_consent"),
        (False, True, "assigned"),
        (True, False, "no_referral_consent"),
    ],
)
def test_missing_consent_follows_the_rules_default(
    default: bool, consent: bool | None, reason: str
) -> None:
    sim = simulate(
        partners_frame(partner("P1")),
        customers_frame(customer("T1", referral_consent=consent)),
        RULES.replace(referral_consent_default=default),
    )
    assert column(sim, "reason") == [reason]


def test_a_missing_consent_column_follows_the_rules_default() -> None:
    raw = pl.DataFrame(
        {
            k: [str(v).lower() if isinstance(v, bool) else v]
            for k, v in customer("T1").items()
            if k not in ("workloads", "referral_consent", "seats")
        }
    ).with_columns(workloads=pl.lit("exchange"), seats=pl.lit("500"))
    customers = validate_customers(raw)
    assert customers["referral_consent"].to_list() == [None]
    partners = partners_frame(partner("P1"))
    assert column(simulate(partners, customers, RULES), "reason") == ["assigned"]
    refused = RULES.replace(referral_consent_default=False)
    assert column(simulate(partners, customers, refused), "reason") == ["no_referral_consent"]


def test_unknown_workloads_are_ignored_for_matching() -> None:
    partners = partners_frame(
        partner("P1", workloads=["exchange"]), partner("P2", workloads=["exchange", "dynamics-365"])
    )
    customers = customers_frame(
        customer("T1", workloads=["exchange", "dynamics-365"]),
        customer("T2", workloads=["exchange", "dynamics-365"]),
        customer("T3", workloads=["dynamics-365"]),
    )
    sim = simulate(partners, customers, RULES)
    # Both partners match (P1 need not cover dynamics-365), and round robin alternates.
    assert column(sim, "partner_id") == ["P1", "P2", None]
    assert column(sim, "reason") == ["assigned", "assigned", "no_eligible_workload"]
    assert sim.detail["eligible_workloads"].to_list() == [["exchange"], ["exchange"], []]


def test_round_robin_prefers_never_assigned_then_least_recently_assigned() -> None:
    partners = partners_frame(
        partner("P1", last_assigned=7, capacity=9),
        partner("P2", last_assigned=3, capacity=9),
        partner("P3", capacity=9),
        partner("P4", capacity=9),
    )
    customers = customers_frame(*(customer(f"T{k}") for k in range(1, 7)))
    sim = simulate(partners, customers, RULES)
    assert column(sim, "partner_id") == ["P3", "P4", "P2", "P1", "P3", "P4"]
    after = dict(sim.partners.select("partner_id", "last_assigned_after").iter_rows())
    assert after == {"P1": 11, "P2": 10, "P3": 12, "P4": 13}


# --- the Simulation's frames ---------------------------------------------------------------


def mixed_run(policy: Policy = Policy.ROUND_ROBIN) -> Simulation:
    customers = customers_frame(
        customer("T1"),
        customer("T2", workloads=["exchange", "teams"]),
        customer("T3"),
        customer("T4"),
        customer("T5"),
        customer("T6", seats=10),
        customer("T7", workloads=["dynamics-365"]),
        customer("T8", referral_consent=False),
        customer("T9", country="DE", language="de"),
    )
    return simulate(TRACE_PARTNERS, customers, RULES, policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_counts_has_every_reason(policy: Policy) -> None:
    sim = mixed_run(policy)
    assert sim.counts() == {
        "below_seat_threshold": 1,
        "no_eligible_workload": 1,
        "no_referral_consent": 1,
        "no_partner_match": 1,
        "capacity_exhausted": 1,
        "assigned": 4,
        "declined_by_partners": 0,
        "css_workload": 0,
    }
    assert list(sim.counts()) == [r.value for r in Reason]
    assert sim.placed == 4


@pytest.mark.parametrize("policy", POLICIES)
def test_partner_frame_assigned_sums_to_placed(policy: Policy) -> None:
    sim = mixed_run(policy)
    state = sim.partners.select(
        "partner_id", "capacity", "active_before", "assigned", "active_after"
    )
    assert state.rows() == [
        ("P1", 2, 0, 2, 2),
        ("P2", 2, 0, 0, 0),
        ("P3", 2, 0, 2, 2),
        ("P4", 2, 0, 0, 0),
        ("P5", 2, 0, 0, 0),
    ]
    assert sim.partners["assigned"].sum() == sim.placed
    assert sim.partners["utilisation_after"].to_list() == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_pools_frame_sizes() -> None:
    sim = mixed_run()
    pools = sim.pools.sort("size").select("partner_ids", "size", "customers", "placed")
    # Exchange customers (T1, T3, T4, T5) share P1 and P3; T2 (Exchange and Teams) has P1.
    assert pools.rows() == [(["P1"], 1, 1, 1), (["P1", "P3"], 2, 4, 3)]
    keys = dict(zip(sim.detail["tenant_id"], sim.detail["pool_key"], strict=True))
    assert keys["T1"] == keys["T3"] != keys["T2"]
    assert keys["T6"] is None and keys["T9"] is None
    assert sim.detail["n_matching"].to_list() == [2, 1, 2, 2, 2, 0, 0, 0, 0]


@pytest.mark.parametrize("policy", POLICIES)
def test_the_compact_rows_spell_out_the_same_result_every_way(policy: Policy) -> None:
    """A run keeps codes per customer; the frames, the streamed result file and the
    counts spelled out from them must agree with one another, row for row."""
    sim = mixed_run(policy)
    whole = sim.output()
    assert whole.columns == [*ASSIGNMENT_COLUMNS, "trace", *OUTPUT_DETAIL]
    assert sim.output_lazy().collect().equals(whole)
    assert sim.output_lazy(slice_rows=2).collect().equals(whole)  # five slices, in order
    # Made ahead of the reader, on two threads: a reader that stops early stops them.
    assert sim.output_lazy(slice_rows=2).head(3).collect().equals(whole.head(3))
    assert (
        sim.output_lazy(slice_rows=1)
        .filter(pl.col("outcome") == "frp")
        .collect()
        .equals(whole.filter(pl.col("outcome") == "frp"))
    )
    coded = sim.output_lazy(slice_rows=2, coded=True).collect()
    assert {name for name, dtype in coded.schema.items() if dtype != whole.schema[name]} == set(
        CODED
    )
    assert as_text(coded).equals(whole)
    assert whole["tenant_id"].to_list() == [f"T{k}" for k in range(1, 10)]
    assert sim.detail["tenant_id"].equals(sim.assignments["tenant_id"])
    # The in-memory frame and the file spell each trace the same way.
    assert sim.assignments.equals(whole.select(sim.assignments.columns))
    by_reason = dict(sim.assignments.group_by("reason").len().iter_rows())
    assert {r: c for r, c in sim.counts().items() if c} == by_reason
    assert sim.placed == (sim.assignments["outcome"] == "frp").sum()


def test_pool_keys_column_wise_are_pool_key_of_each_list() -> None:
    """A run names its pools column-wise; the name must be what ``pool_key`` gives a
    committed referral's members, whatever order the pools list their members in."""
    import numpy as np

    from engine.assign import _member_ids
    from engine.matching import pool_key, pool_keys

    ids = pl.Series("partner_id", ["P1", "P10", "P2", "Z9", "a0", "Ä1"])  # id order
    pools = [np.array(p) for p in ([0, 1, 2], [0], [3, 4, 5], [2, 1, 0], [5, 3])]
    member_ids = _member_ids(ids, pools)
    assert member_ids.to_list() == [
        ["P1", "P10", "P2"],
        ["P1"],
        ["Z9", "a0", "Ä1"],
        ["P1", "P10", "P2"],
        ["Z9", "Ä1"],
    ]
    keys = pool_keys(member_ids)
    assert keys == [pool_key(ids[p].to_list()) for p in pools]
    assert keys[0] == keys[3] != keys[1]
    assert pool_keys(_member_ids(ids, [])) == []


@pytest.mark.parametrize("policy", POLICIES)
def test_an_empty_cohort_works(policy: Policy) -> None:
    sim = simulate(TRACE_PARTNERS, customers_frame(), RULES, policy)
    assert sim.assignments.height == 0
    assert sim.assignments.columns == [*ASSIGNMENT_COLUMNS, "trace"]
    assert sim.counts() == {r.value: 0 for r in Reason}
    assert sim.placed == 0
    assert sim.partners["assigned"].to_list() == [0] * 5
    assert sim.pools.height == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_no_partners_at_all(policy: Policy) -> None:
    customers = customers_frame(
        customer("T1"), customer("T2", seats=1), customer("T3", country="US", language="en")
    )
    sim = simulate(partners_frame(), customers, RULES, policy)
    assert column(sim, "reason") == ["no_partner_match", "below_seat_threshold", "no_partner_match"]
    assert column(sim, "queue") == ["CSS EMEA", "CSS EMEA", "CSS Americas"]
    assert column(sim, "partner_id") == [None, None, None]
    assert sim.partners.height == 0


# --- input validation ------------------------------------------------------------------------

GOOD_PARTNER = {
    "partner_id": "P1",
    "name": "Nordlys Consulting",
    "countries": "SE;NO",
    "languages": "sv;en",
    "workloads": "exchange;teams",
    "capacity": "3",
    "active_referrals": "0",
    "referral_ready": "true",
    "psm_name": "Ada Berg",
    "psm_email": "ada.berg@psm.example",
    "contact_email": "referrals@nordlys.example",
    "last_assigned": "",
}
GOOD_CUSTOMER = {
    "tenant_id": "T1",
    "name": "Fjord Shipping",
    "country": "SE",
    "language": "sv",
    "seats": "500",
    "workloads": "exchange;dynamics-365",
    "gateway": "false",
    "contact_email": "it@fjord.example",
    "referral_consent": "",
}


def raw_table(
    good: dict[str, str], key: str, bad: dict[str, str], at: int, rows: int = 3
) -> pl.DataFrame:
    """``rows`` good rows with distinct keys, with ``bad`` cells put in row index ``at``."""
    table = [dict(good, **{key: f"{good[key]}{k}"}) for k in range(rows)]
    table[at].update(bad)
    return pl.DataFrame(table)


@pytest.mark.parametrize("first_row", [1, 2])
@pytest.mark.parametrize(
    ("table", "cell", "column", "expected"),
    [
        ("partners", {"capacity": "abc"}, "capacity", "a whole number >= 0"),
        ("partners", {"capacity": "-1"}, "capacity", "a whole number >= 0"),
        ("partners", {"referral_ready": "maybe"}, "referral_ready", "true or false"),
        ("partners", {"psm_email": "ada.berg"}, "psm_email", "an email address"),
        ("partners", {"countries": "SE;XX"}, "countries", "';'-separated ISO 3166-1"),
        ("partners", {"last_assigned": "soon"}, "last_assigned", "a whole number >= 0"),
        ("customers", {"seats": "1.5"}, "seats", "a whole number >= 0"),
        ("customers", {"country": "XX"}, "country", "an ISO 3166-1 alpha-2 country code"),
        ("customers", {"language": "english"}, "language", "an ISO 639-1 language code"),
        ("customers", {"contact_email": "it at fjord"}, "contact_email", "an email address"),
        ("customers", {"tenant_id": "T10"}, "tenant_id", "a unique tenant_id (also on"),
        ("customers", {"referral_consent": "maybe"}, "referral_consent", "true or false"),
    ],
)
def test_a_bad_cell_is_reported_with_its_row_column_and_expectation(
    table: str, cell: dict[str, str], column: str, expected: str, first_row: int
) -> None:
    if table == "partners":
        raw, validate = raw_table(GOOD_PARTNER, "partner_id", cell, at=1), validate_partners
    else:
        raw, validate = raw_table(GOOD_CUSTOMER, "tenant_id", cell, at=1), validate_customers
    label = "row" if first_row == 1 else "line"
    with pytest.raises(InputError) as caught:
        validate(raw, first_row=first_row, row_label=label)
    error = caught.value
    assert len(error.problems) == 1
    problem = error.problems[0]
    # The bad cell is in the second data row: row 2, or line 3 of a CSV (after the header).
    assert (problem.row, problem.column, problem.value) == (first_row + 1, column, cell[column])
    assert problem.expected.startswith(expected)
    assert error.source == table
    assert error.one_line().startswith(f"{table}: {label} {first_row + 1}, column {column}: ")
    if column == "tenant_id":
        assert problem.expected == f"a unique tenant_id (also on {label} {first_row})"


@pytest.mark.parametrize(
    ("validate", "good", "missing"),
    [(validate_partners, GOOD_PARTNER, "capacity"), (validate_customers, GOOD_CUSTOMER, "seats")],
)
def test_a_missing_column_is_reported(validate: Any, good: dict[str, str], missing: str) -> None:
    raw = pl.DataFrame([good]).drop(missing)
    with pytest.raises(InputError) as caught:
        validate(raw)
    (problem,) = caught.value.problems
    assert (problem.row, problem.column, problem.expected) == (
        None,
        missing,
        "this column to be present",
    )


def test_every_problem_is_reported_at_once() -> None:
    raw = raw_table(GOOD_CUSTOMER, "tenant_id", {"seats": "many"}, at=0, rows=4)
    raw = raw.with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("XX"))
        .otherwise(pl.col("country"))
        .alias("country")
    )
    with pytest.raises(InputError) as caught:
        validate_customers(raw, first_row=2, row_label="line")
    error = caught.value
    assert [(p.row, p.column, p.value) for p in error.problems] == [
        (2, "seats", "many"),
        (4, "country", "XX"),
    ]
    assert error.total == 2
    assert error.one_line() == (
        "customers: line 2, column seats: got 'many'; expected a whole number >= 0 "
        "and <= 10,000,000 (and 1 more problem)"
    )
    assert error.to_frame().height == 2


@pytest.mark.parametrize("value", ["1\n2", "a\r\nb", "x" * 3])
def test_one_line_is_a_single_line(value: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_partners(raw_table(GOOD_PARTNER, "partner_id", {"capacity": value}, at=0))
    text = caught.value.one_line()
    assert "\n" not in text and "\r" not in text
    assert str(caught.value) == text


@pytest.mark.parametrize("cell", ["", ";", " ; "])
def test_an_empty_workloads_cell_means_no_workloads(cell: str) -> None:
    # docs/domain.md ("Default eligible workloads"): such a customer has no eligible
    # workload; the file is not wrong. CSV readers give an empty cell as null, so the table
    # is read the way importers read it.
    header = ",".join(GOOD_CUSTOMER)
    line = ",".join(cell if k == "workloads" else v for k, v in GOOD_CUSTOMER.items())
    other = line.replace("T1,", "T2,", 1)
    raw = pl.read_csv(io.StringIO(f"{header}\n{line}\n{other}\n"), infer_schema=False)
    customers = validate_customers(raw, first_row=2, row_label="line")
    assert customers["workloads"].to_list() == [[], []]
    sim = simulate(partners_frame(partner("P1")), customers, RULES)
    assert column(sim, "reason") == ["no_eligible_workload"] * 2


def test_valid_tables_come_back_typed() -> None:
    partners = validate_partners(raw_table(GOOD_PARTNER, "partner_id", {}, at=0, rows=2))
    customers = validate_customers(raw_table(GOOD_CUSTOMER, "tenant_id", {}, at=0, rows=2))
    assert partners.schema == PARTNER_SCHEMA
    assert customers.schema == CUSTOMER_SCHEMA
    assert partners.row(0, named=True)["countries"] == ["SE", "NO"]
    assert customers.row(1, named=True)["workloads"] == ["exchange", "dynamics-365"]
    assert customers["referral_consent"].to_list() == [None, None]
