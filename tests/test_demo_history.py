"""The demo database's history, made by running the product (store/demo.py, issue #16):
every referral belongs to a run, the store is consistent, round robin is seen to be fair,
and the backlog still meets every CSS reason. That the same seed builds the same database
is checked on `frp demo`'s build (tests/test_cli.py), the build's summary in
tests/test_store.py (test_build_demo_numbers)."""

from __future__ import annotations

import statistics
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.demo import DEMO_AS_OF, FULL_POOL_COUNTRIES, WEEKS
from engine.fairness import FAIR_TURNS, verdict
from engine.reasons import CSS_REASONS
from engine.rules import load_rules, to_toml
from store import clock
from store.commits import simulate_stored
from store.demo import PAUSES, QUOTAS, RULES_CHANGES
from store.fairness import committed_fairness
from tests.db_helpers import inconsistencies


@pytest.fixture(scope="module")
def con(demo_db_master: Path):
    con = duckdb.connect(str(demo_db_master), read_only=True)
    yield con
    con.close()


def _one(con: duckdb.DuckDBPyConnection, sql: str):
    return con.execute(sql).fetchall()[0][0]


def test_every_referral_belongs_to_a_run(con: duckdb.DuckDBPyConnection) -> None:
    assert _one(con, "SELECT count(*) FROM referrals") > WEEKS * 20
    assert _one(con, "SELECT count(*) FROM referrals WHERE run_id IS NULL") == 0
    orphans = "SELECT count(*) FROM referrals WHERE run_id NOT IN (SELECT run_id FROM runs)"
    assert _one(con, orphans) == 0
    # One commit of the FTCQ a week, with round robin, the rest re-assignments.
    weekly = con.execute(
        "SELECT count(*), count(DISTINCT policy) FROM runs WHERE source = 'FTCQ backlog'"
    ).fetchall()[0]
    assert weekly == (WEEKS, 1)
    assert _one(con, "SELECT any_value(policy) FROM runs") == "round-robin"
    assert _one(con, "SELECT count(*) FROM runs WHERE source LIKE 're-assignment after%'") > 0


def test_the_store_is_consistent(con: duckdb.DuckDBPyConnection) -> None:
    """tests/db_helpers.py's invariants, over the whole history (pauses ended and were
    cleared, quotas were set no lower than any month before)."""
    assert inconsistencies(con) == {}


def test_partners_answered_through_the_life_cycle(con: duckdb.DuckDBPyConnection) -> None:
    statuses = dict(
        con.execute("SELECT status, count(*) FROM referrals GROUP BY status").fetchall()
    )
    for status in (
        "active",
        "accepted",
        "completed",
        "declined",
        "expired",
        "queued",
        "handed_off",
    ):
        assert statuses.get(status, 0) > 0, status
    reasons = {
        r for (r,) in con.execute("SELECT DISTINCT decline_reason FROM referrals").fetchall()
    }
    assert {"no_response", "at_capacity", "not_endorsed"} <= reasons
    actions = dict(con.execute("SELECT action, count(*) FROM audit_log GROUP BY 1").fetchall())
    for action in ("referral_accept", "referral_decline", "referral_expire", "css_handoff"):
        assert actions.get(action, 0) > 0, action
    # Nothing left waiting for an answer from before the last week.
    stale = (
        "SELECT count(*) FROM referrals WHERE status = 'active' AND outcome = 'frp' "
        f"AND created_at < TIMESTAMP '{DEMO_AS_OF:%Y-%m-%d}' - INTERVAL 8 DAY"
    )
    assert _one(con, stale) == 0


def test_messages_are_recorded_and_none_is_pending(con: duckdb.DuckDBPyConnection) -> None:
    outbox = dict(con.execute("SELECT status, count(*) FROM outbox GROUP BY 1").fetchall())
    assert outbox.get("sent", 0) > 0 and outbox.get("pending", 0) == 0
    assert _one(con, "SELECT count(*) FROM outbox WHERE message_id LIKE '%-reminder@%'") > 0
    sends = "SELECT count(*) FROM audit_log WHERE action = 'send_outbox' AND actor = 'demo'"
    assert _one(con, sends) > 0


def test_runs_record_the_rules_they_used_ending_with_the_defaults(
    con: duckdb.DuckDBPyConnection,
) -> None:
    used = [r for (r,) in con.execute("SELECT rules_toml FROM runs ORDER BY run_id").fetchall()]
    versions = list(dict.fromkeys(used))
    assert len(versions) == len(RULES_CHANGES)
    assert versions[-1] == to_toml(load_rules())


def test_pauses_and_quotas_came_and_went(con: duckdb.DuckDBPyConnection) -> None:
    """Partners were imported again as pauses and quotas began and ended; none is left."""
    imports = "SELECT count(*) FROM audit_log WHERE action = 'import_partners'"
    assert _one(con, imports) > 1 + len(PAUSES) + len(QUOTAS)  # a week's changes go together
    left = (
        "SELECT count(*) FROM partners WHERE paused_until IS NOT NULL OR monthly_quota IS NOT NULL"
    )
    assert _one(con, left) == 0


def test_round_robin_is_seen_to_be_fair(con: duckdb.DuckDBPyConnection) -> None:
    """The Fairness page's measure: most pools are within one turn of their fair share,
    the typical pool too (an uneven pool is one whose members were full, paused, on a
    quota or refused a customer: round robin skips them)."""
    report, _ = committed_fairness(con, None, None, load_rules())
    judged = verdict(report.per_pool)
    assert judged.pools > 100
    assert judged.within >= 0.9 * judged.pools
    placed = report.per_pool.filter(pl.col("placed") > 0)
    assert statistics.median(placed["max_deviation"].to_list()) <= FAIR_TURNS


def test_the_backlog_meets_every_css_reason_and_the_full_pools_overflow(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The backlog under the default rules and round robin at the demo's "now", as the
    Simulate page shows it: most assigned, every CSS reason, and the designed full pools
    (their demand grew faster than their seats) most of the capacity_exhausted."""
    with clock.frozen(DEMO_AS_OF):
        sim, prep = simulate_stored(con, load_rules(), "round-robin")
    result = sim.assignments.join(prep.cohort.select("tenant_id", "country"), on="tenant_id")
    share = {r: (result["reason"] == r).mean() for r in set(result["reason"])}
    assert set(share) == {"assigned", *(r.value for r in CSS_REASONS)}
    assert 0.55 <= share["assigned"] <= 0.8, share
    assert 0.01 <= share["capacity_exhausted"] <= 0.08, share
    full = result.filter(pl.col("reason") == "capacity_exhausted")
    assert full["country"].is_in(FULL_POOL_COUNTRIES).mean() >= 0.5
