"""The team's rules, kept in the store with every earlier version.

A team shares one set of rules: every command and dashboard page reads the store's
current version unless it is given a rules file of its own (``--rules FILE``, or rules
tried for one dashboard session). Saving never edits a version: it adds the next one,
with who saved it, when (``store.clock``) and why, so the history says who changed what
and when, and a restore is a new version whose text is an old one's.

A store starts with version 1, the text of ``data/rules.toml``: a new store when it is
created, an older store when it is brought to schema version 4 (its earlier runs record
no version). Each run records the version whose rules it used (:func:`version_of`).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache

import duckdb

from engine.rules import DEFAULT_RULES_PATH, Rules, parse_rules
from store import clock
from store.db import audit, transaction
from store.errors import StoreError

#: Who the first version is saved as, on a new store or one brought forward.
SETUP_ACTOR = "setup"
SAVE_ACTION = "rules_save"


@dataclass(frozen=True)
class RulesVersion:
    """One saved version of the team's rules: its TOML text as saved, who saved it, when,
    and why; :attr:`rules` is the text parsed by the engine's rules parser."""

    version: int
    text: str = field(repr=False)
    actor: str
    at: datetime
    note: str

    @cached_property
    def rules(self) -> Rules:
        return _parsed(self.text, self.version)


@lru_cache(maxsize=64)
def _parsed(text: str, version: int) -> Rules:
    # Stored text was valid when saved; a later release's stricter schema may refuse it,
    # and the error then names the version to replace (`frp rules set`).
    return parse_rules(text, source=f"the team's rules (version {version})")


_COLUMNS = "version, rules_toml, actor, saved_at, note"


def _version(row: tuple) -> RulesVersion:
    return RulesVersion(int(row[0]), row[1], row[2], row[3], row[4])


def seed(con: duckdb.DuckDBPyConnection, note: str) -> None:
    """Version 1 from the shipped ``data/rules.toml``, on a store that has no version yet
    (in the caller's transaction: the schema step that makes the table)."""
    if con.execute("SELECT count(*) FROM rules_versions").fetchall()[0][0]:
        return
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    parse_rules(text, source=str(DEFAULT_RULES_PATH))  # never store rules that do not load
    con.execute(
        f"INSERT INTO rules_versions ({_COLUMNS}) VALUES (1, ?, ?, ?, ?)",
        [text, SETUP_ACTOR, clock.now(), note],
    )


def current(con: duckdb.DuckDBPyConnection) -> RulesVersion:
    """The team's rules now: the highest version."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM rules_versions ORDER BY version DESC LIMIT 1"
    ).fetchall()
    if not rows:  # every store gets version 1 when it is made or brought forward
        raise StoreError("the store holds no rules version; save one with `frp rules set FILE`")
    return _version(rows[0])


def get(con: duckdb.DuckDBPyConnection, version: int) -> RulesVersion:
    """One version; a StoreError naming the versions there are for one that is not."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM rules_versions WHERE version = ?", [version]
    ).fetchall()
    if not rows:
        last = current(con).version
        raise StoreError(
            f"no rules version {version}; the versions are 1 to {last} (`frp rules history`)"
        )
    return _version(rows[0])


def history(con: duckdb.DuckDBPyConnection) -> list[RulesVersion]:
    """Every version, the newest first."""
    rows = con.execute(f"SELECT {_COLUMNS} FROM rules_versions ORDER BY version DESC").fetchall()
    return [_version(r) for r in rows]


def save(con: duckdb.DuckDBPyConnection, text: str, *, actor: str, note: str) -> int:
    """Save ``text`` as the team's rules, in a transaction of its own; returns the version
    now current.

    The text is checked by the engine's rules parser first and an empty note is refused:
    either way a one-line error (RulesError or StoreError) and nothing written. Text
    identical to the current version's is not saved again: nothing is written (no new
    version, no audit entry) and the current version's number comes back, so saving the
    same file twice (a deployment script) is harmless.
    """
    parse_rules(text, source="the rules to save")
    if not note.strip():
        raise StoreError("a note is required: say why the rules change; nothing was saved")
    with transaction(con):
        now = current(con)
        if text == now.text:
            return now.version
        version = now.version + 1
        con.execute(
            f"INSERT INTO rules_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            [version, text, actor, clock.now(), note.strip()],
        )
        details = {"note": note.strip(), "previous": now.version}
        audit(con, actor, SAVE_ACTION, f"rules version {version}", json.dumps(details))
    return version


def restore(con: duckdb.DuckDBPyConnection, version: int, *, actor: str) -> int:
    """Save version ``version``'s text again as the newest version (the current one when
    it already is); returns the version now current."""
    old = get(con, version)
    return save(con, old.text, actor=actor, note=f"restored version {version}")


def diff(con: duckdb.DuckDBPyConnection, a: int, b: int) -> str:
    """A unified diff of version ``a``'s text to version ``b``'s; empty when they agree."""
    old, new = get(con, a), get(con, b)
    return "".join(
        difflib.unified_diff(
            _lines(old.text),
            _lines(new.text),
            fromfile=f"version {a}",
            tofile=f"version {b}",
        )
    )


def made_with(run_id: str = "run_id") -> str:
    """SQL: the row's run (its ``run_id`` column) was made with the version given as the
    parameter; the filter the Referrals and Fairness pages offer."""
    return f"{run_id} IN (SELECT run_id FROM runs WHERE rules_version = ?)"


def used(con: duckdb.DuckDBPyConnection) -> list[int]:
    """The versions runs were made with, the newest first: what a page filters by."""
    rows = con.execute(
        "SELECT DISTINCT rules_version FROM runs WHERE rules_version IS NOT NULL ORDER BY 1 DESC"
    ).fetchall()
    return [int(r[0]) for r in rows]


def _lines(text: str) -> list[str]:
    """The text's lines, the last ended too (a diff line without one runs into the next)."""
    return (text if text.endswith("\n") else text + "\n").splitlines(keepends=True)


def version_of(con: duckdb.DuckDBPyConnection, rules: Rules) -> int | None:
    """The version a run with ``rules`` records: the newest whose text parses to the same
    rules (the current one, when the run used the team's rules), else None (a rules file
    or session edit that is no saved version)."""
    for saved in history(con):
        try:
            if saved.rules == rules:
                return saved.version
        except ValueError:  # a version this release no longer reads cannot be the one used
            continue
    return None
