"""Reads behind the Referrals page: referrals and their traces, runs, FTOP 3186 tasks,
the notification outbox, the open referrals per Partner Success Manager, and referrals
over time: those waiting for the partner's answer by age against the acceptance window,
and how long partners take to accept.

Ages count from a referral's ``created_at`` to the ``now`` the caller gives (the page
reads it from ``store.clock``): a read never looks at the time itself, so it stays
cacheable and a test can give it any day.

Every read takes a connection (or cursor) and returns a small Polars frame, a dict or a
count; tables are capped in DuckDB (``ROW_CAP``). Nothing here imports Streamlit;
``ui.reads`` caches the calls.

Reads that show customers take ``personal``: False (the default) joins the customers with
their personal fields masked (``store.privacy.customers_sql``), and outbox messages are
rendered again from those masked fields rather than read as stored, so a viewer's frame
never holds a customer's name or address in any spelling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from engine.reasons import Outcome
from store import rules as team_rules
from store import state
from store.notify import referral_messages, reminder_messages
from store.privacy import customers_sql, mask_sql
from store.state import Con

#: The referrals page never ships more rows than this to a table.
ROW_CAP = 1_000
#: The run filter's value for referrals imported with the history (no run).
HISTORY = "history"
#: A partner referral waiting for the partner's answer (docs/domain.md, "Time: the
#: referral clock"); the SQL condition on ``referrals r``.
WAITING_SQL = f"r.outcome = '{Outcome.FRP.value}' AND r.status = 'active'"
#: Whole days from ``created_at`` to the ``now`` given as the first parameter.
_AGE_SQL = "floor(epoch(?::TIMESTAMP - r.created_at) / 86400)::BIGINT"


@dataclass(frozen=True)
class ReferralFilter:
    """The referrals page's filters; empty means "any". ``run``: a run id, HISTORY or None."""

    outcomes: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    partner_id: str | None = None
    run: int | str | None = None
    tenant: str = ""
    #: Only referrals of runs made with this version of the team's rules (store/rules.py).
    rules_version: int | None = None
    #: Partner referrals still waiting for an answer, made more than this many days
    #: before ``now`` ...
    waiting_over: int | None = None
    #: ... or whose acceptance window of ``window`` days closes within this many days of
    #: ``now`` (0: closed already, due to expire).
    expires_within: int | None = None
    now: datetime | None = None
    window: int = 0

    def where(self) -> tuple[str, list[Any]]:
        sql, params = self._clock_where()
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
        if self.rules_version is not None:
            sql.append(team_rules.made_with("r.run_id"))
            params.append(self.rules_version)
        return " AND ".join(sql), params

    def _clock_where(self) -> tuple[list[str], list[Any]]:
        if self.waiting_over is None and self.expires_within is None:
            return ["TRUE"], []
        if self.now is None:
            raise ValueError("the waiting filters count from `now`: give it")
        now = self.now
        sql, params = [WAITING_SQL], []
        if self.waiting_over is not None:
            sql.append("r.created_at < ?")
            params.append(now - timedelta(days=self.waiting_over))
        if self.expires_within is not None:
            if self.window <= 0:
                sql.append("FALSE")  # no window: nothing expires
            else:
                sql.append("r.created_at <= ?")
                params.append(now + timedelta(days=self.expires_within - self.window))
        return sql, params


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


_TASK_FROM = "FROM ftop_tasks t JOIN referrals r USING (referral_id) "
_OUTBOX_FROM = "FROM outbox o JOIN referrals r USING (referral_id) "


def _count(con: Con, source: str, where: tuple[str, list[Any]]) -> int:
    sql, params = where
    return int(state.scalar(con, f"SELECT count(*) {source} WHERE {sql}", params) or 0)


def _referral_from(personal: bool) -> str:
    """Referrals with their customers."""
    return f"FROM referrals r LEFT JOIN {customers_sql(personal)} c USING (tenant_id) "


def referral_count(
    con: Con, where: ReferralFilter = ReferralFilter(), *, personal: bool = False
) -> int:
    """How many referrals match (a name matches only the names the reader may see)."""
    return _count(con, _referral_from(personal), where.where())


def referral_rows(
    con: Con,
    where: ReferralFilter = ReferralFilter(),
    limit: int = ROW_CAP,
    *,
    personal: bool = False,
) -> pl.DataFrame:
    """Referrals matching the filter, newest first, at most ``limit`` rows."""
    sql, params = where.where()
    return state.query(
        con,
        f"""
        SELECT r.referral_id, r.run_id, r.tenant_id, c.name AS customer, r.outcome,
               r.partner_id, r.psm_name, r.queue, r.reason, r.status, r.country,
               r.language, r.eligible_workloads AS workloads, r.created_at
        {_referral_from(personal)} WHERE {sql}
        ORDER BY r.created_at DESC, r.referral_id DESC LIMIT ?
        """,
        [*params, limit],
    )


