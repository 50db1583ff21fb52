"""Concurrent use: two `frp commit` processes, two dashboard sessions, a busy file, and a
dashboard that keeps nothing open between runs.

DuckDB lets one process at a time hold the file read-write. The store opens a connection
per operation and waits (``FRP_LOCK_TIMEOUT``) for a busy file; inside one process each
connection has its own transaction and a colliding commit is run again
(``store.db.retry_conflicts``). These tests check that nothing is lost or doubled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from engine.rules import load_rules
from store import state
from store.commits import commit
from store.db import connect, retry_conflicts
from store.files import write_table

ROOT = Path(__file__).resolve().parent.parent
FRP = str(Path(sys.executable).parent / "frp")
ROUNDS, SIZE, STEP = 5, 100, 50  # cohort r of a pair: backlog[r*2*STEP + k*STEP :][:SIZE]


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FRP_DEBUG", "FRP_LOCK_TIMEOUT")}
    env["FRP_DB"] = str(db)
    env.update(extra)
    return env


def _ro(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _cohorts(db: Path) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    """Pairs of overlapping slices of the FTCQ backlog, one pair per round."""
    con = connect(db, read_only=True)
    try:
        backlog = state.backlog(con)
    finally:
        con.close()
    pairs = []
    for r in range(ROUNDS):
        start = r * 2 * STEP
        pairs.append((backlog.slice(start, SIZE), backlog.slice(start + STEP, SIZE)))
    assert pairs[-1][1].height == SIZE, "the demo backlog is long enough"
    return pairs


def _before(db: Path) -> tuple[int, set[str]]:
    """The last run id and the partners at or under capacity, before the test."""
    last = _ro(db, "SELECT coalesce(max(run_id), 0) FROM runs")[0][0]
    room = {
        p for (p,) in _ro(db, "SELECT partner_id FROM partner_state WHERE active_total <= capacity")
    }
    return last, room


def _check(db: Path, last_run: int, room: set[str], cohorts: list[pl.DataFrame]) -> None:
    """No customer holds two open referrals, no partner that had room is over capacity,
    and every customer of every cohort got exactly one referral from these runs."""
    doubled = _ro(
        db,
        "SELECT tenant_id, count(*) FROM referrals WHERE status IN ('active', 'accepted') "
        "GROUP BY tenant_id HAVING count(*) > 1",
    )
    assert doubled == []
    over = {
        p for (p,) in _ro(db, "SELECT partner_id FROM partner_state WHERE active_total > capacity")
    }
    assert not over & room
    new = _ro(db, f"SELECT tenant_id, count(*) FROM referrals WHERE run_id > {last_run} GROUP BY 1")
    assert all(n == 1 for _, n in new), "a customer referred twice by these runs"
    wanted = set().union(*(set(c["tenant_id"].to_list()) for c in cohorts))
    assert {t for t, _ in new} == wanted, "referrals differ from the union of the cohorts"
    assert (
        _ro(
            db,
            "SELECT count(*) FROM customers WHERE in_ftcq AND tenant_id IN "
            "(SELECT tenant_id FROM referrals WHERE status IN ('active', 'accepted'))",
        )[0][0]
        == 0
    )


def test_two_commit_processes_at_once(demo_db: Path, tmp_path: Path, record_property) -> None:
    last_run, room = _before(demo_db)
    pairs = _cohorts(demo_db)
    tried = committed = 0
    for r, pair in enumerate(pairs):
        files = []
        for k, cohort in enumerate(pair):
            f = tmp_path / f"cohort-{r}-{k}.parquet"
            write_table(cohort, f)
            files.append(f)
        procs = [
            subprocess.Popen(
                [FRP, "commit", "--cohort", str(f)],
                env=_env(demo_db),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
            )
            for f in files
        ]
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            assert out.startswith(("run ", "nothing committed: all")), out
            committed += out.startswith("run ")
            tried += 1
    _check(demo_db, last_run, room, [c for pair in pairs for c in pair])
    runs = _ro(demo_db, f"SELECT count(*) FROM runs WHERE run_id > {last_run}")[0][0]
    # a cohort already covered by the ones before commits nothing (it says so); none is lost
    assert runs == committed and committed >= len(pairs)
    record_property("concurrent_commits", tried)


def test_two_sessions_in_one_process(demo_db: Path, record_property) -> None:
    """Two dashboard sessions: two connections in one process, each its own transaction."""
    last_run, room = _before(demo_db)
    pairs = _cohorts(demo_db)
    rules = load_rules()
    attempts = {"n": 0, "committed": 0}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def session(cohort: pl.DataFrame, barrier: threading.Barrier) -> None:
        con = connect(demo_db)
        try:
            barrier.wait()

            def once():
                with lock:
                    attempts["n"] += 1
                return commit(con, rules, "round-robin", cohort, actor="session", source="t")

            summary = retry_conflicts(once, attempts=10, what="the commit")
            with lock:
                attempts["committed"] += summary.run_id is not None
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            con.close()

    for pair in pairs:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=session, args=(c, barrier)) for c in pair]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    _check(demo_db, last_run, room, [c for pair in pairs for c in pair])
    runs = _ro(demo_db, f"SELECT count(*) FROM runs WHERE run_id > {last_run}")[0][0]
    assert runs == attempts["committed"] and runs >= len(pairs)
    record_property("concurrent_commits", 2 * len(pairs))
    record_property("commit_conflicts_retried", attempts["n"] - 2 * len(pairs))


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("BEGIN TRANSACTION")
con.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
print("holding", flush=True)
if sys.argv[2] == "until-released":  # as long as the test needs, however slow the machine
    sys.stdin.readline()
else:
    time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
con.close()
"""


