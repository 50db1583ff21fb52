"""Building the demo database from the seeded demo world.

The file is built under a temporary name and renamed into place, so an interrupted
build never leaves a half-filled database where the dashboard would open it; for the same
reason it is synced to disk once, when whole, rather than at each commit.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import duckdb

from engine.demo import generate_world, week_start
from store import clock
from store.db import audit, connect, transaction
from store.demo import make_history
from store.imports import import_customers, import_partners


def build_demo(path: str | Path, *, seed: int = 7, replace: bool = False) -> dict[str, int]:
    """Write the demo world to ``path``, its history made by running the product
    (``store.demo``); returns what it holds (for the caller to report)."""
    target = Path(path)
    if target.exists() and not replace:
        raise FileExistsError(target)
    world = generate_world(seed)
    tmp = target.with_name(f".{target.name}.building")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    start = week_start(0, world.as_of) - timedelta(days=3)
    with clock.frozen(start):  # the store's making is part of the history: it seeds rules v1
        con = connect(tmp)
    try:
        _unsynced(con)
        with clock.frozen(start):
            import_partners(con, world.partners, actor="demo", source="demo world")
        make_history(con, world)
        with clock.frozen(world.as_of):
            import_customers(con, world.customers, actor="demo", source="demo world")
            with transaction(con):
                audit(con, "demo", "build_demo", str(target), json.dumps({"seed": seed}))
        counts = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE run_id IS NULL), "
            "(SELECT count(*) FROM runs) FROM referrals"
        ).fetchall()[0]
        con.execute("CHECKPOINT")
    finally:
        con.close()
    with open(tmp, "rb") as built:  # on disk before it takes the target's name
        os.fsync(built.fileno())
    for old in (target, target.with_name(target.name + ".wal")):
        old.unlink(missing_ok=True)
    os.replace(tmp, target)
    partners = world.partners
    return {
        "partners": partners.height,
        "countries": partners["countries"].explode().n_unique(),
        "languages": partners["languages"].explode().n_unique(),
        "runs": counts[2],  # the weekly commits and the re-assignments after answers
        "past_referrals": counts[0],
        "referrals_without_a_run": counts[1],
        "backlog": world.customers.height,
    }


def _unsynced(con: duckdb.DuckDBPyConnection) -> None:
    """No sync to disk at each of the history's two thousand commits, which took a third
    of the build's time: the file is under a temporary name until it is whole, and is
    synced once before it is renamed (a crash meanwhile leaves a file the next build
    removes). DuckDB releases without the setting sync as before."""
    known = "SELECT count(*) FROM duckdb_settings() WHERE name = 'fsync_mode'"
    if con.execute(known).fetchall()[0][0]:
        con.execute("SET fsync_mode = 'NONE'")


def ensure_demo(path: str | Path) -> bool:
    """Build the demo at ``path`` unless a database is already there; True if built."""
    if Path(path).exists():
        return False
    build_demo(path)
    return True
