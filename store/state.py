"""Reading the stored state as the engine's frames (PARTNER_SCHEMA, CUSTOMER_SCHEMA), and
the store-wide reads every page shares: headline counts, partner names, recent changes.

Reads run on the connection (or cursor) they are given, so that inside a transaction
they see its own writes; the dashboard opens a short-lived connection for each operation
(``ui.db.session``).
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import polars as pl

from engine.columns import (
    CUSTOMER_SCHEMA,
    MONTH_REFERRALS,
    PARTNER_SCHEMA,
    PARTNER_SIZES,
    TEXT_LIST,
)
from store import clock
from store.db import OPEN_SQL
from store.rules import made_with

Con = duckdb.DuckDBPyConnection

#: ``partner_state`` with each partner's intake on a date (docs/domain.md, "Partner
#: availability and intake"): MONTH_REFERRALS, the FRP referrals made to it in that
#: date's calendar month (UTC), whatever became of them; and ``paused``, Referral Ready
#: but before its ``paused_until``. Its parameters come from :func:`intake_params`.
INTAKE_SQL = f"""
SELECT s.*, coalesce(m.made, 0) AS {MONTH_REFERRALS},
       s.referral_ready AND coalesce(s.paused_until > ?::DATE, false) AS paused
FROM partner_state s LEFT JOIN (
    SELECT partner_id, count(*) AS made FROM referrals
    WHERE outcome = 'frp' AND created_at >= ? AND created_at < ?
    GROUP BY partner_id
) m USING (partner_id)
"""

_PARTNER_SQL = f"""
SELECT partner_id, name, countries, languages, workloads, capacity,
       active_total AS active_referrals, referral_ready, psm_name, psm_email, contact_email,
       last_assigned, paused_until, monthly_quota, {MONTH_REFERRALS}, {PARTNER_SIZES}
