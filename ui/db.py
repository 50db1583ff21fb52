"""The dashboard's database access: short-lived connections and cached reads.

Nothing keeps the file open between operations, so the `frp` command (another process)
can read and write while the dashboard is open. Each read or write opens its own
connection (:func:`session`, about 40 ms on the demo) and closes it at the end; a file busy
with another process's write is waited for (``FRP_LOCK_TIMEOUT``, default 10 s), then
reported in one line. Writes go through :func:`write`, which retries a write that
collided with another session's (each connection has its own transaction) and clears the
read cache. Reads are cached (``st.cache_data``, in ``ui.reads``) under :func:`cache_key`,
the file and when it last changed, so a write by the dashboard (which also clears the cache) or by
`frp` in another process shows on the next run; reads change nothing, so they stay cached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import streamlit as st

from engine.rules import Rules, RulesError
from store import clock
from store.bootstrap import ensure_demo
from store.db import DEFAULT_DB, open_db, resolve_path, retry_conflicts
from store.rules import RulesVersion, current

RULES_KEY = "rules_toml"

T = TypeVar("T")


def db_path() -> Path:
    """Same rule as the command line: $FRP_DB, else data/frp.duckdb."""
    return resolve_path(None)


def cache_key() -> str:
    """The database file, when it (or its write-ahead log) last changed, and the clock's
    date: part of every cached read's key, so a write made by another process is seen at
    the next run, and so is a new day (a pause that ends, a new month's quota)."""
    path = db_path()
    stamps = []
    for f in (path, path.with_name(path.name + ".wal")):
        try:
            st_ = f.stat()
            stamps.append(f"{st_.st_mtime_ns}:{st_.st_size}")
        except OSError:
            stamps.append("-")
    return f"{path}|{'|'.join(stamps)}|{clock.today().isoformat()}"


@st.cache_resource(show_spinner="Opening the database…")
def _prepared(path: str) -> bool:
    """Once per file and process: build the demo on a fresh clone, create or upgrade the
    schema. Keeps no connection open."""
    if Path(path) == DEFAULT_DB:
        ensure_demo(path)  # first run on a fresh clone: build the demo world
    with open_db(path):  # creates the file and its tables if needed
        pass
    return True


def _ready() -> str:
    path = str(db_path())
    if not Path(path).exists():  # removed since (tests, a restore in progress): start again
        _prepared.clear()
    _prepared(path)
    return path


@contextmanager
def session() -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one operation, closed at the end of the block.

    Read-write (one process cannot mix read-only and read-write connections to a file,
    and the dashboard writes too); a read holds no transaction open after its query."""
    with open_db(_ready(), schema=False) as con:
        yield con


def write(fn: Callable[..., T], *args: Any, what: str = "the change", **kwargs: Any) -> T:
    """Run ``fn(con, *args, **kwargs)`` (one whole transaction) on its own connection; run
    it again if it collided with another session's write (``store.db.retry_conflicts``);
    then forget cached reads. Errors (``StoreError``) reach the caller, which reports them."""
    try:
        with session() as con:
            return retry_conflicts(lambda: fn(con, *args, **kwargs), what=what)
    finally:
        after_write()


def after_write() -> None:
    """Forget cached reads: the store changed."""
    st.cache_data.clear()


@st.cache_data(show_spinner=False, max_entries=16)
def _team(key: str) -> RulesVersion:
    with session() as con:
        return current(con)


def team() -> RulesVersion:
    """The team's current rules version in the store (cached until the store changes)."""
    return _team(cache_key())


def team_rules() -> Rules:
    """The team's rules: what every write (commit, expiry, drain, a partner's answer) uses,
    whatever this session tries."""
    return team().rules


def active_rules() -> Rules:
    """Rules tried on the Data page for this session (a what-if), else the team's rules."""
    text = st.session_state.get(RULES_KEY)
    if text:
        from engine.rules import parse_rules

        try:
            return parse_rules(text, source="edited rules")
        except RulesError:
            st.session_state.pop(RULES_KEY, None)
    return team_rules()
