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

from engine.columns import CUSTOMER_SCHEMA, LIST_SEPARATOR
from engine.rules import Rules
from engine.schema import LINE_COLUMN, InputError, validate_customers
from store.files import check_format, partners_today, read_raw, table_bytes

Kind = Literal["partners", "customers"]


def _raw(data: bytes, filename: str, kind: Kind) -> tuple[pl.DataFrame, int, str]:
    """The uploaded bytes read as the CLI reads a file of ``kind`` (a workbook's sheet of
    that name, else its first); InputError names ``filename``."""
    suffix = check_format(filename)
    with tempfile.TemporaryDirectory(prefix="frp-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return read_raw(path, kind)
        except InputError as exc:
            raise InputError(filename, exc.problems, exc.total, exc.row_label) from None


#: Rounds of dropping bad rows: each round drops up to ``MAX_PROBLEMS`` of them.
_ROUNDS = 20


def valid_customers(data: bytes, filename: str) -> tuple[pl.DataFrame, list[int]] | None:
    """For a what-if only (an import takes a file whole or not at all): the customers of
    the rows without a problem, and the numbers of the rows left out. None when the file
    itself is wrong (a header problem: no row can be trusted) or no row is valid."""
    raw, first, label = _raw(data, filename, "customers")
    if LINE_COLUMN not in raw.columns:  # keep each row's own number once rows are dropped
        raw = raw.with_row_index(LINE_COLUMN, offset=first).with_columns(
            pl.col(LINE_COLUMN).cast(pl.Int64)
        )
    dropped: list[int] = []
    for _ in range(_ROUNDS):
        try:
            return validate_customers(raw, filename, first_row=first, row_label=label), dropped
        except InputError as exc:
            bad = {p.row for p in exc.problems}
            if None in bad or not bad:
                return None
            dropped += sorted(r for r in bad if r is not None)
            raw = raw.filter(~pl.col(LINE_COLUMN).is_in(list(bad)))
            if raw.height == 0:
                return None
    return None


def template_csv() -> bytes:
    """A customers file with the expected header and one example row, to fill in."""
    return table_bytes(_template(), ".csv")


def template_xlsx() -> bytes:
    """:func:`template_csv` as a workbook: every cell text, as a person types it."""
    return table_bytes(_template(), ".xlsx")


def _template() -> pl.DataFrame:
    example = {
        "tenant_id": "T000001",
        "name": "Example Company Ltd",
        "country": "GB",
        "language": "en",
        "seats": "250",
        "workloads": LIST_SEPARATOR.join(["exchange", "teams"]),
        "gateway": "false",
        "referral_consent": "true",
        "contact_email": "it@example.com",
    }
    row = {c: example.get(c, "") for c in CUSTOMER_SCHEMA}
    return pl.DataFrame([row], schema=dict.fromkeys(CUSTOMER_SCHEMA, pl.String))


def read_upload(
    data: bytes, filename: str, kind: Kind, *, max_pause_days: int = Rules.max_pause_days
) -> pl.DataFrame:
    """The validated frame (PARTNER_SCHEMA or CUSTOMER_SCHEMA); InputError names ``filename``.

    Partners are checked on the clock's date, a pause ending at most ``max_pause_days``
    after it, as ``frp import`` checks them."""
    raw, first, label = _raw(data, filename, kind)
    if kind == "partners":
        return partners_today(raw, filename, first, label, max_pause_days)
    return validate_customers(raw, filename, first_row=first, row_label=label)
