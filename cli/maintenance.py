"""Subcommands that look after the store itself: backup, restore, privacy purge.

``frp backup DIR`` writes one Parquet file per table and a manifest; ``frp restore DIR``
rebuilds a database from it (never over an existing file without ``--force``);
``frp purge TENANT`` removes a customer's personal data and keeps the anonymous history.
A missing database, an unknown tenant or a damaged backup ends with exit code 2 and one
line, like every other bad input.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cli.main import EXIT_OK, db_arg

Handler = Callable[[argparse.Namespace], int]


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add this module's subcommands to ``sub``; return their handlers by name."""
    p = sub.add_parser(
        "backup", help="write every table to DIR as Parquet, with a manifest (restore: frp restore)"
    )
    p.add_argument("dir", metavar="DIR", help="backup folder to create (must be new or empty)")
    db_arg(p)

    p = sub.add_parser("restore", help="rebuild the database from a backup folder")
    p.add_argument("dir", metavar="DIR", help="folder written by `frp backup`")
    p.add_argument("--force", action="store_true", help="replace an existing database file")
    db_arg(p)

    p = sub.add_parser(
        "purge", help="remove a customer's personal data; anonymous referral history stays"
    )
    p.add_argument("tenant", metavar="TENANT", help="the customer's tenant_id")
    db_arg(p)
    return {"backup": cmd_backup, "restore": cmd_restore, "purge": cmd_purge}


def cmd_backup(args: argparse.Namespace) -> int:
    from store.backup import backup
    from store.db import resolve_path

    print(backup(resolve_path(args.db), args.dir).describe())
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from store.backup import restore
    from store.db import resolve_path

    print(restore(args.dir, resolve_path(args.db), force=args.force).describe())
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    from store.db import open_db, resolve_path, retry_conflicts
    from store.errors import StoreError
    from store.privacy import purge

    path = resolve_path(args.db)
    if not path.exists():
        raise StoreError(f"{path}: no such database")
    with open_db(path) as con:
        summary = retry_conflicts(lambda: purge(con, args.tenant), what="the purge")
    print(summary.describe())
    return EXIT_OK
