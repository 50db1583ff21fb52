"""Partner, customer and result files: CSV, Parquet or Excel workbooks, chosen by extension.

Reading gives raw frames for ``engine.schema`` to validate (CSV and workbooks are read as
text so that a bad cell is reported, not guessed at). Writing goes to a temporary file that
is renamed into place, so a failed run never leaves a half-written output behind.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import polars as pl

from engine.columns import ASSIGNMENT_SCHEMA, CUSTOMER_SCHEMA, LIST_SEPARATOR, PARTNER_SCHEMA
from engine.rules import Rules
from engine.schema import (
    LINE_COLUMN,
    InputError,
    Problem,
    validate_customers_meanwhile,
    validate_partners,
)
from store import clock

if TYPE_CHECKING:
    from polars.datatypes import DataTypeClass

FORMATS = (".csv", ".parquet", ".xlsx")
#: The most data rows a worksheet holds (1,048,576 rows, one of them the header).
EXCEL_MAX_ROWS = 1_048_575

MAX_INPUT_VAR = "FRP_MAX_INPUT_BYTES"
DEFAULT_MAX_INPUT_BYTES = 2 * 1024**3
#: Rows per Parquet row group a sink writes: it holds a row group whole before writing it,
#: and a result's row is some 500 bytes of text (120 MiB more at polars' default size,
#: 1M with room). The whole write, with slices as large (engine.simulation.OUTPUT_SLICE),
#: peaked about 110 MiB above the run at 32,768 rows and 65 at this size, 0.04-0.09 s
#: slower (same file size); at 8,192, 40 MiB, for a larger file and more time.
PARQUET_ROW_GROUP = 16_384
#: The key under which a Parquet file keeps its Arrow schema (the types Polars reads).
ARROW_SCHEMA = "ARROW:schema"
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def check_format(path: str | Path) -> str:
    """The file's format ('.csv', '.parquet' or '.xlsx') by extension, or InputError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            str(path),
            [
                Problem(
                    None, None, path.suffix or "(none)", "a file ending in .csv, .parquet or .xlsx"
                )
            ],
        )
    return suffix


def read_raw(path: str | Path, sheet: str | None = None) -> tuple[pl.DataFrame, int, str]:
    """(raw frame, number of its first data row, what rows are called) for error messages.

    A CSV frame whose records do not sit one per line (a quoted cell spanning lines, or
    blank lines, which are skipped) carries each record's line in ``LINE_COLUMN``, so that
    ``engine.schema`` names the line a person sees in an editor; a workbook's frame carries
    each row's number as Excel shows it. ``sheet`` (the file's kind: partners, customers)
    picks a workbook's sheet of that name, else its first (:func:`_read_xlsx`).
    """
    p = Path(path)
    kind = check_format(p)
    data = _read_bytes(p)
    if kind == ".xlsx":
        return _read_xlsx(str(p), data, sheet), 2, "row"
    if kind == ".parquet":
        try:
            frame = pl.read_parquet(io.BytesIO(data))
        except Exception as exc:  # polars raises several types for a damaged file
            raise _not_parquet(p, exc) from None
        return frame.drop(LINE_COLUMN, strict=False), 1, "row"  # the reader's, not the file's
    return _read_csv(str(p), data), 2, "line"


def scan_raw(
    path: str | Path, sheet: str | None = None
) -> tuple[pl.DataFrame | pl.LazyFrame, int, str]:
    """:func:`read_raw`, but a Parquet file comes back as a lazy scan, not read yet.

    Validation then streams it (``engine.schema``) and materialises only the columns a
    caller keeps: a million-customer file is never held whole. The footer is read here,
    so a file that is not Parquet at all is refused at once, like :func:`read_raw` does.
    """
    p = Path(path)
    if check_format(p) != ".parquet":
        return read_raw(p, sheet)
    with _opened(p):
        pass
    try:
        scan = pl.scan_parquet(p)
        scan.collect_schema()
    except Exception as exc:  # polars raises several types for a damaged file
        raise _not_parquet(p, exc) from None
    return scan.drop(LINE_COLUMN, strict=False), 1, "row"


def _read_bytes(p: Path) -> bytes:
    limit = max_input_bytes()
    with _opened(p) as f:
        data = f.read(limit + 1)  # the file may have grown since it was checked
    if len(data) > limit:
        raise _too_big(p, len(data), limit, "over")
    return data


