"""The referral life cycle after a commit: accept, decline (and re-assign), complete, drain.

A referral to a partner starts ``active``. The partner accepts it (``accepted``), declines
it with a reason (``declined``: the customer is re-assigned at once by the same policy,
never to a partner that declined it, and goes to its CSS queue as
``declined_by_partners`` after ``rules.max_declines`` declines), or completes it
(``completed``: the seat is free again). Each change and its follow-up run share one
transaction and leave an audit entry with who, what, and the status before and after.
With ``when_full = "hold"`` customers whose matching partners were all full wait in the
FTCQ; a freed seat (complete, decline) or ``frp drain`` places them, oldest first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import polars as pl

from engine.columns import CUSTOMER_SCHEMA
from engine.reasons import DECLINE_REASONS, Policy
from engine.rules import Rules
from store import clock, state
from store.commits import CommitSummary, commit_within
from store.db import OPEN_SQL, OPEN_STATUSES, audit, transaction
from store.errors import StoreError


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


def _open_referral(con: duckdb.DuckDBPyConnection, tenant_id: str) -> dict:
    rows = state.query(
        con,
        "SELECT r.referral_id, r.partner_id, r.status, r.run_id, runs.policy "
        "FROM referrals r LEFT JOIN runs USING (run_id) "
        f"WHERE r.tenant_id = ? AND r.outcome = 'frp' AND r.status IN {OPEN_SQL} "
        "ORDER BY r.referral_id DESC",
        [tenant_id],
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


def accept(con: duckdb.DuckDBPyConnection, tenant_id: str, *, actor: str = "cli") -> Change:
    with transaction(con):
        ref = _open_referral(con, tenant_id)
        if ref["status"] != "active":
            raise StoreError(
                f"{tenant_id}: referral {ref['referral_id']} is already {ref['status']}"
            )
        _set_status(con, ref, tenant_id, "accepted", actor, "referral_accept")
    return _change(ref, tenant_id, "accepted")


def complete(
    con: duckdb.DuckDBPyConnection, tenant_id: str, rules: Rules, *, actor: str = "cli"
) -> Change:
    """The partner finished onboarding: its seat is free (and held customers may take it)."""
    with transaction(con):
        ref = _open_referral(con, tenant_id)
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
) -> Change:
    """Record the decline and re-assign the customer by its run's policy, in one transaction."""
    if reason not in DECLINE_REASONS:
        raise StoreError(f"decline reason {reason!r} is not one of: " + ", ".join(DECLINE_REASONS))
    with transaction(con):
        ref = _open_referral(con, tenant_id)
        _set_status(con, ref, tenant_id, "declined", actor, "referral_decline", reason)
        declined = state.query(
            con,
            "SELECT DISTINCT partner_id FROM referrals WHERE tenant_id = ? AND status = 'declined'",
            [tenant_id],
        )["partner_id"].to_list()
        cohort = _customer(con, tenant_id)
        policy = Policy(ref["policy"]) if ref["policy"] else Policy.ROUND_ROBIN
        follow = commit_within(
            con,
            rules,
            policy,
            cohort,
            actor=actor,
            source=f"re-assignment after {ref['partner_id']} declined ({reason})",
            excluded={tenant_id: declined},
        )
        drained = _place_held(con, rules, actor)
    return _change(ref, tenant_id, "declined", follow, drained)


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


def _customer(con: duckdb.DuckDBPyConnection, tenant_id: str) -> pl.DataFrame:
    cols = ", ".join(CUSTOMER_SCHEMA)
    frame = state.query(con, f"SELECT {cols} FROM customers WHERE tenant_id = ?", [tenant_id])
    if frame.height == 0:
        raise StoreError(f"{tenant_id} is not a known customer")
    return frame.cast(CUSTOMER_SCHEMA)


__all__ = ["DECLINE_REASONS", "OPEN_STATUSES", "Change", "accept", "complete", "decline", "drain"]
