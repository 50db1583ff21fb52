"""`frp rules show|set|history|diff`: the team's rules kept in the store (store/rules.py).

`frp rules set FILE --note TEXT` checks the file with the engine's rules parser before
the store is opened: a refused file writes nothing (exit 2, one line). Saving the text
of the current version again saves nothing and says so (exit 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.args import EXIT_OK, db_arg, existing

_HOW_TO_BUILD = "build it with `frp demo` or `frp import --partners FILE`"


def register(sub: argparse._SubParsersAction) -> None:
    """Add `frp rules` and its subcommands to ``sub``."""
    p = sub.add_parser("rules", help="the team's rules kept in the store, with every version")
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p))

    q = actions.add_parser("show", help="print the current rules (or one version) as TOML")
    q.add_argument("--version", type=int, help="the version to print (default: the current)")
    db_arg(q)
    q.set_defaults(handler=cmd_show)

    q = actions.add_parser("set", help="save a rules file as the team's rules (a new version)")
    q.add_argument("file", help="rules TOML file")
    q.add_argument("--note", required=True, help="why the rules change (kept with the version)")
    q.add_argument("--actor", default="cli", help="who saves it (for the history and audit log)")
    db_arg(q)
    q.set_defaults(handler=cmd_set)

    q = actions.add_parser("history", help="every version: when, who and why, newest first")
    db_arg(q)
    q.set_defaults(handler=cmd_history)

    q = actions.add_parser("diff", help="a unified diff of version A's text to version B's")
    q.add_argument("a", type=int, help="version A")
    q.add_argument("b", type=int, help="version B")
    db_arg(q)
    q.set_defaults(handler=cmd_diff)


def _path(args: argparse.Namespace) -> Path:
    from store.db import resolve_path

    return existing(resolve_path(args.db), _HOW_TO_BUILD)


def cmd_show(args: argparse.Namespace) -> int:
    from store import rules
    from store.db import open_db

    with open_db(_path(args), read_only=True) as con:
        saved = rules.current(con) if args.version is None else rules.get(con, args.version)
    print(saved.text, end="" if saved.text.endswith("\n") else "\n")
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    from engine.rules import load_rules
    from store import rules
    from store.db import open_db, retry_conflicts

    load_rules(args.file)  # a file that does not load is refused before the store opens
    text = Path(args.file).read_text(encoding="utf-8")
    with open_db(_path(args)) as con:
        before = rules.current(con).version
        after = retry_conflicts(
            lambda: rules.save(con, text, actor=args.actor, note=args.note),
            what="saving the rules",
        )
    if after == before:
        print(f"unchanged: {args.file} is the text of version {after}; nothing was saved")
    else:
        print(f"saved the team's rules as version {after} (was version {before})")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from store import rules
    from store.db import open_db

    with open_db(_path(args), read_only=True) as con:
        versions = rules.history(con)
    print("version  saved_at  actor  note")
    for v in versions:
        print(f"{v.version}  {v.at:%Y-%m-%d %H:%M}  {v.actor}  {v.note}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from store import rules
    from store.db import open_db

    with open_db(_path(args), read_only=True) as con:
        text = rules.diff(con, args.a, args.b)
    print(text or f"versions {args.a} and {args.b} are the same", end="" if text else "\n")
    return EXIT_OK
