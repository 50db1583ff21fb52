"""The referral life cycle after a commit: accept, decline (and re-assign), complete, drain,
and the clock's part: expiry and reminders.

A referral to a partner starts ``active``. The partner accepts it (``accepted``), declines
it with a reason (``declined``: the customer is re-assigned at once by the same policy,
never to a partner that declined it, and goes to its CSS queue as
``declined_by_partners`` after ``rules.max_declines`` declines), or completes it
(``completed``: the seat is free again). One still ``active`` when its acceptance window
closes (``rules.accept_within_days``) is ``expired`` by :func:`expire`: a decline with
reason ``no_response``, followed by the same re-assignment; the same run reminds the
partner and its PSM, once, of referrals waiting ``rules.remind_after_days``. A referral
that ends without completion ends the partner's access with it: its open FTOP task is
cancelled and its unsent messages too, in the same transaction. Each change and its
follow-up run share one transaction and leave an audit entry with who, what, and the
status before and after. With ``when_full = "hold"`` customers whose matching partners
were all full wait in the FTCQ; a freed seat (complete, decline, expiry) or ``frp drain``
places them, oldest first. The rules: docs/domain.md, "Referral life cycle".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import polars as pl

from engine.columns import CUSTOMER_SCHEMA
from engine.reasons import DECLINE_REASONS, Policy
from engine.rules import Rules
from store import clock, outbox, state, tasks
from store.commits import CommitSummary, commit_within
from store.db import OPEN_SQL, OPEN_STATUSES, audit, registered, transaction
from store.errors import StoreError
from store.notify import reminder_messages

#: The decline reason of an expiry: the partner let the acceptance window close.
NO_RESPONSE = "no_response"


@dataclass(frozen=True)
class Change:
    """What one life-cycle action did (and what the run that followed it did)."""

    tenant_id: str
    referral_id: int
    partner_id: str
    before: str
    after: str
    follow_up: CommitSummary | None = None
    drained: CommitSummary | None = None

    def describe(self) -> str:
        text = (
            f"referral {self.referral_id} of {self.tenant_id} to {self.partner_id}: "
            f"{self.before} -> {self.after}"
        )
        if self.follow_up is not None and self.follow_up.run_id is not None:
            text += f"; re-assigned in run {self.follow_up.run_id}: " + _outcome(self.follow_up)
        if self.drained is not None and self.drained.run_id is not None:
            text += f"; held customers placed: {self.drained.placed}"
        return text


def _outcome(summary: CommitSummary) -> str:
    if summary.placed:
        return "to a partner"
    if summary.held:
        return "held in the FTCQ until a matching partner has room"
    reasons = [k for k, v in summary.by_reason.items() if v]
    return "to its CSS queue (" + ", ".join(reasons) + ")"


def _open_referral(
    con: duckdb.DuckDBPyConnection, tenant_id: str, partner_id: str | None = None
) -> dict:
    """The customer's open partner referral (to ``partner_id``, for a customer split
    across partners, which must then be named)."""
    rows = state.query(
        con,
        "SELECT r.referral_id, r.partner_id, r.status, r.run_id, runs.policy, "
        "coalesce(r.workloads, r.eligible_workloads) AS workloads "
        "FROM referrals r LEFT JOIN runs USING (run_id) "
        f"WHERE r.tenant_id = ? AND r.outcome = 'frp' AND r.status IN {OPEN_SQL} "
        "ORDER BY r.referral_id DESC",
        [tenant_id],
    )
    if partner_id is not None:
        others = rows["partner_id"].to_list()
        rows = rows.filter(pl.col("partner_id") == partner_id)
        if rows.height == 0 and others:
            raise StoreError(
                f"{tenant_id} has no open referral to {partner_id} (open with: "
                + ", ".join(others)
                + ")"
            )
    if rows.height > 1:
        raise StoreError(
            f"{tenant_id} is split across partners ({', '.join(rows['partner_id'].to_list())}):"
            " name the partner whose part this is (--partner)"
        )
    if rows.height == 0:
        known = state.scalar(con, "SELECT count(*) FROM customers WHERE tenant_id = ?", [tenant_id])
        what = "has no open referral to a partner" if known else "is not a known customer"
        raise StoreError(f"{tenant_id} {what}")
    return rows.row(0, named=True)


def _change(
    ref: dict,
    tenant_id: str,
    after: str,
    follow_up: CommitSummary | None = None,
    drained: CommitSummary | None = None,
) -> Change:
    """The :class:`Change` of the open referral ``ref`` to ``after``."""
    return Change(
        tenant_id, ref["referral_id"], ref["partner_id"], ref["status"], after, follow_up, drained
    )


def _set_status(
    con: duckdb.DuckDBPyConnection,
    ref: dict,
    tenant_id: str,
    status: str,
    actor: str,
    action: str,
    decline_reason: str | None = None,
) -> None:
    con.execute(
        "UPDATE referrals SET status = ?, decline_reason = ?, updated_at = ? WHERE referral_id = ?",
        [status, decline_reason, clock.now(), ref["referral_id"]],
    )
    details = {
        "referral_id": ref["referral_id"],
        "partner_id": ref["partner_id"],
        "before": {"status": ref["status"]},
        "after": {
            "status": status,
            **({"decline_reason": decline_reason} if decline_reason else {}),
        },
    }
    audit(con, actor, action, tenant_id, json.dumps(details))


def accept(
    con: duckdb.DuckDBPyConnection,
    tenant_id: str,
    *,
    actor: str = "cli",
    partner_id: str | None = None,
) -> Change:
    with transaction(con):
        ref = _open_referral(con, tenant_id, partner_id)
        if ref["status"] != "active":
            raise StoreError(
                f"{tenant_id}: referral {ref['referral_id']} is already {ref['status']}"
            )
        _set_status(con, ref, tenant_id, "accepted", actor, "referral_accept")
    return _change(ref, tenant_id, "accepted")


def complete(
    con: duckdb.DuckDBPyConnection,
    tenant_id: str,
    rules: Rules,
    *,
    actor: str = "cli",
    partner_id: str | None = None,
) -> Change:
    """The partner finished onboarding: its seat is free (and held customers may take it)."""
    with transaction(con):
        ref = _open_referral(con, tenant_id, partner_id)
        _set_status(con, ref, tenant_id, "completed", actor, "referral_complete")
        drained = _place_held(con, rules, actor)
    return _change(ref, tenant_id, "completed", drained=drained)


def decline(
    con: duckdb.DuckDBPyConnection,
    tenant_id: str,
    reason: str,
    rules: Rules,
    *,
    actor: str = "cli",
    partner_id: str | None = None,
) -> Change:
    """Record the decline and re-assign the customer (a split customer: the declined
    part's workloads only) by its run's policy, in one transaction."""
    if reason not in DECLINE_REASONS:
        raise StoreError(f"decline reason {reason!r} is not one of: " + ", ".join(DECLINE_REASONS))
    with transaction(con):
        ref = _open_referral(con, tenant_id, partner_id)
        _set_status(con, ref, tenant_id, "declined", actor, "referral_decline", reason)
        _end_access(con)
        ended = pl.DataFrame(
            {"tenant_id": [tenant_id], "policy": [ref["policy"]], "workloads": [ref["workloads"]]},
            schema=ENDED_SCHEMA,
        )
        source = f"re-assignment after {ref['partner_id']} declined ({reason})"
        (follow,) = _reassign(con, rules, ended, actor, source)
        drained = _place_held(con, rules, actor)
    return _change(ref, tenant_id, "declined", follow, drained)


def _end_access(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """The partner of a referral that ended without completion loses the customer: its
    open task and unsent messages are cancelled now (caller's transaction). Returns
    (tasks, messages) cancelled."""
    return tasks.cancel_ended(con), outbox.cancel_undeliverable(con)


def _reassign(
    con: duckdb.DuckDBPyConnection,
    rules: Rules,
    ended: pl.DataFrame,
    actor: str,
    source: str,
) -> list[CommitSummary]:
    """Run again the ended referrals of ``ended`` (tenant_id, the policy of the run that
    made them, their workloads; in this order), one run per policy, each customer with
    only the ended workloads (a split customer's other parts stay as they are; parts of
    one customer ending together go together), never matching a partner that declined
    or let expire a referral of it for any of them (caller's transaction)."""
    merged = ended.group_by("tenant_id", maintain_order=True).agg(
        pl.col("policy").first(),
        pl.col("workloads")
        .list.explode(keep_nulls=False, empty_as_null=False)
        .unique(maintain_order=True),
    )
    with registered(con, ended_refs=merged.with_row_index("_pos").to_arrow()):
        cols = ", ".join(f"c.{c}" if c != "workloads" else "e.workloads" for c in CUSTOMER_SCHEMA)
        cohort = state.query(
            con,
            f"SELECT {cols}, e.policy FROM ended_refs e JOIN customers c USING (tenant_id) "
            "ORDER BY e._pos",
        )
    cohort = cohort.with_columns(pl.col("policy").fill_null(Policy.ROUND_ROBIN.value))
    return [
        commit_within(
            con,
            rules,
            Policy(str(policy)),
            group.drop("policy").cast(CUSTOMER_SCHEMA),
            actor=actor,
            source=source,
            reassigning=True,
        )
        for (policy,), group in cohort.group_by("policy", maintain_order=True)
    ]


#: What :func:`_reassign` takes: an ended referral's customer, run policy and workloads.
ENDED_SCHEMA = pl.Schema(
    {"tenant_id": pl.String(), "policy": pl.String(), "workloads": pl.List(pl.String())}
)


@dataclass(frozen=True)
class Due:
    """What :func:`expire` would do at ``at``: referrals past their acceptance window, and
    referrals whose partner and PSM are due a reminder (two messages each)."""

    at: datetime
    expiring: int
    reminders: int

    def describe(self) -> str:
        return (
            f"{self.expiring:,} referral{'s' if self.expiring != 1 else ''} past their window, "
            f"{self.reminders:,} reminder{'s' if self.reminders != 1 else ''} due"
        )


@dataclass(frozen=True)
class ExpirySummary:
    """What one :func:`expire` run did."""

    at: datetime
    expired: int
    follow_ups: tuple[CommitSummary, ...] = ()
    drained: CommitSummary | None = None
    reminded: int = 0  # referrals reminded (two messages each: partner, PSM)
    reminders: int = 0  # messages queued
    tasks_cancelled: int = 0
    messages_cancelled: int = 0

    @property
    def to_partners(self) -> int:
        return sum(f.placed for f in self.follow_ups)

    @property
    def to_css(self) -> int:
        return sum(f.css for f in self.follow_ups)

    @property
    def held(self) -> int:
        return sum(f.held for f in self.follow_ups)

    @property
    def changed(self) -> bool:
        return bool(self.expired or self.reminded)

    def describe(self) -> str:
        when = f"{self.at:%Y-%m-%d %H:%M}"
        if not self.changed:
            return f"nothing to do at {when}: no referral past its window, no reminder due"
        text = (
            f"at {when}: {self.expired:,} referrals expired (no response): "
            f"{self.to_partners:,} re-assigned to partners, {self.to_css:,} to CSS queues, "
            f"{self.held:,} held"
        )
        if self.drained is not None and self.drained.placed:
            text += f"; {self.drained.placed:,} held customers placed"
        if self.tasks_cancelled or self.messages_cancelled:
            text += (
                f"; {self.tasks_cancelled:,} FTOP tasks and {self.messages_cancelled:,} "
                "unsent notifications cancelled"
            )
        if not self.reminded:
            return text + "; no reminder due"
        return text + (
            f"; {self.reminders:,} reminders queued ({self.reminded:,} referrals, "
            "to partner and PSM)"
        )


def _expiring(rules: Rules, at: datetime) -> tuple[str, list]:
    """SQL condition on referrals ``r`` (and its parameters): partner referrals still
    active when their acceptance window closed, at ``at``."""
    if not rules.accept_within_days:
        return "FALSE", []
    cutoff = at - timedelta(days=rules.accept_within_days)
    return "r.outcome = 'frp' AND r.status = 'active' AND r.created_at <= ?", [cutoff]


def _to_remind(rules: Rules, at: datetime) -> tuple[str, list]:
    """SQL condition on referrals ``r``: active, not reminded yet, waiting
    ``remind_after_days`` at ``at``, and not expiring now (those are expired first)."""
    if not rules.remind_after_days:
        return "FALSE", []
    cutoff = at - timedelta(days=rules.remind_after_days)
    where = "r.outcome = 'frp' AND r.status = 'active' AND r.reminded_at IS NULL"
    where += " AND r.created_at <= ?"
    if not rules.accept_within_days:
        return where, [cutoff]
    return where + " AND r.created_at > ?", [cutoff, at - timedelta(days=rules.accept_within_days)]


def due(con: duckdb.DuckDBPyConnection, rules: Rules) -> Due:
    """What :func:`expire` would do at the clock's now; writes nothing."""
    at = clock.now()
    (exp_where, exp_params), (rem_where, rem_params) = _expiring(rules, at), _to_remind(rules, at)
    expiring, reminders = con.execute(
        f"SELECT (SELECT count(*) FROM referrals r WHERE {exp_where}), "
        f"(SELECT count(*) FROM referrals r WHERE {rem_where})",
        [*exp_params, *rem_params],
    ).fetchall()[0]
    return Due(at, int(expiring), 2 * int(reminders))


def expire(con: duckdb.DuckDBPyConnection, rules: Rules, *, actor: str = "cli") -> ExpirySummary:
    """Apply the clock, in one transaction: expire the referrals past their acceptance window
    (a decline with reason ``no_response``), re-assign their customers as after a decline,
    and queue the reminders due. Sends nothing; at the same "now" a second run finds
    nothing to do and writes nothing (not even an audit entry)."""
    with transaction(con):
        at = clock.now()
        expired = _expire_referrals(con, rules, at, actor)
        cancelled = _end_access(con) if expired.height else (0, 0)
        source = f"re-assignment after {expired.height:,} referrals expired ({NO_RESPONSE})"
        follow = _reassign(con, rules, expired, actor, source) if expired.height else []
        drained = _place_held(con, rules, actor) if expired.height else None
        reminded, queued = _remind(con, rules, at)
        summary = ExpirySummary(
            at, expired.height, tuple(follow), drained, reminded, queued, *cancelled
        )
        if summary.changed:
            audit(con, actor, "expire", None, json.dumps(_audit_details(summary)))
    return summary


def _audit_details(summary: ExpirySummary) -> dict:
    return {
        "at": summary.at.isoformat(),
        "expired": summary.expired,
        "to_partners": summary.to_partners,
        "to_css": summary.to_css,
        "held": summary.held,
        "runs": [f.run_id for f in summary.follow_ups if f.run_id is not None],
        "reminded": summary.reminded,
        "tasks_cancelled": summary.tasks_cancelled,
        "messages_cancelled": summary.messages_cancelled,
    }


def _expire_referrals(
    con: duckdb.DuckDBPyConnection, rules: Rules, at: datetime, actor: str
) -> pl.DataFrame:
    """Mark the referrals past their window ``expired`` (one audit entry each, as for a
    decline); returns their tenant_id, run policy and workloads, oldest referral first."""
    where, params = _expiring(rules, at)
    ended = state.query(
        con,
        "SELECT r.referral_id, r.tenant_id, r.partner_id, runs.policy, "
        "coalesce(r.workloads, r.eligible_workloads) AS workloads "
        f"FROM referrals r LEFT JOIN runs USING (run_id) WHERE {where} ORDER BY r.referral_id",
        params,
    )
    if ended.height == 0:
        return ended.select(*ENDED_SCHEMA)
    with registered(con, expiring=ended.to_arrow()):
        con.execute(
            "UPDATE referrals SET status = 'expired', decline_reason = ?, updated_at = ? "
            "WHERE referral_id IN (SELECT referral_id FROM expiring)",
            [NO_RESPONSE, at],
        )
        con.execute(
            """
            INSERT INTO audit_log
            SELECT nextval('audit_seq'), ?, ?, 'referral_expire', tenant_id,
                   json_object('referral_id', referral_id, 'partner_id', partner_id,
                               'before', json_object('status', 'active'),
                               'after', json_object('status', 'expired',
                                                    'decline_reason', ?))::VARCHAR
            FROM expiring ORDER BY referral_id
            """,
            [at, actor, NO_RESPONSE],
        )
    return ended.select(*ENDED_SCHEMA)


def _remind(con: duckdb.DuckDBPyConnection, rules: Rules, at: datetime) -> tuple[int, int]:
    """Queue the reminders due and mark their referrals reminded (never twice); returns
    (referrals reminded, messages queued)."""
    where, params = _to_remind(rules, at)
    waiting = state.query(
        con,
        f"""
        SELECT r.referral_id, r.tenant_id, c.name AS customer_name,
               c.contact_email AS customer_email,
               coalesce(r.workloads, r.eligible_workloads) AS eligible_workloads, r.partner_id,
               p.name AS partner_name, p.contact_email AS partner_email, r.psm_name,
               r.psm_email, c.language, c.country, r.created_at
        FROM referrals r JOIN customers c USING (tenant_id) JOIN partners p USING (partner_id)
        WHERE {where} ORDER BY r.referral_id
        """,
        params,
    )
    if waiting.height == 0:
        return 0, 0
    deadline = [rules.accept_by(made) for made in waiting["created_at"]]
    waiting = waiting.with_columns(pl.Series("accept_by", deadline, dtype=pl.Datetime("us")))
    queued = outbox.queue_messages(con, reminder_messages(waiting))
    with registered(con, reminded=waiting.select("referral_id").to_arrow()):
        con.execute(
            "UPDATE referrals SET reminded_at = ? "
            "WHERE referral_id IN (SELECT referral_id FROM reminded)",
            [at],
        )
    return waiting.height, queued


def drain(
    con: duckdb.DuckDBPyConnection,
    rules: Rules,
    policy: Policy | str | None = None,
    *,
    actor: str = "cli",
) -> CommitSummary:
    """Place customers held in the FTCQ (oldest first) where partners now have room."""
    with transaction(con):
        return _drain_within(con, rules, policy, actor)


def held(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Customers waiting in the FTCQ for a full pool to free a seat, oldest first."""
    cols = ", ".join(CUSTOMER_SCHEMA)
    return state.query(
        con,
        f"SELECT {cols} FROM customers WHERE in_ftcq AND held_since IS NOT NULL ORDER BY ftcq_seq",
    ).cast(CUSTOMER_SCHEMA)


def _drain_within(
    con: duckdb.DuckDBPyConnection, rules: Rules, policy: Policy | str | None, actor: str
) -> CommitSummary:
    cohort = held(con)
    return commit_within(
        con,
        rules,
        policy or Policy.ROUND_ROBIN,
        cohort,
        actor=actor,
        source="drain: customers held for capacity",
    )


def _place_held(con: duckdb.DuckDBPyConnection, rules: Rules, actor: str) -> CommitSummary | None:
    """A seat was freed: customers held for capacity take it, when the rules hold them
    (``when_full = "hold"``)."""
    return _drain_within(con, rules, None, actor) if rules.when_full == "hold" else None


__all__ = [
    "DECLINE_REASONS",
    "OPEN_STATUSES",
    "Change",
    "Due",
    "ExpirySummary",
    "accept",
    "complete",
    "decline",
    "drain",
    "due",
    "expire",
]
