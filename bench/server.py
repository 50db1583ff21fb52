"""A Streamlit server of the dashboard on a copy of a database, for browser tests and the
benchmark's browser timings alike (one way to start it, so both measure the same app).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.paths import ROOT
from cli.serve import command

#: Debian's Chromium and the flags it needs here: without the background-networking ones
#: it keeps trying hosts it cannot reach.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Seconds a server may take to answer its health check.
START_TIMEOUT = 60


class ServerError(RuntimeError):
    """The server did not come up; the message holds its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_argv(port: int) -> list[str]:
    """`frp serve` on loopback (``cli.serve.command``, the container's command too), run
    by this interpreter so it needs no `frp` on the PATH."""
    return [sys.executable, "-m", "cli.main", *command("127.0.0.1", port)[1:]]


def start_server(db_source: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    """`frp serve` (the dashboard as deployed) on a copy of ``db_source`` in ``workdir``;
    (process, URL) once it answers its health check. The copy keeps the source untouched."""
    db = workdir / "frp.duckdb"
    shutil.copy(db_source, db)
    port = free_port()
    log_path = workdir / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            server_argv(port),
            cwd=ROOT,
            env={**os.environ, "FRP_DB": str(db)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise ServerError("streamlit did not start:\n" + log_path.read_text())
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
