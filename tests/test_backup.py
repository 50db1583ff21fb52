"""Looking after the store: `frp backup`, `frp restore` and `frp purge`.

Backup and restore round-trip every table (found in the catalog, so tables added later
are included) with every value, and the sequences continue: a commit after a restore
gets the next run id. A restore never replaces an existing database without --force and
never leaves a half-written one. A purge removes a customer's personal data everywhere
in the store, keeps the anonymous referral history (fairness reads the same), writes
an audit entry naming only the pseudonym, and is all or nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

import store.privacy
from cli.main import main as frp_main
from store.backup import MANIFEST, read_manifest, tables
from store.db import connect
from store.errors import StoreError
from store.privacy import PREFIX, REDACTED, pseudonym, purge
from tests.db_helpers import digest


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = frp_main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def refused(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    code, out, err = run(capsys, *args)
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("frp: "), err
    return lines[0]


def rows_of(db: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in tables(con)}
    finally:
        con.close()


def sequences(db: Path) -> dict[str, int | None]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(
            con.execute(
                "SELECT sequence_name, coalesce(last_value, start_value - 1) "
                "FROM duckdb_sequences() WHERE NOT temporary"
            ).fetchall()
        )
    finally:
        con.close()


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def scalar(db: Path, sql: str, params: list | None = None):
    return query(db, sql, params)[0][0]


@pytest.fixture
def committed(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The demo database after a commit of its FTCQ backlog (referrals, tasks, outbox)."""
    runs = scalar(demo_db, "SELECT count(*) FROM runs")
    code, out, err = run(capsys, "commit", "--db", demo_db)
    assert code == 0, err
    assert scalar(demo_db, "SELECT count(*) FROM runs") == runs + 1
    return demo_db


# --- backup and restore -----------------------------------------------------------------


def test_backup_restore_round_trip(
    committed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "backup"
    code, out, err = run(capsys, "backup", folder, "--db", committed)
    assert code == 0, err
    assert str(folder) in out and "tables" in out

    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    con = duckdb.connect(str(committed), read_only=True)
    try:
        names = tables(con)
        counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in names}
    finally:
        con.close()
    assert set(manifest["tables"]) == set(names)
    assert {t: v["rows"] for t, v in manifest["tables"].items()} == counts
    assert manifest["schema_version"] and manifest["created_at"]
    assert {"runs", "referrals", "outbox", "ftop_tasks", "audit_log"} <= set(names)
    assert all((folder / v["file"]).is_file() for v in manifest["tables"].values())

    restored = tmp_path / "restored" / "frp.duckdb"
    code, out, err = run(capsys, "restore", folder, "--db", restored)
    assert code == 0, err
    assert rows_of(restored) == rows_of(committed)  # every table, every value
    assert digest(restored) == digest(committed)
    assert sequences(restored) == sequences(committed)
    assert scalar(restored, "SELECT count(*) FROM partner_state") == scalar(
        committed, "SELECT count(*) FROM partner_state"
    )
    assert not list(restored.parent.glob(".*"))  # no temporary file left behind

    # The sequences continue: a commit after the restore gets the next run id (and new
    # audit ids, which a restarted sequence would collide with).
    last_run = scalar(restored, "SELECT max(run_id) FROM runs")
    last_audit = scalar(restored, "SELECT max(id) FROM audit_log")
    customers = tmp_path / "new.csv"
    customers.write_text(
        "tenant_id,name,country,language,seats,workloads,gateway,contact_email\n"
        "NEW1,Quillon Freight AB,SE,sv,800,exchange;teams,true,it@quillon.example\n",
        encoding="utf-8",
    )
    assert run(capsys, "import", "--customers", customers, "--db", restored)[0] == 0
    code, out, err = run(capsys, "commit", "--db", restored)
    assert code == 0, err
    assert f"run {last_run + 1} committed" in out
    assert scalar(restored, "SELECT max(run_id) FROM runs") == last_run + 1
    assert scalar(restored, "SELECT min(id) FROM audit_log WHERE id > ?", [last_audit]) == (
        last_audit + 1
    )


