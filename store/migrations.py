"""Which files are stores, of which version, and the numbered steps that bring older ones
forward.

A file is this product's store when it has a ``meta`` table whose ``schema_version`` is a
version this code knows, and our tables have the columns that version gives them. An
empty database (a new file) becomes a store; anything else is refused before a byte is
written: a DuckDB file of another application (tables, but no schema version), a file
of a newer version (this code does not know its shape and would undo it), or a file
whose tables are not the shape its version says (partly foreign, or hand-edited).

Versions. Version 1 grew in place: every release ran ``store/schema/v1.sql`` on every
open, whose ``ALTER ... IF NOT EXISTS`` lines added columns as they came, so a version-1
file has the first release's columns and any of the later ones. Version 2 is the same
tables with every column, and from version 2 on a version number says the shape exactly:
a change to the schema is a new version (version 3: the split by workload's referral
parts and the partners' size buckets; version 4: the team's rules and their versions, and the
version each run used), with its step in :data:`MIGRATIONS` and its old
DDL kept under ``store/schema/`` (restoring a backup of that version needs it).

The steps run in one transaction with the new ``schema_version``, and the result is
checked against this version's shape before it commits; a file they cannot bring forward
is rolled back and refused, unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import duckdb

from store import rules
from store.db import (
    DDL,
    PARTNER_STATE,
    QUEUED,
    RULES_VERSIONS,
    SCHEMA_VERSION,
    damaged,
    damaged_message,
    first_line,
    transaction,
)
from store.errors import StoreError

#: Per table, per column, its type.
Shape = dict[str, dict[str, str]]

V1_DDL = (Path(__file__).parent / "schema" / "v1.sql").read_text(encoding="utf-8")
V2_DDL = (Path(__file__).parent / "schema" / "v2.sql").read_text(encoding="utf-8")
V3_DDL = (Path(__file__).parent / "schema" / "v3.sql").read_text(encoding="utf-8")

#: (table, column, type) that version 1 added in place after its first release.
ADDED_IN_V1: list[tuple[str, str, str]] = re.findall(
    r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+) ([^;]+);", V1_DDL
)

#: The tables and views of a version, by version: what a restore of its backup builds.
DDL_OF = {1: V1_DDL, 2: V2_DDL, 3: V3_DDL, SCHEMA_VERSION: DDL}


def _to_2(con: duckdb.DuckDBPyConnection) -> None:
    """Version 1 to 2: the columns version 1 added in place, for the files that missed
    some (opened last by an older release), and the partner view as it is now."""
    for table, column, type_ in ADDED_IN_V1:
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type_}")
    con.execute(PARTNER_STATE)


def _to_3(con: duckdb.DuckDBPyConnection) -> None:
    """Version 2 to 3: the split by workload. A referral names its part and the workloads
    it covers (every referral so far is its customer's only part, for all its eligible
    workloads), and a partner the size buckets it takes (none listed: every size)."""
    con.execute("ALTER TABLE partners ADD COLUMN sizes VARCHAR[]")
    con.execute("ALTER TABLE referrals ADD COLUMN part INTEGER")
    con.execute("ALTER TABLE referrals ADD COLUMN workloads VARCHAR[]")
    con.execute("UPDATE referrals SET part = 1, workloads = eligible_workloads")
    con.execute(PARTNER_STATE)  # p.* takes the new partner column


def _to_4(con: duckdb.DuckDBPyConnection) -> None:
    """Version 3 to 4: the team's rules in the store (store/rules.py). Version 1 is the
    shipped data/rules.toml, which the store's commands used until now; the runs made
    before record no version (NULL), though each keeps the rules text it ran with.

    A CSS referral waiting for its hand-off gets a status of its own, ``queued``; before,
    it waited as ``active``, the status of a partner referral waiting for an answer."""
    con.execute(
        f"UPDATE referrals SET status = '{QUEUED}' WHERE outcome = 'css' AND status = 'active'"
    )
    con.execute(RULES_VERSIONS)
    con.execute("ALTER TABLE runs ADD COLUMN rules_version BIGINT")
    rules.seed(con, "data/rules.toml, when the store was brought to schema version 4")


#: ``MIGRATIONS[n - 1]`` brings a store of version ``n`` to ``n + 1``.
MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [_to_2, _to_3, _to_4]


def shape_of(con: duckdb.DuckDBPyConnection) -> Shape:
    """The base tables of the database's main schema with their columns' types."""
    rows = con.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() c "
        "JOIN duckdb_tables() t ON t.table_oid = c.table_oid "
        "WHERE c.database_name = current_database() AND c.schema_name = 'main' "
        "ORDER BY c.table_name, c.column_index"
    ).fetchall()
    out: Shape = {}
    for table, column, type_ in rows:
        out.setdefault(table, {})[column] = type_
    return out


@cache
def ddl_shape(version: int) -> Shape:
    """The shape a version's DDL builds, read from an in-memory database."""
    con = duckdb.connect()
    try:
        con.execute(DDL_OF[version])
        return shape_of(con)
    finally:
        con.close()


