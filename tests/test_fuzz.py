"""Property-based fuzzing of the importers and the rules file (Hypothesis).

Random bytes, random CSV-ish text, random cell values of random types (as raw frames and
as Parquet files) and random rules go through the same entry points as real input:
``store.files.read_partners/read_customers``, ``engine.schema.validate_*``,
``engine.rules.parse_rules``/``parse_rules_dict`` and ``frp import`` into a database.
Every case must end in a clean result or in InputError/RulesError whose message is one
line naming the input (and a row or line that exists, and a known column, where it names
one); never another exception, and never a partial write.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main as frp_main
from engine.assign import simulate
from engine.columns import ASSIGNMENT_SCHEMA, CUSTOMER_SCHEMA, PARTNER_SCHEMA
from engine.rules import (
    DEFAULT_RULES_PATH,
    Rules,
    RulesError,
    parse_rules,
    parse_rules_dict,
    to_dict,
)
from engine.schema import InputError, validate_customers, validate_partners
from store.backup import table_digest
from store.db import connect
from store.files import read_customers, read_partners
from store.imports import import_partners

BASE = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # the examples are random junk; nothing worth replaying from disk
)


def fuzz(examples: int) -> settings:
    return settings(BASE, max_examples=examples)


KINDS: dict[str, tuple[Callable[..., pl.DataFrame], Callable[..., pl.DataFrame], dict]] = {
    "partners": (read_partners, validate_partners, PARTNER_SCHEMA),
    "customers": (read_customers, validate_customers, CUSTOMER_SCHEMA),
}
RULES_TEXT = DEFAULT_RULES_PATH.read_text(encoding="utf-8")


class Tally:
    """Counts the inputs a test tried, for the run's summary line (conftest)."""

    def __init__(self) -> None:
        self.tried = 0
        self.accepted = 0

    def add(self, accepted: bool) -> None:
        self.tried += 1
        self.accepted += accepted


@pytest.fixture
def tally(record_property: Callable[[str, object], None]) -> Iterator[Tally]:
    t = Tally()
    yield t
    record_property("bad_inputs", t.tried)
    record_property("bad_inputs_accepted", t.accepted)


# --- the contract ----------------------------------------------------------------------

COLUMNS = sorted(set(PARTNER_SCHEMA) | set(CUSTOMER_SCHEMA))
KNOWN = set(COLUMNS) | set(ASSIGNMENT_SCHEMA)


def check_error(error: InputError, source: str, max_row: int | None) -> None:
    """One line, names the input, says what was expected, points only at what exists."""
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{source}: "), message
    assert "expected" in message
    assert error.problems and error.total >= len(error.problems)
    for problem in error.problems:
        if problem.row is not None and max_row is not None:
            assert 1 <= problem.row <= max_row, (problem, max_row)
        if problem.column is not None:
            assert problem.column in KNOWN, problem


def check_frame(frame: pl.DataFrame, kind: str) -> None:
    """An accepted table is in the documented schema, and validating it again changes nothing."""
    schema = KINDS[kind][2]
    assert dict(frame.schema) == dict(schema)
    key = "partner_id" if kind == "partners" else "tenant_id"
    assert frame[key].null_count() == 0 and frame[key].n_unique() == frame.height
    as_text = frame.with_columns(
        pl.col(c).cast(pl.String) for c, t in schema.items() if not isinstance(t, pl.List)
    )
    assert KINDS[kind][1](as_text).equals(frame)


def read_file(path: Path, kind: str, max_row: int | None) -> bool:
    """True if the file was accepted; any exception but InputError fails the test."""
    try:
        frame = KINDS[kind][0](path)
    except InputError as error:
        check_error(error, str(path), max_row)
        return False
    check_frame(frame, kind)
    return True


def lines_in(data: bytes) -> int:
    return data.count(b"\n") + data.count(b"\r") + 2


# --- strategies ------------------------------------------------------------------------

