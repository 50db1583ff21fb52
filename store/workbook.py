"""Writing a frame as an Excel workbook of one sheet, fast enough for a million rows.

xlsxwriter writes the package around the rows: the styles, the bold header row frozen
at the top with its filter, the column widths. The rows themselves are written by
Polars, a column at a time, as the sheet's XML, in the form xlsxwriter's
``constant_memory`` mode writes cell by cell (inline strings, typed numbers, booleans
and dates, text escaped as Excel escapes it). Through xlsxwriter's cell calls, 100,000
rows of a simulation's result took some 10 s of CPU (some 6 µs a cell); this way they
take a fraction of a second.

Text is always text, never a formula (the caller quotes a leading ``=`` as CSV does,
``store.files._neutralise``); numbers, booleans, dates and times are Excel's own. Times
have no zone (Excel has none): the caller gives them in UTC.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import BinaryIO

import polars as pl
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

#: The sheet xlsxwriter writes, whose rows are added here.
SHEET = "xl/worksheets/sheet1.xml"
#: Rows turned into XML at a time: a chunk's text is held whole before it is written.
CHUNK = 20_000
#: The longest text a cell holds (Excel's limit, in characters).
TEXT_MAX = 32_767
#: Excel's serial day of 1970-01-01, Polars' day 0 (Excel's day 1 is 1900-01-01, and it
#: counts a 29 February 1900 that never was: serials are right from 1900-03-01 on).
UNIX_DAY = 25_569
_US_PER_DAY = 86_400_000_000
#: Number formats per kind of column (text, booleans and fractions have none: Excel's
#: General shows a fraction's digits, and a whole one without a trailing point).
FORMATS = {"integer": "#,##0", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss"}
#: What Excel writes for the control characters XML cannot hold, and for an ``_xHHHH_``
#: already in the text (which Excel would otherwise read back as one of them).
_ESCAPED_ESCAPE = r"(_x[0-9a-fA-F]{4}_)"
_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "\ufffe": "_xFFFE_",
    "\uffff": "_xFFFF_",
    **{chr(c): f"_x{c:04X}_" for c in (*range(0x00, 0x09), *range(0x0B, 0x20))},
}


def write_workbook(frame: pl.DataFrame, target: str | BinaryIO) -> None:
    """``frame`` as a workbook: row 1 its column names, then a row per row of the frame."""
    kinds = {name: _kind(dtype) for name, dtype in frame.schema.items()}
    skeleton, styles = _skeleton(frame, kinds)
    head, tail = _sheet_parts(skeleton, frame)
    big = frame.estimated_size() + 80 * frame.height * max(frame.width, 1) > 1 << 30
    with (
        zipfile.ZipFile(io.BytesIO(skeleton)) as book,
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out,
    ):
        for name in book.namelist():  # by name: the parts take this file's compression
            if name != SHEET:
                out.writestr(name, book.read(name))
                continue
            with out.open(name, "w", force_zip64=big) as sheet:
                sheet.write(head)
                for at in range(0, frame.height, CHUNK):
                    rows = _rows(frame.slice(at, CHUNK), at + 2, kinds, styles)
                    sheet.write(rows.str.join("").item().encode())
                sheet.write(tail)


def _kind(dtype: pl.DataType) -> str:
    """How a column's cells are written: text, boolean, integer, float, date or datetime."""
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_integer():
        return "integer"
    if dtype.is_numeric():
        return "float"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return "text"  # text, and what Excel has no type for (times of day, durations): as text


def _skeleton(frame: pl.DataFrame, kinds: dict[str, str]) -> tuple[bytes, dict[str, int]]:
    """The workbook without its data rows, and the style index of each number format."""
    buf = io.BytesIO()
    options = {"in_memory": True, "strings_to_formulas": False, "strings_to_numbers": False}
    book = xlsxwriter.Workbook(buf, {**options, "strings_to_urls": False})
    sheet = book.add_worksheet()
    bold = book.add_format({"bold": True})
    formats = {kind: book.add_format({"num_format": f}) for kind, f in FORMATS.items()}
    for col, (name, width) in enumerate(_widths(frame).items()):
        sheet.write_string(0, col, name, bold)
        sheet.set_column(col, col, width, formats.get(kinds[name]))  # for cells typed later
    if frame.width:
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, frame.height, frame.width - 1)
    book.close()
    return buf.getvalue(), {kind: f.xf_index for kind, f in formats.items()}