def _hold(db: Path, seconds: float | str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def _simulate(db: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`frp simulate --db db` in a process of its own, with ``env`` added to _env's."""
    return subprocess.run(
        [FRP, "simulate", "--db", str(db)],
        env=_env(db, **env),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_a_busy_database_is_waited_for_then_refused_in_one_line(
    demo_db: Path, tmp_path: Path
) -> None:
    holder = _hold(demo_db, 1.5)
    started = time.monotonic()
    proc = _simulate(demo_db, tmp_path)
    waited = time.monotonic() - started
    holder.wait(10)
    assert proc.returncode == 0, proc.stderr
    assert "customers simulated" in proc.stdout
    assert waited >= 0.5  # it had to wait for the holder

    # Held until refused: a fixed hold could end before a slow machine's `frp` even starts.
    # How long the refusal takes is measured by `make bench` (bench/unit.py).
    holder = _hold(demo_db, "until-released")
    try:
        proc = _simulate(demo_db, tmp_path, FRP_LOCK_TIMEOUT="0.5")
    finally:
        holder.communicate("release\n", timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "the database is busy" in lines[0] and "tried for 0.5 s" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_a_bad_lock_timeout_is_refused_in_one_line(demo_db: Path, tmp_path: Path) -> None:
    proc = _simulate(demo_db, tmp_path, FRP_LOCK_TIMEOUT="soon")
    assert proc.returncode == 2
    assert "FRP_LOCK_TIMEOUT" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


OPENER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO meta VALUES ('concurrency_probe', 'ok') ON CONFLICT DO NOTHING")
con.close()
print("opened")
"""


@pytest.mark.parametrize("page", ["capacity", "referrals"])
def test_the_dashboard_keeps_no_connection_open(demo_db: Path, page: str) -> None:
    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=60)
    at.run()
    assert not at.exception
    probe = subprocess.run(
        [sys.executable, "-c", OPENER, str(demo_db)], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0 and "opened" in probe.stdout, probe.stderr
    if page == "capacity":  # `frp commit` works while the page is open, and shows at once
        assert _metric(at, "Backlog waiting in FTCQ") == "1,200"
        proc = subprocess.run(
            [FRP, "commit"], env=_env(demo_db), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and proc.stdout.startswith("run "), proc.stderr
    at.run()
    assert not at.exception
    if page == "capacity":
        assert _metric(at, "Backlog waiting in FTCQ") == "0"


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)
