"""What of a customer's personal data the current user may see.

Managers see customers' names and contact emails whole; viewers see them masked on every
page, in every message preview and in every download (the role comes from
:mod:`ui.auth`). Masking is done by construction, on the data before anything is
rendered from it: the store's reads mask the personal fields (``store.privacy.PERSONAL``)
unless asked for them, and :func:`view` asks only for a manager; a frame that does not
come from a read (a cohort, an uploaded file) goes through :func:`frame`. Nothing searches
rendered text for a name, so no spelling of it (escaped, refolded) can slip through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import polars as pl

from store.privacy import PERSONAL, mask_personal
from ui import auth, reads

T = TypeVar("T")

#: What a viewer reads in place of a personal field's bad value in an upload's problems.
HIDDEN = "(hidden)"


def personal() -> bool:
    """Whether the current user may see customers' personal data: managers only."""
    return auth.is_manager()


def view(read: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``ui.reads.view`` of a store read taking ``personal``: whole for a manager, with
    the customers' personal fields masked at the source for anyone else."""
    return reads.view(read, *args, personal=personal(), **kwargs)


def frame(data: pl.DataFrame) -> pl.DataFrame:
    """A customers frame (a cohort, an upload's rows) as the current user may see it."""
    return data if personal() else mask_personal(data)


def problems(table: pl.DataFrame) -> pl.DataFrame:
    """An upload's problems (``InputError.to_frame``) as the current user may see them:
    a bad value of a personal column is hidden from viewers."""
    if personal() or "value" not in table.columns:
        return table
    hidden = pl.when(pl.col("column").is_in(PERSONAL)).then(pl.lit(HIDDEN))
    return table.with_columns(hidden.otherwise(pl.col("value")).alias("value"))
