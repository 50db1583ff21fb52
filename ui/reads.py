"""Cached reads for the dashboard's pages.

Each call runs one store read (a function of ``store.capacity``, ``store.fairness``,
``store.referrals``, ``store.handoff`` or ``store.state`` taking a connection first) or a
simulation on its own short-lived connection (``db.session``) and caches the result per
database file and version (``db.cache_key``): a write, by the dashboard or by `frp`, shows
up at the next run.
Arguments must be hashable (tuples, frozen dataclasses such as
``store.capacity.PartnerFilter``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import polars as pl
import streamlit as st

from engine.fairness import FairnessReport
from engine.rules import parse_rules, to_toml
from store import fairness
from store.commits import simulate_stored
from store.state import Con
from ui import db

P = ParamSpec("P")
T = TypeVar("T")


@st.cache_data(show_spinner=False, max_entries=256)
def _view(path: str, name: str, _read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # ``name`` stands for ``_read`` in the cache key: Streamlit cannot hash a function.
    with db.session() as con:
        return _read(con, *args, **kwargs)


def view(read: Callable[Concatenate[Con, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``read(cursor, *args, **kwargs)``, cached for the current database file."""
    name = f"{read.__module__}.{read.__qualname__}"
    return _view(db.cache_key(), name, read, *args, **kwargs)


@st.cache_data(show_spinner="Simulating the backlog with round robin…", max_entries=8)
def _backlog_run(path: str, rules_toml: str) -> tuple[pl.DataFrame, dict[str, int]]:
    with db.session() as con:
        sim, _ = simulate_stored(con, parse_rules(rules_toml, source="rules"), "round-robin")
    return sim.partners, {**sim.counts(), "customers": sim.rows.height}  # not one per part


def backlog_run() -> tuple[pl.DataFrame, dict[str, int]]:
    """Round robin over the FTCQ backlog as it stands, under the session's rules (writes
    nothing): ``Simulation.partners`` and the customers per reason (plus ``customers``)."""
    return _backlog_run(db.cache_key(), to_toml(db.active_rules()))


@st.cache_data(show_spinner="Computing fairness…", max_entries=16)
def _committed_fairness(
    path: str,
    since: datetime | None,
    until: datetime | None,
    rules_toml: str,
    version: int | None = None,
) -> tuple[FairnessReport, pl.DataFrame]:
    rules = parse_rules(rules_toml, source="rules")
    with db.session() as con:
        return fairness.committed_fairness(con, since, until, rules, version)


def committed_fairness(
    since: datetime | None, until: datetime | None, version: int | None = None
) -> tuple[FairnessReport, pl.DataFrame]:
    """The fairness report of committed referrals in [since, until) (of runs made with
    rules ``version``, when given), and its pool labels."""
    return _committed_fairness(db.cache_key(), since, until, to_toml(db.active_rules()), version)