def _widths(frame: pl.DataFrame) -> dict[str, float]:
    """Each column as wide as its longest cell as text (or its name), within 8 to 60."""
    longest = frame.select(pl.all().cast(pl.String).str.len_chars().max().fill_null(0))
    row = longest.row(0) if frame.width else ()
    return {
        name: min(max(len(name), n or 0, 6) + 2, 60)
        for name, n in zip(frame.columns, row, strict=True)
    }


def _sheet_parts(skeleton: bytes, frame: pl.DataFrame) -> tuple[bytes, bytes]:
    """The skeleton's sheet XML up to where the data rows go, and from there on; its
    dimension covers the rows to come."""
    with zipfile.ZipFile(io.BytesIO(skeleton)) as book:
        xml = book.read(SHEET).decode()
    last = f"{xl_col_to_name(max(frame.width - 1, 0))}{frame.height + 1}"
    xml = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="A1:{last}"/>', xml, count=1)
    head, end, tail = xml.partition("</sheetData>")
    return head.encode(), (end + tail).encode()


def _rows(
    chunk: pl.DataFrame, first: int, kinds: dict[str, str], styles: dict[str, int]
) -> pl.Series:
    """The chunk's rows as the sheet's XML, one string per row (``first``: its row number)."""
    number = pl.int_range(first, first + chunk.height, dtype=pl.Int64).cast(pl.String)
    cells = [
        _cell(pl.col(name), kind, xl_col_to_name(col), number, styles.get(kind))
        for col, (name, kind) in enumerate(kinds.items())
    ]
    row = pl.concat_str(
        [pl.lit('<row r="'), number, pl.lit('">'), *cells, pl.lit("</row>")], ignore_nulls=True
    )
    return chunk.select(row.alias("xml")).to_series()


def _cell(value: pl.Expr, kind: str, column: str, row: pl.Expr, style: int | None) -> pl.Expr:
    """A cell's XML, or null for an empty cell (a null value)."""
    ref = pl.concat_str(pl.lit(f'<c r="{column}'), row, pl.lit('"' + _style(style)))
    if kind == "text":
        text = value.cast(pl.String).str.slice(0, TEXT_MAX)
        escaped = text.str.replace_all(_ESCAPED_ESCAPE, "_x005F$1").str.replace_many(_ESCAPES)
        open_tag = (
            pl.when(text.str.contains(r"^\s|\s$"))
            .then(pl.lit('<t xml:space="preserve">'))
            .otherwise(pl.lit("<t>"))
        )
        return pl.concat_str(
            ref, pl.lit(' t="inlineStr"><is>'), open_tag, escaped, pl.lit("</t></is></c>")
        )
    if kind == "boolean":
        return pl.concat_str(ref, pl.lit(' t="b"><v>'), value.cast(pl.UInt8), pl.lit("</v></c>"))
    if kind == "date":
        value = value.cast(pl.Int64) + UNIX_DAY
    elif kind == "datetime":
        value = value.dt.epoch("us") / _US_PER_DAY + UNIX_DAY
    elif kind == "float":
        value = value.cast(pl.Float64)
        error = pl.when(value.is_nan()).then(pl.lit("#NUM!")).otherwise(pl.lit("#DIV/0!"))
        shown = pl.concat_str(ref, pl.lit(' t="e"><v>'), error, pl.lit("</v></c>"))
        plain = pl.concat_str(ref, pl.lit("><v>"), value.cast(pl.String), pl.lit("</v></c>"))
        return pl.when(value.is_finite()).then(plain).when(value.is_not_null()).then(shown)
    return pl.concat_str(ref, pl.lit("><v>"), value.cast(pl.String), pl.lit("</v></c>"))


def _style(index: int | None) -> str:
    return f' s="{index}"' if index else ""
