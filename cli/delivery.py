"""Subcommands for delivery: the notification outbox (send, export), PSM load, FTOP tasks,
and the hand-off of CSS referrals to the delivery team (`frp css export|handoff`).

``frp outbox send`` reads its SMTP settings from ``FRP_SMTP_*`` only (never from the
database); a missing or bad setting, an unknown task or a task closed already ends with
exit code 2 and one line, like every other bad input.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

from cli.args import EXIT_OK, UsageError, db_arg, existing, progress
from store.errors import StoreError

# The store (DuckDB, the mail templates) is imported by the handlers, not here: every
# `frp` command builds the whole parser, and `frp simulate` on files should not pay
# about 50 ms for loading what only these commands use.


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to ``sub``, each with its handler."""
    actions = _group(
        sub, "outbox", "send the queued referral notifications, or export them", cmd_outbox
    )
    a = actions.add_parser(
        "send", help="send pending notifications over SMTP (settings: FRP_SMTP_* variables)"
    )
    a.add_argument(
        "--attempts",
        type=_positive_int,
        default=3,
        help="tries per message on temporary failures (default 3)",
    )
    a.add_argument(
        "--backoff",
        type=_seconds,
        default=0.2,
        help="seconds before the first retry, doubling after each (default 0.2)",
    )
    db_arg(a)
    a = actions.add_parser("export", help="write one .eml file per notification into DIR")
    a.add_argument("dir", metavar="DIR", help="folder for the .eml files (created if missing)")
    a.add_argument(
        "--status",
        choices=["pending", "sent", "failed", "cancelled"],
        action="append",
        help="only messages with this status (repeatable; default: all)",
    )
    db_arg(a)
    a = actions.add_parser(
        "retry", help="send a failed message again, to a corrected address, at the next send"
    )
    a.add_argument("message_id", metavar="MESSAGE_ID", help="the failed message's id")
    a.add_argument("--email", required=True, metavar="ADDRESS", help="the address to send to")
    db_arg(a)

    p = sub.add_parser("psm", help="open referrals per Partner Success Manager")
    p.add_argument("--json", action="store_true", help="print JSON instead of a text table")
    db_arg(p)
    p.set_defaults(handler=cmd_psm)

    actions = _group(sub, "task", "FTOP task 3186: list or close", cmd_task)
    a = actions.add_parser("list", help="list FTOP 3186 tasks")
    # store.tasks.STATUSES, spelled out: building the parser loads no DuckDB (tested)
    a.add_argument(
        "--status", choices=["open", "closed", "cancelled"], help="only tasks with this status"
    )
    a.add_argument("--json", action="store_true", help="print JSON instead of a text table")
    db_arg(a)
    a = actions.add_parser("close", help="close an open task")
    a.add_argument("task_id", metavar="TASK_ID", type=int, help="the task's id (`frp task list`)")
    db_arg(a)
    _register_css(sub)


def _group(
    sub: argparse._SubParsersAction, name: str, help: str, handler: Callable[..., int]
) -> argparse._SubParsersAction:
    """A subcommand with actions of its own (`frp NAME ACTION ...`): its action parsers."""
    p = sub.add_parser(name, help=help)
    p.set_defaults(handler=handler)
    return p.add_subparsers(dest="action", required=True, parser_class=type(p))


def _register_css(sub: argparse._SubParsersAction) -> None:
    actions = _group(sub, "css", "CSS referrals: export a queue for delivery, hand it off", cmd_css)
    a = actions.add_parser(
        "export", help="a queue's open CSS referrals as CSV, for the delivery team"
    )
    a.add_argument("queue", metavar="QUEUE", help='the CSS queue, e.g. "CSS EMEA"')
    a.add_argument(
        "--out", metavar="FILE", help="write to FILE (.csv, .parquet or .xlsx) instead of stdout"
    )
    db_arg(a)
    a = actions.add_parser("handoff", help="mark open CSS referrals handed off to delivery")
    a.add_argument("queue", metavar="QUEUE", nargs="?", help="hand off this queue's open ones")
    a.add_argument(
        "--up-to",
        type=int,
        metavar="ID",
        help="only referrals up to this id (the last one `frp css export` wrote)",
    )
    a.add_argument(
        "--referral",
        type=int,
        action="append",
        metavar="ID",
        help="hand off this referral instead of a queue (repeatable)",
    )
    a.add_argument("--actor", default="cli", help="who handed off (for the audit log)")
    db_arg(a)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds between 0 and 60")
    return value