#: Per column: good values and the usual mistakes, as a person would type them.
GOOD = {
    "partner_id": ["P1", "P2", " P3 ", "p1"],
    "tenant_id": ["T1", "T2", "T 3", "t1"],
    "name": ["Alder GmbH", '=HYPERLINK("http://x","y")', "Ærø ApS", "+1"],
    "countries": ["SE;NO", "DE", "us; ca", ";SE;", "XX", ""],
    "languages": ["sv;en", "de", "EN", "english", ""],
    "workloads": ["exchange;teams", "intune", "dynamics-365", "Exchange Online", ""],
    "country": ["DE", "us", "UK", "", "Germany"],
    "language": ["de", "EN", "en-GB", ""],
    "capacity": ["10", "0", "100000", "100001", "-1", "1e400", str(10**30), "+5", "ten", ""],
    "active_referrals": ["0", "3", "-2", "9" * 25],
    "seats": ["500", "150", "149", "-1", "1e400", str(10**30), "10000001", "5.5", "NaN"],
    "referral_ready": ["true", "FALSE", "yes", "0", "maybe", ""],
    "gateway": ["true", "no", "1", "perhaps", ""],
    "referral_consent": ["", "true", "false", "n", "?"],
    "psm_name": ["Ann Berg", "", "@SUM(1)"],
    "psm_email": ["ann@psm.example", "ann", "a@b", "-x@y.example"],
    "contact_email": ["it@alder.example", "it at alder", "a;b@c.example", ""],
    "last_assigned": ["", "3", "0", str(2**63), "-1", "1.0"],
    "paused_until": ["", "2025-07-01", "2025-7-1", "01/07/2025", "2025-02-30", "tomorrow"],
    "monthly_quota": ["", "10", "0", "-1", "1.5", "ten"],
}
ALL_GOOD = sorted({v for values in GOOD.values() for v in values})
JUNK = st.characters(
    codec="utf-8", exclude_categories=["Cs"], include_characters=',;"\n\r\t\ufeff\x00'
)
cell = st.one_of(
    st.sampled_from(ALL_GOOD),
    st.text(JUNK, max_size=12),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats().map(repr),
)


@st.composite
def csvish(draw: st.DrawFn, kind: str) -> bytes:
    """Text that looks like a partners or customers CSV, with realistic and random damage."""
    header = [c for c in KINDS[kind][2] if draw(st.integers(0, 9))]  # usually every column
    extra = [*COLUMNS, "notes", "Notes", "", "Seats", "TENANT_ID", "__frp_line__"]
    header = draw(st.permutations(header + draw(st.lists(st.sampled_from(extra), max_size=2))))
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        width = len(header) + draw(st.sampled_from([0, 0, 0, 0, -1, 1, -len(header)]))
        row = []
        for i in range(max(width, 0)):
            col = header[i] if i < len(header) else ""
            good = col in GOOD and draw(st.integers(0, 3)) > 0
            row.append(draw(st.sampled_from(GOOD[col])) if good else draw(cell))
        rows.append(row)
    quote_all = draw(st.booleans())

    def render(value: str) -> str:
        if quote_all or (any(ch in value for ch in ',"\n\r') and draw(st.integers(0, 4)) > 0):
            return '"' + value.replace('"', '""') + '"'
        return value

    eol = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    lines = [",".join(render(h) for h in header)] + [",".join(render(v) for v in r) for r in rows]
    text = eol.join(lines) + draw(st.sampled_from(["", eol, eol * 2]))
    if draw(st.integers(0, 5)) == 0:
        text = "\ufeff" + text
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["latin-1", "utf-16", "cp1252"]))
    return text.encode(encoding, errors="replace")


#: Column types a Parquet file (or a caller) may hand over, with values of that type.
TYPED: dict[str, tuple[pl.DataType, st.SearchStrategy[Any]]] = {
    "text": (pl.String(), st.text(JUNK, max_size=8) | st.sampled_from(ALL_GOOD)),
    "int": (pl.Int64(), st.integers(-(2**63), 2**63 - 1)),
    "uint": (pl.UInt64(), st.integers(0, 2**64 - 1)),
    "float": (pl.Float64(), st.floats()),
    "bool": (pl.Boolean(), st.booleans()),
    "date": (pl.Date(), st.dates()),
    "text-list": (
        pl.List(pl.String),
        st.lists(st.sampled_from(["SE", "en", "teams", "", "XX", ";", " de "]), max_size=3),
    ),
    "int-list": (pl.List(pl.Int64), st.lists(st.integers(-5, 5), max_size=3)),
    "binary": (pl.Binary(), st.binary(max_size=6)),
}


@st.composite
def raw_frame(draw: st.DrawFn, kind: str) -> pl.DataFrame:
    """A raw table of random column types and values (as a Parquet file or a caller gives)."""
    n = draw(st.integers(0, 6))
    columns: dict[str, pl.Series] = {}
    for name in KINDS[kind][2]:
        if draw(st.integers(0, 12)) == 0:
            continue  # a missing column, now and then
        if draw(st.integers(0, 2)) == 0:  # the right kind of value, as text
            values = [draw(st.sampled_from(GOOD[name])) for _ in range(n)]
            columns[name] = pl.Series(name, values, dtype=pl.String)
            continue
        dtype, values_of = TYPED[draw(st.sampled_from(sorted(TYPED)))]
        values = [None if draw(st.integers(0, 8)) == 0 else draw(values_of) for _ in range(n)]
        columns[name] = pl.Series(name, values, dtype=dtype)
    for extra in draw(st.lists(st.sampled_from(["Notes", "notes"]), unique=True)):
        dtype, values_of = TYPED[draw(st.sampled_from(sorted(TYPED)))]
        columns[extra] = pl.Series(extra, [draw(values_of) for _ in range(n)], dtype=dtype)
    return pl.DataFrame(columns)