def max_input_bytes() -> int:
    """The largest input file read: ``$FRP_MAX_INPUT_BYTES``, else 2 GiB."""
    text = os.environ.get(MAX_INPUT_VAR, "").strip()
    if not text:
        return DEFAULT_MAX_INPUT_BYTES
    if not text.isdecimal() or int(text) < 1:
        raise InputError(
            MAX_INPUT_VAR,
            [Problem(None, None, text, "a whole number of bytes > 0, e.g. 2147483648")],
        )
    return int(text)


def _too_big(p: Path, size: int, limit: int, how: str = "") -> InputError:
    got = f"{how} {size:,} bytes".strip()
    return InputError(
        str(p), [Problem(None, None, got, f"a file of at most {limit:,} bytes ({MAX_INPUT_VAR})")]
    )


@contextmanager
def _opened(p: Path) -> Iterator[BinaryIO]:
    """The file open for reading, or InputError saying why it cannot be.

    Only a regular file within the size limit is read: a FIFO would block for ever and a
    device such as /dev/zero never ends. The kind is checked before opening (following
    symlinks) and again on the open file, which is opened non-blocking so that a FIFO
    put in its place meanwhile cannot hang the open.
    """
    try:
        _check_regular(p, os.stat(p))
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputError(str(p), [Problem(None, None, None, "an existing file")]) from None
    except OSError as exc:
        raise InputError(
            str(p), [Problem(None, None, None, f"a readable file ({_short(exc)})")]
        ) from None
    with os.fdopen(fd, "rb") as f:
        _check_regular(p, os.fstat(fd))
        yield f


#: What a file that is not a regular one is, by its ``stat`` mode.
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(p: Path, info: os.stat_result) -> None:
    """InputError unless ``info`` is a regular file's within the size limit."""
    if stat.S_ISDIR(info.st_mode):
        raise InputError(str(p), [Problem(None, None, None, "a file, not a folder")])
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
        target = os.path.realpath(p)
        via = f" at {target}" if target != os.path.abspath(p) else ""
        raise InputError(str(p), [Problem(None, None, f"{kind}{via}", "a regular file")])
    limit = max_input_bytes()
    if info.st_size > limit:
        raise _too_big(p, info.st_size, limit)


#: Leading bytes of files that are not CSV text, and what to tell the person holding one.
_NOT_TEXT = (
    (b"\xff\xfe\x00\x00", "UTF-8 text, not UTF-32 (save the file as CSV UTF-8)"),
    (b"\x00\x00\xfe\xff", "UTF-8 text, not UTF-32 (save the file as CSV UTF-8)"),
    (b"\xff\xfe", "UTF-8 text, not UTF-16 (save the file as CSV UTF-8)"),
    (b"\xfe\xff", "UTF-8 text, not UTF-16 (save the file as CSV UTF-8)"),
    (b"PK\x03\x04", "CSV text, not an Excel workbook or ZIP archive (save it as CSV UTF-8)"),
    (b"\xd0\xcf\x11\xe0", "CSV text, not an Excel 97-2003 workbook (save it as CSV UTF-8)"),
    (b"PAR1", "CSV text, not Parquet (name a Parquet file .parquet)"),
)
_UTF8_BOM = b"\xef\xbb\xbf"
_LONE_CR = re.compile(rb"\r(?!\n)")
#: What ``str.splitlines`` ends a line at: none belongs in a column name.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _read_csv(source: str, data: bytes) -> pl.DataFrame:
    """The CSV as text columns (every problem an InputError naming the line where it can).

    Works on the bytes (polars parses them, and skips a UTF-8 BOM itself) so that a large
    file is held once, not again as a Python string.
    """
    for magic, expected in _NOT_TEXT:
        if data.startswith(magic) and (magic != b"PAR1" or data.endswith(magic)):
            raise InputError(source, [Problem(None, None, None, expected)])
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(
            source,
            [Problem(_line_at(data, nul), None, None, "text without NUL bytes (a CSV file)")],
            row_label="line",
        )
    _check_utf8(source, data)
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    if re.compile(rb"\S").search(data, start) is None:
        raise InputError(source, [Problem(None, None, None, "a header line and rows")])
    if data.count(b"\r") != data.count(b"\r\n"):  # classic Mac line ends, alone or mixed
        data = _LONE_CR.sub(b"\n", data)  # polars ends lines at LF (CRLF too), never at CR
    try:
        frame = pl.read_csv(data, infer_schema=False, truncate_ragged_lines=False)
    except Exception as exc:  # polars raises several types for malformed text
        line, expected = _csv_problem(data) or (None, f"well-formed CSV ({_short(exc)})")
        raise InputError(source, [Problem(line, None, None, expected)], row_label="line") from None
    if frame.width == 1 and any(sep in frame.columns[0] for sep in ";\t|"):
        raise InputError(
            source,
            [
                Problem(
                    1,
                    None,
                    frame.columns[0][:60],
                    "columns separated by commas (save the file as CSV UTF-8, comma delimited)",
                )
            ],
            row_label="line",
        )
    _check_header(source, frame.columns, data)
    return _with_lines(frame, data)


