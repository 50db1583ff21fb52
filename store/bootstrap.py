"""Building the demo database from the seeded demo world.

The file is built under a temporary name and renamed into place, so an interrupted
build never leaves a half-filled database where the dashboard would open it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from engine.demo import generate_world
from engine.rules import Rules, load_rules
from store import clock
from store.db import audit, connect, registered, transaction
from store.imports import import_customers, import_partners


def build_demo(
    path: str | Path, *, seed: int = 7, replace: bool = False, rules: Rules | None = None
) -> dict[str, int]:
    """Write the demo world to ``path``; returns what it holds (for the caller to report)."""
    target = Path(path)
    if target.exists() and not replace:
        raise FileExistsError(target)
    rules = rules or load_rules()
    world = generate_world(seed)
    tmp = target.with_name(f".{target.name}.building")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    con = connect(tmp)
    try:
        # Open referrals of the history are stored as referrals, so the partners' own
        # count of referrals held elsewhere starts at zero (no double counting).
        import_partners(
            con,
            world.partners.with_columns(pl.lit(0).alias("active_referrals")),
            actor="demo",
            source="demo world",
        )
        _load_history(con, world.referrals, rules)
        import_customers(con, world.customers, actor="demo", source="demo world")
        with transaction(con):
            audit(con, "demo", "build_demo", str(target), json.dumps({"seed": seed}))
        con.execute("CHECKPOINT")
    finally:
        con.close()
    for old in (target, target.with_name(target.name + ".wal")):
        old.unlink(missing_ok=True)
    os.replace(tmp, target)
    partners = world.partners
    return {
        "partners": partners.height,
        "countries": partners["countries"].explode().n_unique(),
        "languages": partners["languages"].explode().n_unique(),
        "past_referrals": world.referrals.height,
        "backlog": world.customers.height,
    }


def ensure_demo(path: str | Path) -> bool:
    """Build the demo at ``path`` unless a database is already there; True if built."""
    if Path(path).exists():
        return False
    build_demo(path)
    return True


def _load_history(con, referrals: pl.DataFrame, rules: Rules) -> None:
    eligible = list(rules.eligible_workloads)
    hist = referrals.with_row_index("_i").with_columns(
        pl.col("customer_workloads")
        .list.eval(pl.element().filter(pl.element().is_in(eligible)))
        .list.sort()
        .alias("eligible_workloads"),
        pl.col("customer_country")
        .replace_strict(rules.region_of_country, return_dtype=pl.String)
        .alias("region"),
    )
    customers = hist.unique("tenant_id", keep="last", maintain_order=True).select(
        "tenant_id",
        pl.col("customer_name").alias("name"),
        pl.col("customer_country").alias("country"),
        pl.col("customer_language").alias("language"),
        pl.col("customer_seats").alias("seats"),
        pl.col("customer_workloads").alias("workloads"),
        pl.col("customer_gateway").alias("gateway"),
        (
            pl.col("customer_contact_email")
            if "customer_contact_email" in hist.columns
            else pl.format("onboarding@{}.example", pl.col("tenant_id").str.to_lowercase())
        ).alias("contact_email"),
        pl.lit(True).alias("referral_consent"),
    )
    with (
        transaction(con),
        registered(con, hist=hist.to_arrow(), hist_customers=customers.to_arrow()),
    ):
        con.execute(
            """
            INSERT INTO customers BY NAME
            SELECT *, false AS in_ftcq, 0 AS ftcq_seq, ?::TIMESTAMP AS queued_at
            FROM hist_customers
            WHERE tenant_id NOT IN (SELECT tenant_id FROM customers)
            """,
            [clock.now()],
        )
        con.execute(
            """
            INSERT INTO referrals BY NAME
            SELECT h._i + 1 AS referral_id, NULL AS run_id, h.tenant_id, h.outcome,
                   h.partner_id, p.psm_name, p.psm_email, h.queue, h.reason, h.status,
                   'history: imported with the demo world' AS trace, NULL AS pool_key,
                   h.region, h.customer_country AS country, h.customer_language AS language,
                   h.eligible_workloads, h.created_at, h.created_at AS updated_at,
                   1 AS part, h.eligible_workloads AS workloads
            FROM hist h LEFT JOIN partners p USING (partner_id)
            ORDER BY h._i
            """
        )
