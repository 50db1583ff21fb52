"""Purging a customer's personal data while keeping the anonymous history fairness needs.

A deletion request (docs/domain.md: personal data must be deleted within 30 days) removes the
customer's name and contact email, the bodies, subjects and customer addresses of the
notifications about it (pending ones are cancelled: nothing about it goes out any more),
and every other mention of its name, email or tenant id in the store's text (traces,
audit entries). What the fairness history counts stays: referral
rows keep outcome, partner, reason, queue, region, language and workloads, and the
customer row keeps country, language, seats and workloads, all under a pseudonym.

The pseudonym is ``purged-`` and a keyed hash of the tenant id: stable (the same tenant
always gets the same one in this database) but not reversible from the data alone,
because the key is a random secret kept in the ``meta`` table, not a plain hash a
list of tenant ids could be run through.

The same module says what a viewer of the dashboard may not see: :data:`PERSONAL` is the
one list of the customer's personal fields, which a purge removes and which reads made for
viewers mask at the source (:func:`customers_sql`, :func:`mask_personal`), before any
template, table or file is rendered from them.

Tables are found in the catalog: any table with a ``tenant_id`` column, including tables
added after this module was written, is pseudonymised. Everything happens in one
transaction with an audit entry that names only the pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import polars as pl

from store.db import audit, transaction
from store.errors import StoreError

PREFIX = "purged-"
REDACTED = "(purged)"
_SALT_KEY = "pseudonym_key"

#: The customer's personal fields: columns of ``customers`` (and of a customers file) that
#: name or reach a person. A purge removes them; a viewer sees them only masked.
PERSONAL = ("name", "contact_email")
#: Each field's mask in SQL: the first character and ``***``, and an email's domain (kept
#: for support; it names the company's mail host, not the person). Nothing else of the
#: value survives, whatever its spelling.
_MASKS = {
    "name": "left({c}, 1) || '***'",
    "contact_email": "left({c}, 1) || '***' || coalesce('@' || "
    "nullif(regexp_extract({c}, '@([^@]*)$', 1), ''), '')",
}


def mask_sql(column: str, field: str = "name") -> str:
    """SQL masking ``column`` as the personal ``field`` it holds (NULL stays NULL)."""
    return _MASKS[field].format(c=column)


def customers_sql(personal: bool) -> str:
    """The ``customers`` table as a read may join it: whole when ``personal`` (managers,
    the command line), else with every :data:`PERSONAL` field masked, so nothing rendered
    from the read can hold a name or an address."""
    if personal:
        return "customers"
    masked = ", ".join(f"{mask_sql(_q(f), f)} AS {_q(f)}" for f in PERSONAL)
    return f"(SELECT * REPLACE ({masked}) FROM customers)"


def mask_personal(frame: pl.DataFrame) -> pl.DataFrame:
    """A customers frame (a cohort, an upload) with its :data:`PERSONAL` columns masked,
    by the same SQL as :func:`customers_sql`."""
    fields = [f for f in PERSONAL if f in frame.columns]
    if not fields or frame.height == 0:
        return frame
    con = duckdb.connect()
    try:
        con.register("frame", frame.select(fields).to_arrow())
        sql = ", ".join(f"{mask_sql(_q(f), f)} AS {_q(f)}" for f in fields)
        masked = con.sql(f"SELECT {sql} FROM frame").pl()
    finally:
        con.close()
    return frame.with_columns(masked.get_column(f).cast(pl.String) for f in fields)


@dataclass(frozen=True)
class PurgeSummary:
    pseudonym: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows changed

    def describe(self) -> str:
        changed = ", ".join(f"{t} {n}" for t, n in self.rows.items() if n)
        return f"personal data purged; the customer is now {self.pseudonym} ({changed})"


def pseudonym(con: duckdb.DuckDBPyConnection, tenant_id: str) -> str:
    """The stable pseudonym of ``tenant_id`` in this database (creates the key if needed)."""
    found = con.execute("SELECT value FROM meta WHERE key = ?", [_SALT_KEY]).fetchall()
    if found:
        key = found[0][0]
    else:
        key = secrets.token_hex(32)
        con.execute("INSERT INTO meta VALUES (?, ?)", [_SALT_KEY, key])
    digest = hmac.new(bytes.fromhex(key), tenant_id.encode("utf-8"), hashlib.sha256)
    return PREFIX + digest.hexdigest()[:16]


def purge(con: duckdb.DuckDBPyConnection, tenant_id: str, *, actor: str = "cli") -> PurgeSummary:
    """Remove the customer's personal data, all or nothing; StoreError when unknown."""
    tenant_id = tenant_id.strip()
    if not tenant_id:
        raise StoreError("purge: expected a tenant id")
    if tenant_id.startswith(PREFIX):
        raise StoreError(f"{tenant_id}: already purged (a pseudonym, not a tenant id)")
    with transaction(con):
        columns = _text_columns(con)
        keyed = [t for t, cols in columns.items() if "tenant_id" in cols]
        if not any(
            con.execute(
                f"SELECT count(*) FROM {_q(t)} WHERE tenant_id = ?", [tenant_id]
            ).fetchall()[0][0]
            for t in keyed
        ):
            raise StoreError(f"{tenant_id}: no such customer in the store (nothing purged)")
        alias = pseudonym(con, tenant_id)
        personal = _personal(con, tenant_id)
        rows: dict[str, int] = {}
        outbox = columns.get("outbox", [])
        if {"tenant_id", "to_email"} <= set(outbox):
            rows["outbox"] = _purge_outbox(con, outbox, tenant_id, personal)
        if "customers" in columns:
            blank = ", ".join(f"{_q(f)} = ?" for f in PERSONAL)
            rows["customers"] = _count(
                con,
                f"UPDATE customers SET {blank}, in_ftcq = false WHERE tenant_id = ?",
                [*[REDACTED] * len(PERSONAL), tenant_id],
            )
        pairs = _replacements(tenant_id, alias, personal)
        for table in keyed:
            changed = _pseudonymise(con, table, columns[table], tenant_id, alias, pairs)
            rows[table] = max(rows.get(table, 0), changed)
        rows.update(_scrub_mentions(con, columns, keyed, tenant_id, personal, pairs))
        audit(con, actor, "purge", alias, json.dumps({"rows": rows}))
    return PurgeSummary(alias, rows)


