"""Real-browser fixtures: a Streamlit server on a copy of the demo database, Debian's Chromium.

Recipe: ../shared/browser-testing.md. A browser that cannot start fails the test; it is
never skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    return {
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args() -> dict:
    # Tall: Streamlit scrolls inside its own container, so screenshots show the viewport.
    return {"viewport": {"width": 1400, "height": 2400}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_source: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    """Start `streamlit run app.py` on a copy of ``db_source``; wait until it is healthy."""
    db = workdir / "frp.duckdb"
    shutil.copy(db_source, db)
    port = _free_port()
    log_path = workdir / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "app.py"),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=ROOT,
            env={**os.environ, "FRP_DB": str(db)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError("streamlit did not start:\n" + log_path.read_text())
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