def test_backup_includes_tables_added_later(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    con = connect(demo_db)
    con.execute(
        "CREATE TABLE partner_notes (partner_id VARCHAR PRIMARY KEY, note VARCHAR NOT NULL, "
        "tags VARCHAR[], noted_at TIMESTAMP)"
    )
    con.execute(
        "INSERT INTO partner_notes VALUES ('P0001', 'prefers email', ['a', 'b'], "
        "TIMESTAMP '2026-01-02 03:04:05'), ('P0002', 'it''s \"quoted\"', NULL, NULL)"
    )
    con.close()
    folder = tmp_path / "backup"
    assert run(capsys, "backup", folder, "--db", demo_db)[0] == 0
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["tables"]["partner_notes"]["rows"] == 2

    # A restore builds only this version's tables, from its own DDL (#15): a table it does
    # not know is refused, not declared from the backup's SQL.
    restored = tmp_path / "restored.duckdb"
    assert "partner_notes" in refused(capsys, "restore", folder, "--db", restored)
    assert not restored.exists()


def test_restore_never_overwrites_without_force(
    committed: Path, demo_db_master: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "backup"
    assert run(capsys, "backup", folder, "--db", demo_db_master)[0] == 0
    before = digest(committed)
    line = refused(capsys, "restore", folder, "--db", committed)
    assert str(committed) in line and "--force" in line
    assert digest(committed) == before

    code, out, err = run(capsys, "restore", folder, "--db", committed, "--force")
    assert code == 0, err
    assert digest(committed) == digest(demo_db_master)


def test_failed_restore_leaves_the_target_as_it_was(
    committed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "backup"
    assert run(capsys, "backup", folder, "--db", committed)[0] == 0
    manifest = read_manifest(folder)
    damaged = folder / manifest["tables"]["referrals"]["file"]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    before = digest(committed)
    line = refused(capsys, "restore", folder, "--db", committed, "--force")
    assert str(folder) in line
    assert digest(committed) == before
    assert sorted(p.name for p in committed.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    "setup, needle",
    [
        ("no-manifest", "not a backup"),
        ("bad-json", "manifest"),
        ("missing-file", "missing"),
        ("edited-sql", "CREATE TABLE"),
    ],
)
def test_restore_refuses_a_damaged_backup(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, needle: str
) -> None:
    folder = tmp_path / "backup"
    assert run(capsys, "backup", folder, "--db", demo_db)[0] == 0
    path = folder / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if setup == "no-manifest":
        path.unlink()
    elif setup == "bad-json":
        path.write_text("{ not json", encoding="utf-8")
    elif setup == "missing-file":
        (folder / manifest["tables"]["customers"]["file"]).unlink()
    else:
        manifest["tables"]["customers"]["sql"] = "DROP TABLE customers"
        path.write_text(json.dumps(manifest), encoding="utf-8")
    target = tmp_path / "target.duckdb"
    assert needle in refused(capsys, "restore", folder, "--db", target)
    assert not target.exists()


def test_backup_refuses_bad_targets(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine", encoding="utf-8")
    assert "not an empty folder" in refused(capsys, "backup", busy, "--db", demo_db)
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    assert "no such database" in refused(
        capsys, "backup", tmp_path / "b", "--db", tmp_path / "missing.duckdb"
    )
    assert not (tmp_path / "b").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(capsys, "backup", empty, "--db", demo_db)[0] == 0  # an empty folder is fine
    assert (empty / MANIFEST).is_file()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- purge ------------------------------------------------------------------------------


def text_cells_containing(db: Path, needle: str) -> list[tuple[str, str]]:
    """(table, column) of every text cell in the whole database that contains ``needle``."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        found = []
        for table, column in con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND data_type = 'VARCHAR'"
        ).fetchall():
            hits = con.execute(
                f'SELECT count(*) FROM "{table}" WHERE contains("{column}", ?)', [needle]
            ).fetchall()[0][0]
            if hits:
                found.append((table, column))
        return found
    finally:
        con.close()


def fairness(capsys: pytest.CaptureFixture[str], db: Path) -> dict:
    code, out, err = run(capsys, "fairness", "--json", "--db", db)
    assert code == 0, err
    return json.loads(out)


def pick_referred(db: Path) -> tuple[str, str, str]:
    """A Gateway customer referred to a partner by the newest run (its messages still
    pending: the demo's history has sent its own), whose name no one else has."""
    return query(
        db,
        """
        SELECT c.tenant_id, c.name, c.contact_email FROM customers c
        JOIN referrals r USING (tenant_id) JOIN ftop_tasks t USING (referral_id)
        WHERE r.outcome = 'frp' AND r.run_id = (SELECT max(run_id) FROM runs)
          AND (SELECT count(*) FROM customers o WHERE o.name = c.name) = 1
        ORDER BY c.tenant_id LIMIT 1
        """,
    )[0]


def test_purge_removes_personal_data_and_keeps_the_history(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, name, email = pick_referred(committed)
    con = connect(committed)  # an older entry that names the customer, as the lifecycle writes
    con.execute(
        "INSERT INTO audit_log VALUES (nextval('audit_seq'), now()::TIMESTAMP, 'cli', "
        "'referral_accept', ?, ?)",
        [tenant, json.dumps({"note": f"{name} <{email}> accepted"})],
    )
    con.close()
    history_cols = (
        "referral_id, run_id, outcome, partner_id, psm_name, psm_email, queue, reason, "
        "status, region, country, language, eligible_workloads, pool_key, created_at"
    )
    history = query(
        committed,
        f"SELECT {history_cols} FROM referrals WHERE tenant_id = ? ORDER BY ALL",
        [tenant],
    )
    counts = {t: v[0] for t, v in digest(committed).items()}
    report = fairness(capsys, committed)
    for needle in (tenant, name, email):
        assert text_cells_containing(committed, needle)

    code, out, err = run(capsys, "purge", tenant, "--db", committed)
    assert code == 0, err
    alias = out.split("now ")[1].split(" ")[0]
    assert alias.startswith(PREFIX) and alias != tenant

    for needle in (tenant, name, email):
        assert text_cells_containing(committed, needle) == [], needle
    # The anonymous history stays: the same referral rows under the pseudonym, same counts.
    con = duckdb.connect(str(committed), read_only=True)
    try:
        assert (
            con.execute(
                f"SELECT {history_cols} FROM referrals WHERE tenant_id = ? ORDER BY ALL", [alias]
            ).fetchall()
            == history
        )
        customer = con.execute(
            "SELECT name, contact_email, in_ftcq, seats > 0 FROM customers WHERE tenant_id = ?",
            [alias],
        ).fetchall()
        messages = con.execute(
            "SELECT recipient_role, to_email, subject, body, status FROM outbox "
            "WHERE tenant_id = ? ORDER BY recipient_role",
            [alias],
        ).fetchall()
        tasks = con.execute("SELECT count(*) FROM ftop_tasks WHERE tenant_id = ?", [alias])
        task_count = tasks.fetchall()[0][0]
        entry = con.execute(
            "SELECT subject, details FROM audit_log WHERE action = 'purge'"
        ).fetchall()
    finally:
        con.close()
    assert customer == [(REDACTED, REDACTED, False, True)]
    assert [m[0] for m in messages] == ["customer", "partner", "psm"]
    assert all(m[2] == REDACTED and m[3] == REDACTED for m in messages)
    assert messages[0][1] == REDACTED  # the customer's address; partner and PSM's stay
    assert {m[4] for m in messages} == {"cancelled"}  # nothing about them goes out any more
    assert task_count == 1
    assert entry[0][0] == alias and tenant not in entry[0][1]
    after = {t: v[0] for t, v in digest(committed).items()}
    # One audit entry more, and the pseudonym key in meta; nothing deleted.
    assert after == counts | {"audit_log": counts["audit_log"] + 1, "meta": counts["meta"] + 1}
    assert fairness(capsys, committed) == report

    # Stable: the same tenant always maps to the same pseudonym in this database.
    con = connect(committed)
    try:
        assert pseudonym(con, tenant) == alias
    finally:
        con.close()
    # Purged already: neither the tenant id nor the pseudonym can be purged again.
    before = digest(committed)
    assert "no such customer" in refused(capsys, "purge", tenant, "--db", committed)
    assert "already purged" in refused(capsys, "purge", alias, "--db", committed)
    assert digest(committed) == before


def test_purge_a_customer_waiting_in_the_ftcq(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, email = query(
        demo_db,
        "SELECT tenant_id, contact_email FROM customers WHERE in_ftcq ORDER BY ftcq_seq LIMIT 1",
    )[0]
    backlog = scalar(demo_db, "SELECT count(*) FROM customers WHERE in_ftcq")
    assert run(capsys, "purge", tenant, "--db", demo_db)[0] == 0
    assert text_cells_containing(demo_db, tenant) == []
    assert text_cells_containing(demo_db, email) == []
    # No contact left to refer: the customer leaves the queue.
    assert scalar(demo_db, "SELECT count(*) FROM customers WHERE in_ftcq") == backlog - 1


def test_purge_unknown_tenant_exit_2(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(demo_db)
    line = refused(capsys, "purge", "T-NOBODY", "--db", demo_db)
    assert "T-NOBODY" in line and "no such customer" in line
    assert "no such database" in refused(capsys, "purge", "T1", "--db", demo_db.with_name("x.db"))
    assert digest(demo_db) == before


def test_purge_is_all_or_nothing(committed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = pick_referred(committed)[0]
    before = digest(committed)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom: failure injected by the test")

    monkeypatch.setattr(store.privacy, "audit", boom)
    con = connect(committed)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            purge(con, tenant)
    finally:
        con.close()
    assert digest(committed) == before
    monkeypatch.undo()
    con = connect(committed)
    try:
        with pytest.raises(StoreError):
            purge(con, "   ")
        assert purge(con, tenant).pseudonym.startswith(PREFIX)
    finally:
        con.close()
    assert digest(committed) != before


# --- tampered backups (#15): the manifest is data, nothing in it runs ---------------------


def _tamper(folder: Path, setup: str, outside: Path) -> None:
    """Edit a fresh backup as an attacker would; ``outside`` is a folder beside the backup."""
    path = folder / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    customers = manifest["tables"]["customers"]
    if setup == "sql-after-semicolon":
        pwned = str(outside / "pwned.csv").replace("'", "''")
        customers["sql"] += f"; COPY (SELECT 42 AS x) TO '{pwned}' (FORMAT csv)"
    elif setup == "view-sql":
        pwned = str(outside / "pwned.csv").replace("'", "''")
        manifest["views"]["partner_state"] += f"; COPY (SELECT 42) TO '{pwned}'"
    elif setup in ("path-outside", "absolute-path", "symlink-out"):
        moved = outside / "customers.parquet"
        (folder / customers["file"]).rename(moved)
        if setup == "path-outside":
            customers["file"] = f"../{outside.name}/customers.parquet"
        elif setup == "absolute-path":
            customers["file"] = str(moved)
        else:
            (folder / customers["file"]).symlink_to(moved)
    elif setup == "unknown-table":
        manifest["tables"]["evil"] = dict(customers, sql="CREATE TABLE evil (x INTEGER)")
    elif setup == "rows-not-integer":
        customers["rows"] = str(customers["rows"])
    elif setup == "sequence-not-integer":
        manifest["sequences"]["run_seq"]["next"] = "1 INCREMENT BY 1; DROP TABLE runs"
    elif setup == "newer-schema":
        manifest["schema_version"] = "999"
    elif setup == "parquet-columns":
        con = duckdb.connect()
        try:
            file = str(folder / customers["file"])
            con.execute(
                f"COPY (SELECT *, 'x' AS evil FROM read_parquet('{file}')) "
                f"TO '{outside / 'c.parquet'}' (FORMAT parquet)"
            )
        finally:
            con.close()
        (outside / "c.parquet").replace(folder / customers["file"])
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize(
    "setup, needle",
    [
        ("sql-after-semicolon", "customers"),
        ("view-sql", "partner_state"),
        ("path-outside", "customers"),
        ("absolute-path", "customers"),
        ("symlink-out", "customers"),
        ("unknown-table", "evil"),
        ("rows-not-integer", "rows"),
        ("sequence-not-integer", "run_seq"),
        ("newer-schema", "999"),
        ("parquet-columns", "evil"),
    ],
)
@pytest.mark.parametrize("target_exists", [False, True])
def test_restore_refuses_a_tampered_backup(
    committed: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    needle: str,
    target_exists: bool,
) -> None:
    folder, outside = tmp_path / "backup", tmp_path / "outside"
    outside.mkdir()
    assert run(capsys, "backup", folder, "--db", committed)[0] == 0
    _tamper(folder, setup, outside)
    target = committed if target_exists else tmp_path / "new" / "target.duckdb"
    before = digest(committed)
    line = refused(capsys, "restore", folder, "--db", target, "--force")
    assert needle in line
    assert not (outside / "pwned.csv").exists()  # nothing from the manifest ran
    if target_exists:
        assert digest(committed) == before
        assert [p.name for p in committed.parent.iterdir() if p.name.startswith(".")] == []
    else:
        assert not target.exists()
