"""Honest interrupts for every writing command: after Ctrl-C, say what was saved, looked
up in the store or on disk, never guessed.

Each writing command's change is one transaction that writes audit entries, so the audit
log's entries after the last one seen before the command are what it saved (nothing, or
all of it). `frp outbox send` records its messages as it goes, so its answer is how many
more are recorded as sent. A backup is whole when its folder has a manifest (a partial
one is removed); a restore replaced the database when the file there is another one.
`frp commit` has its own check (the run it started, cli/assignment.py).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from store.errors import StoreError

Check = Callable[[], str]

#: (command, action) of the commands that write to the store; None: every action.
_AUDITED = {
    ("import", None),
    ("drain", None),
    ("expire", None),
    ("referral", None),
    ("purge", None),
    ("css", "handoff"),
    ("task", "close"),
    ("outbox", "retry"),
    ("outbox", "export"),
    ("rules", "set"),
}


def check_for(args: argparse.Namespace) -> Check | None:
    """What to look up if this command is interrupted; None for commands that write
    nothing (and for `frp commit`, which checks for itself)."""
    command, action = getattr(args, "command", None), getattr(args, "action", None)
    if command == "backup":
        return _backup(Path(args.dir))
    send = (command, action) == ("outbox", "send")
    if command != "restore" and not send and not {(command, None), (command, action)} & _AUDITED:
        return None  # reads only: nothing to look up (and no DuckDB to load)
    from store.db import resolve_path

    db = resolve_path(getattr(args, "db", None))
    if command == "restore":
        return _restore(db)
    if send:
        return _counted(db, "SELECT count(*) FROM outbox WHERE status = 'sent'", _sent)
    return _counted(db, "SELECT coalesce(max(id), 0) FROM audit_log", None)


def _scalar(db: Path, sql: str) -> int:
    from store.db import open_db

    with open_db(db, read_only=True) as con:
        return int(con.execute(sql).fetchall()[0][0])


def _counted(db: Path, sql: str, say: Callable[[int], str] | None) -> Check:
    try:
        before: int | None = _scalar(db, sql) if db.is_file() and db.stat().st_size else 0
    except StoreError:  # not a store (yet): the command itself says so
        before = None

    def check() -> str:
        import duckdb

        try:
            if before is None:
                raise StoreError("the store could not be read before the command")
            if say is not None:
                return say(_scalar(db, sql) - before)
            return _audited(db, before)
        except (StoreError, duckdb.Error, OSError) as exc:
            return f"interrupted; what was saved could not be checked ({exc})"

    return check


def _audited(db: Path, mark: int) -> str:
    from store.db import open_db

    if not db.is_file():
        return "interrupted; nothing was written"
    with open_db(db, read_only=True) as con:
        rows = con.execute(
            "SELECT action, count(*) FROM audit_log WHERE id > ? GROUP BY action ORDER BY action",
            [mark],
        ).fetchall()
    if not rows:
        return "interrupted; nothing was written"
    entries = ", ".join(f"{action} x{n:,}" for action, n in rows)
    return f"interrupted after the change was saved (audit log: {entries})"


def _sent(more: int) -> str:
    if not more:
        return "interrupted; no message was recorded as sent"
    return (
        f"interrupted; {more:,} message(s) recorded as sent, the rest stay pending for the "
        "next `frp outbox send`"
    )


def _backup(target: Path) -> Check:
    def check() -> str:
        if (target / "manifest.json").is_file():
            return f"interrupted after the backup was written to {target}"
        return f"interrupted; no backup was written to {target}"

    return check


def _restore(target: Path) -> Check:
    before = _identity(target)

    def check() -> str:
        if _identity(target) != before:
            return f"interrupted after {target} was restored from the backup"
        return f"interrupted; {target} was not replaced"

    return check


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
