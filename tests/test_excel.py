"""Excel workbooks in and out: the bad-input corpus as workbooks, typed cells, broken
workbooks, the sheet read, and downloads that read back.

Every partner and customer file of ``tests/corpus`` that a workbook can hold is turned into
a workbook at test time (each cell written as text, a blank line as a blank row) and must
give what its CSV twin gives: the same rows imported, or the same one-line error, with the
row where CSV says the line (a workbook's row is its record; a cell can hold line breaks).
"""

from __future__ import annotations

import csv
import datetime
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from engine.schema import InputError
from store.files import read_customers, read_partners, table_bytes, write_table
from tests.test_bad_input import CORPUS, EXPECTED, TABLE_CASES, check_accepted, check_refused
from ui.uploads import read_upload, template_xlsx

#: Corpus cases a workbook cannot be a twin of, and why.
NO_TWIN = {
    # Encodings and bytes: a workbook's text is Unicode in XML, which holds no NUL.
    "customers/latin1.csv": "an encoding",
    "customers/windows-1252-smart-quotes.csv": "an encoding",
    "customers/utf16-bom.csv": "an encoding",
    "customers/utf16-be-bom.csv": "an encoding",
    "customers/utf16-no-bom.csv": "an encoding",
    "customers/utf32.csv": "an encoding",
    "customers/binary-junk.csv": "not text",
    "customers/binary-high-bytes.csv": "not text",
    "customers/nul-in-cell.csv": "XML holds no NUL character",
    "partners/latin1.csv": "an encoding",
    "partners/utf16-bom.csv": "an encoding",
    # Other kinds of file under a .csv name: their workbook cases are below.
    "customers/xlsx-renamed.csv": "a workbook already",
    "customers/xls-renamed.csv": "a workbook already",
    "customers/parquet-renamed.csv": "Parquet",
    # CSV syntax: a workbook has cells, not separators, quotes or a field count.
    "customers/unclosed-quote.csv": "CSV quoting",
    "customers/stray-quote.csv": "CSV quoting",
    "customers/text-after-closing-quote.csv": "CSV quoting",
    "customers/semicolon-separated.csv": "CSV separators",
    "customers/tab-separated.csv": "CSV separators",
    "customers/ragged-long-row.csv": "cells right of the header are an unnamed column, ignored",
    "partners/ragged.csv": "cells right of the header are an unnamed column, ignored",
}
TWINS = sorted(c for c in TABLE_CASES if c not in NO_TWIN)
#: Where a workbook's row differs from the CSV's line: a record spanning lines is one row.
ROWS = {"customers/bad-row-after-multiline-cell.csv": ["row 3", "column seats", "'many'"]}


def as_rows(needle: str) -> str:
    """A CSV needle as its workbook twin words it: rows, not lines."""
    return re.sub(r"\bline(?= \d)", "row", needle).replace("header line", "header row")


def workbook(
    rows: list[list[object]], sheets: dict[str, list[list[object]]] | None = None
) -> bytes:
    """A workbook of ``rows`` (text written as text, never as a formula), then ``sheets``."""
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"strings_to_formulas": False, "strings_to_numbers": False})
    dates = book.add_format({"num_format": "yyyy-mm-dd"})
    for name, content in {"Sheet1": rows, **(sheets or {})}.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(content):
            for c, value in enumerate(row):
                if isinstance(value, datetime.datetime):
                    sheet.write_datetime(r, c, value, dates)
                elif value is not None and value != "":
                    sheet.write(r, c, value)
    book.close()
    return buf.getvalue()


def twin(case: str) -> list[list[object]]:
    """The CSV's records, a blank line as a blank row."""
    text = (CORPUS / case).read_bytes().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline="")))


def test_every_table_case_has_a_twin_or_a_reason() -> None:
    assert set(NO_TWIN) <= set(TABLE_CASES)
    assert len(TWINS) + len(NO_TWIN) == len(TABLE_CASES)
    assert len(TWINS) >= 70


Judge = Callable[[Path, str, "int | list[str]"], None]


