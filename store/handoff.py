"""The hand-off of CSS referrals to the delivery team ("Assign Delivery Resources").

A customer sent to a CSS regional queue gets a referral with outcome ``css`` and status
``queued``; the next step happens outside this product. A manager lists a queue's open
CSS referrals with what the delivery team needs (:func:`open_referrals`; `frp css export`
and the Referrals page's download write it as CSV), then marks them ``handed_off``
(:func:`hand_off`): once, in one transaction, with an audit entry per referral.

A handed-off referral holds no partner seat (CSS referrals never do) but stays open for
its customer: later runs skip the customer and a re-import does not put it back in the
FTCQ (``store.db.OPEN_STATUSES``). See docs/domain.md, "Referral life cycle".

Stores written before ``queued`` existed kept waiting CSS referrals as ``active``; the
step to schema version 4 (store/migrations.py) makes them ``queued``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import polars as pl

from engine.reasons import Outcome
from store import clock, state
from store.db import QUEUED, registered, transaction
from store.errors import StoreError
from store.privacy import customers_sql

HANDED_OFF = "handed_off"
ACTION = "css_handoff"

#: What the delivery team needs about each customer, in this order (`frp css export`).
EXPORT_COLUMNS = (
    "tenant_id",
    "customer_name",
    "country",
    "language",
    "seats",
    "eligible_workloads",
    "gateway",
    "contact_email",
    "queue",
    "reason",
    "created_at",
    "referral_id",
)

_OPEN_CSS = f"r.outcome = '{Outcome.CSS.value}' AND r.status = '{QUEUED}'"
_UP_TO = "r.referral_id <= coalesce(?, r.referral_id)"


@dataclass(frozen=True)
class HandOff:
    """What one hand-off moved: the referrals (by id) and the queues they were in."""

    referral_ids: tuple[int, ...]
    queues: tuple[str, ...]

    def describe(self) -> str:
        n = len(self.referral_ids)
        if n == 0:
            return "nothing handed off: no open CSS referral was left to hand off"
        where = ", ".join(self.queues)
        first, last = self.referral_ids[0], self.referral_ids[-1]
        ids = f"referral {first}" if n == 1 else f"referrals {first} to {last}"
        return f"{n:,} CSS referral{'s' * (n != 1)} of {where} handed off ({ids})"


def queues(con: state.Con) -> pl.DataFrame:
    """Every CSS queue that has referrals, by name: ``queue, open`` (``queued``, waiting
    for the hand-off) ``, handed_off, last_open`` (the newest open referral's id:
    a list and a hand-off up to it cover the same referrals)."""
    return state.query(
        con,
        f"""
        SELECT queue, count(*) FILTER (WHERE status = '{QUEUED}') AS open,
               count(*) FILTER (WHERE status = '{HANDED_OFF}') AS handed_off,
               max(referral_id) FILTER (WHERE status = '{QUEUED}') AS last_open
        FROM referrals WHERE outcome = '{Outcome.CSS.value}'
        GROUP BY queue ORDER BY queue
        """,
    )


def open_referrals(
    con: state.Con,
    queue: str,
    up_to: int | None = None,
    limit: int | None = None,
    *,
    personal: bool = False,
) -> pl.DataFrame:
    """The queue's open CSS referrals (up to referral ``up_to`` when given), oldest first,
    as ``EXPORT_COLUMNS`` (a customer's CSS part: its workloads only), at most ``limit``;
    an unknown queue is a StoreError naming the
    known ones. The customers' personal fields are masked unless ``personal`` (what
    delivery is sent; a viewer's table and file are not)."""
    _known(con, queue)
    return state.query(
        con,
        f"""
        SELECT r.tenant_id, c.name AS customer_name, r.country, r.language, c.seats,
               coalesce(r.workloads, r.eligible_workloads) AS eligible_workloads,
               c.gateway, c.contact_email, r.queue, r.reason,
               r.created_at, r.referral_id
        FROM referrals r LEFT JOIN {customers_sql(personal)} c USING (tenant_id)
        WHERE {_OPEN_CSS} AND r.queue = ? AND {_UP_TO}
        ORDER BY r.referral_id
        LIMIT ?
        """,
        [queue, up_to, limit],
    )


def hand_off(
    con: duckdb.DuckDBPyConnection,
    *,
    queue: str | None = None,
    referral_ids: Sequence[int] | None = None,
    up_to: int | None = None,
    actor: str = "cli",
) -> HandOff:
    """Move open CSS referrals ``queued`` -> ``handed_off``: those of ``queue`` (only up to
    referral ``up_to``, the last one exported, when given: referrals made since have not
    reached the delivery team), or exactly ``referral_ids``, each of which must be an open
    CSS referral. One transaction; an audit entry per referral, naming its customer."""
    if (queue is None) == (referral_ids is None):
        raise StoreError("hand off either a queue or a list of referrals")
    with transaction(con):
        if queue is not None:
            targets = _queue_targets(con, queue, up_to)
        else:
            targets = _chosen(con, list(referral_ids or ()))
        if targets.height:
            _move(con, targets.select("referral_id"), actor)
    return HandOff(
        tuple(targets["referral_id"].to_list()),
        tuple(sorted(set(targets["queue"].to_list()))),
    )


def _known(con: state.Con, queue: str) -> None:
    known = queues(con)["queue"].to_list()
    if queue not in known:
        names = ", ".join(known) or "none yet"
        raise StoreError(f"no CSS referral was ever sent to queue {queue!r}; queues: {names}")


def _queue_targets(con: state.Con, queue: str, up_to: int | None) -> pl.DataFrame:
    _known(con, queue)
    return state.query(
        con,
        f"SELECT r.referral_id, r.queue FROM referrals r WHERE {_OPEN_CSS} AND r.queue = ? "
        f"AND {_UP_TO} ORDER BY r.referral_id",
        [queue, up_to],
    )


def _chosen(con: state.Con, referral_ids: list[int]) -> pl.DataFrame:
    """The given referrals, each checked: it exists, is a CSS referral, is still open."""
    if not referral_ids:
        raise StoreError("no referral given to hand off")
    found = state.query(
        con,
        "SELECT referral_id, outcome, status, queue FROM referrals "
        "WHERE list_contains(?, referral_id) ORDER BY referral_id",
        [sorted(set(referral_ids))],
    )
    known = {r["referral_id"]: r for r in found.iter_rows(named=True)}
    for rid in sorted(set(referral_ids)):
        ref = known.get(rid)
        if ref is None:
            raise StoreError(f"referral {rid} does not exist; nothing was handed off")
        if ref["outcome"] != Outcome.CSS.value:
            raise StoreError(
                f"referral {rid} went to a partner, not to a CSS queue; only CSS referrals "
                "are handed off"
            )
        if ref["status"] != QUEUED:
            raise StoreError(f"referral {rid} is already {ref['status']}; nothing was handed off")
    return found.select("referral_id", "queue")


def _move(con: duckdb.DuckDBPyConnection, targets: pl.DataFrame, actor: str) -> None:
    """The status change and its audit entries (before and after, as the life cycle's)."""
    at = clock.now()
    with registered(con, handoff_targets=targets.to_arrow()):
        con.execute(
            f"UPDATE referrals SET status = '{HANDED_OFF}', updated_at = ? "
            "WHERE referral_id IN (SELECT referral_id FROM handoff_targets)",
            [at],
        )
        con.execute(
            f"""
            INSERT INTO audit_log
            SELECT nextval('audit_seq'), ?, ?, '{ACTION}', r.tenant_id,
                   json_object('referral_id', r.referral_id, 'queue', r.queue,
                               'before', json_object('status', '{QUEUED}'),
                               'after', json_object('status', '{HANDED_OFF}'))::VARCHAR
            FROM referrals r JOIN handoff_targets USING (referral_id)
            ORDER BY r.referral_id
            """,
            [at, actor],
        )
