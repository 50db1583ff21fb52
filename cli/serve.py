"""`frp serve`: the dashboard, started the one way every deployment and test starts it.

The container's command (deploy/Dockerfile) and the browser tests' server
(bench/server.py) both run ``frp serve``, so what the tests drive is what a team runs.
The command replaces itself with Streamlit (``os.execv``): signals reach the server
directly, and a container's stop stops it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.args import db_arg

APP = Path(__file__).resolve().parent.parent / "app.py"
#: Where the container listens, and where `frp serve` listens by default.
DEFAULT_ADDRESS, DEFAULT_PORT = "0.0.0.0", 8501


def command(address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT) -> list[str]:
    """``frp serve`` as argv: the container's CMD, and (after ``python -m cli.main``) the
    browser tests' server."""
    return ["frp", "serve", "--address", address, "--port", str(port)]


def streamlit_argv(address: str, port: int) -> list[str]:
    """What ``frp serve`` runs: Streamlit on ``app.py``, headless, no file watcher (the
    code does not change under a deployment), no usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the dashboard (what the container runs)")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help=f"default {DEFAULT_ADDRESS}")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    db_arg(p)
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.db:
        os.environ["FRP_DB"] = str(args.db)  # the dashboard resolves the store as `frp` does
    if hasattr(args, "now"):
        os.environ["FRP_NOW"] = args.now  # the dashboard reads the clock from FRP_NOW
    argv = streamlit_argv(args.address, args.port)
    os.execv(argv[0], argv)
    return 0  # not reached: execv replaces the process
