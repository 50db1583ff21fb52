"""The dashboard's one DuckDB connection and its cached reads.

Streamlit reruns a page on every interaction and runs callbacks and downloads on other
threads, so the connection is created once per database file (``st.cache_resource``)
and every query takes its own cursor. Query results are cached (``st.cache_data``) and
the cache is cleared after any write, so pages never show stale state after a commit.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import streamlit as st

from engine.rules import Rules, RulesError, load_rules
from store import state
from store.bootstrap import ensure_demo
from store.db import DEFAULT_DB, connect, resolve_path

RULES_KEY = "rules_toml"


def db_path() -> Path:
    """Same rule as the command line: $FRP_DB, else data/frp.duckdb."""
    return resolve_path(None)


@st.cache_resource(show_spinner="Opening the database…")
def _connection(path: str) -> duckdb.DuckDBPyConnection:
    if Path(path) == DEFAULT_DB:
        ensure_demo(path)  # first run on a fresh clone: build the demo world
    return connect(path)


def connection() -> duckdb.DuckDBPyConnection:
    return _connection(str(db_path()))


def cursor() -> duckdb.DuckDBPyConnection:
    """A fresh cursor on the shared connection; use one per operation."""
    return connection().cursor()


@st.cache_data(show_spinner=False, max_entries=256)
def query(sql: str, params: tuple = (), path: str = "") -> pl.DataFrame:
    """A cached read; ``path`` is part of the cache key, so two databases never share results."""
    return state.query(cursor(), sql, list(params))


def read(sql: str, *params) -> pl.DataFrame:
    return query(sql, tuple(params), str(db_path()))


def after_write() -> None:
    """Forget cached reads: the store changed."""
    st.cache_data.clear()


def active_rules() -> Rules:
    """Rules edited on the Data page for this session, else the shipped defaults."""
    text = st.session_state.get(RULES_KEY)
    if text:
        from engine.rules import parse_rules

        try:
            return parse_rules(text, source="edited rules")
        except RulesError:
            st.session_state.pop(RULES_KEY, None)
    return load_rules()
