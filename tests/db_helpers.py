"""Looks at a database file from beside the store: for the tests that check it was left
alone (tests/test_backup.py, tests/test_bad_input.py) or built the same (tests/test_cli.py),
and the invariants every store
must keep whatever happened to it (tests/test_expiry.py, tests/test_crash.py,
tests/test_chaos.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from store import state
from store.backup import table_digest
from store.commits import SHARED_WORKLOAD_SQL
from store.db import DELIVERABLE, OPEN_SQL, QUEUED

#: ``status IN {KEPT_SQL}``: referrals under which the partner keeps the customer (open,
#: or completed); any other status ended the referral without completion.
KEPT_SQL = "(" + ", ".join(f"'{s}'" for s in DELIVERABLE) + ")"


def digest(db: Path) -> dict[str, tuple[int, int]]:
    """Every table's row count and content hash: equal digests, untouched database."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return table_digest(con)
    finally:
        con.close()


def invariants(
    quotas_since: str = "1970-01-01", pauses_since: str = "1970-01-01"
) -> dict[str, str]:
    """Each query counts what must never happen (docs/domain.md, "Referral life cycle").

    Quotas and pauses are checked on referrals made from ``quotas_since`` and
    ``pauses_since`` on: a test that sets them on a store with older history says when."""
    return {
        # A customer split across partners has an open referral per part (docs/domain.md,
        # "Split by workload"), never two for one workload.
        "two open referrals of a customer sharing a workload": SHARED_WORKLOAD_SQL,
        # A CSS referral waits `queued` until handed off (or `active`, written before
        # `queued` existed); a partner's answers never apply to it, nor CSS statuses to a
        # partner referral.
        "CSS referrals with a partner's answer": """
            SELECT count(*) FROM referrals WHERE outcome = 'css'
              AND status IN ('accepted', 'declined', 'expired')""",
        "partner referrals queued for a CSS hand-off": f"""
            SELECT count(*) FROM referrals WHERE outcome = 'frp'
              AND status IN ('{QUEUED}', 'handed_off')""",
        "partners above capacity": """
            SELECT count(*) FROM partner_state WHERE active_total > capacity""",
        "partners above their monthly quota": f"""
            SELECT count(*) FROM (SELECT r.partner_id, date_trunc('month', r.created_at)
            FROM referrals r JOIN partners p USING (partner_id)
            WHERE r.outcome = 'frp' AND p.monthly_quota IS NOT NULL
              AND r.created_at >= TIMESTAMP '{quotas_since}'
            GROUP BY ALL HAVING count(*) > any_value(p.monthly_quota))""",
        "referrals made to a partner while it was paused": f"""
            SELECT count(*) FROM referrals r JOIN partners p USING (partner_id)
            WHERE r.outcome = 'frp' AND r.created_at >= TIMESTAMP '{pauses_since}'
              AND r.created_at::DATE < p.paused_until""",
        "a customer referred twice to one partner": """
            SELECT count(*) FROM (SELECT tenant_id, partner_id FROM referrals
            WHERE outcome = 'frp' GROUP BY ALL HAVING count(*) > 1)""",
        "open tasks not of a kept partner referral of a Gateway customer": f"""
            SELECT count(*) FROM ftop_tasks t JOIN referrals r USING (referral_id)
            JOIN customers c ON c.tenant_id = t.tenant_id
            WHERE t.status = 'open'
              AND NOT (r.outcome = 'frp' AND r.status IN {KEPT_SQL} AND c.gateway)""",
        "tasks of ended referrals not cancelled": f"""
            SELECT count(*) FROM ftop_tasks t JOIN referrals r USING (referral_id)
            WHERE r.status NOT IN {KEPT_SQL} AND t.status <> 'cancelled'""",
        "open Gateway referrals of a run without their customer's task": f"""
            SELECT count(*) FROM referrals r JOIN customers c USING (tenant_id)
            WHERE r.run_id IS NOT NULL AND r.outcome = 'frp' AND r.status IN {OPEN_SQL}
              AND c.gateway AND NOT EXISTS (SELECT 1 FROM ftop_tasks t
                  WHERE t.tenant_id = r.tenant_id AND t.status <> 'cancelled')""",
        "customers with two open tasks": """
            SELECT count(*) FROM (SELECT tenant_id FROM ftop_tasks WHERE status = 'open'
            GROUP BY tenant_id HAVING count(*) > 1)""",
        "tasks and messages of no referral": """
            SELECT (SELECT count(*) FROM ftop_tasks
                    WHERE referral_id NOT IN (SELECT referral_id FROM referrals))
                 + (SELECT count(*) FROM outbox
                    WHERE referral_id NOT IN (SELECT referral_id FROM referrals))""",
        "messages or tasks naming another customer than their referral": """
            SELECT (SELECT count(*) FROM outbox o JOIN referrals r USING (referral_id)
                    WHERE o.tenant_id <> r.tenant_id)
                 + (SELECT count(*) FROM ftop_tasks t JOIN referrals r USING (referral_id)
                    WHERE t.tenant_id <> r.tenant_id OR t.partner_id <> r.partner_id)""",
        # The customer's message names every part of its run: kept while one is open.
        "pending messages of referrals that ended": f"""
            SELECT count(*) FROM outbox o JOIN referrals r USING (referral_id)
            WHERE o.status = 'pending' AND r.status NOT IN {KEPT_SQL}
              AND NOT (o.recipient_role = 'customer' AND EXISTS (SELECT 1 FROM referrals q
                  WHERE q.tenant_id = r.tenant_id AND q.run_id = r.run_id
                    AND q.outcome = 'frp' AND q.status IN {OPEN_SQL}))""",
        "runs not whole": f"SELECT count(*) FROM ({RUNS_NOT_WHOLE})",
    }


