"""Shared fixtures: the demo database, built once per test run (shared by the xdist
workers) and copied per test.

The demo world is also the test fixture (as in datasette): tests see the same data as
the dashboard and the docs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from store.bootstrap import build_demo


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The demo database and the summary its build returned, built once per pytest run.

    The build runs the product over 26 weeks, the suite's slowest setup, and a seeded build
    gives the same rows every time: so under pytest-xdist the first worker to get here
    builds it in the run's shared temporary folder, under a file lock, and the others wait
    for it and reuse it. Each worker takes its own copy, so no two processes ever open one
    file (DuckDB locks a file per process)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's folder is in the run's folder
        shared = shared.parent
    folder = shared / "demo-shared"
    folder.mkdir(exist_ok=True)
    summary = folder / "summary.json"
    with open(shared / "demo-shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not summary.exists():  # written last: a failed build leaves none
            built = build_demo(folder / "demo.duckdb", replace=True)
            summary.write_text(json.dumps(built), encoding="utf-8")
    own = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    shutil.copy(folder / "demo.duckdb", own)
    return own, json.loads(summary.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def demo_db_master(demo_build: tuple[Path, dict[str, int]]) -> Path:
    """The demo database, built once per run; never write to it (use ``demo_db``)."""
    return demo_build[0]


@pytest.fixture(scope="session")
def demo_summary(demo_build: tuple[Path, dict[str, int]]) -> dict[str, int]:
    """What ``build_demo`` returned for ``demo_db_master`` (what `frp demo` prints)."""
    return demo_build[1]


@pytest.fixture
def demo_db(demo_db_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the demo database, also set as FRP_DB for code that resolves it."""
    return private_copy(demo_db_master, tmp_path, monkeypatch)


def private_copy(master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of ``master`` for one test, set as FRP_DB for code that resolves it."""
    path = tmp_path / "frp.duckdb"
    shutil.copy(master, path)
    monkeypatch.setenv("FRP_DB", str(path))
    return path


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every (file name, details) a download button was wired to audit as an export of
    personal data (``ui.auth.export_callback``), in the order the page drew them."""
    from ui import auth

    seen: list[tuple[str, str]] = []
    real = auth.export_callback

    def spy(subject: str, details: str = "") -> Callable[[], None]:
        seen.append((subject, details))
        return real(subject, details)

    monkeypatch.setattr(auth, "export_callback", spy)
    return seen


@pytest.fixture
def empty_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A path for a database that does not exist yet (set as FRP_DB)."""
    path = tmp_path / "empty.duckdb"
    monkeypatch.setenv("FRP_DB", str(path))
    return path


# --- Counts the robustness tests report (tests/test_bad_input.py, test_fuzz.py, test_crash.py,
# test_chaos.py)
# Each test adds to ``record_property(name, n)``; the totals are printed at the end of the
# run (also under pytest-xdist, which carries user_properties back to the controller). The
# teardown report is read because it holds what the test and its fixtures recorded.
COUNTED = {
    "bad_inputs": "bad inputs tried",
    "bad_inputs_accepted": "of them imported cleanly",
    "kills": "kills survived",
    "runs_lost": "runs lost",
    "chaos_steps": "chaos steps",
}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    totals: dict[str, int] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name in COUNTED:
                    totals[name] = totals.get(name, 0) + int(value)
    if totals:
        shown = ", ".join(f"{COUNTED[k]}: {totals[k]:,}" for k in COUNTED if k in totals)
        terminalreporter.write_line(f"robustness: {shown}")


# --- AppTest (tests/app_helpers.py holds the plain functions) ---------------------------


@pytest.fixture
def fresh_caches() -> None:
    """Forget cached reads: each test has its own database file, and a read cached for
    another test's file must not leak into this one."""
    import streamlit as st

    st.cache_data.clear()


@pytest.fixture(scope="session")
def committed_master(demo_db_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo world plus run 1 (round robin over the backlog): open FTOP tasks, a pending
    outbox, active referrals. Never write to it (use ``committed_db``)."""
    from engine.rules import load_rules
    from store.commits import commit
    from store.db import connect

    path = tmp_path_factory.mktemp("committed") / "frp.duckdb"
    shutil.copy(demo_db_master, path)
    con = connect(path)
    try:
        commit(con, load_rules(), "round-robin", actor="test")
    finally:
        con.close()
    return path


@pytest.fixture
def committed_db(committed_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of ``committed_master``, set as FRP_DB."""
    return private_copy(committed_master, tmp_path, monkeypatch)
