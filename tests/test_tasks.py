"""FTOP task 3186 (list, close) and the PSM load, through the store and through `frp`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from store import tasks
from store.db import connect, open_db
from store.referrals import psm_load

FRP = str(Path(sys.executable).parent / "frp")


@pytest.fixture
def db(committed_db: Path) -> Path:
    """The demo world after one round-robin run over the backlog (conftest): open tasks exist."""
    return committed_db


@pytest.fixture
def con(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_db(db) as c:
        yield c


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchall()[0]


def frp(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FRP_DB", "FRP_DEBUG")}
    env["FRP_DB"] = str(cwd / "unset-FRP_DB.duckdb")
    proc = subprocess.run(
        [FRP, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- tasks through the store -----------------------------------------------------------


def test_tasks_are_listed_with_names_and_filtered(con: duckdb.DuckDBPyConnection) -> None:
    everything = tasks.tasks(con)
    (n,) = one(con, "SELECT count(*) FROM ftop_tasks")
    assert everything.height == n > 0
    assert everything["task_id"].to_list() == sorted(everything["task_id"])
    assert set(everything["task_number"]) == {3186}
    # The demo's history cancelled the tasks of the referrals that were declined or expired.
    assert set(everything["status"]) == {"open", "cancelled"}
    assert everything["customer"].null_count() == 0 and everything["partner"].null_count() == 0
    assert tasks.tasks(con, "closed").height == 0
    with pytest.raises(tasks.TaskError, match="'done'"):
        tasks.tasks(con, "done")


def test_closing_a_task_sets_closed_at_and_audits(con: duckdb.DuckDBPyConnection) -> None:
    task_id, tenant, referral = one(
        con, "SELECT task_id, tenant_id, referral_id FROM ftop_tasks ORDER BY task_id LIMIT 1"
    )
    closed = tasks.close(con, task_id, actor="tester")
    assert (closed["task_id"], closed["status"]) == (task_id, "closed")
    assert closed["closed_at"] is not None and closed["closed_at"] >= closed["created_at"]
    assert one(con, "SELECT status, closed_at FROM ftop_tasks WHERE task_id = ?", [task_id]) == (
        "closed",
        closed["closed_at"],
    )
    actor, subject, details = one(
        con,
        "SELECT actor, subject, details FROM audit_log WHERE action = 'close_task' "
        "ORDER BY id DESC LIMIT 1",
    )
    assert (actor, subject) == ("tester", f"task {task_id}")
    assert json.loads(details) | {} == {
        "task_number": 3186,
        "tenant_id": tenant,
        "referral_id": referral,
        "partner_id": closed["partner_id"],
    }
    assert tasks.tasks(con, "closed")["task_id"].to_list() == [task_id]
    assert task_id not in tasks.tasks(con, "open")["task_id"].to_list()


def test_closing_twice_or_an_unknown_task_changes_nothing(con: duckdb.DuckDBPyConnection) -> None:
    (task_id,) = one(con, "SELECT min(task_id) FROM ftop_tasks")
    tasks.close(con, task_id)
    before = one(con, "SELECT count(*), max(closed_at) FROM audit_log, ftop_tasks")
    with pytest.raises(tasks.TaskError, match=f"task {task_id}: already closed on "):
        tasks.close(con, task_id)
    with pytest.raises(tasks.TaskError, match="task 999999: no such FTOP task"):
        tasks.close(con, 999_999)
    assert one(con, "SELECT count(*), max(closed_at) FROM audit_log, ftop_tasks") == before


# --- PSM load --------------------------------------------------------------------------


def test_psm_load_counts_open_referrals_per_psm(con: duckdb.DuckDBPyConnection) -> None:
    load = psm_load(con)
    assert load.columns == ["psm_name", "psm_email", "partners", "open_referrals", "partner_ids"]
    (n_open,) = one(
        con,
        "SELECT count(*) FROM referrals WHERE outcome = 'frp' AND status IN ('active', 'accepted')",
    )
    (n_partners,) = one(con, "SELECT count(*) FROM partners")
    assert load["open_referrals"].sum() == n_open > 0
    assert load["partners"].sum() == n_partners
    assert load["open_referrals"].to_list() == sorted(load["open_referrals"], reverse=True)
    top = load.row(0, named=True)
    (want,) = one(
        con,
        "SELECT count(*) FROM referrals r JOIN partners p USING (partner_id) "
        "WHERE p.psm_email = ? AND r.outcome = 'frp' AND r.status IN ('active', 'accepted')",
        [top["psm_email"]],
    )
    assert top["open_referrals"] == want
    assert top["partner_ids"] == sorted(
        r[0]
        for r in con.execute(
            "SELECT partner_id FROM partners WHERE psm_email = ?", [top["psm_email"]]
        ).fetchall()
    )


def test_psm_load_on_an_empty_store(tmp_path: Path) -> None:
    con = connect(tmp_path / "empty.duckdb")
    try:
        assert psm_load(con).height == 0
    finally:
        con.close()


# --- the command line ------------------------------------------------------------------


def test_cli_task_list_and_close(db: Path, tmp_path: Path) -> None:
    listed = frp("task", "list", "--status", "open", "--json", "--db", db, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert rows and {r["status"] for r in rows} == {"open"}
    task_id = rows[0]["task_id"]

    closed = frp("task", "close", task_id, "--db", db, cwd=tmp_path)
    assert closed.returncode == 0, closed.stderr
    assert closed.stdout.startswith(f"task {task_id} (FTOP 3186, {rows[0]['tenant_id']} → ")
    assert "closed at" in closed.stdout

    again = frp("task", "close", task_id, "--db", db, cwd=tmp_path)
    assert f"task {task_id}: already closed" in error_line(again)

    text = frp("task", "list", "--status", "closed", "--db", db, cwd=tmp_path)
    assert text.returncode == 0
    header, *lines = text.stdout.splitlines()
    assert header.split() == ["task", "status", "tenant", "customer", "partner", "opened", "closed"]
    assert len(lines) == 1 and lines[0].split()[:3] == [
        str(task_id),
        "closed",
        rows[0]["tenant_id"],
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("task", "close", "424242"), "task 424242: no such FTOP task"),
        (("task", "close", "three"), "invalid int value: 'three'"),
        (("task", "close"), "TASK_ID"),
        (("task", "list", "--status", "done"), "invalid choice: 'done'"),
        (("task",), "the following arguments are required: action"),
    ],
)
def test_cli_task_errors_are_one_line(
    db: Path, tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    db_args = ("--db", db) if len(args) > 1 else ()
    assert says in error_line(frp(*args, *db_args, cwd=tmp_path))


def test_cli_commands_need_an_existing_database(tmp_path: Path) -> None:
    for args in (("task", "list"), ("psm",), ("task", "close", "1")):
        line = error_line(frp(*args, "--db", tmp_path / "none.duckdb", cwd=tmp_path))
        assert "no such database" in line
    assert not (tmp_path / "none.duckdb").exists()


def test_cli_psm(db: Path, tmp_path: Path) -> None:
    as_json = frp("psm", "--json", "--db", db, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    con = connect(db, read_only=True)
    try:
        assert rows == psm_load(con).to_dicts()
    finally:
        con.close()
    text = frp("psm", "--db", db, cwd=tmp_path)
    header, first, *_ = text.stdout.splitlines()
    assert header.split() == ["PSM", "email", "partners", "open", "referrals"]
    top = rows[0]
    assert top["psm_email"] in first
    assert first.split()[-2:] == [str(top["partners"]), str(top["open_referrals"])]
