"""Validation of partner and customer tables: raw frames in, typed frames or every problem out.

Importers and the command line read files however they like (all text from CSV, typed
columns from Parquet) and hand the raw frame here. Checks are vectorised so that a
million-row file validates in well under a second, and every bad cell is reported
with its row, column, value and what was expected, because a manager fixing a file
needs the whole list at once, not one error per attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import polars as pl
from polars.datatypes import DataTypeClass

from engine.columns import (
    CUSTOMER_OPTIONAL,
    CUSTOMER_SCHEMA,
    LIST_SEPARATOR,
    PARTNER_OPTIONAL,
    PARTNER_SCHEMA,
    PARTNER_SIZES,
    TEXT_LIST,
)
from engine.iso import COUNTRIES, LANGUAGES
from engine.rules import Rules
from engine.sizes import SIZE_BUCKETS
from engine.threads import later

#: Largest number accepted in a count column; anything above is a typo or an overflow.
MAX_COUNT = 10_000_000
MAX_CAPACITY = 100_000
MAX_PROBLEMS = 1_000

#: Control characters (Unicode Cc) and the line and paragraph separators: every character
#: Python's ``str.splitlines`` breaks at is among them, and a mail header holding one
#: cannot be built, so emails and the names messages carry refuse them all.
_CONTROL = r"\p{Cc}\x{2028}\x{2029}"
# Each of the next two is one pass over the cell as read, equal to trimming it (Rust's
# trim and the regex's \s are both Unicode White_Space) and then testing the trimmed text
# for emptiness, shape and control characters: the three tests took three times the CPU
# of this one, over every row of a file (tests/test_control_characters.py holds the
# three-step reference and requires the same answer on random text).
#: A name: some text, trimmed, without control characters inside.
_NAME = rf"^\s*[^\s{_CONTROL}](?:[^{_CONTROL}]*[^\s{_CONTROL}])?\s*$"
#: An email address (trimmed), no control characters.
_EMAIL = rf"^\s*[^@\s;,{_CONTROL}]+@[^@\s;,{_CONTROL}]+\.[^@\s;,{_CONTROL}]+\s*$"
_WORKLOAD = r"^[a-z0-9][a-z0-9.+_-]*$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_TRUE = ("true", "yes", "y", "1", "t")
_FALSE = ("false", "no", "n", "0", "f")
_ROW = "__row"

#: Optional integer column of a raw frame: each row's number as a person sees it (a CSV
#: line when a record spans lines or blank lines were skipped). Not a data column.
LINE_COLUMN = "__frp_line__"

#: The name of the threads that check beside the read (engine.threads.later).
_CHECKING = "frp-check"


@dataclass(frozen=True)
class Problem:
    """One bad cell (or a missing column, when ``row`` is None)."""

    row: int | None
    column: str | None
    value: str | None
    expected: str

    def describe(self, row_label: str = "row") -> str:
        where = []
        if self.row is not None:
            where.append(f"{row_label} {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        got = "" if self.value is None else f"got {self.value!r}; "
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{got}expected {self.expected}"


class InputError(ValueError):
    """A table that cannot be used; carries every problem found (up to MAX_PROBLEMS)."""

    def __init__(
        self,
        source: str,
        problems: Sequence[Problem],
        total: int | None = None,
        row_label: str = "row",
    ) -> None:
        self.source = source
        self.problems = list(problems)
        self.total = total if total is not None else len(self.problems)
        self.row_label = row_label
        super().__init__(self.one_line())

    def one_line(self) -> str:
        if not self.problems:
            return f"{self.source}: invalid input"
        first = self.problems[0].describe(self.row_label)
        more = self.total - 1
        tail = f" (and {more} more problem{'s' if more != 1 else ''})" if more > 0 else ""
        return f"{self.source}: {first}{tail}"

    def to_frame(self) -> pl.DataFrame:
        """The problems as a table: what the dashboard shows after a failed upload."""
        return pl.DataFrame(
            {
                self.row_label: [p.row for p in self.problems],
                "column": [p.column for p in self.problems],
                "value": [p.value for p in self.problems],
                "expected": [p.expected for p in self.problems],
            },
            schema={
                self.row_label: pl.Int64,
                "column": pl.String,
                "value": pl.String,
                "expected": pl.String,
            },
        )


@dataclass(frozen=True)
class _Col:
    #: text | name | email | count | bool | date | countries | languages | workloads | country
    #: | language; a name is text that goes into messages (subjects), so no control characters
    kind: str
    required: bool = True
    nullable: bool = False
    upper: int = MAX_COUNT
    #: A date column's latest accepted value, and why (said in the error).
    latest: date | None = None
    latest_why: str = ""

    @property
    def coded(self) -> bool:
        """Codes and lists of codes: few distinct values, so checked once per value."""
        return self.kind in ("country", "language", *_LIST_KINDS)


@dataclass(frozen=True)
class _Check:
    """One column's check: a row-wise mask (``bad``, ``shown``) or its bad distinct values.

    ``bad_values`` has the column's bad values and, in ``v``, each one as shown.
    """

    name: str
    expected: str
    bad: pl.Expr | None = None
    shown: pl.Expr | None = None
    bad_values: pl.DataFrame | None = None


_PARTNER_COLS: dict[str, _Col] = {
    "partner_id": _Col("text"),
    "name": _Col("name"),
    "countries": _Col("countries"),
    "languages": _Col("languages"),
    "workloads": _Col("workloads"),
    "capacity": _Col("count", upper=MAX_CAPACITY),
    "active_referrals": _Col("count", upper=MAX_CAPACITY),
    "referral_ready": _Col("bool"),
    "psm_name": _Col("name"),
    "psm_email": _Col("email"),
    "contact_email": _Col("email"),
    "last_assigned": _Col("count", required=False, nullable=True, upper=2**62),
    "paused_until": _Col("date", required=False, nullable=True),
    "monthly_quota": _Col("count", required=False, nullable=True, upper=MAX_CAPACITY),
}
_CUSTOMER_COLS: dict[str, _Col] = {
    "tenant_id": _Col("text"),
    "name": _Col("name"),
    "country": _Col("country"),
    "language": _Col("language"),
    "seats": _Col("count"),
    "workloads": _Col("workloads"),
    "gateway": _Col("bool"),
    "contact_email": _Col("email"),
    "referral_consent": _Col("bool", required=False, nullable=True),
}
#: Optional partner column kept only when a file has it (not in PARTNER_SCHEMA, so the
#: store's partner table is unchanged): the size buckets a partner takes (engine.sizes).
_SIZES_COL = _Col("sizes", required=False, nullable=True)
assert set(_PARTNER_COLS) == set(PARTNER_SCHEMA) and set(_CUSTOMER_COLS) == set(CUSTOMER_SCHEMA)
assert {k for k, c in _PARTNER_COLS.items() if not c.required} == set(PARTNER_OPTIONAL)
assert {k for k, c in _CUSTOMER_COLS.items() if not c.required} == set(CUSTOMER_OPTIONAL)

_EXPECTED = {
    "text": "non-empty text",
    "name": "non-empty text with no control characters (line breaks, tabs)",
    "email": "an email address like name@example.com, no control characters",
    "count": "a whole number >= 0",
    "bool": "true or false",
    "date": "a date as YYYY-MM-DD (e.g. 2025-07-01)",
    "countries": "';'-separated ISO 3166-1 alpha-2 country codes, at least one (e.g. US;CA)",
    "languages": "';'-separated ISO 639-1 language codes, at least one (e.g. en;fr)",
    "workloads": "';'-separated workload ids (e.g. exchange;teams)",
    "sizes": "';'-separated size buckets among " + ", ".join(SIZE_BUCKETS) + " (empty = all)",
    "country": "an ISO 3166-1 alpha-2 country code (e.g. US)",
    "language": "an ISO 639-1 language code (e.g. en)",
}


def validate_partners(
    raw: pl.DataFrame | pl.LazyFrame,
    source: str = "partners",
    *,
    first_row: int = 1,
    row_label: str = "row",
    today: date | None = None,
    max_pause_days: int = Rules.max_pause_days,
) -> pl.DataFrame:
    """Typed partners (PARTNER_SCHEMA) from a raw table, or InputError listing every problem.

    ``today`` is the clock's date (the engine never reads the clock): a ``paused_until``
    more than ``max_pause_days`` after it is a bad cell (docs/domain.md, "Partner
    availability and intake"). Without it, any date is accepted.
    """
    spec = _PARTNER_COLS
    schema = PARTNER_SCHEMA
    if PARTNER_SIZES in _header(raw):
        spec = {**spec, PARTNER_SIZES: _SIZES_COL}
        schema = pl.Schema({**PARTNER_SCHEMA, PARTNER_SIZES: TEXT_LIST})
    if today is not None:
        latest = today + timedelta(days=max_pause_days)
        why = f"today {today.isoformat()} + max_pause_days {max_pause_days}"
        paused = replace(spec["paused_until"], latest=latest, latest_why=why)
        spec = {**spec, "paused_until": paused}
    typed, finish = _validate(raw, spec, schema, "partner_id", source, first_row, row_label)
    finish()
    return typed


def _header(raw: pl.DataFrame | pl.LazyFrame) -> set[str]:
    """The column names as validation reads them (trimmed, lower case)."""
    return {str(c).strip().lstrip("\ufeff").lower() for c in raw.lazy().collect_schema()}


def validate_customers(
    raw: pl.DataFrame | pl.LazyFrame,
    source: str = "customers",
    *,
    first_row: int = 1,
    row_label: str = "row",
    keep: Collection[str] | None = None,
) -> pl.DataFrame:
    """Typed customers (CUSTOMER_SCHEMA) from a raw table, or InputError listing every problem.

    Every column is checked; ``keep`` names the columns to return (all by default). A
    lazy ``raw`` (a file scan) is read in streaming passes, so a caller that keeps only
    what it needs never holds the other columns of a large file at all.
    """
    typed, finish = validate_customers_meanwhile(
        raw, source, first_row=first_row, row_label=row_label, keep=keep
    )
    finish()
    return typed


def validate_customers_meanwhile(
    raw: pl.DataFrame | pl.LazyFrame,
    source: str = "customers",
    *,
    first_row: int = 1,
    row_label: str = "row",
    keep: Collection[str] | None = None,
) -> tuple[pl.DataFrame, Callable[[], None]]:
    """:func:`validate_customers` for a caller with work to do before it needs the whole
    verdict: the columns checked but not kept are still being counted, in a thread, when
    the kept ones are returned; the function returned with them waits for that count and
    raises the InputError :func:`validate_customers` would (or returns: none). Call it
    before anything is written.

    A what-if keeps neither names nor contact emails, yet refuses a file with a bad one.
    Counting them is a third of the read's CPU, where the read already has both cores
    busy (numba loads beside it), while the run that follows is mostly the interpreter
    on one core: the count costs no waiting there. Whether a key repeats is found on
    that core too. A problem in a kept column is raised at once, after the count, so the
    error lists every problem.
    """
    return _validate(
        raw, _CUSTOMER_COLS, CUSTOMER_SCHEMA, "tenant_id", source, first_row, row_label, keep
    )


def check_email(value: str, column: str = "email", source: str = "address") -> str:
    """``value`` as an import would store it (trimmed), or InputError naming ``column``: the
    import's own check, so an address fixed by hand meets the same rule as a file's."""
    text, bad, _ = _convert(pl.col(column), pl.String(), _Col("email"))
    row = pl.DataFrame({column: [value]}).select(text.alias("v"), bad.fill_null(True).alias("bad"))
    if row.item(0, "bad"):
        raise InputError(source, [Problem(None, column, value, _EXPECTED["email"])])
    return str(row.item(0, "v"))


def _validate(
    raw: pl.DataFrame | pl.LazyFrame,
    spec: dict[str, _Col],
    schema: dict[str, pl.DataType],
    key: str,
    source: str,
    first_row: int,
    row_label: str,
    keep: Collection[str] | None = None,
) -> tuple[pl.DataFrame, Callable[[], None]]:
    """The typed columns (``keep`` and the key), and a function that waits for the columns
    only checked and raises the InputError of every problem found (or returns: none).
    A problem already found among the kept columns is raised here."""
    frame, seen = _known_columns(raw.lazy(), spec, source, first_row, row_label)
    exprs: dict[str, pl.Expr] = {}
    checks: dict[str, _Check] = {}
    for name, col in spec.items():
        if name not in seen:
            exprs[name] = pl.lit(None, dtype=schema[name]).alias(name)
            continue
        frame = _readable(frame, name, col, source, row_label)
        value, bad, shown = _convert(pl.col(name), frame.collect_schema()[name], col)
        exprs[name] = value.cast(schema[name]).alias(name)
        checks[name] = _Check(name, _EXPECTED[col.kind] + _bound_note(col), bad, shown)
    wanted = [n for n in spec if keep is None or n in keep or n == key]

    def unreadable(exc: pl.exceptions.PolarsError) -> InputError:
        # The dtype checks above should make this unreachable; if a column type slips
        # through, the person still gets the column and the reason, not a traceback.
        return _unreadable(frame, list(checks.values()), exc, source, row_label)

    try:
        read, found, counted = _read_checked(frame, spec, schema, exprs, checks, wanted)
    except pl.exceptions.PolarsError as exc:
        raise unreadable(exc) from None
    typed = read.select(_ROW, *wanted)
    del read
    # `finish` holds only the keys and row numbers, not the kept frame, which its caller
    # lets go of before calling it (at 1M the workload lists alone are 45 MiB); the keys
    # are shared with what the caller keeps. Whether one repeats is found meanwhile too.
    keyed = typed.select(_ROW, key)
    repeats = (
        later(_has_duplicates, keyed.get_column(key), name=_CHECKING)
        if not found
        else lambda: False
    )

    def finish() -> None:
        try:
            every = dict(found)
            for name, count in counted().items():
                if count:
                    every[name] = (checks[name], count, _shown_rows(frame, checks[name]))
            problems, total = _first_problems([every[n] for n in checks if n in every])
        except pl.exceptions.PolarsError as exc:
            raise unreadable(exc) from None
        if not problems and repeats():
            problems, total = _duplicate_problems(keyed, key, row_label)
        if problems:
            problems.sort(
                key=lambda p: (p.row or 0, list(spec).index(p.column) if p.column in spec else 0)
            )
            raise InputError(source, problems, total, row_label=row_label)

    if found:
        finish()  # raises; after the count, so that the error lists every problem
    return typed.drop(_ROW), finish


def _known_columns(
    lazy: pl.LazyFrame, spec: dict[str, _Col], source: str, first_row: int, row_label: str
) -> tuple[pl.LazyFrame, set[str]]:
    """The spec's columns present, under their own names, with each row's number; and
    which were present. A column twice or a required one missing is an InputError."""
    columns = lazy.collect_schema()
    data_columns = [c for c in columns if c != LINE_COLUMN]
    header_problems: list[Problem] = []
    names = [str(c).strip().lstrip("\ufeff").lower() for c in data_columns]
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    for name, count in seen.items():
        if count > 1 and name in spec:
            header_problems.append(Problem(None, name, None, "each column once (it appears twice)"))
    for name, col in spec.items():
        if col.required and name not in seen:
            header_problems.append(Problem(None, name, None, "this column to be present"))
    if header_problems:
        raise InputError(source, header_problems, row_label=row_label)

    # Only the known columns are renamed: extra ones may differ only by case ("Notes",
    # "notes"), and renaming those to one name would be a clash, not a problem of the input.
    original = {name: c for c, name in zip(data_columns, names, strict=True) if name in spec}
    known = [pl.col(original[n]).alias(n) for n in spec if n in seen]
    if LINE_COLUMN in columns and columns[LINE_COLUMN].is_integer():
        frame = lazy.select(pl.col(LINE_COLUMN).cast(pl.Int64).alias(_ROW), *known)
    else:
        frame = lazy.select(known).with_row_index(_ROW, offset=first_row)
    return frame, set(seen)


#: A column's problems: its check, how many rows it refuses and those rows (row number,
#: value as shown).
_Found = tuple[_Check, int, pl.DataFrame | pl.LazyFrame]


def _read_checked(
    frame: pl.LazyFrame,
    spec: dict[str, _Col],
    schema: dict[str, pl.DataType],
    exprs: dict[str, pl.Expr],
    checks: dict[str, _Check],
    wanted: list[str],
) -> tuple[pl.DataFrame, dict[str, _Found], Callable[[], dict[str, int]]]:
    """The ``wanted`` columns, typed; the problems of the kept and coded columns, by
    column; and a function that gives, waiting for it, how many rows each column only
    checked (not kept) refuses.

    Two streaming passes over the input: the columns only checked, not kept (a what-if
    keeps no names or emails), counted in a thread; and the typed columns kept, the
    coded columns as read (checked once per distinct value) and a bad-row mask per
    other kept column. A file is decoded a column chunk at a time, so splitting the
    passes halves the peak for one row group; and a file of one row group is decoded by
    few threads per pass, so the two together took 0.38-0.45 s where one after the
    other took 0.56-0.61 s (a million customers). The count is not waited for here: a
    caller with other work does it first (:func:`validate_customers_meanwhile`). The
    kept columns come back in one chunk each: added to, a frame of the reader's chunks
    is copied whole, and that copy lived beside the original through a run (71 MiB at a
    million). They are joined a column at a time (:func:`_one_chunk`).
    """
    coded = [n for n in checks if spec[n].coded]
    only_checked = [n for n in checks if n not in coded and n not in wanted]
    counts_of = [_mask(checks[n]).sum().alias(n) for n in only_checked]
    types = frame.collect_schema()
    as_read = [
        n for n in wanted if n in checks and spec[n].kind == "text" and types[n] == pl.String
    ]
    # Polars lets go of the interpreter while it collects: the passes overlap.
    totals = later(_count_in_parts, frame, counts_of, name=_CHECKING) if only_checked else None

    def counted() -> dict[str, int]:
        row = totals().row(0) if totals is not None else ()
        return dict(zip(only_checked, row, strict=True))

    read = frame.select(
        pl.col(_ROW),
        *[
            pl.col(n) if n in coded or n in as_read else exprs[n]
            for n in spec
            if n in coded or n in wanted
        ],
        *[
            _mask(checks[n]).alias(f"__bad_{n}")
            for n in checks
            if n not in coded and n not in only_checked
        ],
        *[pl.col(n).ne(exprs[n]).fill_null(False).alias(f"__trim_{n}") for n in as_read],
    ).collect(engine="streaming")
    _one_chunk(read)
    # Text kept as read unless a cell has space around it: trimmed in the pass, a
    # column is a copy beside the decoded one (about 50 MiB more at 1M tenant ids).
    trim = [n for n in as_read if read.get_column(f"__trim_{n}").any()]
    if trim:
        read = read.with_columns(exprs[n] for n in trim)
    found: dict[str, _Found] = {}
    for name, check in checks.items():
        if name in only_checked:
            continue
        if name in coded:
            read, check = _check_coded(read, name, schema[name], exprs[name], check)
            checks[name] = check
        if check.bad_values is not None:
            if check.bad_values.height:
                hits = read.select(_ROW, name).join(check.bad_values, on=name, nulls_equal=True)
                found[name] = (check, hits.height, hits.sort(_ROW).select(_ROW, "v"))
            continue
        count = int(read.get_column(f"__bad_{name}").sum())
        if count:
            found[name] = (check, count, _shown_rows(frame, check))
    return read, found, counted


def _shown_rows(frame: pl.LazyFrame, check: _Check) -> pl.LazyFrame:
    """The rows a check refuses (row number, value as shown), read again when asked."""
    assert check.shown is not None
    return frame.filter(_mask(check)).select(_ROW, check.shown.alias("v"))


def _one_chunk(frame: pl.DataFrame) -> None:
    """Each column of ``frame`` in one chunk, in place, a column at a time.

    ``DataFrame.rechunk`` copies every column while the chunked frame is still whole: at
    a million customers the read's kept columns are 70 MiB, held twice. Replaced one by
    one, each column's chunks are freed before the next is copied, so the copy costs the
    largest column (the tenant ids, 34 MiB) and the allocator reuses its pages for the
    next.
    """
    for i, name in enumerate(frame.columns):
        column = frame.get_column(name)
        if column.n_chunks() > 1:
            frame.replace_column(i, column.rechunk())


def _count_in_parts(frame: pl.LazyFrame, sums: list[pl.Expr]) -> pl.DataFrame:
    """``sums`` over ``frame``, _CHECK_PART_ROWS rows at a time (one row of totals).

    A Parquet file written whole (one row group, what pyarrow writes for a million rows)
    is otherwise decoded a whole column at a time; a part decodes only its own pages. At
    a million customers the read's peak went 438 -> 394 MiB (medians of eight fresh
    processes each), in the same time (0.46 -> 0.45 s).
    """
    height = frame.select(pl.len()).collect().item()
    if height <= _CHECK_PART_ROWS:
        return frame.select(sums).collect(engine="streaming")
    parts = [
        frame.slice(at, _CHECK_PART_ROWS).select(sums).collect(engine="streaming")
        for at in range(0, height, _CHECK_PART_ROWS)
    ]
    return pl.concat(parts).sum()


def _first_problems(found: list[_Found]) -> tuple[list[Problem], int]:
    """Up to MAX_PROBLEMS bad cells, column by column; and how many there are in all."""
    problems: list[Problem] = []
    total = 0
    for check, count, shown_rows in found:  # in column order, like the rows
        total += count
        room = MAX_PROBLEMS - len(problems)
        if room > 0:
            for row, val in shown_rows.head(room).lazy().collect().iter_rows():
                problems.append(Problem(row, check.name, val, check.expected))
    return problems, total


def _duplicate_problems(typed: pl.DataFrame, key: str, row_label: str) -> tuple[list[Problem], int]:
    """Each repeat of a key after its first row (up to MAX_PROBLEMS), and how many."""
    problems: list[Problem] = []
    dup = typed.filter(pl.col(key).is_duplicated())
    if dup.height == 0:
        return problems, 0
    firsts = dup.group_by(key).agg(pl.col(_ROW).min().alias("first"))
    dup = dup.join(firsts, on=key).filter(pl.col(_ROW) != pl.col("first")).sort(_ROW)
    for row, value, first in dup.select(_ROW, key, "first").head(MAX_PROBLEMS).iter_rows():
        problems.append(Problem(row, key, value, f"a unique {key} (also on {row_label} {first})"))
    return problems, dup.height


def _has_duplicates(keys: pl.Series) -> bool:
    """Whether a key repeats. Distinct 64-bit hashes prove distinct keys (equal keys hash
    alike), and counting hashes is several times cheaper than counting a million
    strings; only when two hashes meet are the keys themselves compared."""
    return keys.hash().n_unique() < keys.len() and keys.n_unique() < keys.len()


def _mask(check: _Check) -> pl.Expr:
    assert check.bad is not None
    return check.bad.fill_null(True)


#: Rows per part of the columns only checked (_count_in_parts).
_CHECK_PART_ROWS = 262_144

#: Above this share of distinct values in a coded column, checking per row is cheaper.
_CODED_SHARE = 8


def _check_coded(
    read: pl.DataFrame, name: str, dtype: pl.DataType, value: pl.Expr, check: _Check
) -> tuple[pl.DataFrame, _Check]:
    """Check a coded column (codes, lists of codes) as read; returns it typed.

    A million customers name a few dozen countries and a few thousand workload lists, so
    the conversions run once per distinct value and are joined back only when a value
    actually changes (a lower-case country, a ';'-joined list from CSV); a clean Parquet
    column is kept as it is, without a copy. The conversions are cell by cell, so the
    result is the same as checking every row, which is what a column with too many
    distinct values (or of a type that cannot be hashed) gets instead.
    """
    assert check.bad is not None and check.shown is not None
    column = read.get_column(name)
    try:
        # Streaming: a list column's in-memory unique row-encodes every row first (95
        # MiB for a million workload lists, against 16 MiB this way, in less time).
        distinct = column.to_frame().lazy().unique().collect(engine="streaming").to_series()
        if distinct.len() * _CODED_SHARE > max(column.len(), 1024):
            raise _PerRow
        checked = distinct.to_frame().select(
            pl.col(name),
            value.alias("value"),
            _mask(check).alias("bad"),
            check.shown.alias("v"),
        )
    except (pl.exceptions.PolarsError, _PerRow):
        per_row = read.select(value, _mask(check).alias(f"__bad_{name}"))
        return read.with_columns(per_row), check
    bad_values = checked.filter("bad").select(name, "v")
    by_value = _Check(name, check.expected, bad_values=bad_values)
    same = column.dtype == dtype and bool(
        checked.select(pl.col(name).eq_missing(pl.col("value")).all()).item()
    )
    if same or bad_values.height:  # a refused file is not typed any further
        return read, by_value
    typed = (
        column.to_frame()
        .join(
            checked.select(name, "value"),
            on=name,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
        .get_column("value")
        .alias(name)
    )
    return read.with_columns(typed), by_value


class _PerRow(Exception):
    """A coded column with too many distinct values to check once per value."""


_LIST_KINDS = ("countries", "languages", "workloads", "sizes")


def _is_text(dtype: pl.DataType | DataTypeClass) -> bool:
    return dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)


def _is_scalar(dtype: pl.DataType) -> bool:
    """Types whose cells read as one text value: text, numbers, booleans, dates, times."""
    return (
        _is_text(dtype)
        or dtype.is_numeric()
        or dtype in (pl.Boolean, pl.Null, pl.Date, pl.Time)
        or isinstance(dtype, pl.Datetime)
    )


def _readable(
    frame: pl.LazyFrame, name: str, col: _Col, source: str, row_label: str
) -> pl.LazyFrame:
    """``frame`` with column ``name`` in a type the checks can read, or a column-level error.

    Parquet can hold any Arrow type; only those that read as the column's kind get
    through (binary that is valid UTF-8 becomes text), so a list of lists or a struct is
    one clear error about the column rather than a failure deep inside polars.
    """
    dtype = frame.collect_schema()[name]
    is_list = col.kind in _LIST_KINDS
    if dtype == pl.Binary or (isinstance(dtype, pl.List) and dtype.inner == pl.Binary):
        target = pl.List(pl.String) if isinstance(dtype, pl.List) else pl.String
        cast = pl.col(name).cast(target)
        try:
            frame.select(cast.null_count()).collect()  # reads the one column, keeps nothing
        except pl.exceptions.PolarsError:
            raise InputError(
                source, [Problem(None, name, str(dtype), "UTF-8 text")], row_label=row_label
            ) from None
        return frame.with_columns(cast)
    if is_list:
        ok = _is_text(dtype) or dtype == pl.Null
        if isinstance(dtype, pl.List):
            inner = dtype.inner
            ok = _is_text(inner) or inner.is_numeric() or inner in (pl.Boolean, pl.Null)
        what = "a list of text"
    else:
        ok = _is_scalar(dtype)
        what = "a single value per cell (text, a number or true/false)"
    if not ok:
        raise InputError(source, [Problem(None, name, str(dtype), what)], row_label=row_label)
    return frame


def _unreadable(
    frame: pl.LazyFrame,
    checks: list[_Check],
    exc: Exception,
    source: str,
    row_label: str,
) -> InputError:
    """The error for a column polars cannot convert: find it by trying them one by one."""
    for check in checks:
        name, expected = check.name, check.expected
        if check.bad is None or check.shown is None:
            continue
        try:
            frame.select(
                check.bad.fill_null(True).any().alias("bad"), check.shown.first().alias("shown")
            ).collect()
        except pl.exceptions.PolarsError as column_exc:
            reason = str(column_exc).strip().splitlines()[0][:120]
            dtype = frame.collect_schema()[name]
            return InputError(
                source,
                [Problem(None, name, str(dtype), f"{expected} ({reason})")],
                row_label=row_label,
            )
    reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
    return InputError(source, [Problem(None, None, None, f"readable columns ({reason})")])


def _bound_note(col: _Col) -> str:
    if col.latest is not None:
        return f", no later than {col.latest.isoformat()} ({col.latest_why})"
    return f" and <= {col.upper:,}" if col.kind == "count" and col.upper < 2**62 else ""


def _text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Any scalar column as stripped text (null stays null)."""
    return (expr if dtype == pl.String else expr.cast(pl.String)).str.strip_chars()


