"""FTOP task 3186, "(Gateway Only) Completion of Referral Process": opening, listing, closing.

A commit opens one task per Gateway customer referred to a partner, inside its own
transaction (:func:`open_gateway_tasks`); the FastTrack Manager closes it once the
referral process is complete. Closing sets
``status = 'closed'`` and ``closed_at``, and writes an audit entry, in one transaction.
A referral that ends without completion (declined, expired) takes the partner's access
with it: its open task becomes ``cancelled`` in the same transaction
(:func:`cancel_ended`), and the customer's next partner referral opens its own.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import polars as pl

from engine.reasons import FTOP_TASK_ID, FTOP_TASK_NAME, FTOP_TASK_ROLE, FTOP_TASK_SERVICE
from store import clock, state
from store.db import DELIVERABLE, OPEN_STATUSES, audit, registered, transaction
from store.errors import StoreError
from store.privacy import customers_sql

Con = duckdb.DuckDBPyConnection
STATUSES = ("open", "closed", "cancelled")


class TaskError(StoreError):
    """A task that cannot be closed (unknown, or closed already); the message says which."""


def open_gateway_tasks(con: Con, referred: pl.DataFrame) -> int:
    """Open a task for each Gateway customer of the FRP referrals ``referred``
    (referral_id, tenant_id, partner_id, gateway), on its first part, unless it has an open
    task already (another part of it is open), in the caller's transaction, so the tasks
    exist exactly when the commit's referrals do; returns how many were opened."""
    base = con.execute("SELECT coalesce(max(task_id), 0) FROM ftop_tasks").fetchall()[0][0]
    having = state.query(con, "SELECT DISTINCT tenant_id FROM ftop_tasks WHERE status = 'open'")
    opened = (
        referred.filter(pl.col("gateway"))
        .unique("tenant_id", keep="first", maintain_order=True)
        .join(having, on="tenant_id", how="anti", maintain_order="left")
        .with_row_index("_i")
        .select(
            (pl.col("_i").cast(pl.Int64) + base + 1).alias("task_id"),
            pl.lit(FTOP_TASK_ID, dtype=pl.Int32).alias("task_number"),
            pl.lit(FTOP_TASK_NAME).alias("name"),
            "tenant_id",
            "referral_id",
            "partner_id",
            pl.lit(FTOP_TASK_ROLE).alias("role"),
            pl.lit(FTOP_TASK_SERVICE).alias("service"),
            pl.lit(True).alias("mandatory"),
            pl.lit("open").alias("status"),
        )
    )
    with registered(con, run_tasks=opened.to_arrow()):
        con.execute(
            "INSERT INTO ftop_tasks BY NAME SELECT *, ?::TIMESTAMP AS created_at FROM run_tasks",
            [clock.now()],
        )
    return opened.height


def cancel_ended(con: Con) -> int:
    """Cancel the open tasks of referrals that ended without completion, in the caller's
    transaction (the change that ended them); returns how many. A split customer's task
    stays open while any of its partner parts does: it moves to the oldest of them."""
    con.execute(
        """
        UPDATE ftop_tasks SET referral_id = o.referral_id, partner_id = o.partner_id
        FROM referrals r, (
            SELECT tenant_id, arg_min(referral_id, referral_id) AS referral_id,
                   arg_min(partner_id, referral_id) AS partner_id
            FROM referrals WHERE outcome = 'frp' AND list_contains(?::VARCHAR[], status)
            GROUP BY tenant_id
        ) o
        WHERE ftop_tasks.referral_id = r.referral_id AND ftop_tasks.status = 'open'
          AND NOT list_contains(?::VARCHAR[], r.status) AND o.tenant_id = r.tenant_id
        """,
        [list(OPEN_STATUSES), list(DELIVERABLE)],
    )
    rows = con.execute(
        """
        UPDATE ftop_tasks SET status = 'cancelled', closed_at = ?
        FROM referrals r
        WHERE ftop_tasks.referral_id = r.referral_id AND ftop_tasks.status = 'open'
          AND NOT list_contains(?::VARCHAR[], r.status)
        RETURNING ftop_tasks.task_id
        """,
        [clock.now(), list(DELIVERABLE)],
    ).fetchall()
    return len(rows)


def tasks(con: Con, status: str | None = None, *, personal: bool = False) -> pl.DataFrame:
    """Tasks, oldest first, with the customer's and partner's names (the customer's masked
    unless ``personal``); ``status`` filters."""
    if status is not None and status not in STATUSES:
        raise TaskError(f"task status {status!r}: expected one of {', '.join(STATUSES)}")
    where, params = ("t.status = ?", [status]) if status else ("TRUE", [])
    return state.query(
        con,
        f"""
        SELECT t.task_id, t.task_number, t.status, t.tenant_id, c.name AS customer,
               t.partner_id, p.name AS partner, t.referral_id, t.created_at, t.closed_at
        FROM ftop_tasks t
        LEFT JOIN {customers_sql(personal)} c ON c.tenant_id = t.tenant_id
        LEFT JOIN partners p ON p.partner_id = t.partner_id
        WHERE {where}
        ORDER BY t.task_id
        """,
        params,
    )


def close(con: Con, task_id: int, *, actor: str = "cli") -> dict[str, Any]:
    """Close one open task; returns it as closed. Unknown, closed or cancelled: TaskError."""
    with transaction(con):
        rows = con.execute(
            "SELECT task_id, task_number, status, tenant_id, referral_id, partner_id, closed_at "
            "FROM ftop_tasks WHERE task_id = ?",
            [task_id],
        ).fetchall()
        if not rows:
            raise TaskError(f"task {task_id}: no such FTOP task (see `frp task list`)")
        _, number, status, tenant, referral, partner, closed_at = rows[0]
        if status != "open":
            when = f" on {closed_at:%Y-%m-%d %H:%M}" if closed_at else ""
            raise TaskError(f"task {task_id}: already {status}{when}; nothing changed")
        con.execute(
            "UPDATE ftop_tasks SET status = 'closed', closed_at = ? WHERE task_id = ?",
            [clock.now(), task_id],
        )
        audit(
            con,
            actor,
            "close_task",
            f"task {task_id}",
            json.dumps(
                {
                    "task_number": number,
                    "tenant_id": tenant,
                    "referral_id": referral,
                    "partner_id": partner,
                }
            ),
        )
        closed = con.execute(
            "SELECT task_id, task_number, status, tenant_id, referral_id, partner_id, "
            "created_at, closed_at FROM ftop_tasks WHERE task_id = ?",
            [task_id],
        ).fetchall()[0]
    keys = (
        "task_id",
        "task_number",
        "status",
        "tenant_id",
        "referral_id",
        "partner_id",
        "created_at",
        "closed_at",
    )
    return dict(zip(keys, closed, strict=True))
