"""Backups of the store: one Parquet file per table plus a manifest, and restores from them.

A backup reads every table of the database, found in the catalog rather than listed
here (so tables that later versions add are included), inside one read transaction, so
the files agree with each other. It is written to a temporary folder that is renamed
into place only when complete, with ``manifest.json`` written last: a folder without a
manifest is not a backup.

A restore builds a new database file under a temporary name: the sequences (at the value
they had), the tables and views from the DDL of the backup's schema version (kept in
``store/migrations.py`` for every version it can bring forward), each table's rows by
column name, then brings it to this version (``store.db.connect``), and checks
every table's row count against the manifest before renaming the file over the target.
A failed restore leaves the target as it was.

The manifest is data, never code: its format, schema version, table and sequence names
(only those this version declares), counts and file names (this table's Parquet file,
inside the folder, not a link) are checked before anything is built. The ``CREATE``
statements it carries are for the reader; nothing in them runs, and one that is not a
single ``CREATE`` statement marks an edited backup, which is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import duckdb

from store import clock
from store.db import SCHEMA_VERSION, connect, make_folder
from store.errors import StoreError
from store.migrations import DDL_OF

MANIFEST = "manifest.json"
FORMAT = "frp-backup"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BackupSummary:
    folder: Path
    tables: dict[str, int]
    schema_version: str | None
    created_at: str

    def describe(self) -> str:
        return (
            f"backup written to {self.folder}: {_size(self.tables)} "
            f"(schema version {self.schema_version or 'unknown'}, {self.created_at})"
        )


@dataclass(frozen=True)
class RestoreSummary:
    path: Path
    tables: dict[str, int]
    created_at: str

    def describe(self) -> str:
        return f"restored {self.path} from the backup of {self.created_at}: {_size(self.tables)}"


def _size(tables: dict[str, int]) -> str:
    """A backup's size as both summaries say it, from the rows per table."""
    return f"{len(tables)} tables, {sum(tables.values()):,} rows"


def quote(name: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every base table of the database's main schema, by name."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' "
        "AND table_catalog = current_database() ORDER BY table_name"
    ).fetchall()
    return [r[0] for r in rows]


def table_digest(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int]]:
    """Per table: (rows, order-independent hash of every row); equal digests, equal tables."""
    out: dict[str, tuple[int, int]] = {}
    for name in tables(con):
        rows, digest = con.execute(
            f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM {quote(name)} t"
        ).fetchall()[0]
        out[name] = (int(rows), int(digest))
    return out