_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an OLE compound file: .xls, or encrypted
_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")  # the stream a password-protected file holds
_MIDNIGHT = r"^(\d{4}-\d{2}-\d{2}) 00:00:00$"  # how calamine writes a date cell as text


def _read_xlsx(source: str, data: bytes, sheet: str | None) -> pl.DataFrame:
    """The workbook's sheet as text columns named by its row 1, rows numbered as Excel does.

    Every cell is read as text, as CSV is, for ``engine.schema`` to check: a number Excel
    typed reads as its digits (``250``; ``250.5`` is then refused as seats), a boolean as
    ``true``/``false``, a date as ``YYYY-MM-DD`` (with a time of day, ``YYYY-MM-DD
    HH:MM:SS``, which no column takes), a formula as its saved value. The sheet read is
    the one named like ``sheet`` (any case), else the first: one workbook may hold both
    a Partners and a Customers sheet.
    """
    import fastexcel  # the workbook libraries load only for workbooks (30 ms a process)

    _check_workbook(source, data)
    try:
        book = fastexcel.read_excel(data)  # opened once: for its sheet names and its cells
        names = book.sheet_names
        wanted = (n for n in names if sheet is not None and n.strip().lower() == sheet)
        grid = pl.DataFrame(
            book.load_sheet_eager(
                next(wanted, names[0]),
                header_row=None,  # row 1 is read as cells: _sheet_rows checks it
                skip_rows=0,  # from row 1, even when it is blank
                dtypes="string",  # every cell as text
            )
        )
    except Exception as exc:  # calamine raises its own types for a damaged workbook
        raise InputError(
            source, [Problem(None, None, None, f"a readable Excel workbook ({_short(exc)})")]
        ) from None
    return _sheet_rows(source, grid)


def _check_workbook(source: str, data: bytes) -> None:
    """One clear line for a file named .xlsx that is not a workbook calamine can open."""
    if data.startswith(b"PK\x03\x04"):
        return  # a ZIP archive, as every .xlsx is; calamine says if it is not a workbook
    if not data:
        expected = "an Excel workbook, not an empty file"
    elif data.startswith(_OLE) and _ENCRYPTED in data:
        expected = "a workbook without a password (save a copy without the password)"
    elif data.startswith(_OLE):
        expected = "an .xlsx workbook, not an Excel 97-2003 one (save it as Excel Workbook .xlsx)"
    elif data.startswith(b"PAR1"):
        expected = "an Excel workbook, not Parquet (name a Parquet file .parquet)"
    elif b"\x00" not in data[: 1 << 16]:
        expected = "an Excel workbook, not CSV or other text (name a CSV file .csv)"
    else:
        expected = "an Excel workbook (.xlsx)"
    raise InputError(source, [Problem(None, None, None, expected)])


def _sheet_rows(source: str, grid: pl.DataFrame) -> pl.DataFrame:
    """A sheet's text grid (row 1 first) as the raw frame a CSV file gives."""
    blank = _blank_rows(grid) if grid.width and grid.height else pl.Series([True])
    if blank is not None and blank.all():
        raise InputError(source, [Problem(None, None, None, "a header row and rows")])
    if blank is not None and blank[0]:
        raise InputError(
            source,
            [Problem(1, None, None, "column names in row 1 (the header row)")],
            row_label="row",
        )
    names = [(cell or "") for cell in grid.row(0)]
    _check_breaks(source, names, "row", "a header of column names in row 1, without a line break")
    _check_twice(source, names, "row")
    keep: dict[str, str] = {}
    for column, name in zip(grid.columns, names, strict=True):
        if name.strip() and name not in keep.values():  # else no column, or a repeat: ignored
            keep[column] = name
    rows = grid.slice(1).select(
        pl.col(c).str.replace(_MIDNIGHT, "${1}").alias(n) for c, n in keep.items()
    )
    rows = rows.with_columns(pl.int_range(2, rows.height + 2, dtype=pl.Int64).alias(LINE_COLUMN))
    if blank is not None:
        rows = rows.filter(~blank.slice(1))
    return rows


