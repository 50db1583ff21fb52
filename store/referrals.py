"""Reads behind the Referrals page: referrals and their traces, runs, FTOP 3186 tasks,
the notification outbox and the open referrals per Partner Success Manager.

Every read takes a connection (or cursor) and returns a small Polars frame, a dict or a
count; tables are capped in DuckDB (``ROW_CAP``). Nothing here imports Streamlit;
``ui.reads`` caches the calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from store import state
from store.state import Con

#: The referrals page never ships more rows than this to a table.
ROW_CAP = 1_000
#: The run filter's value for referrals imported with the history (no run).
HISTORY = "history"


@dataclass(frozen=True)
class ReferralFilter:
    """The referrals page's filters; empty means "any". ``run``: a run id, HISTORY or None."""

    outcomes: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    partner_id: str | None = None
    run: int | str | None = None
    tenant: str = ""

    def where(self) -> tuple[str, list[Any]]:
        sql: list[str] = ["TRUE"]
        params: list[Any] = []
        for column, values in (
            ("outcome", self.outcomes),
            ("status", self.statuses),
            ("reason", self.reasons),
        ):
            if values:
                sql.append(f"list_contains(?::VARCHAR[], r.{column})")
                params.append(list(values))
        if self.partner_id:
            sql.append("r.partner_id = ?")
            params.append(self.partner_id)
        if self.run is not None:
            run_sql, run_params = _run_clause(self.run)
            sql.append(run_sql)
            params += run_params
        if self.tenant.strip():
            sql.append("(r.tenant_id ILIKE ? OR c.name ILIKE ?)")
            params += [f"%{self.tenant.strip()}%"] * 2
        return " AND ".join(sql), params


def referral_options(con: Con) -> dict[str, Any]:
    """Values the referral filters can take: outcomes, statuses, reasons, runs (newest
    first) and ``history``, the number of referrals imported without a run."""
    row = state.query(
        con,
        """
        SELECT
          coalesce(list_sort(list_distinct(list(outcome))), []) AS outcomes,
          coalesce(list_sort(list_distinct(list(status))), []) AS statuses,
          coalesce(list_sort(list_distinct(list(reason))), []) AS reasons,
          (SELECT coalesce(list_sort(list(run_id), 'DESC'), []) FROM runs) AS runs,
          count(*) FILTER (WHERE run_id IS NULL) AS history
        FROM referrals
        """,
    ).row(0, named=True)
    return {
        **{k: list(row[k] or []) for k in ("outcomes", "statuses", "reasons", "runs")},
        "history": int(row["history"] or 0),
    }


def runs(con: Con) -> pl.DataFrame:
    return state.query(
        con,
        "SELECT run_id, created_at, actor, policy, source, customers, placed, css, skipped "
        "FROM runs ORDER BY run_id DESC",
    )


_REFERRAL_FROM = "FROM referrals r LEFT JOIN customers c USING (tenant_id) "
_TASK_FROM = "FROM ftop_tasks t JOIN referrals r USING (referral_id) "
_OUTBOX_FROM = "FROM outbox o JOIN referrals r USING (referral_id) "


def _count(con: Con, source: str, where: tuple[str, list[Any]]) -> int:
    sql, params = where
    return int(state.scalar(con, f"SELECT count(*) {source} WHERE {sql}", params) or 0)


def referral_count(con: Con, where: ReferralFilter = ReferralFilter()) -> int:
    return _count(con, _REFERRAL_FROM, where.where())


def referral_rows(
    con: Con, where: ReferralFilter = ReferralFilter(), limit: int = ROW_CAP
) -> pl.DataFrame:
    """Referrals matching the filter, newest first, at most ``limit`` rows."""
    sql, params = where.where()
    return state.query(
        con,
        f"""
        SELECT r.referral_id, r.run_id, r.tenant_id, c.name AS customer, r.outcome,
               r.partner_id, r.psm_name, r.queue, r.reason, r.status, r.country,
               r.language, r.eligible_workloads AS workloads, r.created_at
        {_REFERRAL_FROM} WHERE {sql}
        ORDER BY r.created_at DESC, r.referral_id DESC LIMIT ?
        """,
        [*params, limit],
    )


def referral_detail(con: Con, referral_id: int) -> dict[str, Any] | None:
    frame = state.query(
        con,
        """
        SELECT r.*, c.name AS customer, c.seats, c.gateway, p.name AS partner_name
        FROM referrals r LEFT JOIN customers c USING (tenant_id)
        LEFT JOIN partners p USING (partner_id)
        WHERE r.referral_id = ?
        """,
        [referral_id],
    )
    return frame.row(0, named=True) if frame.height else None


