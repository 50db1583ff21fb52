"""The store's error type, importable without loading DuckDB.

The command line catches it around every command; keeping it here means `frp simulate`
on files never pays for importing the database driver it does not use.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store operation that cannot go ahead; the message says why and what to do."""