def _check_utf8(source: str, data: bytes) -> None:
    """InputError naming the line of the first byte that is not UTF-8 (decoded in chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 1 << 20
    try:
        for at in range(0, len(data), step):
            decoder.decode(data[at : at + step], final=at + step >= len(data))
    except UnicodeDecodeError:
        try:  # the chunk's error position is relative; decode once more to place it
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                source,
                [
                    Problem(
                        _line_at(data, exc.start),
                        None,
                        f"byte 0x{data[exc.start : exc.start + 1].hex()}",
                        "UTF-8 text (save the file as CSV UTF-8)",
                    )
                ],
                row_label="line",
            ) from None


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _lines(data: bytes) -> Iterator[str]:
    """The text line by line (split at LF, ends kept), without a second copy of the file."""
    first = True
    for line in io.BytesIO(data):
        if first:
            line, first = line.removeprefix(_UTF8_BOM), False
        yield line.decode("utf-8")


#: Columns whose meaning the tool knows; naming one twice is ambiguous (extra ones are ignored).
_KNOWN_COLUMNS = (
    frozenset(PARTNER_SCHEMA) | frozenset(CUSTOMER_SCHEMA) | frozenset(ASSIGNMENT_SCHEMA)
)


def _check_header(source: str, columns: list[str], data: bytes) -> None:
    """Refuse a CSV header that swallowed data or names a known column twice.

    A header cell with a line break means the header ran past line 1 (a quote left open,
    or line ends the reader does not split at): importing would take rows as column
    names and report nothing added. Polars would also rename a repeated column silently,
    so the repeats are looked for in the header as Python's csv reads it.
    """
    _check_breaks(
        source,
        columns,
        "line",
        "a header of column names on line 1, without a line break in a name (is "
        "a quote left open, or are the line ends not CR, LF or CRLF?)",
    )
    try:
        header = next(csv.reader(_lines(data)), [])
    except csv.Error:
        return
    _check_twice(source, header, "line")


def _check_breaks(source: str, names: list[str], row_label: str, expected: str) -> None:
    breaks = (found for c in names if (found := _LINE_BREAK.search(c)))
    if (found := next(breaks, None)) is not None:
        name, at = found.string, found.start()
        raise InputError(
            source,
            [Problem(1, None, name[max(0, at - 30) : at + 30], expected)],
            row_label=row_label,
        )


def _check_twice(source: str, header: list[str], row_label: str) -> None:
    names = [h.strip().lower() for h in header]
    twice = sorted({n for n in names if n in _KNOWN_COLUMNS and names.count(n) > 1})
    if twice:
        raise InputError(
            source,
            [Problem(1, n, None, "each column once (it appears twice)") for n in twice],
            row_label=row_label,
        )


def _with_lines(frame: pl.DataFrame, data: bytes) -> pl.DataFrame:
    """Blank records dropped; each record's line in LINE_COLUMN unless it is record + 1."""
    if frame.width == 0 or frame.height == 0:
        return frame
    physical = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    lines: pl.Series | None = None
    if physical != frame.height + 1:  # a quoted cell spans lines: count records properly
        starts = _record_lines(data)
        if starts is not None and len(starts) == frame.height:
            lines = pl.Series(LINE_COLUMN, starts, dtype=pl.Int64)
    blank = _blank_rows(frame)
    if lines is None and blank is None:
        return frame
    if lines is None:
        lines = pl.int_range(2, frame.height + 2, dtype=pl.Int64, eager=True).alias(LINE_COLUMN)
    frame = frame.with_columns(lines)
    return frame if blank is None else frame.filter(~blank)