def backup(db_path: str | Path, folder: str | Path) -> BackupSummary:
    """Write every table of ``db_path`` to ``folder`` (which must be new or empty)."""
    db, target = Path(db_path), Path(folder)
    if not db.is_file():
        raise StoreError(f"{db}: no such database")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StoreError(f"{target}: already exists and is not an empty folder; choose a new one")
    make_folder(target.parent, target, probe=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        con = connect(db, read_only=True)  # waits while another process writes
        try:
            con.execute("BEGIN TRANSACTION")  # one snapshot for every table
            manifest = _write_tables(con, partial)
            con.execute("COMMIT")
        except duckdb.Error as exc:
            if "Could not write file" in str(exc):  # the backup's place, not the database
                raise StoreError(_unwritten(target, _cause(str(exc)))) from None
            raise StoreError(f"{db}: cannot back up ({_first_line(exc)})") from None
        finally:
            con.close()
        text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
        try:
            (partial / MANIFEST).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise StoreError(_unwritten(target, str(exc.strerror or exc))) from None
        if target.exists():
            target.rmdir()
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BackupSummary(
        target,
        {name: t["rows"] for name, t in manifest["tables"].items()},
        manifest["schema_version"],
        manifest["created_at"],
    )


def _unwritten(target: Path, cause: str) -> str:
    """A backup the file system would not take (a full disk, a quota): the partial folder
    is removed by the caller, so nothing of it is left."""
    return f"{target}: cannot write the backup ({cause.lower()}); nothing was kept"


def _cause(text: str) -> str:
    found = re.search(r"(No space left on device|Disk quota exceeded|Permission denied)", text)
    return found[1] if found else _first_line(Exception(text))


def _write_tables(con: duckdb.DuckDBPyConnection, folder: Path) -> dict[str, Any]:
    sql_of = dict(
        con.execute(
            "SELECT table_name, sql FROM duckdb_tables() "
            "WHERE schema_name = 'main' AND database_name = current_database()"
        ).fetchall()
    )
    names = tables(con)
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        file = f"{i:03d}-{_file_stem(name)}.parquet"
        path = str(folder / file).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM {quote(name)}) TO '{path}' (FORMAT parquet)")
        rows = con.execute(f"SELECT count(*) FROM {quote(name)}").fetchall()[0][0]
        out[name] = {"file": file, "rows": int(rows), "sql": sql_of[name]}
    version = None
    if "meta" in names:
        found = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        version = found[0][0] if found else None
    sequences = {
        name: {"next": int(last + inc) if last is not None else int(start), "increment": int(inc)}
        for name, start, inc, last in con.execute(
            "SELECT sequence_name, start_value, increment_by, last_value FROM duckdb_sequences() "
            "WHERE schema_name = 'main' AND database_name = current_database() "
            "AND NOT temporary ORDER BY sequence_name"
        ).fetchall()
    }
    views = dict(
        con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND NOT temporary "
            "AND schema_name = 'main' AND database_name = current_database() ORDER BY view_name"
        ).fetchall()
    )
    indexes = dict(
        con.execute(
            "SELECT index_name, sql FROM duckdb_indexes() WHERE sql IS NOT NULL "
            "AND schema_name = 'main' AND database_name = current_database() ORDER BY index_name"
        ).fetchall()
    )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": clock.now().replace(tzinfo=UTC).isoformat(timespec="seconds"),
        "schema_version": version,
        "duckdb_version": duckdb.__version__,
        "tables": out,
        "sequences": sequences,
        "views": views,
        "indexes": indexes,
    }


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a backup folder, checked as data: format and versions, tables and
    sequences this version declares, integer counts, files inside the folder."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise StoreError(f"{folder}: not a backup (no {MANIFEST}; was the backup interrupted?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: not a readable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{path}: not an FRP Assign backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path}: backup format version {manifest.get('format_version')!r}; "
            f"this version reads {FORMAT_VERSION}"
        )
    version = _version(path, manifest.get("schema_version"))
    tables_ = manifest.get("tables")
    if not isinstance(tables_, dict) or not tables_:
        raise StoreError(f"{path}: the manifest lists no tables")
    columns, sequences = product_schema(version)
    for name, table in tables_.items():
        _check_table(path, name, table, columns)
    _check_sequences(path, manifest.get("sequences", {}), sequences)
    for kind, one in (("views", "view"), ("indexes", "index")):
        entries = manifest.get(kind, {})
        if not isinstance(entries, dict):
            raise StoreError(f"{path}: {kind}: expected names and statements")
        for name, sql in entries.items():
            _check_create(path, f"{one} {name}", sql, one)
    return manifest


def _version(path: Path, text: object) -> int:
    """The backup's schema version, when this code has its DDL (store/migrations.py): a
    restore builds that version's tables, then brings them forward."""
    known = sorted(DDL_OF)
    if (
        not isinstance(text, str)
        or not re.fullmatch(r"[0-9]{1,6}", text)
        or int(text) not in DDL_OF
    ):
        raise StoreError(
            f"{path}: schema version {text!r}; this version restores "
            f"{', '.join(map(str, known))} (a backup of a newer version, or edited?)"
        )
    return int(text)


def product_schema(version: int = SCHEMA_VERSION) -> tuple[dict[str, list[str]], set[str]]:
    """The tables (with their columns) and sequences a version's own DDL declares
    (store/migrations.py); a restore creates only these, from that DDL, never from the
    backup."""
    con = duckdb.connect()
    try:
        con.execute(DDL_OF[version])
        columns = {
            name: [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = ? ORDER BY ordinal_position",
                    [name],
                ).fetchall()
            ]
            for name in tables(con)
        }
        found = con.execute("SELECT sequence_name FROM duckdb_sequences()").fetchall()
        return columns, {r[0] for r in found}
    finally:
        con.close()


def _check_table(path: Path, name: str, table: object, columns: dict[str, list[str]]) -> None:
    where = f"{path}: table {name}"
    if name not in columns:
        raise StoreError(f"{where}: not a table of this version's store (an edited backup?)")
    if not isinstance(table, dict) or not {"file", "rows"} <= set(table):
        raise StoreError(f"{where}: expected file and rows")
    rows = table["rows"]
    if type(rows) is not int or rows < 0:
        raise StoreError(f"{where}: rows must be a whole number, not {rows!r}")
    if "sql" in table:
        _check_create(path, f"table {name}", table["sql"], "table")
    file = table["file"]
    expected = rf"\d{{3}}-{re.escape(_file_stem(name))}\.parquet"
    if not isinstance(file, str) or not re.fullmatch(expected, file):
        raise StoreError(f"{where}: file {file!r} is not this table's file name in the backup")
    found = path.parent / file
    if found.is_symlink() or not found.is_file():
        raise StoreError(f"{path.parent}: table {name}: file {file} is missing (or not a file)")