def _open(args: argparse.Namespace, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection for one command, closed by the caller; waits while the file is busy."""
    from store.db import connect, resolve_path

    return connect(existing(resolve_path(args.db)), read_only=read_only)


def _record_export(con: duckdb.DuckDBPyConnection, subject: str, details: dict) -> None:
    """An export of customers' personal data, into the audit log: who, what, where to."""
    from store.db import audit

    audit(con, f"cli:{getpass.getuser()}", "export_personal_data", subject, json.dumps(details))


def cmd_outbox(args: argparse.Namespace) -> int:
    from store import outbox
    from store.db import open_db, resolve_path

    if args.action == "send":
        settings = outbox.SmtpSettings.from_env()  # before opening the database
        claim_timeout = outbox.read_claim_timeout()
        _open(args).close()  # the file exists and its schema is current (body_html)
        path = resolve_path(args.db)
        # A connection only for each read and record: the file stays free for the
        # dashboard and other commands while the SMTP server takes its time.
        summary = outbox.send_pending(
            lambda: open_db(path, schema=False),
            settings,
            attempts=args.attempts,
            backoff=args.backoff,
            progress=progress("sending"),
            claim_timeout=claim_timeout,
        )
        print(f"outbox via {settings.describe()}: {summary.describe()}")
        if not summary.ok:
            raise StoreError(summary.problem())
        return EXIT_OK
    if args.action == "retry":
        con = _open(args)
        try:
            outbox.retry(con, args.message_id, args.email, actor=f"cli:{getpass.getuser()}")
        finally:
            con.close()
        print(f"message {args.message_id} is pending again, for the next `frp outbox send`")
        return EXIT_OK
    con = _open(args)  # read-write: an older file gains the body_html column first
    try:
        written = outbox.export_eml(con, args.dir, args.status or ())
        # The messages carry customers' contact details: who exported them is recorded.
        _record_export(con, f"outbox .eml export to {Path(args.dir)}", {"messages": len(written)})
    finally:
        con.close()
    print(f"{len(written):,} .eml files written to {Path(args.dir)}")
    if written.skipped:
        raise StoreError(
            f"{len(written.skipped):,} message(s) skipped, they cannot be built (fix the "
            f"address on the Referrals page's Outbox tab); first: {written.skipped[0]}"
        )
    return EXIT_OK


def cmd_psm(args: argparse.Namespace) -> int:
    from store.referrals import psm_load

    con = _open(args, read_only=True)
    try:
        load = psm_load(con)
    finally:
        con.close()
    if args.json:
        print(json.dumps(load.to_dicts(), indent=2))
        return EXIT_OK
    _table(
        [
            (r["psm_name"], r["psm_email"], r["partners"], r["open_referrals"])
            for r in load.iter_rows(named=True)
        ],
        ("PSM", "email", "partners", "open referrals"),
        right=(2, 3),
    )
    return EXIT_OK


def cmd_task(args: argparse.Namespace) -> int:
    from store import tasks
    from store.db import retry_conflicts

    if args.action == "close":
        con = _open(args)
        try:
            task = retry_conflicts(
                lambda: tasks.close(con, args.task_id, actor="cli"), what="closing the task"
            )
        finally:
            con.close()
        print(
            f"task {task['task_id']} (FTOP {task['task_number']}, {task['tenant_id']} → "
            f"{task['partner_id']}) closed at {task['closed_at']:%Y-%m-%d %H:%M}"
        )
        return EXIT_OK
    con = _open(args, read_only=True)
    try:
        frame = tasks.tasks(con, args.status, personal=True)
    finally:
        con.close()
    if args.json:
        print(json.dumps(frame.to_dicts(), indent=2, default=str))
        return EXIT_OK
    _table(
        [
            (
                r["task_id"],
                r["status"],
                r["tenant_id"],
                r["customer"] or "",
                r["partner_id"],
                f"{r['created_at']:%Y-%m-%d %H:%M}",
                f"{r['closed_at']:%Y-%m-%d %H:%M}" if r["closed_at"] else "",
            )
            for r in frame.iter_rows(named=True)
        ],
        ("task", "status", "tenant", "customer", "partner", "opened", "closed"),
        right=(0,),
    )
    return EXIT_OK


def cmd_css(args: argparse.Namespace) -> int:
    if args.action == "export":
        return _css_export(args)
    from store.db import retry_conflicts
    from store.handoff import hand_off

    if (args.queue is None) == (args.referral is None):
        raise UsageError("frp css handoff: give either a QUEUE or --referral ID")
    if args.up_to is not None and args.queue is None:
        raise UsageError("frp css handoff: --up-to applies to a QUEUE")
    con = _open(args)
    try:
        done = retry_conflicts(
            lambda: hand_off(
                con,
                queue=args.queue,
                referral_ids=args.referral,
                up_to=args.up_to,
                actor=args.actor,
            ),
            what="the hand-off",
        )
    finally:
        con.close()
    print(done.describe())
    return EXIT_OK


def _css_export(args: argparse.Namespace) -> int:
    """The queue's open CSS referrals as CSV (formulas neutralised) to ``--out`` or
    stdout; the export is audited, as the file holds contact emails."""
    from store.files import csv_text, write_table
    from store.handoff import open_referrals

    con = _open(args)  # read-write: the export goes into the audit log
    try:
        frame = open_referrals(con, args.queue, personal=True)
        where = str(Path(args.out)) if args.out else "stdout"
        last = frame["referral_id"].max() if frame.height else None
        if args.out:
            write_table(frame, args.out)
        _record_export(
            con,
            f"css export of {args.queue} to {where}",
            {"queue": args.queue, "referrals": frame.height, "up_to": last},
        )
    finally:
        con.close()
    if not args.out:
        sys.stdout.write(csv_text(frame))
    summary = f"{frame.height:,} open CSS referrals of {args.queue} written to {where}"
    if last is not None:
        summary += (
            f"; once delivery has them: frp css handoff {shlex.quote(args.queue)} --up-to {last}"
        )
    print(summary, file=sys.stderr if not args.out else sys.stdout)
    return EXIT_OK


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...], right: tuple[int, ...]) -> None:
    cells = [header, *[tuple(str(c) for c in r) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print(
            "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
    if not rows:
        print("(none)")