def _blank_rows(frame: pl.DataFrame) -> pl.Series | None:
    """Which rows of a text frame are blank (every cell empty or spaces); None if none is."""
    first = pl.col(frame.columns[0])
    if not frame.select((first.is_null() | (first.str.strip_chars() == "")).any()).item():
        return None  # the quick test: most files have no blank row at all
    blank = frame.select(
        pl.all_horizontal(
            [pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in frame.columns]
        )
    ).to_series()
    return blank if blank.any() else None


def _record_lines(data: bytes) -> list[int] | None:
    """The line each data record starts on (None when Python's csv cannot read the text)."""
    reader = csv.reader(_lines(data))
    starts: list[int] = []
    try:
        next(reader, None)
        start = reader.line_num + 1
        for _ in reader:
            starts.append(start)
            start = reader.line_num + 1
    except csv.Error:
        return None
    return starts


def _csv_problem(data: bytes) -> tuple[int, str] | None:
    """(line, what was expected) for the first malformed record, when it can be found."""
    reader = csv.reader(_lines(data), strict=True)
    width, start = None, 1
    try:
        for record in reader:
            if width is None:
                width = len(record)
            elif len(record) > width:
                return start, f"{width} fields like the header line, found {len(record)}"
            start = reader.line_num + 1
    except csv.Error as exc:
        if "expected after" in str(exc):
            return (
                start,
                'a separator after a closing quote (in a quoted cell, write a quote as "")',
            )
        return start, "a closing quote for the quoted cell that starts on this line"
    # Python's reader takes a quote inside an unquoted cell as text; polars does not.
    stray = re.search(rb'(?m)(?:^|,)[^",\r\n]+"', data)
    if stray is not None:
        return _line_at(data, stray.start()), (
            'a quote only around a whole cell (quote the cell and write a quote inside as "")'
        )
    return None


def read_partners(path: str | Path, *, max_pause_days: int = Rules.max_pause_days) -> pl.DataFrame:
    """Validated partners; a pause may end at most ``max_pause_days`` after the clock's date."""
    raw, first, label = scan_raw(path, "partners")
    with _damaged_parquet(path):
        return partners_today(raw, str(path), first, label, max_pause_days)


def partners_today(
    raw: pl.DataFrame | pl.LazyFrame,
    source: str,
    first_row: int,
    row_label: str,
    max_pause_days: int,
) -> pl.DataFrame:
    """``engine.schema.validate_partners`` on the clock's date: what every partners file
    and upload goes through (docs/domain.md, "Partner availability and intake")."""
    return validate_partners(
        raw,
        source,
        first_row=first_row,
        row_label=row_label,
        today=clock.today(),
        max_pause_days=max_pause_days,
    )


def read_customers(path: str | Path, *, columns: Collection[str] | None = None) -> pl.DataFrame:
    """Validated customers; ``columns`` keeps only those (every column is still checked)."""
    customers, checked = read_customers_meanwhile(path, columns=columns)
    checked()
    return customers


def read_customers_meanwhile(
    path: str | Path, *, columns: Collection[str] | None = None
) -> tuple[pl.DataFrame, Callable[[], None]]:
    """:func:`read_customers`, with the columns not kept still being checked when the kept
    ones are returned: the function returned with them waits for that check and raises
    its InputError (engine.schema.validate_customers_meanwhile). Call it before writing."""
    raw, first, label = scan_raw(path, "customers")
    with _damaged_parquet(path):
        customers, finish = validate_customers_meanwhile(
            raw, str(path), first_row=first, row_label=label, keep=columns
        )

    def checked() -> None:
        with _damaged_parquet(path):
            finish()

    return customers, checked


@contextmanager
def _damaged_parquet(path: str | Path) -> Iterator[None]:
    """A Parquet file whose footer reads but whose data does not: one clear line."""
    try:
        yield
    except InputError:
        raise
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise _not_parquet(path, exc) from None


def _not_parquet(path: str | Path, exc: BaseException) -> InputError:
    """The one line for a file named .parquet that polars cannot read as Parquet."""
    return InputError(str(path), [Problem(None, None, None, f"a Parquet file ({_short(exc)})")])


def _neutralise(frame: Frame) -> Frame:
    """Text for spreadsheets (CSV and workbooks): lists joined, and cells that would run as
    formulas quoted."""
    out = []
    for name, dtype in frame.collect_schema().items():
        col = pl.col(name)
        if isinstance(dtype, pl.List):
            col = col.cast(_text_dtype(dtype)).list.join(LIST_SEPARATOR)
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            col = col.cast(pl.String)
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


