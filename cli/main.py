"""The `frp` command line: the same engine and store as the dashboard, for scripts.

Bad input ends with exit code 2 and one line naming the file, row, column and what
was expected; nothing is written in that case (outputs are written atomically, and
store writes are transactions). ``FRP_DEBUG=1`` shows tracebacks of unexpected errors.
This module owns the entry point: the top of the parser, which error ends with which
exit code, and the console command; the subcommands live in the modules it registers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cli import assignment, delivery, interrupts, lifecycle, maintenance, rules, serve
from cli.args import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    Interrupted,
    Parser,
    UsageError,
    is_interrupt,
    watching_ctrl_c,
)
from engine.rules import RulesError
from engine.schema import InputError
from store import clock
from store.errors import StoreError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="frp",
        description="Assign FastTrack customers to FastTrack Ready Partners (FRP Assign).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (assignment, delivery, lifecycle, maintenance, rules, serve):
        module.register(sub)
    _now_arg(parser)
    return parser


def _now_arg(parser: argparse.ArgumentParser) -> None:
    """``--now`` on the command and on every subcommand, so it may stand before or after
    the subcommand's name; suppressed defaults keep a later parser from erasing it."""
    parser.add_argument(
        "--now",
        default=argparse.SUPPRESS,
        metavar="ISO",
        help=f"the clock's time for this command (UTC date or date-time; default ${clock.ENV}, "
        "else the real time)",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _now_arg(child)


def main(argv: Sequence[str] | None = None) -> int:
    with watching_ctrl_c():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        if not hasattr(args, "now"):
            return _run(args)
        with clock.frozen(args.now):  # for this command only (tests call main in process)
            return _run(args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except (InputError, RulesError, StoreError, clock.ClockError) as exc:
        return _fail(f"frp: {exc}", EXIT_BAD_INPUT)
    except Interrupted as exc:
        return _fail(f"frp: {exc}", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        return _fail("frp: interrupted; nothing was written", EXIT_INTERRUPTED)
    except BrokenPipeError:  # stdout closed early (`frp fairness | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # an unexpected fault: one line unless debugging
        if is_interrupt(exc):  # Ctrl-C during a query: DuckDB's own exception
            return _fail("frp: interrupted; nothing was written", EXIT_INTERRUPTED)
        if _damaged(exc):  # found by a query, past the checks made on opening the file
            from store.db import damaged_message, resolve_path

            return _fail(
                f"frp: {damaged_message(resolve_path(getattr(args, 'db', None)), exc)}",
                EXIT_BAD_INPUT,
            )
        if os.environ.get("FRP_DEBUG"):
            raise
        return _fail(
            f"frp: internal error: {type(exc).__name__}: {exc} (FRP_DEBUG=1 for details)",
            EXIT_ERROR,
        )


def _run(args: argparse.Namespace) -> int:
    """The command's handler; a writing command interrupted says what it had saved,
    looked up (cli/interrupts.py)."""
    check = interrupts.check_for(args)
    try:
        return args.handler(args)
    except BaseException as exc:
        if check is None or not is_interrupt(exc):
            raise
        raise Interrupted(check()) from None


def _damaged(exc: BaseException) -> bool:
    """A damaged database file, as DuckDB reports it (DuckDB not loaded: it cannot be)."""
    if "duckdb" not in sys.modules:
        return False
    from store.db import damaged

    return damaged(exc)


def _fail(message: str, code: int) -> int:
    print(message.splitlines()[0] if message else "frp: error", file=sys.stderr)
    return code


def run() -> None:
    """The `frp` console command: :func:`main`, then leave without tearing the heap down.

    A large run leaves big frames and many small objects behind; freeing them one by one
    at interpreter exit is about a tenth of a second the person waits for and nothing
    needs (every file is written and closed, every connection closed, by then).
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `frp ... | head`: the reader has gone
        code = code or 141
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
