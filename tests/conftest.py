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