def _purge_outbox(
    con: duckdb.DuckDBPyConnection, columns: list[str], tenant_id: str, personal: dict[str, str]
) -> int:
    """Notifications about the customer: nothing of theirs is kept, and none still goes out."""
    # Every rendering of the message (subject, body, body_html, ...) goes whole.
    blank = [c for c in columns if c == "subject" or c.startswith("body")]
    sets = [f"{_q(c)} = CASE WHEN {_q(c)} IS NULL THEN NULL ELSE ? END" for c in blank]
    role = "recipient_role = 'customer' OR " if "recipient_role" in columns else ""
    sets.append(f"to_email = CASE WHEN {role}to_email = ? THEN ? ELSE to_email END")
    params: list[object] = [REDACTED] * len(blank)
    params += [personal.get("contact_email") or "", REDACTED]
    if {"status", "last_error"} <= set(columns):
        sets.append("status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END")
        sets.append(
            "last_error = CASE WHEN status = 'pending' THEN 'customer data purged' "
            "ELSE last_error END"
        )
    return _count(
        con,
        f"UPDATE outbox SET {', '.join(sets)} WHERE tenant_id = ?",
        [*params, tenant_id],
    )


def _replacements(tenant_id: str, alias: str, personal: dict[str, str]) -> list[tuple[str, str]]:
    """(text, replacement): the tenant id becomes the pseudonym, name and email go. Longest
    first, so an email that contains the tenant id is replaced whole."""
    return sorted(
        [(tenant_id, alias)]
        + [(value, REDACTED) for value in personal.values() if value and len(value) >= 3],
        key=lambda pair: -len(pair[0]),
    )


def _pseudonymise(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[str],
    tenant_id: str,
    alias: str,
    pairs: list[tuple[str, str]],
) -> int:
    """The customer's rows of a table keyed by tenant_id: every mention replaced, not deleted."""
    texts = [c for c in columns if c != "tenant_id"]
    sets = ["tenant_id = ?"] + [f"{_q(c)} = {_scrub(c, pairs)}" for c in texts]
    params = [alias] + [x for _ in texts for pair in pairs for x in pair]
    return _count(
        con,
        f"UPDATE {_q(table)} SET {', '.join(sets)} WHERE tenant_id = ?",
        [*params, tenant_id],
    )


def _scrub_mentions(
    con: duckdb.DuckDBPyConnection,
    columns: dict[str, list[str]],
    keyed: list[str],
    tenant_id: str,
    personal: dict[str, str],
    pairs: list[tuple[str, str]],
) -> dict[str, int]:
    """Tables without a tenant_id column (the audit log): rows that mention the customer by
    tenant id or email (a name alone is too common a string to go by)."""
    probes = [tenant_id] + [personal["contact_email"]] * bool(personal.get("contact_email"))
    rows: dict[str, int] = {}
    for table, texts in columns.items():
        if table in keyed or table == "meta" or not texts:
            continue
        sets = [f"{_q(c)} = {_scrub(c, pairs)}" for c in texts]
        where = " OR ".join(f"contains({_q(c)}, ?)" for c in texts for _ in probes)
        params = [x for _ in texts for pair in pairs for x in pair]
        params += [p for _ in texts for p in probes]
        rows[table] = _count(con, f"UPDATE {_q(table)} SET {', '.join(sets)} WHERE {where}", params)
    return rows


def _text_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Base tables of the main schema and their text columns (plus tenant_id when present)."""
    out: dict[str, list[str]] = {}
    for table, column, dtype in con.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
        "WHERE c.table_schema = 'main' AND t.table_type = 'BASE TABLE' "
        "AND c.table_catalog = current_database() ORDER BY c.table_name, c.ordinal_position"
    ).fetchall():
        cols = out.setdefault(table, [])
        if dtype == "VARCHAR" or column == "tenant_id":
            cols.append(column)
    return out


def _personal(con: duckdb.DuckDBPyConnection, tenant_id: str) -> dict[str, str]:
    """The customer's personal fields as the store knows them (may be absent)."""
    found = con.execute(
        f"SELECT {', '.join(map(_q, PERSONAL))} FROM customers WHERE tenant_id = ?", [tenant_id]
    ).fetchall()
    return dict(zip(PERSONAL, found[0], strict=True)) if found else {}


def _scrub(column: str, pairs: list[tuple[str, str]]) -> str:
    expr = _q(column)
    for _ in pairs:
        expr = f"replace({expr}, ?, ?)"
    return expr


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object]) -> int:
    found = con.execute(sql, params).fetchall()
    return int(found[0][0]) if found else 0


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
