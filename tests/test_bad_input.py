"""Bad input never writes and never crashes: the corpus, typed Parquet, 100 MB, formulas.

Every file of ``tests/corpus`` (expectations in ``tests/corpus/expected.toml``) and every
generated Parquet case goes through the reader (``store.files``), the dashboard's upload
path (``ui.uploads``) and ``frp import`` into a copy of the demo database. A bad one must
end in exit code 2 and one line naming the file (and the line or row and column where
there is one) with what was expected, and leave every table of the database as it was.
A good one imports. Each bad input tried is counted (``user_properties``; conftest prints
the total at the end of the run).
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engine.schema
from bench.unit import big_rows
from cli.main import main as frp_main
from engine.rules import RulesError, load_rules
from engine.schema import InputError
from store.files import read_customers, read_partners, read_raw, write_table
from tests.db_helpers import digest
from ui.uploads import read_upload

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, dict] = tomllib.loads((CORPUS / "expected.toml").read_text("utf-8"))
FRP = str(Path(sys.executable).parent / "frp")
READERS = {"partners": read_partners, "customers": read_customers}
MAX_CORPUS_FILE = 100 * 1024


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def check_refused(
    path: Path,
    kind: str,
    needles: list[str],
    db: Path,
    capsys: pytest.CaptureFixture[str],
    upload: bool = True,
) -> str:
    """The file is refused the same way by the reader, the upload and `frp import`.

    ``upload=False`` for a special file: the dashboard only ever gets bytes."""
    with pytest.raises(InputError) as caught:
        READERS[kind](path)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}: ") and "expected" in message
    for needle in needles:
        assert needle in message, message

    if upload:
        with pytest.raises(InputError) as uploaded:
            read_upload(path.read_bytes(), path.name, kind)  # type: ignore[arg-type]
        assert str(uploaded.value) == message.replace(str(path), path.name)

    before = digest(db)
    code = frp_main(["import", f"--{kind}", str(path), "--db", str(db)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert one_line(captured.err) == f"frp: {message}"
    assert digest(db) == before
    return message


def check_accepted(
    path: Path, kind: str, rows: int, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert READERS[kind](path).height == rows
    assert read_upload(path.read_bytes(), path.name, kind).height == rows  # type: ignore[arg-type]
    code = frp_main(["import", f"--{kind}", str(path), "--db", str(db)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""


# --- the corpus ------------------------------------------------------------------------


def test_corpus_is_complete_and_small() -> None:
    files = {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name not in ("expected.toml", "README.md")
    }
    assert files == set(EXPECTED), "every corpus file needs an expectation, and vice versa"
    for name in files:
        assert (CORPUS / name).stat().st_size <= MAX_CORPUS_FILE, name
    for name, expect in EXPECTED.items():
        assert name.split("/")[0] in (*READERS, "rules")
        assert set(expect) in ({"ok"}, {"error"}), name


TABLE_CASES = sorted(c for c in EXPECTED if not c.startswith("rules/"))
RULES_CASES = sorted(c for c in EXPECTED if c.startswith("rules/"))


@pytest.mark.parametrize("case", TABLE_CASES)
def test_corpus_file(
    case: str,
    demo_db: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    kind = case.split("/")[0]
    path = CORPUS / case
    expect = EXPECTED[case]
    if "ok" in expect:
        check_accepted(path, kind, expect["ok"], demo_db, capsys)
        return
    record_property("bad_inputs", 1)
    check_refused(path, kind, expect["error"], demo_db, capsys)


@pytest.mark.parametrize("case", RULES_CASES)
def test_corpus_rules_file(
    case: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    path = CORPUS / case
    record_property("bad_inputs", 1)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for needle in EXPECTED[case]["error"]:
        assert needle in message, message

    partners = CORPUS / "partners" / "ok-basic.csv"
    customers = CORPUS / "customers" / "ok-utf8-bom.csv"
    out = tmp_path / "out.csv"
    args = ["simulate", "--partners", partners, "--customers", customers, "--out", out]
    code = frp_main([str(a) for a in [*args, "--rules", path]])
    captured = capsys.readouterr()
    assert code == 2
    assert one_line(captured.err) == f"frp: {message}"
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ends", [(b"\r",), (b"\r\n", b"\r"), (b"\r", b"\n")])
def test_cr_and_mixed_line_ends_keep_cells_and_line_numbers(
    tmp_path: Path, ends: tuple[bytes, ...]
) -> None:
    """CR-only (old Mac) and mixed line ends split records; a break in quotes stays in its
    cell (an extra column: names refuse line breaks)."""
    header = b"tenant_id,name,country,language,seats,workloads,gateway,contact_email,notes"
    first = b'T1,Alder Logistics GmbH,DE,de,5,teams,true,a@b.example,"call before\nnoon"'
    other = b"T2,Birchmont Foods Ltd,GB,en,1200,intune,false,it@birchmont.example,"

    def join(*lines: bytes) -> bytes:
        return b"".join(line + ends[i % len(ends)] for i, line in enumerate(lines))

    path = tmp_path / "customers.csv"
    path.write_bytes(join(header, first, other, other.replace(b"T2", b"T3")))
    names = read_customers(path)["name"].to_list()
    assert names == ["Alder Logistics GmbH", "Birchmont Foods Ltd", "Birchmont Foods Ltd"]
    assert read_raw(path)[0]["notes"].to_list()[0] == "call before\nnoon"
    path.write_bytes(join(header, first, other, other.replace(b"1200", b"many")))
    with pytest.raises(InputError, match="line 5, column seats"):
        read_customers(path)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_rules_path_that_is_not_a_regular_file(
    tmp_path: Path, special: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.toml"
    if special == "fifo":
        os.mkfifo(rules)
    else:
        rules.symlink_to(special)
    with pytest.raises(RulesError, match="expected a regular file"):
        load_rules(rules)
    partners = CORPUS / "partners" / "ok-basic.csv"
    customers = CORPUS / "customers" / "ok-utf8-bom.csv"
    args = ["simulate", "--partners", partners, "--customers", customers, "--rules", rules]
    assert frp_main([str(a) for a in args]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"frp: {rules}: ")


def test_rules_path_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partners = CORPUS / "partners" / "ok-basic.csv"
    customers = CORPUS / "customers" / "ok-utf8-bom.csv"
    args = ["simulate", "--partners", partners, "--customers", customers, "--rules", tmp_path]
    assert frp_main([str(a) for a in args]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"frp: {tmp_path}")


# --- Parquet: damaged files and wrong column types ---------------------------------------

PARTNER = {
    "partner_id": ["P1", "P2"],
    "name": ["Nordlys Partners AB", "Rheinwerk IT GmbH"],
    "countries": [["SE", "NO"], ["DE"]],
    "languages": [["sv", "en"], ["de"]],
    "workloads": [["exchange", "teams"], ["intune"]],
    "capacity": [10, 5],
    "active_referrals": [2, 0],
    "referral_ready": [True, False],
    "psm_name": ["Ann Berg", "Jonas Vogt"],
    "psm_email": ["ann@psm.example", "jonas@psm.example"],
    "contact_email": ["referrals@nordlys.example", "referrals@rheinwerk.example"],
}
CUSTOMER = {
    "tenant_id": ["T1", "T2"],
    "name": ["Alder Logistics GmbH", "Birchmont Foods Ltd"],
    "country": ["DE", "GB"],
    "language": ["de", "en"],
    "seats": [500, 1200],
    "workloads": [["exchange", "teams"], ["intune"]],
    "gateway": [True, False],
    "contact_email": ["it@alder.example", "it@birchmont.example"],
}


def _table(base: dict[str, list], **changes: object) -> pa.Table:
    columns: dict[str, object] = dict(base)
    for name, value in changes.items():
        if value is None:
            columns.pop(name)
        else:
            columns[name] = value
    return pa.table(
        {
            k: v if isinstance(v, pa.Array | pa.ChunkedArray) else pa.array(v)
            for k, v in columns.items()
        }
    )


def _good_bytes(base: dict[str, list]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(_table(base), sink)
    return sink.getvalue()


# name -> (kind, what the file holds: a pyarrow table or raw bytes, expectation)
PARQUET_CASES: dict[str, tuple[str, pa.Table | bytes, dict]] = {
    "truncated": ("partners", _good_bytes(PARTNER)[:-40], {"error": ["Parquet"]}),
    "truncated-half": ("customers", _good_bytes(CUSTOMER)[:300], {"error": ["Parquet"]}),
    "empty-file": ("partners", b"", {"error": ["Parquet"]}),
    "csv-named-parquet": ("customers", b"tenant_id,name\nT1,x\n", {"error": ["Parquet"]}),
    "junk": ("customers", bytes(range(256)) * 8, {"error": ["Parquet"]}),
    "capacity-as-text": (
        "partners",
        _table(PARTNER, capacity=["ten", "5"]),
        {"error": ["row 1", "column capacity", "'ten'"]},
    ),
    "capacity-as-float-inf": (
        "partners",
        _table(PARTNER, capacity=[float("inf"), 5.0]),
        {"error": ["row 1", "column capacity"]},
    ),
    "capacity-as-nan": (
        "partners",
        _table(PARTNER, capacity=[5.0, float("nan")]),
        {"error": ["row 2", "column capacity"]},
    ),
    "capacity-1e30": (
        "partners",
        _table(PARTNER, capacity=[1e30, 5.0]),
        {"error": ["row 1", "column capacity"]},
    ),
    "capacity-fraction": (
        "partners",
        _table(PARTNER, capacity=[2.5, 5.0]),
        {"error": ["row 1", "column capacity", "'2.5'"]},
    ),
    "capacity-uint64-max": (
        "partners",
        _table(PARTNER, capacity=pa.array([2**64 - 1, 5], pa.uint64())),
        {"error": ["row 1", "column capacity"]},
    ),
    "capacity-decimal-huge": (
        "partners",
        _table(PARTNER, capacity=pa.array([decimal.Decimal(10**37), 5], pa.decimal128(38, 0))),
        {"error": ["row 1", "column capacity"]},
    ),
    "capacity-as-date": (
        "partners",
        _table(PARTNER, capacity=[datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)]),
        {"error": ["row 1", "column capacity"]},
    ),
    "capacity-as-list": (
        "partners",
        _table(PARTNER, capacity=[[1], [2]]),
        {"error": ["column capacity", "single value"]},
    ),
    "capacity-as-struct": (
        "partners",
        _table(PARTNER, capacity=[{"n": 1}, {"n": 2}]),
        {"error": ["column capacity", "single value"]},
    ),
    "capacity-as-map": (
        "partners",
        _table(
            PARTNER, capacity=pa.array([[("n", 1)], [("n", 2)]], pa.map_(pa.string(), pa.int64()))
        ),
        {"error": ["column capacity", "single value"]},
    ),
    "capacity-negative-int8": (
        "partners",
        _table(PARTNER, capacity=pa.array([-1, 5], pa.int8())),
        {"error": ["row 1", "column capacity", "'-1'"]},
    ),
    "last-assigned-duration": (
        "partners",
        _table(PARTNER, last_assigned=pa.array([datetime.timedelta(1), None])),
        {"error": ["column last_assigned", "single value"]},
    ),
    "countries-as-int": (
        "partners",
        _table(PARTNER, countries=[7, 8]),
        {"error": ["column countries", "list of text"]},
    ),
    "countries-list-of-lists": (
        "partners",
        _table(PARTNER, countries=[[["SE"]], [["DE"]]]),
        {"error": ["column countries", "list of text"]},
    ),
    "countries-fixed-size-list": (
        "partners",
        _table(PARTNER, countries=pa.array([["SE"], ["DE"]], pa.list_(pa.string(), 1))),
        {"error": ["column countries", "list of text"]},
    ),
    "countries-list-of-ints": (
        "partners",
        _table(PARTNER, countries=[[1, 2], [3]]),
        {"error": ["row 1", "column countries"]},
    ),
    "countries-null": (
        "partners",
        _table(PARTNER, countries=pa.array([["SE"], None], pa.list_(pa.string()))),
        {"error": ["row 2", "column countries"]},
    ),
    "countries-unknown": (
        "partners",
        _table(PARTNER, countries=[["SE", "XX"], ["DE"]]),
        {"error": ["row 1", "column countries", "'SE;XX'"]},
    ),
    "name-invalid-utf8-binary": (
        "customers",
        _table(CUSTOMER, name=pa.array([b"\xff\xfe", b"ok"], pa.binary())),
        {"error": ["column name", "UTF-8"]},
    ),
    "name-as-list": (
        "customers",
        _table(CUSTOMER, name=[["a"], ["b"]]),
        {"error": ["column name", "single value"]},
    ),
    "seats-huge-decimal": (
        "customers",
        _table(CUSTOMER, seats=pa.array([decimal.Decimal("1e30"), 5], pa.decimal128(38, 0))),
        {"error": ["row 1", "column seats"]},
    ),
    "seats-as-bool": (
        "customers",
        _table(CUSTOMER, seats=[True, False]),
        {"error": ["row 1", "column seats", "'true'"]},
    ),
    "gateway-as-float": (
        "customers",
        _table(CUSTOMER, gateway=[1.0, 0.0]),
        {"error": ["row 1", "column gateway"]},
    ),
    "missing-column": (
        "customers",
        _table(CUSTOMER, seats=None),
        {"error": ["column seats", "present"]},
    ),
    "duplicate-id": (
        "customers",
        _table(CUSTOMER, tenant_id=["T1", "T1"]),
        {"error": ["row 2", "column tenant_id", "also on row 1"]},
    ),
    "null-id": (
        "customers",
        _table(CUSTOMER, tenant_id=pa.array(["T1", None], pa.string())),
        {"error": ["row 2", "column tenant_id"]},
    ),
    "country-unknown": (
        "customers",
        _table(CUSTOMER, country=["DE", "UK"]),
        {"error": ["row 2", "column country", "'UK'"]},
    ),
    # Accepted: types that read as the column's kind.
    "ok-capacity-as-digits": ("partners", _table(PARTNER, capacity=["10", "5"]), {"ok": 2}),
    "ok-countries-as-text": ("partners", _table(PARTNER, countries=["SE;NO", "DE"]), {"ok": 2}),
    "ok-large-lists": (
        "partners",
        _table(PARTNER, countries=pa.array([["SE"], ["DE"]], pa.large_list(pa.large_string()))),
        {"ok": 2},
    ),
    "ok-dictionary-text": (
        "customers",
        _table(CUSTOMER, country=pa.array(["DE", "GB"]).dictionary_encode()),
        {"ok": 2},
    ),
    "ok-binary-utf8": (
        "customers",
        _table(CUSTOMER, name=pa.array([b"Alder", b"Birch"], pa.binary())),
        {"ok": 2},
    ),
    "ok-zero-rows": ("customers", _table({k: v[:0] for k, v in CUSTOMER.items()}), {"ok": 0}),
}


@pytest.mark.parametrize("case", sorted(PARQUET_CASES))
def test_parquet_case(
    case: str,
    tmp_path: Path,
    demo_db: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    kind, content, expect = PARQUET_CASES[case]
    path = tmp_path / f"{case}.parquet"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        pq.write_table(content, path)
    if "ok" in expect:
        check_accepted(path, kind, expect["ok"], demo_db, capsys)
        return
    record_property("bad_inputs", 1)
    check_refused(path, kind, expect["error"], demo_db, capsys)


def test_a_column_type_that_slips_through_is_still_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    """The safety net behind the type checks: polars failing on a type names the column."""
    monkeypatch.setattr(engine.schema, "_readable", lambda frame, *args: frame)
    raw = pl.DataFrame(CUSTOMER | {"name": [datetime.timedelta(1), datetime.timedelta(2)]})
    record_property("bad_inputs", 1)
    with pytest.raises(InputError) as caught:
        engine.schema.validate_customers(raw, "odd.parquet")
    message = str(caught.value)
    assert message.startswith('odd.parquet: column name: got "Duration')
    assert "\n" not in message


def test_codes_are_checked_once_per_value_yet_named_on_every_row() -> None:
    """Coded columns are checked per distinct value (engine.schema._check_coded): every row
    holding a bad value is still named, and clean values that need normalising (case,
    spaces, a duplicate workload) come out as they would row by row."""
    n = 6
    raw = pl.DataFrame(
        {
            "tenant_id": [f"T{k}" for k in range(n)],
            "name": ["Alder"] * n,
            "country": ["de", " GB", "XX", "DE", "de", "XX"],
            "language": ["DE", "en", "en", "de ", "de", "en"],
            "seats": [500] * n,
            "workloads": [["Exchange", "teams", "exchange"], ["intune"], [], None, ["teams"], []],
            "gateway": [True] * n,
            "contact_email": ["it@alder.example"] * n,
        }
    )
    with pytest.raises(InputError) as caught:
        engine.schema.validate_customers(raw, "cohort.parquet")
    bad = [(p.row, p.column, p.value) for p in caught.value.problems]
    assert bad == [(3, "country", "XX"), (6, "country", "XX")]
    fixed = raw.with_columns(pl.col("country").replace("XX", "SE"))
    typed = engine.schema.validate_customers(fixed, "cohort.parquet")
    assert typed["country"].to_list() == ["DE", "GB", "SE", "DE", "DE", "SE"]
    assert typed["language"].to_list() == ["de", "en", "en", "de", "de", "en"]
    assert typed["workloads"].to_list() == [
        ["exchange", "teams"],
        ["intune"],
        [],
        [],
        ["teams"],
        [],
    ]


# --- special files and the size limit ----------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_fifo_is_refused_at_once(
    tmp_path: Path, demo_db: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / f"customers{suffix}"
    os.mkfifo(fifo)
    check_refused(fifo, "customers", ["a regular file", "FIFO"], demo_db, capsys, upload=False)


@pytest.mark.timeout(20)
def test_a_symlink_to_a_device_is_refused_at_once(
    tmp_path: Path, demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "partners.csv"
    link.symlink_to("/dev/zero")
    check_refused(
        link, "partners", ["a regular file", "device", "/dev/zero"], demo_db, capsys, upload=False
    )


def test_a_folder_and_a_socket_are_refused(
    tmp_path: Path, demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "customers.csv"
    folder.mkdir()
    check_refused(folder, "customers", ["a file, not a folder"], demo_db, capsys, upload=False)
    sock = tmp_path / "s.csv"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
        check_refused(
            sock, "customers", ["a regular file", "socket"], demo_db, capsys, upload=False
        )


@pytest.mark.parametrize("case", ["customers/ok-crlf.csv", "partners/ok-basic.csv"])
def test_a_file_over_the_size_limit_is_refused(
    case: str, demo_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = CORPUS / case
    size = path.stat().st_size
    monkeypatch.setenv("FRP_MAX_INPUT_BYTES", str(size))
    check_accepted(path, case.split("/")[0], EXPECTED[case]["ok"], demo_db, capsys)
    monkeypatch.setenv("FRP_MAX_INPUT_BYTES", str(size - 1))
    needles = [f"{size:,} bytes", f"at most {size - 1:,} bytes", "FRP_MAX_INPUT_BYTES"]
    check_refused(path, case.split("/")[0], needles, demo_db, capsys)


def test_a_bad_size_limit_setting_is_one_line(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRP_MAX_INPUT_BYTES", "2GB")
    path = CORPUS / "customers" / "ok-crlf.csv"
    assert frp_main(["import", "--customers", str(path), "--db", str(demo_db)]) == 2
    assert one_line(capsys.readouterr().err).startswith("frp: FRP_MAX_INPUT_BYTES: got '2GB'")


# --- 100 MB --------------------------------------------------------------------------------

BIG_BYTES = 100 * 1024 * 1024
MAX_RSS = 2 * 1024**3  # bytes; the file is 100 MB


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """~100 MB of valid-looking customer rows; (file, number of data rows)."""
    path = tmp_path_factory.mktemp("big") / "customers-100mb.csv"
    row_bytes = len(big_rows(1, 10**6).write_csv(include_header=False))
    n = BIG_BYTES // row_bytes
    big_rows(n, 10**6).write_csv(path)
    return path, n


@pytest.mark.parametrize(
    "bad_row, needles",
    [
        ("TBAD,Bad Co,DE,de,many,exchange,true,it@bad.example,true", ["column seats", "'many'"]),
        ("TBAD,Bad Co,DE,de,500,exchange,true,it@bad.example,true,extra", ["9 fields"]),
        ('TBAD,"Bad Co,DE,de,500,exchange,true,it@bad.example,true', ["closing quote"]),
    ],
    ids=["bad-value", "ragged-row", "unclosed-quote"],
)
def test_100mb_csv_names_the_bad_line(
    big_csv: tuple[Path, int],
    tmp_path: Path,
    demo_db: Path,
    bad_row: str,
    needles: list[str],
    record_property: Callable[[str, object], None],
) -> None:
    base, n = big_csv
    path = tmp_path / "customers.csv"
    # The bad row sits 100 rows before the end; lines: 1 header + n rows before it.
    tail = big_rows(100, 10**7).write_csv(include_header=False)
    data = base.read_bytes()
    path.write_bytes(data + bad_row.encode() + b"\n" + tail.encode())
    del data
    assert path.stat().st_size >= BIG_BYTES
    bad_line = n + 2
    before = digest(demo_db)

    # How fast is measured by `make bench` (bench/unit.py), not asserted here.
    with (tmp_path / "out").open("w+") as out_f, (tmp_path / "err").open("w+") as err_f:
        proc = subprocess.Popen(
            [FRP, "import", "--customers", str(path), "--db", str(demo_db)],
            stdout=out_f,
            stderr=err_f,
        )
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    record_property("bad_inputs", 1)

    assert proc.returncode == 2, err
    line = one_line(err)
    assert line.startswith(f"frp: {path}: line {bad_line}"), line
    for needle in needles:
        assert needle in line
    assert out == ""
    assert peak < MAX_RSS, f"{peak / 2**20:.0f} MB peak for a 100 MB file"
    assert digest(demo_db) == before


# --- formulas: imported as text, neutralised in CSV exports --------------------------------

FORMULAS = [
    "=cmd|' /C calc'!A0",
    "+1",
    "-2",
    "@SUM(A1:A9)",
    '=HYPERLINK("http://x","y")',
]


def test_formula_names_import_as_text_and_exports_neutralise_them(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = CORPUS / "customers" / "ok-formula-names.csv"
    assert frp_main(["import", "--customers", str(path), "--db", str(demo_db)]) == 0
    capsys.readouterr()
    con = duckdb.connect(str(demo_db), read_only=True)
    try:
        names = dict(
            con.execute(
                "SELECT tenant_id, name FROM customers WHERE tenant_id LIKE 'F_' ORDER BY 1"
            ).fetchall()
        )
        stored = con.sql("SELECT * FROM customers WHERE tenant_id LIKE 'F_'").pl()
    finally:
        con.close()
    assert sorted(names.values()) == sorted(FORMULAS)  # stored exactly as given

    out = tmp_path / "customers.csv"
    write_table(stored, out)
    with out.open(newline="", encoding="utf-8") as f:
        exported = {row["tenant_id"]: row["name"] for row in csv.DictReader(f)}
    for tenant, name in names.items():
        assert exported[tenant] == "'" + name
    # Parquet keeps the data exactly: nothing there is evaluated by a spreadsheet.
    write_table(stored, tmp_path / "customers.parquet")
    assert sorted(pl.read_parquet(tmp_path / "customers.parquet")["name"]) == sorted(FORMULAS)


def test_simulate_csv_export_quotes_formulas(tmp_path: Path) -> None:
    partners = tmp_path / "partners.csv"
    partners.write_text(
        "partner_id,name,countries,languages,workloads,capacity,active_referrals,"
        "referral_ready,psm_name,psm_email,contact_email\n"
        '=P1,"=HYPERLINK(""http://x"",""y"")",US,en,exchange,50,0,true,@Psm,'
        "+psm@x.example,-p@x.example\n",
        encoding="utf-8",
    )
    customers = tmp_path / "customers.csv"
    rows = ["tenant_id,name,country,language,seats,workloads,gateway,contact_email"]
    for i, formula in enumerate(FORMULAS):
        quoted = '"' + formula.replace('"', '""') + '"'
        rows.append(f"{quoted},{quoted},US,en,500,exchange,false,it{i}@c.example")
    customers.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    env = {k: v for k, v in os.environ.items() if k != "FRP_DB"}
    proc = subprocess.run(
        [FRP, "simulate", "--partners", partners, "--customers", customers, "--out", out],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with out.open(newline="", encoding="utf-8") as f:
        result = list(csv.DictReader(f))
    assert [r["tenant_id"] for r in result] == ["'" + f for f in FORMULAS]
    assert {r["partner_id"] for r in result} == {"'=P1"}
    assert {r["psm_email"] for r in result} == {"'+psm@x.example"}
    text = out.read_text(encoding="utf-8")
    for line in text.splitlines()[1:]:
        assert line[0] not in "=+-@", line