# --- importers ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_random_bytes(kind: str, tmp_path: Path, tally: Tally) -> None:
    @fuzz(150)
    @given(data=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".parquet"]))
    def run(data: bytes, suffix: str) -> None:
        path = tmp_path / f"random{suffix}"
        path.write_bytes(data)
        tally.add(read_file(path, kind, lines_in(data)))

    run()


@pytest.mark.parametrize("kind", list(KINDS))
def test_random_csvish_text(kind: str, tmp_path: Path, tally: Tally) -> None:
    @fuzz(300)
    @given(data=csvish(kind))
    def run(data: bytes) -> None:
        path = tmp_path / "random.csv"
        path.write_bytes(data)
        tally.add(read_file(path, kind, lines_in(data)))

    run()


@pytest.mark.parametrize("kind", list(KINDS))
def test_random_cells_validate_and_parquet(kind: str, tmp_path: Path, tally: Tally) -> None:
    validate = KINDS[kind][1]

    @fuzz(250)
    @given(raw=raw_frame(kind))
    def run(raw: pl.DataFrame) -> None:
        try:
            frame = validate(raw, "upload.csv")
        except InputError as error:
            check_error(error, "upload.csv", raw.height)
            tally.add(False)
        else:
            check_frame(frame, kind)
            tally.add(True)
        path = tmp_path / "random.parquet"
        raw.write_parquet(path)
        tally.add(read_file(path, kind, max(raw.height, 1)))

    run()


def _validated(validate: Callable[..., pl.DataFrame], raw: pl.DataFrame) -> tuple[Any, ...]:
    """What validating ``raw`` gives, in a comparable form: rows, or every problem."""
    try:
        frame = validate(raw, "upload.csv")
    except InputError as error:
        return (
            "error",
            error.total,
            [(p.row, p.column, p.value, p.expected) for p in error.problems],
        )
    return ("ok", frame.schema, frame.rows())