#: Runs missing part of what a commit writes with them: a referral per customer (per part
#: when split), a notification to each placed customer and two per partner part (partner
#: and PSM; reminders come later and are not counted), a task per Gateway customer placed,
#: one audit entry.
RUNS_NOT_WHOLE = """
    WITH r AS (
        SELECT run_id, count(DISTINCT tenant_id) AS referrals,
               count(*) FILTER (outcome = 'frp') AS frp,
               count(DISTINCT tenant_id) FILTER (outcome = 'frp') AS placed
        FROM referrals WHERE run_id IS NOT NULL GROUP BY run_id),
    o AS (
        SELECT f.run_id, count(*) AS messages FROM outbox m
        JOIN referrals f USING (referral_id)
        WHERE m.recipient_role IN ('customer', 'partner', 'psm')
          AND m.message_id NOT LIKE '%-reminder@%' GROUP BY f.run_id),
    t AS (
        SELECT f.run_id, count(*) AS tasks FROM ftop_tasks k
        JOIN referrals f USING (referral_id) GROUP BY f.run_id),
    g AS (
        SELECT f.run_id, count(DISTINCT f.tenant_id) AS gateway FROM referrals f
        JOIN customers c USING (tenant_id)
        WHERE f.outcome = 'frp' AND c.gateway GROUP BY f.run_id),
    a AS (
        SELECT subject, count(*) AS entries FROM audit_log WHERE action = 'commit'
        GROUP BY subject)
    SELECT runs.run_id, runs.customers, runs.placed, r.referrals, r.frp, o.messages, t.tasks,
           g.gateway, a.entries
    FROM (SELECT *, rules_toml LIKE '%when_full = "hold"%' AS held FROM runs) runs
    LEFT JOIN r USING (run_id) LEFT JOIN o USING (run_id) LEFT JOIN t USING (run_id)
    LEFT JOIN g USING (run_id) LEFT JOIN a ON a.subject = 'run ' || runs.run_id
    WHERE coalesce(r.placed, 0) <> runs.placed
       OR coalesce(r.referrals, 0) > runs.customers
       OR (coalesce(r.referrals, 0) < runs.customers AND NOT held)
       OR coalesce(o.messages, 0) <> 2 * coalesce(r.frp, 0) + coalesce(r.placed, 0)
       OR coalesce(t.tasks, 0) <> coalesce(g.gateway, 0)
       OR a.entries IS DISTINCT FROM 1
"""


def inconsistencies(con: duckdb.DuckDBPyConnection, **since: str) -> dict[str, int]:
    """The invariants broken in ``con``'s store, with how many rows break each."""
    counts = {what: con.execute(sql).fetchall()[0][0] for what, sql in invariants(**since).items()}
    return {what: n for what, n in counts.items() if n}


def same_rows(a: Path, b: Path) -> dict[str, bool]:
    """Each table of two stores (both must hold the same tables) and whether its rows are
    the same, in any order; the audit entry of a demo build, which names its file, is
    compared without it: for the same seed giving the same demo database."""
    cons = [duckdb.connect(str(db), read_only=True) for db in (a, b)]
    try:
        names = [
            sorted(t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall())
            for con in cons
        ]
        assert names[0] == names[1], names
        return {t: _rows(cons[0], t).equals(_rows(cons[1], t)) for t in names[0]}
    finally:
        for con in cons:
            con.close()


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame:
    frame = state.query(con, f"SELECT * FROM {table}")
    if table == "audit_log":
        built = pl.col("action") == "build_demo"
        frame = frame.with_columns(
            pl.when(built).then(None).otherwise(pl.col("subject")).alias("subject")
        )
    return frame.sort(pl.all())