def trace_steps(trace: str | None) -> list[str]:
    """A trace split into its steps ('Referral Ready: ...; country SE: ...; chose ...')."""
    if not trace:
        return []
    return [s.strip() for s in trace.split("; ") if s.strip()]


def task_count(con: Con, run: int | str | None = None, status: str | None = None) -> int:
    return _count(con, _TASK_FROM, _task_where(run, status))


def ftop_tasks(
    con: Con, run: int | str | None = None, limit: int = ROW_CAP, status: str | None = None
) -> pl.DataFrame:
    """FTOP task 3186 rows (newest first), with the customer and partner names; ``status``
    (``open`` or ``closed``) filters."""
    sql, params = _task_where(run, status)
    return state.query(
        con,
        f"""
        SELECT t.task_id, t.task_number, t.name AS task, t.tenant_id, c.name AS customer,
               t.partner_id, p.name AS partner, t.role, t.service, t.mandatory, t.status,
               r.run_id, t.referral_id, t.created_at, t.closed_at
        {_TASK_FROM}
        LEFT JOIN customers c ON c.tenant_id = t.tenant_id
        LEFT JOIN partners p ON p.partner_id = t.partner_id
        WHERE {sql}
        ORDER BY t.task_id DESC LIMIT ?
        """,
        [*params, limit],
    )


def _task_where(run: int | str | None, status: str | None) -> tuple[str, list[Any]]:
    sql, params = _run_clause(run)
    if status:
        sql += " AND t.status = ?"
        params = [*params, status]
    return sql, params


def _run_clause(run: int | str | None) -> tuple[str, list[Any]]:
    if run == HISTORY:
        return "r.run_id IS NULL", []
    if run is None:
        return "TRUE", []
    return "r.run_id = ?", [int(run)]


def outbox_count(con: Con, statuses: Sequence[str] = (), run: int | str | None = None) -> int:
    return _count(con, _OUTBOX_FROM, _outbox_where(statuses, run))


def outbox(
    con: Con, statuses: Sequence[str] = (), run: int | str | None = None, limit: int = ROW_CAP
) -> pl.DataFrame:
    """Queued referral notifications (newest first), without their bodies."""
    sql, params = _outbox_where(statuses, run)
    return state.query(
        con,
        f"""
        SELECT o.message_id, o.referral_id, r.run_id, o.tenant_id, o.recipient_role,
               o.to_email, o.subject, o.status, o.attempts, o.created_at, o.sent_at, o.last_error
        {_OUTBOX_FROM}
        WHERE {sql}
        ORDER BY o.referral_id DESC, o.recipient_role LIMIT ?
        """,
        [*params, limit],
    )


def _outbox_where(statuses: Sequence[str], run: int | str | None) -> tuple[str, list[Any]]:
    sql, params = _run_clause(run)
    if statuses:
        sql += " AND list_contains(?::VARCHAR[], o.status)"
        params = [*params, list(statuses)]
    return sql, params


def outbox_statuses(con: Con) -> list[str]:
    return state.query(con, "SELECT DISTINCT status FROM outbox ORDER BY status")[
        "status"
    ].to_list()


def message(con: Con, message_id: str) -> dict[str, Any] | None:
    frame = state.query(con, "SELECT * FROM outbox WHERE message_id = ?", [message_id])
    return frame.row(0, named=True) if frame.height else None


def customer_names(con: Con, tenant_ids: Sequence[str]) -> dict[str, str]:
    """Tenant id -> customer name of these customers: the names to take out of texts
    (subjects, bodies) shown to viewers."""
    if not tenant_ids:
        return {}
    sql = "SELECT tenant_id, name FROM customers WHERE list_contains(?, tenant_id)"
    return dict(state.query(con, sql, [list(tenant_ids)]).iter_rows())


def psm_load(con: Con) -> pl.DataFrame:
    """Open referrals per Partner Success Manager, most loaded first: ``psm_name,
    psm_email, partners`` (how many partners the PSM looks after now), ``open_referrals``
    (referrals committed here and still open, with those partners), ``partner_ids``.

    A PSM is known by email; referrals count for the partner's current PSM, who takes
    over a partner's open referrals when the partner file names a new one.
    """
    return state.query(
        con,
        """
        SELECT min(psm_name) AS psm_name, psm_email, count(*) AS partners,
               sum(open_referrals)::BIGINT AS open_referrals,
               list(partner_id ORDER BY partner_id) AS partner_ids
        FROM partner_state
        GROUP BY psm_email
        ORDER BY open_referrals DESC, psm_name, psm_email
        """,
    )