@pytest.mark.parametrize("kind", list(KINDS))
def test_coded_columns_checked_per_value_as_per_row(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Countries, languages and workload lists are checked once per distinct value: the
    typed frame and every reported problem must be what checking each row gives."""
    import engine.schema

    validate = KINDS[kind][1]

    @fuzz(150)
    @given(raw=raw_frame(kind))
    def run(raw: pl.DataFrame) -> None:
        by_value = _validated(validate, raw)
        with monkeypatch.context() as patched:
            patched.setattr(engine.schema, "_CODED_SHARE", 10**9)  # every column per row
            by_row = _validated(validate, raw)
        assert by_value == by_row

    run()


# --- no partial write: random files through `frp import` into a database ------------------


def test_random_imports_never_write_partially(
    tmp_path: Path, tally: Tally, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "store.duckdb"
    con = connect(db)
    one_partner = {
        "partner_id": "P1",
        "name": "Alder",
        "countries": "DE",
        "languages": "de",
        "workloads": "exchange",
        "capacity": "5",
        "active_referrals": "0",
        "referral_ready": "true",
        "psm_name": "Ann",
        "psm_email": "ann@psm.example",
        "contact_email": "p@alder.example",
    }
    import_partners(con, validate_partners(pl.DataFrame([one_partner])))
    con.close()

    def state() -> dict[str, tuple[int, int]]:
        c = duckdb.connect(str(db), read_only=True)
        try:
            return table_digest(c)
        finally:
            c.close()

    @fuzz(60)
    @given(kind=st.sampled_from(list(KINDS)), data=st.data())
    def run(kind: str, data: st.DataObject) -> None:
        path = tmp_path / "incoming.csv"
        path.write_bytes(data.draw(csvish(kind)))
        before = state()
        code = frp_main(["import", f"--{kind}", str(path), "--db", str(db)])
        err = capsys.readouterr().err
        after = state()
        if code == 2:
            assert len(err.splitlines()) == 1 and err.startswith("frp: "), err
            assert after == before
        else:
            assert code == 0, err
            changed = {t for t in after if after[t] != before.get(t)}
            assert changed <= {kind, "audit_log", "rr_order"}, changed
            assert after["audit_log"][0] == before["audit_log"][0] + 1
        tally.add(code == 0)

    run()


# --- rules --------------------------------------------------------------------------------


def _toml_float(f: float) -> str:
    if math.isnan(f):
        return "nan"
    return {math.inf: "inf", -math.inf: "-inf"}.get(f, repr(f))


TOML_VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(_toml_float),
    st.sampled_from(
        [
            "true",
            '""',
            '"css"',
            '"hold"',
            "[]",
            '["exchange"]',
            "[1, 2]",
            '["SE", "SE"]',
            "{}",
            "{a = 1}",
            "1979-05-27",
            '"\\u0000"',
            "'''x'''",
            "1_000",
            "0x10",
        ]
    ),
    st.text(max_size=10).map(lambda s: json.dumps(s).replace("\x7f", "\\u007f")),
    st.text(JUNK, max_size=6),
)
RULE_LINES = RULES_TEXT.splitlines()
RULE_KEYS = [
    "min_seats",
    "when_full",
    "capacity_scale",
    "max_declines",
    "min_seat",
    "eligible_workloads",
    "disabled_partners",
    "referral_consent_default",
    "Mars",
    "queues",
    "regions",
]


@st.composite
def rules_text(draw: st.DrawFn) -> str:
    """The shipped rules file with random edits: lines dropped, doubled, cut, values replaced."""
    lines = list(RULE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.integers(0, 5))
        i = draw(st.integers(0, len(lines) - 1))
        if action == 0:
            del lines[i]
        elif action == 1:
            lines.insert(i, lines[i])
        elif action == 2 and "=" in lines[i]:
            lines[i] = f"{lines[i].split('=', 1)[0]}= {draw(TOML_VALUES)}"
        elif action == 3:
            lines.insert(i, f"{draw(st.sampled_from(RULE_KEYS))} = {draw(TOML_VALUES)}")
        elif action == 4:
            lines.insert(
                i, draw(st.sampled_from(["[queues]", "[regions]", "[other]", "[[x]]", "["]))
            )
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    return "\n".join(lines)


def check_rules(make: Callable[[], Rules]) -> bool:
    try:
        rules = make()
    except RulesError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message, message
        assert message.startswith("fuzz.toml: "), message
        return False
    assert isinstance(rules, Rules)
    assert rules.min_seats >= 0 and rules.max_declines >= 1
    assert 0 <= rules.capacity_scale < math.inf
    assert set(rules.queue_of_region) >= set(rules.region_of_country.values())
    return True


def test_random_rules_text(tally: Tally) -> None:
    @fuzz(400)
    @given(text=rules_text() | st.text(JUNK, max_size=200))
    def run(text: str) -> None:
        tally.add(check_rules(lambda: parse_rules(text, source="fuzz.toml")))

    run()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def test_random_rules_values(tally: Tally) -> None:
    base = to_dict(parse_rules(RULES_TEXT))
    keys = [*base, "min_seat", "extra"]

    @fuzz(300)
    @given(changes=st.dictionaries(st.sampled_from(keys), JSONISH, min_size=1, max_size=3))
    def run(changes: dict[str, Any]) -> None:
        data = dict(base) | changes
        tally.add(check_rules(lambda: parse_rules_dict(data, source="fuzz.toml")))

    run()


@pytest.mark.parametrize("scale", ["1e20", "1e308"])
def test_accepted_capacity_scale_never_overflows(scale: str) -> None:
    text = RULES_TEXT.replace("capacity_scale = 1.0", f"capacity_scale = {scale}")
    try:
        rules = parse_rules(text, source="fuzz.toml")
    except RulesError:
        return  # refusing the knob is a fine answer too
    partners = validate_partners(
        pl.DataFrame(
            {
                "partner_id": ["P1"],
                "name": ["Alder"],
                "countries": ["DE"],
                "languages": ["de"],
                "workloads": ["exchange"],
                "capacity": ["5"],
                "active_referrals": ["0"],
                "referral_ready": ["true"],
                "psm_name": ["Ann"],
                "psm_email": ["ann@psm.example"],
                "contact_email": ["p@alder.example"],
            }
        )
    )
    customers = validate_customers(
        pl.DataFrame(
            {
                "tenant_id": ["T1"],
                "name": ["Birch"],
                "country": ["DE"],
                "language": ["de"],
                "seats": ["500"],
                "workloads": ["exchange"],
                "gateway": ["false"],
                "contact_email": ["it@birch.example"],
            }
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = simulate(partners, customers, rules)
    assert sim.placed == 1  # a partner with room scaled up still has room


def test_shipped_rules_parse() -> None:
    assert check_rules(lambda: parse_rules(RULES_TEXT, source="fuzz.toml"))