def _convert(expr: pl.Expr, dtype: pl.DataType, col: _Col) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(converted value, bad-row mask, value to show in the error) for one column."""
    if col.kind in _LIST_KINDS:
        return _convert_list(expr, dtype, col.kind)
    text = _text(expr, dtype)
    # Numbers, booleans and dates are never blank: only missing (no text round trip per row).
    empty = (
        expr.is_null()
        if dtype.is_numeric() or dtype in (pl.Boolean, pl.Date)
        else text.is_null() | (text == "")
    )
    shown = text
    if col.kind in ("text", "name", "email"):
        value = text
        if col.kind == "text":
            bad = empty
        else:  # the regex trims and tests emptiness itself, over the cell as read
            read = expr if dtype == pl.String else expr.cast(pl.String)
            bad = ~read.str.contains(_EMAIL if col.kind == "email" else _NAME)
    elif col.kind == "count":
        if dtype.is_integer():
            value = expr.cast(pl.Int64, strict=False)
        elif dtype.is_float():
            value = pl.when(expr == expr.floor()).then(expr).cast(pl.Int64, strict=False)
        else:
            value = text.str.replace_all(r"^\+", "").cast(pl.Int64, strict=False)
        out_of_range = (value < 0) | (value > col.upper)
        bad = (value.is_null() & ~empty) | out_of_range.fill_null(False)
        if not col.nullable:
            bad = bad | empty
        value = pl.when(empty).then(None).otherwise(value)
    elif col.kind == "bool" and dtype == pl.Boolean:
        # Typed already (Parquet): no text round trip over every row.
        value = expr
        bad = expr.is_null() if not col.nullable else pl.lit(False)
    elif col.kind == "bool":
        low = text.str.to_lowercase()
        value = pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
        bad = ~empty & value.is_null()
        if not col.nullable:
            bad = bad | empty
    elif col.kind == "date":
        value, bad = _convert_date(expr, dtype, text, empty, col)
    elif col.kind == "country":
        value = text.str.to_uppercase()
        bad = empty | ~value.is_in(list(COUNTRIES))
    elif col.kind == "language":
        value = text.str.to_lowercase()
        bad = empty | ~value.is_in(list(LANGUAGES))
    else:  # pragma: no cover - the spec tables above are the only callers
        raise AssertionError(col.kind)
    return value, bad, shown


def _convert_date(
    expr: pl.Expr, dtype: pl.DataType, text: pl.Expr, empty: pl.Expr, col: _Col
) -> tuple[pl.Expr, pl.Expr]:
    """(date, bad-row mask): a Parquet date as it is, text only as ISO ``YYYY-MM-DD``."""
    if dtype == pl.Date:
        value = expr
    else:
        iso = text.str.contains(_ISO_DATE)
        value = pl.when(iso).then(text.str.to_date("%Y-%m-%d", strict=False))
    bad = value.is_null() & ~empty
    if not col.nullable:
        bad = bad | empty
    if col.latest is not None:
        bad = bad | (value > col.latest).fill_null(False)
    return value, bad


def _convert_list(expr: pl.Expr, dtype: pl.DataType, kind: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    if _is_text(dtype) or dtype == pl.Null:
        parts = expr.cast(pl.String).str.split(LIST_SEPARATOR)
        shown = expr.cast(pl.String)
    else:
        parts = expr.cast(TEXT_LIST, strict=False)
        shown = expr.cast(TEXT_LIST, strict=False).list.join(LIST_SEPARATOR)
    norm: Callable[[pl.Expr], pl.Expr]
    if kind == "countries":
        norm, allowed, pattern = (lambda e: e.str.to_uppercase()), list(COUNTRIES), None
    elif kind == "languages":
        norm, allowed, pattern = (lambda e: e.str.to_lowercase()), list(LANGUAGES), None
    elif kind == "sizes":
        norm, allowed, pattern = (lambda e: e.str.to_uppercase()), list(SIZE_BUCKETS), None
    else:
        norm, allowed, pattern = (lambda e: e.str.to_lowercase()), None, _WORKLOAD
    cleaned = parts.list.eval(norm(pl.element().str.strip_chars())).list.eval(
        pl.element().filter(pl.element() != "")
    )
    value = cleaned.list.unique(maintain_order=True)
    if kind == "sizes":  # empty or missing: every size
        bad = cleaned.list.eval(~pl.element().is_in(SIZE_BUCKETS)).list.any().fill_null(False)
    elif allowed is not None:
        bad_items = cleaned.list.eval(~pl.element().is_in(allowed)).list.any()
        bad = expr.is_null() | (cleaned.list.len() == 0) | bad_items
    else:
        assert pattern is not None
        # Workloads may be empty (the customer then has no eligible workload).
        bad = cleaned.list.eval(~pl.element().str.contains(pattern)).list.any().fill_null(False)
        value = pl.when(expr.is_null()).then(pl.lit([], dtype=TEXT_LIST)).otherwise(value)
    return value, bad, shown
