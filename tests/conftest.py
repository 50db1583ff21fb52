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
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from store.bootstrap import build_demo

ROOT = Path(__file__).resolve().parent.parent


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's temporary folder, which every xdist worker's own folder is in."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_shared(shared: Path) -> Path:
    """The demo built once in ``shared``/demo-shared, under a file lock: whoever gets the
    lock first builds, the others wait for that build and reuse it. Returns its folder.

    Built as `frp demo` builds on a missing file (``replace`` left off): that command's
    own test (test_cli.py) builds only with ``--force``."""
    folder = shared / "demo-shared"
    folder.mkdir(exist_ok=True)
    with open(shared / "demo-shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        summary = folder / "summary.json"
        if not summary.exists():  # written last: a failed build leaves none
            target = folder / "demo.duckdb"
            target.unlink(missing_ok=True)  # a build that died before its summary
            built = build_demo(target)
            summary.write_text(json.dumps(built), encoding="utf-8")
    return folder


def needs_demo(item: pytest.Item) -> bool:
    return "demo_build" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests without the demo first (in their order), while it is built in the
    background (``demo_started``); every worker collects the same order, as xdist needs.
    Without it, both workers' first tests wait for the build, one of them idle (~20 s)."""
    items.sort(key=needs_demo)


@pytest.fixture(scope="session", autouse=True)
def demo_started(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Start the run's demo build in a child process as the run begins, if a test of the
    run needs it: the first tests (those without the demo) run meanwhile. A process, not a
    thread: the build sets the store's clock (``store.clock.frozen``) for its process. The
    first worker to get here starts it; a test that needs the demo before it is done waits
    on its lock (``demo_build``), and a failed build is retried there, failing that test."""
    child = None
    if any(needs_demo(item) for item in request.session.items):
        shared = shared_folder(tmp_path_factory)
        try:
            os.close(os.open(shared / "demo-started", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass  # another worker started it
        else:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from pathlib import Path; "
                    "from tests.conftest import build_shared; build_shared(Path(sys.argv[1]))",
                    str(shared),
                ],
                cwd=ROOT,
            )
    yield
    if child is None:
        return
    try:  # waited for, or killed: never left behind
        code = child.wait(timeout=300)
    except subprocess.TimeoutExpired:
        child.kill()
        code = child.wait()
    if code != 0:
        pytest.fail(f"the background demo build exited {code}")


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The demo database and the summary its build returned, built once per pytest run.

    The build runs the product over 26 weeks, the suite's slowest setup, and a seeded build
    gives the same rows every time: so it is built once in the run's shared temporary
    folder (``build_shared``, started in the background by ``demo_started``) and every
    xdist worker reuses it. Each worker takes its own copy, so no two processes ever open
    one file (DuckDB locks a file per process)."""
    folder = build_shared(shared_folder(tmp_path_factory))
    own = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    shutil.copy(folder / "demo.duckdb", own)
    return own, json.loads((folder / "summary.json").read_text(encoding="utf-8"))


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
