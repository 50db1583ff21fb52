"""What every `frp` subcommand shares: exit codes, the parser class, the common flags
(--db, --rules, --policy), the progress printer and the check that a database exists.

The subcommand modules import from here, and cli/main.py imports them: nothing in cli/
imports back from the entry point.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from engine.reasons import Policy
from engine.rules import Rules, load_rules
from store.errors import StoreError

if TYPE_CHECKING:
    import duckdb

    from engine.assign import Progress

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2
POLICIES = [p.value for p in Policy]

#: What to do about a missing database, unless a command says otherwise.
_HOW_TO_BUILD = (
    "build the demo with `frp demo` or import partners with `frp import --partners FILE`"
)


class UsageError(Exception):
    """Arguments that cannot work together; reported like bad input (exit 2)."""


class Interrupted(Exception):
    """Ctrl-C, with what the store says was saved (exit 130)."""


class _CtrlC:
    """Whether a Ctrl-C reached the command being run (:func:`watching_ctrl_c`)."""

    seen = False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _CtrlC.seen = True
    signal.default_int_handler(signum, frame)  # KeyboardInterrupt, as Python's own handler


@contextmanager
def watching_ctrl_c() -> Iterator[None]:
    """Remember a Ctrl-C while a command runs, so that :func:`is_interrupt` knows it even when
    a library turned the KeyboardInterrupt into an error of its own: numpy reports one raised
    inside a structured-array comparison as "TypeError: Cannot compare structured arrays".
    Python's own handler is kept otherwise; outside the main thread nothing is changed."""
    _CtrlC.seen = False
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    if previous is not signal.default_int_handler:  # Ctrl-C ignored, or handled elsewhere
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C in any of its forms: Python's KeyboardInterrupt, DuckDB's InterruptException
    for a query it stopped, the RuntimeError "Query interrupted" DuckDB raises when the
    query was feeding a Polars or Arrow result (DuckDB not imported for commands without
    it), and any error at all once a Ctrl-C has arrived (:func:`watching_ctrl_c`)."""
    duckdb = sys.modules.get("duckdb")
    return (
        _CtrlC.seen
        or isinstance(exc, KeyboardInterrupt)
        or (duckdb is not None and isinstance(exc, duckdb.InterruptException))
        or (type(exc) is RuntimeError and str(exc).startswith("Query interrupted"))
    )


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        raise UsageError(f"{self.prog}: {message}")


def db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="DuckDB file (default: $FRP_DB, else data/frp.duckdb)")


def rules_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rules",
        help="rules TOML file (default: the team's rules in the store, `frp rules show`)",
    )


def given_rules(args: argparse.Namespace) -> Rules | None:
    """The ``--rules`` file's rules, read before the store is opened (a file that does not
    load writes nothing); None when the store's current rules apply."""
    return load_rules(args.rules) if args.rules else None


def rules_in(con: duckdb.DuckDBPyConnection, given: Rules | None) -> Rules:
    """``given`` (a ``--rules`` file), else the team's current rules in the store."""
    if given is not None:
        return given
    from store.rules import current

    return current(con).rules


def policy_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy",
        choices=POLICIES,
        default=Policy.ROUND_ROBIN.value,
        help="selection policy (default: round-robin)",
    )


def progress(label: str) -> Progress | None:
    """A progress printer for long runs on a terminal; silent when piped."""
    if not sys.stderr.isatty():
        return None

    def report(done: int, total: int) -> None:
        end = "\n" if done >= total else "\r"
        print(f"{label}: {done:,} / {total:,}", end=end, file=sys.stderr, flush=True)

    return report


def existing(path: Path, advice: str = _HOW_TO_BUILD) -> Path:
    """``path`` when the database file is there; else a StoreError that says what to do.

    Checked before connecting, because connecting would create an empty database.
    """
    if not path.exists():
        raise StoreError(f"{path}: no such database" + (f"; {advice}" if advice else ""))
    return path
