"""Shared fixtures: the demo database, built once per test session and copied per test.

The demo world is also the test fixture (as in datasette): tests see the same data as
the dashboard and the docs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from store.bootstrap import build_demo


@pytest.fixture(scope="session")
def demo_db_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database, built once; never write to it (use ``demo_db``)."""
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    build_demo(path)
    return path


@pytest.fixture
def demo_db(demo_db_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the demo database, also set as FRP_DB for code that resolves it."""
    path = tmp_path / "frp.duckdb"
    shutil.copy(demo_db_master, path)
    monkeypatch.setenv("FRP_DB", str(path))
    return path


@pytest.fixture
def empty_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A path for a database that does not exist yet (set as FRP_DB)."""
    path = tmp_path / "empty.duckdb"
    monkeypatch.setenv("FRP_DB", str(path))
    return path


# --- Counts the robustness tests report (tests/test_bad_input.py, test_fuzz.py, test_crash.py)
# Each test adds to ``record_property(name, n)``; the totals are printed at the end of the
# run (also under pytest-xdist, which carries user_properties back to the controller). The
# teardown report is read because it holds what the test and its fixtures recorded.
COUNTED = {
    "bad_inputs": "bad inputs tried",
    "bad_inputs_accepted": "of them imported cleanly",
    "kills": "kills survived",
    "runs_lost": "runs lost",
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
