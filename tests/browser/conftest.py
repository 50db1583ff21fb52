"""Real-browser fixtures: a Streamlit server on a copy of the demo database, Debian's Chromium.

Recipe: docs/testing.md, "Browser tests". A browser that cannot start fails the test; it is
never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.server import CHROMIUM, CHROMIUM_ARGS, start_server, stop_server


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    return {"executable_path": CHROMIUM, "args": list(CHROMIUM_ARGS)}


@pytest.fixture(scope="session")
def browser_context_args() -> dict:
    # Tall: Streamlit scrolls inside its own container, so screenshots show the viewport.
    return {"viewport": {"width": 1400, "height": 2400}}


@contextmanager
def private_server(master: Path, folder: Path) -> Iterator[tuple[str, Path]]:
    """A dashboard of its own on a copy of ``master`` in ``folder``: its URL and database,
    for tests that write (the shared ``app_server`` stays as built) or need their own
    environment (set it before entering)."""
    proc, url = start_server(master, folder)
    try:
        yield url, folder / "frp.duckdb"
    finally:
        stop_server(proc)


@pytest.fixture
def server_env() -> dict[str, str]:
    """Environment for ``own_server`` (a module overrides it, e.g. to set the clock)."""
    return {}


@pytest.fixture
def own_server(
    demo_db_master: Path, tmp_path: Path, server_env: dict[str, str]
) -> Iterator[tuple[str, Path]]:
    """A private dashboard (URL, database) started with ``server_env`` set."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in server_env.items():
            env.setenv(key, value)  # the server inherits the environment
        with private_server(demo_db_master, tmp_path) as served:
            yield served


@pytest.fixture(scope="session")
def app_server(demo_db_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a dashboard serving a private copy of the demo database."""
    proc, url = start_server(demo_db_master, tmp_path_factory.mktemp("browser"))
    yield url
    stop_server(proc)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
