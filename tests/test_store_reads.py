"""The dashboard's aggregate reads (store.capacity, store.fairness, store.referrals),
checked against plain SQL on the demo world."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from engine.fairness import WEIGHT, FairnessReport, gini, jain_index, report
from engine.rules import load_rules
from store import capacity, fairness, referrals, state
from store.commits import simulate_stored
from store.db import open_db
from store.fairness import committed_counts, committed_inputs

RULES = load_rules()
#: In a parametrisation: the newest run, the backlog's (its id depends on the demo's history).
LAST = -1


@pytest.fixture
def con(demo_db_master: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The demo world, read-only (these tests only read)."""
    with open_db(demo_db_master, read_only=True) as c:
        yield c


@pytest.fixture
def committed(committed_master: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The demo world after one committed round-robin run over the backlog (conftest)."""
    with open_db(committed_master, read_only=True) as c:
        yield c


@pytest.fixture
def empty(empty_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_db(empty_db) as c:
        yield c


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchall()[0][0]


# --- Partner capacity ------------------------------------------------------------------------


def test_partner_capacity_lists_every_partner_with_load_and_free_seats(con) -> None:
    frame = capacity.partner_capacity(con)
    assert frame.height == one(con, "SELECT count(*) FROM partners")
    expected = dict(
        con.execute(
            "SELECT partner_id, greatest(capacity - active_total, 0) FROM partner_state"
        ).fetchall()
    )
    assert dict(frame.select("partner_id", "free").iter_rows()) == expected
    busiest = frame.row(0, named=True)
    assert busiest["utilisation"] == frame["utilisation"].max()


@pytest.mark.parametrize(
    ("where", "sql", "params"),
    [
        (capacity.PartnerFilter(countries=("DE",)), "list_contains(countries, ?)", ["DE"]),
        (
            capacity.PartnerFilter(countries=("DE", "FR")),
            "list_has_any(countries, ['DE', 'FR'])",
            [],
        ),
        (capacity.PartnerFilter(languages=("ja",)), "list_contains(languages, ?)", ["ja"]),
        (
            capacity.PartnerFilter(workloads=("intune", "purview")),
            "list_contains(workloads, 'intune') AND list_contains(workloads, 'purview')",
            [],
        ),
        (capacity.PartnerFilter(ready=True), "referral_ready", []),
        (capacity.PartnerFilter(ready=False), "NOT referral_ready", []),
        (capacity.PartnerFilter(min_free=20), "capacity - active_total >= 20", []),
        (capacity.PartnerFilter(search="p000"), "partner_id ILIKE '%p000%'", []),
    ],
)
def test_partner_filters_match_plain_sql(con, where, sql, params) -> None:
    expected = one(con, f"SELECT count(*) FROM partner_state WHERE {sql}", params)
    assert expected > 0
    assert capacity.partner_capacity(con, where).height == expected
    assert capacity.capacity_headline(con, where)["partners"] == expected


def test_capacity_headline_matches_plain_sql(con) -> None:
    head = capacity.capacity_headline(con)
    assert head["partners"] == one(con, "SELECT count(*) FROM partners")
    assert head["referral_ready"] == one(con, "SELECT count(*) FROM partners WHERE referral_ready")
    assert head["free_seats"] == one(
        con,
        "SELECT sum(greatest(capacity - active_total, 0)) FROM partner_state WHERE referral_ready",
    )
    assert head["backlog"] == one(con, "SELECT count(*) FROM customers WHERE in_ftcq") == 1200


def test_backlog_headline_follows_country_and_language_filters(con) -> None:
    where = capacity.PartnerFilter(countries=("DE", "AT"), languages=("de",))
    expected = one(
        con,
        "SELECT count(*) FROM customers WHERE in_ftcq AND country IN ('DE', 'AT') "
        "AND language = 'de'",
    )
    assert capacity.capacity_headline(con, where)["backlog"] == expected > 0


def test_utilisation_bins_count_every_partner_with_capacity_once(con) -> None:
    bins = capacity.utilisation_bins(capacity.partner_capacity(con))
    assert bins.height == 11
    assert bins["partners"].sum() == one(con, "SELECT count(*) FROM partners WHERE capacity > 0")
    full = bins.filter(pl.col("band") == capacity.FULL_LABEL)["partners"][0]
    assert full == one(
        con, "SELECT count(*) FROM partner_state WHERE capacity > 0 AND active_total >= capacity"
    )


def test_utilisation_bins_of_nothing_are_all_zero() -> None:
    frame = pl.DataFrame(schema={"utilisation": pl.Float64})
    assert capacity.utilisation_bins(frame)["partners"].to_list() == [0] * 11


def test_round_robin_position_is_least_recently_assigned_first(con) -> None:
    frame = capacity.partner_capacity(con).filter(pl.col("referral_ready")).sort("rr_position")
    assert frame["rr_position"].to_list() == list(range(1, frame.height + 1))
    expected = [
        r[0]
        for r in con.execute(
            "SELECT partner_id FROM partner_state WHERE referral_ready "
            "ORDER BY last_assigned ASC NULLS FIRST, partner_id"
        ).fetchall()
    ]
    assert frame["partner_id"].to_list() == expected
    assert (
        capacity.partner_capacity(con).filter(~pl.col("referral_ready"))["rr_position"].null_count()
    )


def test_top_free_ranks_referral_ready_partners_by_free_seats(con) -> None:
    top = capacity.top_free(capacity.partner_capacity(con), 5)
    assert top.height == 10 and set(top["part"]) == {"active", "free"}
    free = top.filter(pl.col("part") == "free").sort("rank")["seats"].to_list()
    best = [
        r[0]
        for r in con.execute(
            "SELECT greatest(capacity - active_total, 0) AS f FROM partner_state "
            "WHERE referral_ready ORDER BY f DESC, partner_id LIMIT 5"
        ).fetchall()
    ]
    assert free == best


def test_coverage_by_country_counts_ready_partners_and_shows_gaps(con) -> None:
    cells = capacity.coverage(con, "country", RULES.eligible_workloads)
    keys = one(
        con,
        "SELECT count(*) FROM (SELECT DISTINCT unnest(countries) FROM partners "
        "UNION SELECT DISTINCT country FROM customers)",
    )
    assert cells.height == keys * len(RULES.eligible_workloads)
    de = cells.filter((pl.col("key") == "DE") & (pl.col("workload") == "exchange")).row(
        0, named=True
    )
    assert de["label"] == "DE Germany"
    assert (de["partners"], de["free_seats"]) == con.execute(
        "SELECT count(*), sum(greatest(capacity - active_total, 0)) FROM partner_state "
        "WHERE referral_ready AND list_contains(countries, 'DE') "
        "AND list_contains(workloads, 'exchange')"
    ).fetchall()[0]
    # Iceland has customers but no partner at all (the demo's coverage gap).
    iceland = cells.filter(pl.col("key") == "IS")
    assert iceland.height == len(RULES.eligible_workloads)
    assert set(iceland["status"]) == {"no partner"}
    assert iceland["partners"].sum() == 0


def test_coverage_by_language_counts_backlog_demand(con) -> None:
    cells = capacity.coverage(con, "language", RULES.eligible_workloads)
    ja = cells.filter((pl.col("key") == "ja") & (pl.col("workload") == "teams")).row(0, named=True)
    assert ja["label"] == "ja Japanese"
    assert ja["backlog"] == one(
        con,
        "SELECT count(*) FROM customers WHERE in_ftcq AND language = 'ja' "
        "AND list_contains(workloads, 'teams')",
    )
    with pytest.raises(ValueError, match="country"):
        capacity.coverage(con, "region", RULES.eligible_workloads)  # type: ignore[arg-type]


def test_partner_detail_has_its_psm_and_referrals(con) -> None:
    detail = capacity.partner_detail(con, "P0001")
    assert detail is not None
    assert (detail["psm_name"], detail["psm_email"]) == con.execute(
        "SELECT psm_name, psm_email FROM partners WHERE partner_id = 'P0001'"
    ).fetchall()[0]
    assert detail["ready_partners"] == one(
        con, "SELECT count(*) FROM partners WHERE referral_ready"
    )
    counts = capacity.partner_referral_counts(con, "P0001")
    assert counts["total"] == one(
        con, "SELECT count(*) FROM referrals WHERE partner_id = 'P0001' AND outcome = 'frp'"
    )
    assert counts["open"] == detail["active"]  # the demo holds no load outside the store
    refs = capacity.partner_referrals(con, "P0001", limit=5)
    assert refs.height == min(5, counts["total"])
    assert refs["created_at"].is_sorted(descending=True)
    assert capacity.partner_detail(con, "nobody") is None


def test_fills_up_lists_partners_a_backlog_run_takes_to_full(con) -> None:
    sim, _ = simulate_stored(con, RULES, "round-robin")
    full = capacity.fills_up(sim.partners, state.partner_names(con))
    expected = sim.partners.filter(
        pl.col("available")
        & (pl.col("assigned") > 0)
        & (pl.col("utilisation_after") >= 1)
        & (pl.col("utilisation_before") < 1)
    )
    assert full.height == expected.height > 0
    assert full["name"].null_count() == 0
    assert (full["active_after"] >= full["capacity"]).all()


# --- Fairness --------------------------------------------------------------------------------


def test_committed_fairness_counts_the_period_and_has_a_pool_ledger(con) -> None:
    since, until = datetime(2026, 7, 1), datetime(2026, 10, 1)
    fair, labels = fairness.committed_fairness(con, since, until, RULES)
    n, placed = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE outcome = 'frp') FROM referrals "
        "WHERE created_at >= ? AND created_at < ?",
        [since, until],
    ).fetchall()[0]
    assert (fair.customers, fair.placed) == (n, placed)
    # Each run kept its pools, and every member's given count adds up.
    assert n > 0 and fair.per_pool.height > 0
    assert fair.pool_members["given"].sum() <= placed
    assert set(fair.per_pool["pool_key"]) <= set(labels["pool_key"])
    assert labels["label"].str.contains(" · ").all()


def _row_by_row(
    con: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime | None
) -> tuple[FairnessReport, pl.DataFrame]:
    """committed_fairness as it was before the referrals were counted in DuckDB."""
    outcomes, partners, pools = committed_inputs(con, since, until)
    outcomes, pools = fairness._fill_pools(con, outcomes, pools, RULES)
    used = outcomes["pool_key"].drop_nulls().unique()
    fair = report(outcomes, partners, pools.filter(pl.col("pool_key").is_in(used.implode())))
    return fair, fairness.pool_labels(outcomes)


def _same_report(a: FairnessReport, b: FairnessReport) -> None:
    assert a.headline() == b.headline()
    for name in ("per_partner", "per_pool", "pool_members"):
        assert getattr(a, name).equals(getattr(b, name)), name
    for dim, frame in a.css_by.items():
        assert frame.equals(b.css_by[dim]), dim
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize(
    ("since", "until"),
    [(None, None), (datetime(2026, 6, 1), datetime(2026, 9, 1)), (datetime(2026, 8, 1), None)],
)
@pytest.mark.parametrize("db", ["demo", "committed"])
# Both worlds are the demo's, asked for by name inside the test: named here too, so that
# conftest.py runs it among the tests that need the demo's build, not before it is done.
@pytest.mark.usefixtures("demo_db_master")
def test_counted_committed_fairness_equals_the_row_by_row_report(
    request: pytest.FixtureRequest, db: str, since: datetime | None, until: datetime | None
) -> None:
    # The demo's history (June to November 2026), and with the backlog's run committed too.
    c = request.getfixturevalue("con" if db == "demo" else "committed")
    fair, labels = fairness.committed_fairness(c, since, until, RULES)
    rows_fair, rows_labels = _row_by_row(c, since, until)
    assert fair.customers > 0
    _same_report(fair, rows_fair)
    assert labels.sort("pool_key").equals(rows_labels.sort("pool_key"))


def test_committed_counts_stand_for_every_referral(committed) -> None:
    outcomes, partners, pools = committed_counts(committed)
    rows, rows_partners, rows_pools = committed_inputs(committed)
    assert outcomes[WEIGHT].sum() == rows.height == one(committed, "SELECT count(*) FROM referrals")
    assert outcomes.height < rows.height
    assert partners.equals(rows_partners) and pools.equals(rows_pools)
    _same_report(report(outcomes, partners, pools), report(rows, rows_partners, rows_pools))


def test_partner_deviation_sums_pool_members(con) -> None:
    fair, _ = fairness.committed_fairness(con, None, None, RULES)
    dev = fairness.partner_deviation(fair.pool_members, state.partner_names(con))
    assert dev.height == fair.pool_members["partner_id"].n_unique()
    assert dev["given"].sum() == fair.pool_members["given"].sum()
    assert dev["deviation"].sum() == pytest.approx(fair.pool_members["deviation"].sum())
    extremes = fairness.deviation_extremes(dev, 3)
    assert extremes.height == 6 and extremes["deviation"].is_sorted(descending=True)


def test_monthly_fairness_matches_engine_measures(con) -> None:
    monthly = fairness.monthly_fairness(con, None, None)
    assert monthly["customers"].sum() == one(con, "SELECT count(*) FROM referrals")
    assert monthly.height == one(
        con, "SELECT count(DISTINCT date_trunc('month', created_at)) FROM referrals"
    )
    month = monthly.row(-1, named=True)
    rows = con.execute(
        """
        SELECT p.capacity, count(r.referral_id)
        FROM partners p LEFT JOIN referrals r ON r.partner_id = p.partner_id
          AND r.outcome = 'frp' AND date_trunc('month', r.created_at) = ?
        WHERE p.referral_ready AND p.capacity > 0
        GROUP BY p.partner_id, p.capacity ORDER BY p.partner_id
        """,
        [month["month"]],
    ).fetchall()
    x = np.array([n / c for c, n in rows])
    assert month["jain"] == pytest.approx(jain_index(x))
    assert month["gini"] == pytest.approx(gini(x))
    assert month["css_rate"] == pytest.approx(month["css"] / month["customers"])


def test_pool_labels_name_the_most_common_signature() -> None:
    detail = pl.DataFrame(
        {
            "pool_key": ["a", "a", "a", "b", None],
            "country": ["SE", "SE", "NO", "DE", "IS"],
            "language": ["sv", "sv", "nb", "de", "is"],
            "eligible_workloads": [["teams"], ["teams"], ["exchange"], [], ["teams"]],
        }
    )
    labels = dict(fairness.pool_labels(detail).iter_rows())
    assert labels == {"a": "SE · sv · teams (+1)", "b": "DE · de · "}


# --- Referrals, tasks, outbox ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "sql"),
    [
        (referrals.ReferralFilter(), "TRUE"),
        (referrals.ReferralFilter(outcomes=("css",)), "outcome = 'css'"),
        (referrals.ReferralFilter(statuses=("active",)), "status = 'active'"),
        (
            referrals.ReferralFilter(reasons=("no_partner_match", "capacity_exhausted")),
            "reason IN ('no_partner_match', 'capacity_exhausted')",
        ),
        (referrals.ReferralFilter(partner_id="P0001"), "partner_id = 'P0001'"),
        (referrals.ReferralFilter(run=1), "run_id = 1"),
        (referrals.ReferralFilter(run=LAST), f"run_id = {LAST}"),
        (
            referrals.ReferralFilter(outcomes=("frp",), run=LAST, statuses=("active",)),
            f"outcome = 'frp' AND run_id = {LAST} AND status = 'active'",
        ),
    ],
)
def test_referral_filters_match_plain_sql(committed, where, sql) -> None:
    """``LAST`` stands for the backlog's run, the newest (the demo's history has its own
    runs, and no referral without one: the history filter is checked on the Referrals page
    test)."""
    last = one(committed, "SELECT max(run_id) FROM runs")
    if where.run == LAST:
        where, sql = replace(where, run=last), sql.replace(str(LAST), str(last))
    expected = one(committed, f"SELECT count(*) FROM referrals WHERE {sql}")
    assert referrals.referral_count(committed, where) == expected > 0
    rows = referrals.referral_rows(committed, where, limit=50)
    assert rows.height == min(50, expected)
    assert rows["created_at"].is_sorted(descending=True)


def test_referral_search_by_customer_name(committed) -> None:
    tenant, name = committed.execute(
        "SELECT tenant_id, name FROM customers ORDER BY tenant_id LIMIT 1"
    ).fetchall()[0]
    where = referrals.ReferralFilter(tenant=name)
    rows = referrals.referral_rows(committed, where, personal=True)
    assert tenant in rows["tenant_id"].to_list()
    # Without the personal fields a name is not there to be found, nor counted.
    assert referrals.referral_rows(committed, where).height == 0
    assert referrals.referral_count(committed, where) == 0


def test_referral_options_and_detail(committed) -> None:
    opts = referrals.referral_options(committed)
    assert opts["outcomes"] == ["css", "frp"]
    runs = committed.execute("SELECT run_id FROM runs ORDER BY run_id DESC").fetchall()
    assert opts["runs"] == [r for (r,) in runs] and len(runs) > 1
    assert opts["history"] == one(committed, "SELECT count(*) FROM referrals WHERE run_id IS NULL")
    rid = one(
        committed,
        "SELECT min(referral_id) FROM referrals WHERE outcome = 'frp' "
        "AND run_id = (SELECT max(run_id) FROM runs)",
    )
    ref = referrals.referral_detail(committed, rid)
    assert ref is not None and ref["partner_name"] and ref["customer"]
    steps = referrals.trace_steps(ref["trace"])
    assert steps[0].startswith("Referral Ready:") and steps[-1].startswith("chose ")
    assert referrals.trace_steps(None) == []
    assert referrals.referral_detail(committed, -1) is None


def test_tasks_and_outbox_match_their_tables(committed) -> None:
    """The backlog's run (the newest) against its rows; the demo's history holds tasks and
    messages of its own runs, its messages all recorded as sent."""
    last = one(committed, "SELECT max(run_id) FROM runs")
    n_tasks = one(committed, "SELECT count(*) FROM ftop_tasks")
    run_tasks = one(
        committed,
        "SELECT count(*) FROM ftop_tasks JOIN referrals USING (referral_id) WHERE run_id = ?",
        [last],
    )
    assert referrals.task_count(committed) == n_tasks > run_tasks
    assert referrals.task_count(committed, last) == run_tasks > 0
    assert referrals.task_count(committed, referrals.HISTORY) == 0
    tasks = referrals.ftop_tasks(committed, last, limit=10)
    assert tasks.height == 10 and set(tasks["task_number"]) == {3186}
    assert referrals.outbox_count(committed) == one(committed, "SELECT count(*) FROM outbox")
    frp = "SELECT count(*) FROM referrals WHERE run_id = ? AND outcome = 'frp'"
    pending = referrals.outbox_count(committed, ("pending",))
    assert referrals.outbox_count(committed, ("pending",), last) == pending
    assert pending == 3 * one(committed, frp, [last])
    assert referrals.outbox_count(committed, ("sent",)) > 0
    assert {"pending", "sent"} <= set(referrals.outbox_statuses(committed))
    msgs = referrals.outbox(committed, ("pending",), last, limit=3)
    assert msgs.height == 3
    msg = referrals.message(committed, msgs["message_id"][0])
    assert msg is not None and msg["body"].startswith("Hello ")


# --- An empty store --------------------------------------------------------------------------


def test_every_view_works_on_an_empty_store(empty) -> None:
    assert state.counts(empty)["partners"] == 0
    assert capacity.partner_options(empty) == {"countries": [], "languages": [], "workloads": []}
    assert capacity.partner_capacity(empty).height == 0
    assert capacity.capacity_headline(empty) == {
        "partners": 0,
        "referral_ready": 0,
        "free_seats": 0,
        "capacity": 0,
        "backlog": 0,
    }
    assert capacity.coverage(empty, "country", RULES.eligible_workloads).height == 0
    assert fairness.referral_dates(empty) == (None, None)
    assert fairness.monthly_fairness(empty, None, None).height == 0
    fair, labels = fairness.committed_fairness(empty, None, None, RULES)
    assert fair.customers == 0 and labels.height == 0
    assert referrals.referral_options(empty) == {
        "outcomes": [],
        "statuses": [],
        "reasons": [],
        "runs": [],
        "history": 0,
    }
    assert (
        referrals.referral_count(empty)
        == referrals.task_count(empty)
        == referrals.outbox_count(empty)
        == 0
    )


def test_the_fingerprint_changes_with_every_write_a_simulation_reads(demo_db: Path) -> None:
    """Each edit below keeps every count of ``state.counts``; the fingerprint moves with each
    and stays put for a read."""
    edits = [
        "UPDATE partners SET capacity = capacity + 1 WHERE partner_id = 'P0001'",
        "UPDATE rr_order SET last_assigned = last_assigned + 1000 WHERE partner_id = "
        "(SELECT min(partner_id) FROM rr_order)",
        "UPDATE customers SET ftcq_seq = ftcq_seq + 1000000 WHERE tenant_id = "
        "(SELECT min(tenant_id) FROM customers WHERE in_ftcq)",
        "UPDATE referrals SET status = 'accepted' WHERE referral_id = "
        "(SELECT min(referral_id) FROM referrals WHERE status = 'active' AND outcome = 'frp')",
    ]
    with open_db(demo_db) as con:
        seen = [state.fingerprint(con)]
        counts = state.counts(con)
        state.partners(con)
        assert state.fingerprint(con) == seen[0]
        for sql in edits:
            con.execute(sql)
            seen.append(state.fingerprint(con))
        assert state.counts(con) == counts
    assert len(set(seen)) == len(seen)