FROM ({INTAKE_SQL}) ORDER BY partner_id
"""

_CUSTOMER_COLS = ", ".join(CUSTOMER_SCHEMA)


def query(con: Con, sql: str, params: list | None = None) -> pl.DataFrame:
    """Run one read and return a Polars frame."""
    return con.sql(sql, params=params or []).pl()


def scalar(con: Con, sql: str, params: list | None = None):
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def partners(con: Con, today: date | None = None) -> pl.DataFrame:
    """Partners as the engine sees them on ``today`` (default: the clock's date): load
    includes referrals committed here, MONTH_REFERRALS counts that month's, and
    PARTNER_SIZES carries the size buckets each takes (null: every size)."""
    frame = query(con, _PARTNER_SQL, intake_params(today))
    return frame.cast(pl.Schema({**PARTNER_SCHEMA, PARTNER_SIZES: TEXT_LIST})).with_columns(
        pl.col(MONTH_REFERRALS).cast(pl.Int64)
    )


def intake_params(today: date | None = None) -> list:
    """The parameters of :data:`INTAKE_SQL` on ``today`` (default: the clock's date): the
    date and its calendar month as [first midnight, first midnight of the next month)."""
    day = today or clock.today()
    start = datetime(day.year, day.month, 1)
    end = datetime(day.year + day.month // 12, day.month % 12 + 1, 1)
    return [day, start, end]


def partner_psm(con: Con) -> pl.DataFrame:
    return query(
        con,
        "SELECT partner_id, name AS partner_name, psm_name, contact_email "
        "AS partner_email FROM partners",
    )


def backlog(con: Con) -> pl.DataFrame:
    """Customers waiting in the FTCQ, oldest first (the default cohort)."""
    sql = f"SELECT {_CUSTOMER_COLS} FROM customers WHERE in_ftcq ORDER BY ftcq_seq"
    return query(con, sql).cast(CUSTOMER_SCHEMA)


def open_referral_tenants(con: Con, tenant_ids: list[str]) -> set[str]:
    """Which of these customers already hold an open referral (and must not get another)."""
    if not tenant_ids:
        return set()
    frame = pl.DataFrame({"tenant_id": tenant_ids}, schema={"tenant_id": pl.String})
    con.register("wanted_tenants", frame.to_arrow())
    try:
        rows = con.execute(
            "SELECT DISTINCT r.tenant_id FROM referrals r JOIN wanted_tenants w USING (tenant_id) "
            f"WHERE r.status IN {OPEN_SQL}"
        ).fetchall()
    finally:
        con.unregister("wanted_tenants")
    return {r[0] for r in rows}


def counts(con: Con) -> dict[str, int]:
    """Headline sizes of the store (for `frp` summaries, the Data page's figures and
    empty-state checks)."""
    sql = f"""
    SELECT
      (SELECT count(*) FROM partners) AS partners,
      (SELECT count(*) FROM partners WHERE referral_ready) AS referral_ready,
      (SELECT count(*) FROM customers) AS customers,
      (SELECT count(*) FROM customers WHERE in_ftcq) AS backlog,
      (SELECT count(*) FROM referrals) AS referrals,
      (SELECT count(*) FROM referrals WHERE status IN {OPEN_SQL}) AS open_referrals,
      (SELECT count(*) FROM runs) AS runs,
      (SELECT count(*) FROM ftop_tasks) AS tasks,
      (SELECT count(*) FROM outbox) AS outbox
    """
    frame = query(con, sql)
    return {k: int(v) for k, v in frame.row(0, named=True).items()}


#: What a simulation reads from the store, as one row of text (see :func:`fingerprint`).
_FINGERPRINT_SQL = """
SELECT concat_ws('|',
  (SELECT coalesce(max(id), 0) FROM audit_log),
  (SELECT count(*) || ':' || coalesce(bit_xor(hash(p)), 0) FROM partners p),
  (SELECT count(*) || ':' || coalesce(bit_xor(hash(o)), 0) FROM rr_order o),
  (SELECT count(*) || ':' || coalesce(bit_xor(hash(tenant_id, in_ftcq, ftcq_seq, held_since)), 0)
   FROM customers),
  (SELECT count(*) || ':' || coalesce(bit_xor(hash(referral_id, status, partner_id)), 0)
   FROM referrals))
"""


def fingerprint(con: Con) -> str:
    """A short text that changes whenever what a simulation reads from the store changes.

    Counts miss an edit that keeps them (one partner's capacity changed), so this holds:
    the newest audit entry (every write through the product, imports and commits, answers
    and hand-offs, leaves one), a hash of every partner row and of the round-robin order
    (the partners whole: they are few), and of the customers' place in the FTCQ and of
    the referrals' statuses (the columns that move without an import). About 3 ms on the
    demo, 20-40 ms on a store of 100,000 customers and referrals."""
    return str(scalar(con, _FINGERPRINT_SQL))


def partner_names(con: Con) -> pl.DataFrame:
    """``partner_id, name`` of every partner, by id: the pages' partner pickers."""
    return query(con, "SELECT partner_id, name FROM partners ORDER BY partner_id")


def recent_changes(con: Con, limit: int = 20) -> pl.DataFrame:
    """The newest imports and commits from the audit log, newest first."""
    return query(
        con,
        "SELECT logged_at, actor, action, subject, details FROM audit_log "
        "WHERE action IN ('import_partners', 'import_customers', 'commit') "
        "ORDER BY id DESC LIMIT ?",
        [limit],
    )


def referrals(con: Con, run_id: int | None = None) -> pl.DataFrame:
    where = "WHERE run_id = ?" if run_id is not None else ""
    params = [run_id] if run_id is not None else []
    return query(con, f"SELECT * FROM referrals {where} ORDER BY referral_id", params)


def period(
    since: datetime | None,
    until: datetime | None,
    column: str = "created_at",
    version: int | None = None,
) -> tuple[str, list]:
    """A SQL condition (and its parameters) for rows in [since, until); either may be None.
    With ``version``, only referrals of runs made with that version of the team's rules
    (``column``'s table, by its ``run_id``)."""
    where, params = ["TRUE"], list[object]()
    if version is not None:
        table, dot, _ = column.rpartition(".")  # "r.created_at" -> "r.run_id"
        where.append(made_with(f"{table}{dot}run_id"))
        params.append(version)
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        where.append(f"{column} < ?")
        params.append(until)
    return " AND ".join(where), params