@pytest.fixture
def judge(
    demo_db: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> Judge:
    """``judge(path, kind, rows or needles)``: the file imports that many rows, or is refused
    with those words, alike by the reader, the upload and `frp import` (tests/test_bad_input)."""

    def check(path: Path, kind: str, expect: int | list[str]) -> None:
        if isinstance(expect, int):
            check_accepted(path, kind, expect, demo_db, capsys)
            return
        record_property("bad_inputs", 1)
        check_refused(path, kind, expect, demo_db, capsys)

    return check


@pytest.mark.parametrize("case", TWINS)
def test_corpus_workbook_twin(case: str, tmp_path: Path, judge: Judge) -> None:
    path = tmp_path / Path(case).with_suffix(".xlsx").name
    path.write_bytes(workbook(twin(case)))
    expect = EXPECTED[case]
    rows = ROWS.get(case) or [as_rows(n) for n in expect.get("error", [])]
    judge(path, case.split("/")[0], expect.get("ok", rows))


def test_a_twin_reads_the_same_frame_as_its_csv(tmp_path: Path) -> None:
    for case in ("partners/ok-basic.csv", "customers/ok-blank-lines.csv"):
        path = tmp_path / "twin.xlsx"
        path.write_bytes(workbook(twin(case)))
        read = read_partners if case.startswith("partners") else read_customers
        assert read(path).equals(read(CORPUS / case)), case


# --- cells Excel typed ----------------------------------------------------------------------

HEADER = ["tenant_id", "name", "country", "language", "seats", "workloads", "gateway"]
HEADER += ["contact_email"]


def customer(seats: object, **cells: object) -> list[list[object]]:
    row = {"tenant_id": "T1", "name": "Alder", "country": "DE", "language": "de"}
    row |= {"seats": seats, "workloads": "exchange;teams", "gateway": False}
    row |= {"contact_email": "it@alder.example", **cells}
    return [list(row), list(row.values())]


def read_bytes(data: bytes, kind: str = "customers") -> pl.DataFrame:
    return read_upload(data, f"{kind}.xlsx", kind)  # type: ignore[arg-type]


def test_numbers_and_booleans_typed_by_excel_read_as_their_text() -> None:
    frame = read_bytes(workbook(customer(250, gateway=True)))
    assert frame["seats"].to_list() == [250] and frame["gateway"].to_list() == [True]
    assert frame["workloads"].to_list() == [["exchange", "teams"]]  # a list cell takes ;


@pytest.mark.parametrize(
    "seats, got",
    [
        (250.5, "'250.5'"),
        (datetime.datetime(2026, 1, 5), "'2026-01-05'"),
        (datetime.datetime(2026, 1, 5, 13, 30), "'2026-01-05 13:30:00'"),
    ],
    ids=["fraction", "date", "date-and-time"],
)
def test_a_seat_count_excel_typed_as_a_fraction_or_a_date_is_refused(
    seats: object, got: str
) -> None:
    with pytest.raises(InputError) as caught:
        read_bytes(workbook(customer(seats)))
    message = str(caught.value)
    assert message.startswith("customers.xlsx: row 2, column seats: got " + got), message


def test_a_date_cell_is_a_pause_date(tmp_path: Path) -> None:
    rows = twin("partners/ok-basic.csv")
    rows[0].append("paused_until")
    rows[1].append(datetime.datetime(2026, 12, 20))
    path = tmp_path / "partners.xlsx"
    path.write_bytes(workbook(rows))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FRP_NOW", "2026-12-07T09:00:00")
        frame = read_partners(path)
    assert frame["paused_until"].to_list()[0] == datetime.date(2026, 12, 20)


def test_rows_are_numbered_as_excel_shows_them_even_below_blank_rows() -> None:
    rows = [[], [], *customer(500)]  # header on row 3
    rows[3][4] = "many"
    with pytest.raises(InputError) as caught:
        read_bytes(workbook(rows))
    assert str(caught.value).startswith("customers.xlsx: row 1"), str(caught.value)
    rows = customer(500) + [[]] * 3 + [customer("many", tenant_id="T2")[1]]
    with pytest.raises(InputError) as caught:
        read_bytes(workbook(rows))
    assert str(caught.value).startswith("customers.xlsx: row 6, column seats: got 'many'")


# --- the sheet read ---------------------------------------------------------------------------


def test_the_sheet_named_like_the_kind_is_read_else_the_first() -> None:
    partners = twin("partners/ok-basic.csv")
    customers = customer(500)
    both = workbook([["notes"], ["read me"]], {"Partners": partners, "CUSTOMERS": customers})
    assert read_bytes(both, "partners").height == 2
    assert read_bytes(both, "customers")["tenant_id"].to_list() == ["T1"]
    first = workbook(customers, {"Other": [["x"]]})
    assert read_bytes(first, "customers").height == 1


def test_a_workbook_is_opened_once_for_its_sheet_names_and_its_cells(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Opening parses the workbook's ZIP and XML: a big file is not parsed twice."""
    import fastexcel

    opened: list[int] = []
    real = fastexcel.read_excel

    def counted(source: bytes, *args: object, **kwargs: object) -> fastexcel.ExcelReader:
        opened.append(len(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(fastexcel, "read_excel", counted)
    both = workbook([["notes"]], {"Customers": customer(500)})
    assert read_bytes(both, "customers")["tenant_id"].to_list() == ["T1"]
    assert opened == [len(both)]


# --- workbooks that cannot be read: one line each ------------------------------------------


def _password_protected() -> bytes:
    """What Excel saves with a password: an OLE compound file holding 'EncryptedPackage'."""
    name = "EncryptedPackage".encode("utf-16-le")
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024) + name + bytes(512)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    return buf.getvalue()


BROKEN = {
    "csv-text": (b"tenant_id,name\nT1,Alder\n", ["an Excel workbook", "CSV", ".csv"]),
    "empty-file": (b"", ["an Excel workbook", "empty"]),
    "empty-workbook": (workbook([]), ["a header row and rows"]),
    "blank-header": (workbook([[None], [" "]]), ["a header row and rows"]),
    "password": (_password_protected(), ["password"]),
    "xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2048), ["Excel 97-2003", ".xlsx"]),
    "truncated": (workbook(customer(500))[:300], ["a readable Excel workbook"]),
    "zip-not-workbook": (_zip(), ["a readable Excel workbook"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_workbook_is_one_clear_line(case: str, tmp_path: Path, judge: Judge) -> None:
    data, needles = BROKEN[case]
    path = tmp_path / "customers.xlsx"
    path.write_bytes(data)
    judge(path, "customers", needles)


def test_a_workbook_saved_under_csv_keeps_its_message(tmp_path: Path, judge: Judge) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes(workbook(customer(500)))
    judge(path, "customers", ["not an Excel workbook"])


# --- writing ---------------------------------------------------------------------------------

NAMES = ["=1+1", "+1", "-2", "@SUM(A1:A9)", "Alder", '=HYPERLINK("http://x","y")']


def _frame() -> pl.DataFrame:
    n = len(NAMES)
    return pl.DataFrame(
        {
            "tenant_id": [f"T{i}" for i in range(n)],
            "name": NAMES,
            "seats": list(range(150, 150 + n)),
            "workloads": [["exchange", "teams"]] * n,
            "gateway": [True, False] * (n // 2),
            "created_at": [datetime.datetime(2026, 12, 1, 9, 30)] * n,
        }
    ).with_columns(pl.col("created_at").dt.replace_time_zone("UTC"))


def _cells_xml(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.read("xl/worksheets/sheet1.xml").decode()


@pytest.mark.parametrize("how", ["write_table", "table_bytes"])
def test_a_workbook_reads_back_as_its_csv_with_formulas_neutralised(
    how: str, tmp_path: Path
) -> None:
    frame = _frame()
    if how == "write_table":
        data = write_table(frame, tmp_path / "out.xlsx").read_bytes()
    else:
        data = table_bytes(frame, ".xlsx")
    back = pl.read_excel(data, infer_schema_length=0)
    from_csv = pl.read_csv(table_bytes(frame, ".csv"), infer_schema=False)
    assert back.columns == from_csv.columns
    assert back.drop("created_at").equals(from_csv.drop("created_at"))
    assert back["name"].to_list() == ["'" + n if n[0] in "=+-@" else n for n in NAMES]
    assert back["created_at"].to_list() == ["2026-12-01 09:30:00"] * len(NAMES)
    xml = _cells_xml(data)
    assert "<f>" not in xml  # nothing is a formula: every name is a string cell
    typed = pl.read_excel(data)
    assert typed["seats"].dtype.is_integer() and typed["gateway"].dtype == pl.Boolean


def test_every_kind_of_cell_reads_back_as_written() -> None:
    """Text (XML's special characters, control characters, Excel's own ``_xHHHH_``
    escapes, edge spaces), numbers (NaN and infinity as Excel's errors), booleans, dates
    and zoned times (as UTC), and empty cells: the rows store.workbook writes itself."""
    text = [" edge ", "a&b<c>\"d'", "ctl\x01\x1f", "_x0041_ stays", None, "tab\tline\nend"]
    frame = pl.DataFrame(
        {
            "text": text,
            "whole": [1, -2, None, 1500, 0, 2**40],
            "fraction": [0.25, float("nan"), float("inf"), None, -1e-12, 1e20],
            "flag": [True, False, None, True, True, False],
            "day": [datetime.date(2026, 1, 5), None, datetime.date(2000, 2, 29)] * 2,
            "at": [datetime.datetime(2026, 1, 5, 9, 30, tzinfo=datetime.UTC), None] * 3,
        }
    ).with_columns(pl.col("at").dt.convert_time_zone("Europe/Stockholm"))
    data = table_bytes(frame, ".xlsx")
    back = pl.read_excel(data, schema_overrides={"at": pl.Datetime("us")})
    assert back["text"].to_list() == text
    assert back["whole"].to_list() == frame["whole"].to_list()
    assert back["fraction"].to_list() == [0.25, None, None, None, -1e-12, 1e20]  # errors
    assert back["flag"].to_list() == frame["flag"].to_list()
    assert back["day"].to_list() == frame["day"].to_list()
    assert back["at"].to_list() == [datetime.datetime(2026, 1, 5, 9, 30), None] * 3
    xml = _cells_xml(data)
    assert '<c r="C3" t="e"><v>#NUM!</v></c>' in xml, xml  # an error, never a formula
    assert '<c r="C4" t="e"><v>#DIV/0!</v></c>' in xml, xml


def test_a_workbook_has_a_frozen_header_row_with_a_filter_over_every_row() -> None:
    data = table_bytes(_frame(), ".xlsx")
    xml = _cells_xml(data)
    rows = len(NAMES) + 1
    assert f'<dimension ref="A1:F{rows}"/>' in xml
    assert '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>' in xml
    assert f'<autoFilter ref="A1:F{rows}"/>' in xml
    assert xml.count("<col ") == 6  # every column as wide as its text
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        styles = z.read("xl/styles.xml").decode()
    header = re.search(r'<c r="A1" s="(\d+)"', xml)
    assert header is not None
    bold = re.findall(r"<xf [^>]*>", styles.split("<cellXfs")[1])[int(header.group(1))]
    fonts = re.findall(r"<font>.*?</font>", styles)
    assert "<b/>" in fonts[int(re.search(r'fontId="(\d+)"', bold).group(1))]  # type: ignore[union-attr]


def test_a_workbook_too_big_for_excel_is_refused(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("store.files.EXCEL_MAX_ROWS", 3)
        with pytest.raises(InputError) as caught:
            write_table(_frame(), tmp_path / "out.xlsx")
    assert "at most 3 rows" in str(caught.value) and ".csv or .parquet" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_the_cohort_template_has_an_excel_twin_that_reads_back() -> None:
    assert read_upload(template_xlsx(), "template.xlsx", "customers").height == 1


def test_frp_simulate_reads_workbooks_and_writes_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`frp` takes .xlsx wherever it takes .csv: inputs, and the result by its extension."""
    from cli.main import main as frp_main

    partners, customers = tmp_path / "p.xlsx", tmp_path / "c.xlsx"
    partners.write_bytes(workbook(twin("partners/ok-basic.csv")))
    customers.write_bytes(workbook(twin("customers/ok-formula-names.csv")))
    out = tmp_path / "result.xlsx"
    args = ["simulate", "--partners", partners, "--customers", customers, "--out", out]
    assert frp_main([str(a) for a in args]) == 0, capsys.readouterr().err
    result = pl.read_excel(out, infer_schema_length=0)
    expected = read_customers(CORPUS / "customers" / "ok-formula-names.csv")["tenant_id"]
    quoted = ["'" + t if t[0] in "=+-@" else t for t in expected]
    assert result["tenant_id"].to_list() == quoted and "<f>" not in _cells_xml(out.read_bytes())


def test_a_what_if_leaves_out_a_workbooks_bad_rows_by_their_excel_numbers() -> None:
    from ui.uploads import valid_customers

    rows = customer(500) + [[]] + [customer("many", tenant_id="T2")[1]]
    rows.append(customer(700, tenant_id="T3")[1])
    part = valid_customers(workbook(rows), "cohort.xlsx")
    assert part is not None
    valid, dropped = part
    assert valid["tenant_id"].to_list() == ["T1", "T3"] and dropped == [4]
