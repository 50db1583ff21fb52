"""A store that knows its files (#15, defect 5).

Opening a file checks that it is this product's store and of which version. Another
application's DuckDB file, a newer version's file, a file whose tables are not the shape
its version says, a file that is not a database and a damaged one are each refused in one
line naming the file (exit 2), and not a byte of the file changes (checked by a digest of
its bytes). Older stores are brought forward by the numbered steps of store/migrations.py,
each tested from a kept fixture of its version: ``tests/fixtures/v1_first_release.sql``
builds a version-1 store as the first release made it (that release's DDL, kept), and the
same file after the last version-1 release opened it (``store/schema/v1.sql`` run on it).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from cli.main import main as frp_main
from engine.rules import DEFAULT_RULES_PATH
from store import clock
from store.backup import MANIFEST, _write_tables
from store.db import DDL, SCHEMA_VERSION, connect
from store.errors import StoreError
from store.migrations import DDL_OF, MIGRATIONS, V1_DDL, ddl_shape, shape_of
from tests.app_helpers import APP
from tests.app_helpers import rows as db_rows
from tests.test_unwritable import refused

FIXTURES = Path(__file__).parent / "fixtures"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(path: Path, *sql: str) -> Path:
    con = duckdb.connect(str(path))
    try:
        for text in sql:
            con.execute(text)
    finally:
        con.close()
    return path


#: The first release's DDL: version 1's without the columns it added in place later.
V1_FIRST_DDL = re.sub(r"(?m)^ALTER TABLE .*;\n", "", V1_DDL)


def v1_first(path: Path) -> Path:
    """Version 1 as the first release wrote it."""
    rows = (FIXTURES / "v1_first_release.sql").read_text(encoding="utf-8")
    return build(path, V1_FIRST_DDL, rows)


def v1_last(path: Path) -> Path:
    """The same store after the last version-1 release opened it (it ran v1.sql)."""
    return build(v1_first(path), V1_DDL)


V1_FIXTURES = {"v1 first release": v1_first, "v1 last release": v1_last}


def version(path: Path) -> str:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0]
    finally:
        con.close()


def ok(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    code = frp_main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


# Every kind of command on a file that is not ours: writing, reading, maintenance.
COMMANDS = [
    ["commit"],
    ["fairness"],
    ["expire"],
    ["simulate"],
    ["drain"],
    ["outbox", "export", "OUT"],
    ["purge", "T1"],
]


def _command(command: list[str], tmp_path: Path) -> list[str]:
    return [str(tmp_path / "out") if a == "OUT" else a for a in command]


# --- the mechanism ----------------------------------------------------------------------


def test_one_step_per_version_and_the_ddl_of_each_version_kept() -> None:
    assert len(MIGRATIONS) == SCHEMA_VERSION - 1
    assert set(DDL_OF) == set(range(1, SCHEMA_VERSION + 1))
    assert DDL_OF[SCHEMA_VERSION] == DDL


@pytest.mark.parametrize("fixture", V1_FIXTURES)
def test_a_version_1_store_is_brought_forward(
    fixture: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = V1_FIXTURES[fixture](tmp_path / "old.duckdb")
    before = duckdb.connect(str(db), read_only=True)
    try:
        old = {
            t: before.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in shape_of(before)
            if t != "meta"
        }
        old_cols = {t: list(c) for t, c in shape_of(before).items()}
    finally:
        before.close()
    con = connect(db)
    try:
        assert shape_of(con) == ddl_shape(SCHEMA_VERSION)  # the shape a new store has
        for table, rows in old.items():  # every row kept, every old column's value kept
            cols = ", ".join(old_cols[table])
            assert con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall() == rows
        assert con.execute("SELECT body_html, claimed_by FROM outbox").fetchall() == [(None, None)]
    finally:
        con.close()
    assert version(db) == str(SCHEMA_VERSION)
    ok(capsys, "fairness", "--db", db)
    ok(capsys, "commit", "--db", db)  # T2 waits in the FTCQ: the store works
    assert version(db) == str(SCHEMA_VERSION)


def at_version(path: Path, number: int) -> Path:
    """The version-1 fixture as the release of version ``number`` left it: the steps up to
    that version alone."""
    con = duckdb.connect(str(v1_last(path)))
    try:
        for step in MIGRATIONS[: number - 1]:
            step(con)
        con.execute(f"UPDATE meta SET value = '{number}' WHERE key = 'schema_version'")
        assert shape_of(con) == ddl_shape(number)  # the kept DDL's shape of that version
    finally:
        con.close()
    return path


def test_a_version_2_store_is_brought_to_version_3(tmp_path: Path) -> None:
    db = at_version(tmp_path / "old.duckdb", 2)
    con = connect(db)
    try:
        assert shape_of(con) == ddl_shape(SCHEMA_VERSION)
        assert con.execute("SELECT tenant_id, part, workloads FROM referrals").fetchall() == [
            ("T1", 1, ["exchange", "teams"])
        ]
        assert con.execute("SELECT count(*) FROM partners WHERE sizes IS NULL").fetchall() == [(2,)]
    finally:
        con.close()
    assert version(db) == str(SCHEMA_VERSION)


def test_a_version_3_store_gets_the_shipped_rules_as_version_1_and_its_runs_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = at_version(tmp_path / "old.duckdb", 3)
    with clock.frozen("2026-03-02T09:00:00"):
        con = connect(db)
    try:
        assert shape_of(con) == ddl_shape(SCHEMA_VERSION)
        assert con.execute("SELECT run_id, rules_version FROM runs").fetchall() == [(1, None)]
        saved = con.execute("SELECT version, rules_toml, actor, saved_at FROM rules_versions")
        assert saved.fetchall() == [
            (1, DEFAULT_RULES_PATH.read_text(encoding="utf-8"), "setup", datetime(2026, 3, 2, 9))
        ]
    finally:
        con.close()
    assert version(db) == str(SCHEMA_VERSION)
    ok(capsys, "commit", "--db", db)  # T2 waits in the FTCQ: a new run records version 1
    assert db_rows(db, "SELECT run_id, rules_version FROM runs ORDER BY run_id") == [
        (1, None),
        (2, 1),
    ]


def test_a_version_3_store_gives_css_referrals_waiting_for_the_hand_off_their_status(
    tmp_path: Path,
) -> None:
    """Version 3 kept a CSS referral waiting for its hand-off as `active`, a partner
    referral's status; version 4 gives it `queued`, and leaves partner referrals and
    handed-off CSS referrals as they were."""
    db = at_version(tmp_path / "old.duckdb", 3)
    raw = duckdb.connect(str(db))
    try:
        for rid, status in ((2, "active"), (3, "handed_off")):
            raw.execute(
                f"INSERT INTO referrals SELECT * REPLACE ({rid} AS referral_id, 'css' AS outcome, "
                f"NULL AS partner_id, 'CSS EMEA' AS queue, '{status}' AS status) "
                "FROM referrals WHERE referral_id = 1"
            )
    finally:
        raw.close()
    connect(db).close()
    assert db_rows(db, "SELECT referral_id, outcome, status FROM referrals ORDER BY 1") == [
        (1, "frp", "active"),
        (2, "css", "queued"),
        (3, "css", "handed_off"),
    ]


def test_a_new_store_starts_from_the_shipped_rules(tmp_path: Path) -> None:
    con = connect(tmp_path / "new.duckdb")
    try:
        assert con.execute("SELECT version, rules_toml, actor FROM rules_versions").fetchall() == [
            (1, DEFAULT_RULES_PATH.read_text(encoding="utf-8"), "setup")
        ]
    finally:
        con.close()


def test_a_version_1_store_read_only_is_brought_forward_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = v1_first(tmp_path / "old.duckdb")
    ok(capsys, "fairness", "--db", db)
    assert version(db) == str(SCHEMA_VERSION)


def test_opening_a_store_of_this_version_writes_nothing(demo_db: Path) -> None:
    before = sha(demo_db)
    connect(demo_db).close()
    connect(demo_db, read_only=True).close()
    assert sha(demo_db) == before


def test_an_empty_new_file_becomes_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "new.duckdb"
    db.touch()  # e.g. made by mktemp
    partners = tmp_path / "partners.csv"
    partners.write_text(
        "partner_id,name,countries,languages,workloads,capacity,active_referrals,"
        "referral_ready,psm_name,psm_email,contact_email\n"
        "P1,Aurora,SE,sv,exchange,10,0,true,Ada,ada@psm.example,hi@aurora.example\n",
        encoding="utf-8",
    )
    ok(capsys, "import", "--partners", partners, "--db", db)
    assert version(db) == str(SCHEMA_VERSION)


# --- files that are not ours ------------------------------------------------------------


def _foreign(path: Path) -> Path:
    return build(
        path,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer VARCHAR, total DECIMAL(10, 2))",
        "INSERT INTO orders VALUES (1, 'Ann', 12.50), (2, 'Bo', 7.25)",
    )


def _foreign_meta(path: Path) -> Path:
    return build(
        path, "CREATE TABLE meta (name VARCHAR, created DATE)", "CREATE TABLE referrals (x INT)"
    )


def _newer(path: Path, demo: Path) -> Path:
    shutil.copy(demo, path)
    return build(
        path, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'"
    )


def _no_status(path: Path) -> Path:  # partly foreign: a version-1 file missing a column
    return build(v1_first(path), "ALTER TABLE referrals DROP COLUMN status")


def _wrong_type(path: Path) -> Path:  # a column version 1 adds, but of another type
    return build(v1_first(path), "ALTER TABLE outbox ADD COLUMN body_html INTEGER")


def _text(path: Path) -> Path:
    path.write_text("tenant_id,name\nT1,Ann\n", encoding="utf-8")
    return path


NOT_OURS: dict[str, tuple[Callable[..., Path], str]] = {
    "another application's": (_foreign, "not an FRP Assign store"),
    "another application's meta": (_foreign_meta, "not an FRP Assign store"),
    "a newer version's": (_newer, "newer version"),
    "a version-1 file without referrals.status": (_no_status, "has no column status"),
    "a version-1 file with body_html of another type": (_wrong_type, "body_html as INTEGER"),
    "not a database": (_text, "not a DuckDB database file"),
}


@pytest.mark.parametrize(
    "command", COMMANDS, ids=lambda c: c[0] if len(c) == 1 else "-".join(c[:2])
)
@pytest.mark.parametrize("kind", NOT_OURS)
def test_a_file_that_is_not_ours_is_refused_and_left_alone(
    kind: str,
    command: list[str],
    demo_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make, says = NOT_OURS[kind]
    db = tmp_path / "theirs.duckdb"
    make(db, demo_db) if make is _newer else make(db)
    before = sha(db)
    line = refused(capsys, *_command(command, tmp_path), "--db", db)
    assert str(db) in line and says in line, line
    assert sha(db) == before
    assert not db.with_name(db.name + ".wal").exists()


def test_reads_never_fall_back_to_python_variables(tmp_path: Path) -> None:
    con = connect(tmp_path / "frp.duckdb")
    orders = pl.DataFrame({"id": [1]})  # noqa: F841 (a variable the query must not see)
    try:
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM orders").fetchall()
    finally:
        con.close()


# --- damaged files ----------------------------------------------------------------------


def _overwrite(data: bytes) -> bytes:
    """512 bytes overwritten every 64 KiB after the file's headers, so that whichever
    blocks a command reads, one is damaged: a damaged block that no query reads goes
    unseen (DuckDB checks a block when it reads it), and the demo's middle half holds
    blocks `frp fairness` never reads."""
    out = bytearray(data)
    for at in range(3 * 4096, len(out) - 512, 64 * 1024):
        out[at : at + 512] = b"\xa5" * 512
    return bytes(out)


DAMAGE = {
    "bytes overwritten at the start": lambda b: b[:100] + b"\x00" * 4000 + b[4100:],
    "bytes overwritten in every block": _overwrite,
    "truncated": lambda b: b[: len(b) // 2],
}


@pytest.mark.parametrize("command", [["fairness"], ["commit"], ["expire"]], ids=lambda c: c[0])
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_file_is_one_line_naming_it_and_frp_restore(
    damage: str, command: list[str], demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_db.write_bytes(DAMAGE[damage](demo_db.read_bytes()))
    line = refused(capsys, *command, "--db", demo_db)
    assert str(demo_db) in line and "frp restore" in line, line


# --- restoring an older backup ----------------------------------------------------------


def test_a_version_1_backup_is_restored_and_brought_forward(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = v1_last(tmp_path / "old.duckdb")
    folder = tmp_path / "backup"
    folder.mkdir()
    con = duckdb.connect(str(db), read_only=True)  # as a version-1 release wrote backups
    try:
        con.execute("BEGIN TRANSACTION")
        manifest = _write_tables(con, folder)
        con.execute("COMMIT")
    finally:
        con.close()
    assert manifest["schema_version"] == "1"
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    restored = tmp_path / "restored.duckdb"
    ok(capsys, "restore", folder, "--db", restored)
    assert version(restored) == str(SCHEMA_VERSION)
    con = connect(restored, read_only=True)
    try:
        assert shape_of(con) == ddl_shape(SCHEMA_VERSION)
        assert con.execute("SELECT tenant_id, status FROM referrals").fetchall() == [
            ("T1", "active")
        ]
    finally:
        con.close()


def test_a_store_error_is_what_connect_raises(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not an FRP Assign store"):
        connect(_foreign(tmp_path / "x.duckdb"), read_only=True)


# --- the dashboard ----------------------------------------------------------------------


def test_the_dashboard_on_a_file_that_is_not_ours_shows_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_caches: None
) -> None:
    """Through app.py, as a server runs every page (AppTest runs a switched-to page file
    on its own, outside app.py, so the first page stands for all)."""
    db = _foreign(tmp_path / "theirs.duckdb")
    monkeypatch.setenv("FRP_DB", str(db))
    before = sha(db)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(str(db) in e and "not an FRP Assign store" in e for e in errors), errors
    assert sha(db) == before


@pytest.mark.parametrize("damage", DAMAGE)
def test_the_dashboard_on_a_damaged_file_shows_one_line(
    damage: str, demo_db: Path, monkeypatch: pytest.MonkeyPatch, fresh_caches: None
) -> None:
    demo_db.write_bytes(DAMAGE[damage](demo_db.read_bytes()))
    monkeypatch.setenv("FRP_DB", str(demo_db))
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(str(demo_db) in e and "frp restore" in e for e in errors), errors


def test_damage_found_by_a_query_is_the_same_one_line(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every 256 KiB block of the file overwritten in turn: `frp fairness` either does not
    read it (exit 0) or says in one line that the file is damaged, also where the file
    opens and only a query reaches the block (found by the sweep, so it is tested)."""
    data = demo_db.read_bytes()
    block = 256 * 1024
    found_by_a_query = 0
    for offset in range(block, len(data), block):
        db = tmp_path / f"damaged-{offset}.duckdb"
        db.write_bytes(data[:offset] + b"\xa5" * block + data[offset + block :])
        code = frp_main(["fairness", "--db", str(db)])
        err = capsys.readouterr().err
        if code != 0:
            assert code == 2 and len(err.splitlines()) == 1, err
            assert str(db) in err and "damaged" in err and "frp restore" in err, err
            # Whether the file opens matters only for a block a command refused: asked
            # after the command (both read-only), not of the blocks it read through.
            try:
                connect(db, read_only=True).close()
                found_by_a_query += 1
            except StoreError:
                pass
        db.unlink()  # 17 MB a step, else kept on the disk until the test ends
    assert found_by_a_query, "no block was found only by a query: the sweep tested nothing"


def test_a_step_the_file_refuses_rolls_back_and_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import store.migrations

    db = v1_last(tmp_path / "old.duckdb")
    before = sha(db)

    def half_then_fail(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("ALTER TABLE partners ADD COLUMN half_done VARCHAR")
        con.execute("ALTER TABLE no_such_table ADD COLUMN x INTEGER")

    monkeypatch.setattr(store.migrations, "MIGRATIONS", [half_then_fail])
    line = refused(capsys, "commit", "--db", db)
    assert str(db) in line and "from schema version 1 to 2" in line, line
    assert sha(db) == before
