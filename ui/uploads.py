"""Uploaded files (bytes and a name, as st.file_uploader gives them) to validated frames.

The dashboard must accept exactly what the command line accepts, so an upload goes
through the CLI's own reader (``store.files.read_raw``) and validation
(``engine.schema``): the same columns, the same error table. The reader works on paths,
so the bytes are written to a private temporary file first; errors still name the
uploaded file, not the temporary one. Nothing here writes to the database.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import polars as pl

from engine.rules import Rules
from engine.schema import InputError, validate_customers
from store.files import check_format, partners_today, read_raw

Kind = Literal["partners", "customers"]


def read_upload(
    data: bytes, filename: str, kind: Kind, *, max_pause_days: int = Rules.max_pause_days
) -> pl.DataFrame:
    """The validated frame (PARTNER_SCHEMA or CUSTOMER_SCHEMA); InputError names ``filename``.

    Partners are checked on the clock's date, a pause ending at most ``max_pause_days``
    after it, as ``frp import`` checks them."""
    suffix = check_format(filename)
    with tempfile.TemporaryDirectory(prefix="frp-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            raw, first, label = read_raw(path)
        except InputError as exc:
            raise InputError(filename, exc.problems, exc.total, exc.row_label) from None
    if kind == "partners":
        return partners_today(raw, filename, first, label, max_pause_days)
    return validate_customers(raw, filename, first_row=first, row_label=label)