def _check_sequences(path: Path, sequences: object, known: set[str]) -> None:
    if not isinstance(sequences, dict):
        raise StoreError(f"{path}: sequences: expected names and values")
    for name, seq in sequences.items():
        values = list(seq.values()) if isinstance(seq, dict) else []
        if (
            name not in known
            or not isinstance(seq, dict)
            or set(seq) != {"next", "increment"}
            or any(type(v) is not int for v in values)
        ):
            raise StoreError(
                f"{path}: sequence {name}: expected a sequence of this version's store "
                "with whole numbers next and increment"
            )


def _check_create(path: Path, what: str, sql: object, kind: str) -> None:
    """The statements a manifest carries are for the reader and never run; one that is
    not a single CREATE statement means the backup was edited, so it is refused."""
    ok = False
    if isinstance(sql, str):
        con = duckdb.connect()
        try:
            statements = con.extract_statements(sql)  # parsed only, never executed
            ok = len(statements) == 1 and statements[0].type == duckdb.StatementType.CREATE
        except duckdb.Error:
            ok = False
        finally:
            con.close()
    if not ok:
        raise StoreError(f"{path}: {what}: expected one CREATE {kind.upper()} statement")


def restore(folder: str | Path, db_path: str | Path, *, force: bool = False) -> RestoreSummary:
    """Rebuild a database at ``db_path`` from a backup folder; never half-writes the target."""
    source, target = Path(folder), Path(db_path)
    manifest = read_manifest(source)
    if target.exists() and not force:
        raise StoreError(f"{target}: already exists; use --force to replace it")
    if target.exists() and not target.is_file():
        raise StoreError(f"{target}: not a database file")
    make_folder(target.parent, target, probe=True)
    tmp = target.with_name(f".{target.name}.restoring-{os.getpid()}")
    _remove(tmp)
    try:
        con = _open(tmp)
        try:
            _load(con, source, manifest)
        except duckdb.Error as exc:  # a damaged or edited backup file
            raise StoreError(f"{source}: cannot restore ({_first_line(exc)})") from None
        finally:
            con.close()
        con = connect(tmp)  # brought forward from the backup's version to this one
        try:
            counts = {
                name: con.execute(f"SELECT count(*) FROM {quote(name)}").fetchall()[0][0]
                for name in manifest["tables"]
            }
            con.execute("CHECKPOINT")
        finally:
            con.close()
        wrong = {n: c for n, c in counts.items() if c != manifest["tables"][n]["rows"]}
        if wrong:
            name = next(iter(wrong))
            raise StoreError(
                f"{source}: table {name} restored with {wrong[name]} rows, "
                f"the manifest says {manifest['tables'][name]['rows']}; nothing was replaced"
            )
        _remove(target)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    return RestoreSummary(target, counts, str(manifest.get("created_at")))


def _load(con: duckdb.DuckDBPyConnection, folder: Path, manifest: dict[str, Any]) -> None:
    """The sequences at their values, the tables from the DDL of the backup's version,
    then each table's rows by column name; the views come from the same DDL."""
    version = int(manifest["schema_version"])
    columns, _ = product_schema(version)
    con.execute("BEGIN TRANSACTION")
    try:
        for name, seq in manifest.get("sequences", {}).items():
            con.execute(
                f"CREATE SEQUENCE {quote(name)} START {int(seq['next'])} "
                f"INCREMENT BY {int(seq['increment'])}"
            )
        con.execute(DDL_OF[version])
        for name, table in manifest["tables"].items():
            _load_table(con, folder, name, table["file"], columns[name])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _load_table(
    con: duckdb.DuckDBPyConnection, folder: Path, name: str, file: str, columns: list[str]
) -> None:
    path = str(folder / file)
    found = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()]
    extra = [c for c in found if c not in columns]
    if extra:
        raise StoreError(f"{folder}: table {name}: file {file} has unknown column {extra[0]}")
    names = ", ".join(quote(c) for c in found)
    con.execute(f"INSERT INTO {quote(name)} ({names}) SELECT {names} FROM read_parquet(?)", [path])


def _file_stem(name: str) -> str:
    """A table's name as it stands in its Parquet file's name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _open(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(f"{path}: cannot open the database ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