def csv_text(frame: pl.DataFrame) -> str:
    """``frame`` as the CSV text :func:`write_table` writes (lists joined, formulas
    neutralised), for standard output and the dashboard's downloads."""
    return _neutralise(frame).write_csv()


def table_bytes(frame: pl.DataFrame, suffix: str) -> bytes:
    """``frame`` as the file :func:`write_table` writes for ``suffix`` ('.csv', '.parquet',
    '.xlsx'), in memory: the dashboard's downloads are the command line's files."""
    kind = check_format(f"download{suffix}")
    if kind == ".csv":
        return csv_text(frame).encode()
    buf = io.BytesIO()
    if kind == ".parquet":
        frame.write_parquet(buf, compression="zstd", compression_level=1, statistics=False)
    else:
        _write_xlsx(frame, buf, f"download{suffix}")
    return buf.getvalue()


def _write_xlsx(frame: pl.DataFrame, target: str | io.BytesIO, source: str) -> None:
    """A workbook of one sheet (``store.workbook``): the text CSV gets (:func:`_neutralise`),
    numbers, booleans and dates as Excel's own. Text is written as text, never as a
    formula; the leading quote makes a cell that would be one safe in Excel too, once
    someone edits it. Times are UTC without a zone (Excel has none)."""
    if frame.height > EXCEL_MAX_ROWS:
        raise InputError(
            source,
            [
                Problem(
                    None,
                    None,
                    f"{frame.height:,} rows",
                    f"at most {EXCEL_MAX_ROWS:,} rows in a workbook (write .csv or .parquet)",
                )
            ],
        )
    zoned = [
        pl.col(n).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        for n, t in frame.schema.items()
        if isinstance(t, pl.Datetime) and t.time_zone is not None
    ]
    from store.workbook import write_workbook

    write_workbook(_neutralise(frame.with_columns(zoned)), target)


def write_table(frame: pl.DataFrame | pl.LazyFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV, Parquet or an Excel workbook (by extension), atomically.

    A lazy frame is streamed to a CSV or Parquet file (``sink_*``), a slice at a time, so
    a result of a million rows is never held whole (a workbook is written whole). Parquet
    is zstd at level 1 (about as small as the default level on these files, at half the
    time) and without column statistics: a result is read whole, and the min/max of a
    million traces cost 15% of the write.
    """
    p = Path(path)
    kind = check_format(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        lazy = frame.lazy()
        if kind == ".parquet":
            lazy.sink_parquet(
                tmp,
                compression="zstd",
                compression_level=1,
                statistics=False,
                row_group_size=PARQUET_ROW_GROUP,
                metadata=_as_text(lazy.collect_schema()),
            )
        elif kind == ".xlsx":
            _write_xlsx(lazy.collect(), tmp, str(p))
        else:
            _neutralise(lazy).sink_csv(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _as_text(schema: pl.Schema) -> dict[str, str] | None:
    """The file's Arrow schema with its Enum and Categorical columns as text, or None
    when it has none.

    Polars writes an Enum column as a Parquet dictionary and a code per row, as it writes
    a text column of few values. What differs is only the Arrow schema it stores in the
    file, which would make Polars and pyarrow read the column back as Enum. The schema
    given here is the one Polars writes for the same columns as text (taken from an empty
    file) and replaces its own, so every reader reads text. tests/test_cli.py reads a
    result file back with Polars, pyarrow and DuckDB: a Polars release that stops
    letting it replace the schema fails there, not in a user's file.
    """
    text = {name: _text_dtype(dtype) for name, dtype in schema.items()}
    if text == dict(schema):
        return None
    empty = io.BytesIO()
    pl.DataFrame(schema=text).write_parquet(empty)
    empty.seek(0)
    return {ARROW_SCHEMA: pl.read_parquet_metadata(empty)[ARROW_SCHEMA]}


def _text_dtype(dtype: pl.DataType | DataTypeClass) -> pl.DataType | DataTypeClass:
    if isinstance(dtype, pl.Enum | pl.Categorical) or dtype in (pl.Enum, pl.Categorical):
        return pl.String
    if isinstance(dtype, pl.List):
        return pl.List(_text_dtype(dtype.inner))
    return dtype


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
