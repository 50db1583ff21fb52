"""Looks at a database file from beside the store, for the tests that check it was left
alone (tests/test_backup.py, tests/test_bad_input.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from store.backup import table_digest


def digest(db: Path) -> dict[str, tuple[int, int]]:
    """Every table's row count and content hash: equal digests, untouched database."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return table_digest(con)
    finally:
        con.close()