def referral_detail(con: Con, referral_id: int, *, personal: bool = False) -> dict[str, Any] | None:
    frame = state.query(
        con,
        f"""
        SELECT r.*, c.name AS customer, c.seats, c.gateway, p.name AS partner_name
        {_referral_from(personal)} LEFT JOIN partners p USING (partner_id)
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
    con: Con,
    run: int | str | None = None,
    limit: int = ROW_CAP,
    status: str | None = None,
    *,
    personal: bool = False,
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
        LEFT JOIN {customers_sql(personal)} c ON c.tenant_id = t.tenant_id
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
    con: Con,
    statuses: Sequence[str] = (),
    run: int | str | None = None,
    limit: int = ROW_CAP,
    *,
    personal: bool = False,
    window: int = 0,
) -> pl.DataFrame:
    """Queued referral notifications (newest first), without their bodies. Not
    ``personal``: as :func:`previews` renders them (``window``: the acceptance window's
    days, for the accept-by date they state)."""
    sql, params = _outbox_where(statuses, run)
    frame = state.query(
        con,
        f"""
        SELECT o.message_id, o.referral_id, r.run_id, o.tenant_id, o.recipient_role,
               {_outbox_columns(personal, "to_email", "subject", "last_error")},
               o.status, o.attempts, o.created_at, o.sent_at
        {_OUTBOX_FROM}
        WHERE {sql}
        ORDER BY o.referral_id DESC, o.recipient_role LIMIT ?
        """,
        [*params, limit],
    )
    return frame if personal else _rendered(con, frame, window, "subject")


def _outbox_columns(personal: bool, *columns: str) -> str:
    """Outbox columns as a reader may see them: as stored when ``personal``; else a
    customer's address masked, the rendered texts left out (:func:`previews` renders them
    again) and a failure's text withheld unless the product wrote it (a cancellation): a
    server's reply or a build error may quote the address or the subject."""
    shown = {
        "to_email": "CASE WHEN o.recipient_role = 'customer' "
        f"THEN {mask_sql('o.to_email', 'contact_email')} ELSE o.to_email END",
        "last_error": "CASE WHEN o.status = 'cancelled' OR o.last_error IS NULL "
        f"THEN o.last_error ELSE '{WITHHELD}' END",
    }
    return ", ".join(
        f"o.{c}" if personal else f"{shown.get(c, 'NULL::VARCHAR')} AS {c}" for c in columns
    )


#: What a viewer reads for a failure's text (a manager sees it whole).
WITHHELD = "failed (the reason is shown to managers)"


def _rendered(con: Con, frame: pl.DataFrame, window: int, *texts: str) -> pl.DataFrame:
    """``frame`` (outbox rows) with its ``texts`` columns from :func:`previews`."""
    if frame.height == 0:
        return frame
    again = previews(con, frame["message_id"].to_list(), window).select("message_id", *texts)
    return frame.drop(texts).join(again, on="message_id", how="left").select(frame.columns)


#: The workloads of referral ``r``'s part (a referral from before parts: all of them).
PART_WORKLOADS_SQL = "coalesce(r.workloads, r.eligible_workloads)"
#: The partner parts of ``r``'s customer made by ``r``'s run, each with its workloads:
#: what the customer's message names (store.notify ``parts``).
_PARTS_SQL = """(
    SELECT list({'partner_id': q.partner_id, 'name': qp.name,
                 'contact_email': qp.contact_email,
                 'workloads': coalesce(q.workloads, q.eligible_workloads)} ORDER BY q.part)
    FROM referrals q JOIN partners qp ON qp.partner_id = q.partner_id
    WHERE q.tenant_id = r.tenant_id AND q.run_id = r.run_id AND q.outcome = 'frp')"""


def previews(con: Con, message_ids: Sequence[str], window: int = 0) -> pl.DataFrame:
    """The messages (``store.notify.MESSAGE_SCHEMA``) rendered again from their referrals
    with the customers' personal fields masked: what a viewer reads instead of the stored
    texts, which hold the name and address in whatever spelling the templates made of
    them. Today's partner, templates and ``window`` days to accept are used."""
    if not message_ids:
        return referral_messages(pl.DataFrame())
    referred = state.query(
        con,
        f"""
        SELECT DISTINCT r.referral_id, r.tenant_id, c.name AS customer_name,
               c.contact_email AS customer_email, {PART_WORKLOADS_SQL} AS eligible_workloads,
               r.partner_id, p.name AS partner_name, p.contact_email AS partner_email,
               r.psm_name, r.psm_email, r.language, r.country,
               CASE WHEN ? > 0 THEN r.created_at + to_days(?::INTEGER) END AS accept_by,
               o.message_id LIKE '%-reminder@%' AS reminder,  -- store.notify.message_id
               {_PARTS_SQL} AS parts
        {_OUTBOX_FROM} LEFT JOIN {customers_sql(False)} c ON c.tenant_id = r.tenant_id
        LEFT JOIN partners p ON p.partner_id = r.partner_id
        WHERE list_contains(?, o.message_id)
        """,
        [window, window, list(message_ids)],
    )
    messages = pl.concat(
        [
            referral_messages(referred.filter(~pl.col("reminder"))),
            reminder_messages(referred.filter(pl.col("reminder"))),
        ]
    )
    return messages.filter(pl.col("message_id").is_in(list(message_ids)))


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