def expected(version: int) -> tuple[Shape, Shape]:
    """(the columns every store of ``version`` has, the columns it may have)."""
    allowed = ddl_shape(version)
    if version != 1:
        return allowed, allowed
    later = {(t, c) for t, c, _ in ADDED_IN_V1}
    required = {
        t: {c: ty for c, ty in cols.items() if (t, c) not in later} for t, cols in allowed.items()
    }
    return required, allowed


def found_version(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """The file's schema version, 0 for an empty database; a StoreError for a file that is
    not a store of a version this code knows, or not the shape its version says."""
    try:
        return _found_version(con, path)
    except duckdb.Error as exc:
        if damaged(exc):
            raise StoreError(damaged_message(path, exc)) from None
        why = f"its tables cannot be read as a store's ({first_line(exc)})"
        raise _foreign(path, why) from None


def _found_version(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    things = con.execute(
        "SELECT (SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database())"
        " + (SELECT count(*) FROM duckdb_views() WHERE NOT internal AND NOT temporary"
        " AND database_name = current_database())"
    ).fetchall()[0][0]
    if not things:
        return 0
    shape = shape_of(con)
    if set(shape.get("meta", {})) != {"key", "value"}:
        raise _foreign(path, "it has tables but no FRP Assign schema version")
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    text = rows[0][0] if rows else None
    if text is None:
        raise _foreign(path, "it has tables but no FRP Assign schema version")
    if not re.fullmatch(r"[1-9][0-9]{0,5}", text):
        raise _foreign(path, f"schema version {text!r} is not one FRP Assign writes")
    version = int(text)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: written by a newer version of FRP Assign (schema version {version}; "
            f"this one knows up to {SCHEMA_VERSION}); nothing was written — use that version"
        )
    _check_shape(path, shape, version)
    return version


def _check_shape(path: Path, shape: Shape, version: int) -> None:
    """Our tables as ``version`` has them: every column it always has, no column it never
    had, each of its type. Tables of our own beside them are left alone."""
    required, allowed = expected(version)
    for table, columns in allowed.items():
        found = shape.get(table)
        problem = None
        if found is None:
            problem = "has no table"
        else:
            missing = [c for c in required[table] if c not in found]
            extra = [c for c in found if c not in columns]
            wrong = [c for c in found if c in columns and found[c] != columns[c]]
            if missing:
                problem = f"has no column {missing[0]} in table"
            elif extra:
                problem = f"has an unknown column {extra[0]} in table"
            elif wrong:
                got = found[wrong[0]]
                problem = f"has column {wrong[0]} as {got}, not {columns[wrong[0]]}, in"
        if problem:
            raise StoreError(
                f"{path}: not a store FRP Assign can open: it {problem} {table} "
                f"(schema version {version}); nothing was written"
            )


def bring_forward(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Make a new file a store, or run the steps from the file's version to ours, in one
    transaction that records the new ``schema_version``; returns the version found."""
    with transaction(con):
        version = found_version(con, path)  # again, inside: another may have done it
        if version == SCHEMA_VERSION:
            return version
        if version == 0:
            con.execute(DDL)
            rules.seed(con, "data/rules.toml, when the store was created")
        else:
            _migrate(con, path, version)
        _check_shape(path, shape_of(con), SCHEMA_VERSION)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )
    return version


def _migrate(con: duckdb.DuckDBPyConnection, path: Path, version: int) -> None:
    """The steps from ``version`` to ours; one the file refuses is a one-line StoreError
    (the transaction rolls back). A collision with another writer is left to the retry."""
    for number, step in enumerate(MIGRATIONS[version - 1 :], start=version + 1):
        try:
            step(con)
        except duckdb.TransactionException:
            raise
        except duckdb.Error as exc:
            raise StoreError(
                f"{path}: cannot bring the store from schema version {number - 1} to {number} "
                f"({first_line(exc)}); nothing was written"
            ) from None


def _foreign(path: Path, why: str) -> StoreError:
    return StoreError(f"{path}: not an FRP Assign store: {why}; nothing was written")
