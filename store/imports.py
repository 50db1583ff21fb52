"""Importing partners and customers: validated frames in, one transaction, an audit entry.

Validation happens before anything is written (``engine.schema``), and the writes of one
import share a transaction, so a bad file or a crash leaves the store as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import polars as pl

from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA, PARTNER_SIZES, TEXT_LIST
from store import clock
from store.db import OPEN_SQL, audit, registered, transaction


@dataclass(frozen=True)
class ImportSummary:
    kind: str
    added: int
    updated: int
    queued: int = 0  # customers that joined the FTCQ backlog

    def describe(self) -> str:
        text = f"{self.kind}: {self.added} added, {self.updated} updated"
        if self.kind == "customers":
            text += f", {self.queued} now waiting in the FTCQ"
        return text


def import_partners(
    con: duckdb.DuckDBPyConnection, partners: pl.DataFrame, *, actor: str = "cli", source: str = ""
) -> ImportSummary:
    """Add or replace partners by partner_id; a last_assigned column also sets the order.
    A file without the optional ``sizes`` column leaves its partners taking every size."""
    sizes = (
        pl.col(PARTNER_SIZES)
        if PARTNER_SIZES in partners.columns
        else pl.lit(None, dtype=TEXT_LIST).alias(PARTNER_SIZES)
    )
    frame = partners.select(*PARTNER_SCHEMA, sizes)
    with transaction(con):
        with registered(con, incoming_partners=frame.to_arrow()):
            existing = con.execute(
                "SELECT count(*) FROM partners JOIN incoming_partners USING (partner_id)"
            ).fetchall()[0][0]
            con.execute(
                """
                INSERT OR REPLACE INTO partners BY NAME
                SELECT partner_id, name, countries, languages, workloads, capacity,
                       active_referrals, referral_ready, psm_name, psm_email, contact_email,
                       paused_until, monthly_quota, sizes, ?::TIMESTAMP AS updated_at
                FROM incoming_partners
                """,
                [clock.now()],
            )
            con.execute(
                """
                INSERT OR REPLACE INTO rr_order
                SELECT partner_id, last_assigned FROM incoming_partners
                WHERE last_assigned IS NOT NULL
                """
            )
            summary = ImportSummary("partners", frame.height - existing, existing)
            audit(con, actor, "import_partners", source or None, json.dumps(summary.__dict__))
    return summary


def import_customers(
    con: duckdb.DuckDBPyConnection,
    customers: pl.DataFrame,
    *,
    actor: str = "cli",
    source: str = "",
    queue: bool = True,
) -> ImportSummary:
    """Add customers to the store; new ones (without an open referral) join the FTCQ.

    A customer already known keeps its place (or absence) in the queue and gets its
    details updated: re-importing a file must not push anyone to the back of the line.
    """
    frame = customers.select(list(CUSTOMER_SCHEMA)).with_row_index("_pos")
    with transaction(con):
        base = con.execute("SELECT coalesce(max(ftcq_seq), 0) FROM customers").fetchall()[0][0]
        with registered(con, incoming_customers=frame.to_arrow()):
            existing = con.execute(
                "SELECT count(*) FROM customers JOIN incoming_customers USING (tenant_id)"
            ).fetchall()[0][0]
            con.execute(
                """
                UPDATE customers SET name = i.name, country = i.country, language = i.language,
                    seats = i.seats, workloads = i.workloads, gateway = i.gateway,
                    contact_email = i.contact_email, referral_consent = i.referral_consent
                FROM incoming_customers i WHERE customers.tenant_id = i.tenant_id
                """
            )
            con.execute(
                f"""
                INSERT INTO customers BY NAME
                SELECT i.tenant_id, i.name, i.country, i.language, i.seats, i.workloads,
                       i.gateway, i.contact_email, i.referral_consent,
                       ? AND NOT EXISTS (
                           SELECT 1 FROM referrals r WHERE r.tenant_id = i.tenant_id
                           AND r.status IN {OPEN_SQL}) AS in_ftcq,
                       ? + i._pos + 1 AS ftcq_seq, ?::TIMESTAMP AS queued_at
                FROM incoming_customers i
                WHERE i.tenant_id NOT IN (SELECT tenant_id FROM customers)
                ORDER BY i._pos
                """,
                [queue, base, clock.now()],
            )
            queued = con.execute(
                "SELECT count(*) FROM customers c JOIN incoming_customers USING (tenant_id) "
                "WHERE c.in_ftcq"
            ).fetchall()[0][0]
            summary = ImportSummary("customers", frame.height - existing, existing, queued)
            audit(con, actor, "import_customers", source or None, json.dumps(summary.__dict__))
    return summary