def message(
    con: Con, message_id: str, *, personal: bool = False, window: int = 0
) -> dict[str, Any] | None:
    """One message whole; not ``personal``: as :func:`outbox` shows it, with its subject
    and bodies from :func:`previews`."""
    if personal:
        frame = state.query(con, "SELECT * FROM outbox o WHERE message_id = ?", [message_id])
    else:
        texts = _outbox_columns(False, "to_email", "subject", "body", "body_html", "last_error")
        frame = state.query(
            con,
            f"SELECT o.* EXCLUDE (to_email, subject, body, body_html, last_error), {texts} "
            "FROM outbox o WHERE message_id = ?",
            [message_id],
        )
        frame = _rendered(con, frame, window, "subject", "body", "body_html")
    return frame.row(0, named=True) if frame.height else None


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


# --- Referrals over time: waiting for an answer, time to accept -------------------------


def waiting_ages(con: Con, now: datetime, window: int) -> pl.DataFrame:
    """Partner referrals waiting for an answer, per whole day of age at ``now``:
    ``age_days, referrals, past_window`` (the acceptance window of ``window`` days has
    closed: the next expiry ends them; never with no window), youngest first."""
    return state.query(
        con,
        f"""
        SELECT {_AGE_SQL} AS age_days, count(*) AS referrals,
               ? > 0 AND {_AGE_SQL} >= ? AS past_window
        FROM referrals r WHERE {WAITING_SQL}
        GROUP BY ALL ORDER BY age_days
        """,
        [now, window, now, window],
    )


def waiting_count(con: Con, where: ReferralFilter, *, personal: bool = False) -> int:
    """How many waiting partner referrals match the filter."""
    sql, params = where.where()
    return _count(con, _referral_from(personal), (f"{WAITING_SQL} AND {sql}", params))


def waiting_rows(
    con: Con, where: ReferralFilter, limit: int = ROW_CAP, *, personal: bool = False
) -> pl.DataFrame:
    """Waiting partner referrals matching the filter (its ``now`` and ``window`` give
    each one's age and accept-by time), oldest first, at most ``limit`` rows."""
    if where.now is None:
        raise ValueError("waiting referrals are aged at `now`: give it in the filter")
    sql, params = where.where()
    return state.query(
        con,
        f"""
        SELECT r.referral_id, r.tenant_id, c.name AS customer, r.partner_id,
               p.name AS partner, r.run_id, r.created_at, {_AGE_SQL} AS age_days,
               CASE WHEN ? > 0 THEN r.created_at + to_days(?::INTEGER) END AS accept_by
        {_referral_from(personal)} LEFT JOIN partners p USING (partner_id)
        WHERE {WAITING_SQL} AND {sql}
        ORDER BY r.created_at, r.referral_id LIMIT ?
        """,
        [where.now, where.window, where.window, *params, limit],
    )


def days_to_accept(con: Con) -> pl.DataFrame:
    """Per partner, the median days from a referral to the partner's acceptance:
    ``partner_id, accepted_timed, median_days_to_accept`` (over ``accepted_timed``
    referrals).

    The time of acceptance is the audit log's ``referral_accept`` entry (it stays when
    the referral is completed later); a referral imported as ``accepted``, which has no
    entry, counts from its ``updated_at``. Referrals completed without an acceptance
    on record are left out: when they were accepted is not known.
    """
    return state.query(
        con,
        f"""
        WITH accepts AS (
            SELECT try_cast(json_extract_string(details, '$.referral_id') AS BIGINT)
                       AS referral_id,
                   min(logged_at) AS accepted_at
            FROM audit_log WHERE action = 'referral_accept' GROUP BY 1
        ), timed AS (
            SELECT r.partner_id,
                   coalesce(a.accepted_at, r.updated_at) - r.created_at AS waited
            FROM referrals r LEFT JOIN accepts a USING (referral_id)
            WHERE r.outcome = '{Outcome.FRP.value}'
              AND (a.accepted_at IS NOT NULL OR r.status = 'accepted')
        )
        SELECT partner_id, count(*) AS accepted_timed,
               median(epoch(waited) / 86400.0) AS median_days_to_accept
        FROM timed GROUP BY partner_id ORDER BY partner_id
        """,
    )
