"""Partner, customer and result files: CSV or Parquet, chosen by extension.

Reading gives raw frames for ``engine.schema`` to validate (CSV is read as text so that a
bad cell is reported, not guessed at). Writing goes to a temporary file that is renamed
into place, so a failed run never leaves a half-written output behind.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import polars as pl

from engine.columns import LIST_SEPARATOR
from engine.schema import InputError, Problem, validate_customers, validate_partners

FORMATS = (".csv", ".parquet")


def check_format(path: str | Path) -> str:
    """The file's format ('.csv' or '.parquet') by extension, or InputError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            str(path),
            [Problem(None, None, path.suffix or "(none)", "a file ending in .csv or .parquet")],
        )
    return suffix


def read_raw(path: str | Path) -> tuple[pl.DataFrame, int, str]:
    """(raw frame, number of its first data row, what rows are called) for error messages."""
    p = Path(path)
    kind = check_format(p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(str(p), [Problem(None, None, None, "an existing file")]) from None
    except IsADirectoryError:
        raise InputError(str(p), [Problem(None, None, None, "a file, not a folder")]) from None
    if kind == ".parquet":
        try:
            return pl.read_parquet(io.BytesIO(data)), 1, "row"
        except Exception as exc:  # polars raises several types for a damaged file
            raise InputError(
                str(p), [Problem(None, None, None, f"a Parquet file ({_short(exc)})")]
            ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            str(p),
            [Problem(line, None, None, "UTF-8 text (save the file as CSV UTF-8)")],
            row_label="line",
        ) from None
    if not text.strip():
        raise InputError(str(p), [Problem(None, None, None, "a header line and rows")])
    try:
        frame = pl.read_csv(io.StringIO(text), infer_schema=False, truncate_ragged_lines=False)
    except Exception as exc:
        ragged = _ragged_line(text)
        if ragged is not None:
            line, width, got = ragged
            raise InputError(
                str(p),
                [Problem(line, None, None, f"{width} fields like the header line, found {got}")],
                row_label="line",
            ) from None
        raise InputError(
            str(p), [Problem(None, None, None, f"well-formed CSV ({_short(exc)})")]
        ) from None
    return frame, 2, "line"


def _ragged_line(text: str) -> tuple[int, int, int] | None:
    """(line, header width, fields found) of the first record longer than the header."""
    reader = csv.reader(io.StringIO(text, newline=""))
    width, start = None, 1
    try:
        for record in reader:
            if width is None:
                width = len(record)
            elif len(record) > width:
                return start, width, len(record)
            start = reader.line_num + 1
    except csv.Error:
        return None
    return None


def read_partners(path: str | Path) -> pl.DataFrame:
    raw, first, label = read_raw(path)
    return validate_partners(raw, str(path), first_row=first, row_label=label)


def read_customers(path: str | Path) -> pl.DataFrame:
    raw, first, label = read_raw(path)
    return validate_customers(raw, str(path), first_row=first, row_label=label)


def _neutralise(frame: pl.DataFrame) -> pl.DataFrame:
    """Text for spreadsheets: lists joined, and cells that would run as formulas quoted."""
    out = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.List):
            col = col.list.join(LIST_SEPARATOR)
        elif dtype != pl.String:
            out.append(col)
            continue
        # A leading = + - @ (or tab/CR) makes Excel evaluate the cell; a quote stops that.
        out.append(
            pl.when(col.str.contains(r"^[=+\-@\t\r]"))
            .then(pl.concat_str(pl.lit("'"), col))
            .otherwise(col)
            .alias(name)
        )
    return frame.select(out)


def write_table(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by extension), atomically."""
    p = Path(path)
    kind = check_format(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        if kind == ".parquet":
            frame.write_parquet(tmp)
        else:
            _neutralise(frame).write_csv(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
