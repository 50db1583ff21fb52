"""Excel on the dashboard: a workbook uploaded on the Data page, and the Excel twin of
every download (a simulation's result, the cohort template, the referrals, a CSS queue),
each audited as an export of personal data like its CSV."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.cohorts import synthetic_cohort
from store import handoff
from store.files import table_bytes
from tests.app_helpers import open_app, open_page, row, run_simulation
from ui import handoff as handoff_ui
from ui.simulation import LATEST_KEY, result_bytes
from ui.uploads import read_upload

pytestmark = pytest.mark.usefixtures("fresh_caches")


def same_cells(book: bytes, csv: bytes) -> bool:
    """A workbook holds what its CSV twin holds: the same text, dates and times as dates
    and times (to the second; Excel keeps no time zone), nothing as a formula."""
    when = r"^\d{4}-\d{2}-\d{2}"
    a = pl.read_excel(book, infer_schema_length=0).fill_null("")
    b = pl.read_csv(csv, infer_schema=False).fill_null("")
    for c in b.columns:
        if b[c].str.contains(when).all():  # written as an Excel date or time
            a = a.with_columns(pl.col(c).str.slice(0, 19).str.replace(" 00:00:00$", ""))
            b = b.with_columns(pl.col(c).str.replace("T", " ").str.slice(0, 19))
            b = b.with_columns(pl.col(c).str.replace(" 00:00:00$", ""))
    return a.equals(b)


def labels(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_a_customers_workbook_uploads_and_imports(demo_db: Path) -> None:
    before = row(demo_db, "SELECT count(*) FROM customers WHERE in_ftcq")[0]
    data = table_bytes(synthetic_cohort(30, 12), ".xlsx")
    at = open_app("pages/data.py")
    at.file_uploader(key="customers_file").upload("new.xlsx", data)
    at.run()
    assert any("new.xlsx: 30 customers, every row valid" in s.value for s in at.success)
    at.button(key="customers_import").click()
    at.run()
    assert not at.exception
    assert row(demo_db, "SELECT count(*) FROM customers WHERE in_ftcq")[0] == before + 30


def test_a_bad_workbook_names_its_rows_as_excel_shows_them(demo_db: Path) -> None:
    cohort = synthetic_cohort(5, 12).with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(-4).otherwise(pl.col("seats")).alias("seats")
    )
    at = open_app("pages/data.py")
    at.file_uploader(key="customers_file").upload("bad.xlsx", table_bytes(cohort, ".xlsx"))
    at.run()
    assert at.error[0].value.startswith("bad.xlsx: row 4, column seats: got '-4'")
    assert not [b for b in at.button if b.label.startswith("Import")]


def test_a_simulation_downloads_as_excel_and_reads_back(
    demo_db: Path, wired: list[tuple[str, str]]
) -> None:
    at = run_simulation(open_app("pages/simulate.py"), ["round-robin"])
    assert labels(at) == ["Download CSV", "Download Parquet", "Download Excel"]
    assert [w[0] for w in wired[-3:]] == [
        f"simulation-round-robin{s}" for s in (".csv", ".parquet", ".xlsx")
    ]
    result = at.session_state[LATEST_KEY]["round-robin"].output()
    book = result_bytes(result, ".xlsx")
    assert pl.read_excel(book).height == result.height
    assert same_cells(book, result_bytes(result, ".csv"))


def test_the_cohort_template_comes_as_csv_and_excel(demo_db: Path) -> None:
    at = open_app("pages/simulate.py")
    at.radio(key="cohort_source").set_value("upload")
    at.run()
    assert {"Download template (CSV)", "Download template (Excel)"} <= set(labels(at))
    from ui.simulation.cohort import TEMPLATES

    assert read_upload(TEMPLATES[".xlsx"](), "template.xlsx", "customers").height == 1


def test_referrals_and_a_css_queue_download_as_excel(
    committed_db: Path, wired: list[tuple[str, str]]
) -> None:
    at = open_page("pages/referrals.py")
    (n,) = row(committed_db, "SELECT count(*) FROM referrals")
    assert labels(at)[:3] == [f"Download {n:,} as {f}" for f in ("CSV", "Parquet", "Excel")]
    names = [w[0] for w in wired]
    assert names[:3] == ["referrals.csv", "referrals.parquet", "referrals.xlsx"]
    assert json.loads(wired[0][1]) == {"referrals": n}

    queue = at.selectbox(key="css_queue").value
    with duckdb.connect(str(committed_db), read_only=True) as con:
        listed = handoff.queues(con).filter(pl.col("queue") == queue)
    open_n, last = listed["open"].item(), listed["last_open"].item()
    assert labels(at)[3:] == [f"Download {open_n:,} as CSV", f"Download {open_n:,} as Excel"]
    assert names[3:] == [handoff_ui.file_name(queue, s) for s in (".csv", ".xlsx")]
    book, text = (handoff_ui._csv(queue, last, True, s) for s in (".xlsx", ".csv"))
    assert same_cells(book, text)


def test_a_referrals_download_holds_every_matching_referral(committed_db: Path) -> None:
    from store.db import connect
    from store.referrals import ROW_CAP, ReferralFilter, referral_rows

    # The outcome most referrals have: more of them than the table shows.
    outcome, n = row(
        committed_db,
        "SELECT outcome, count(*) FROM referrals GROUP BY outcome "
        "ORDER BY count(*) DESC, outcome LIMIT 1",
    )
    con = connect(committed_db)
    try:
        frame = referral_rows(con, ReferralFilter(outcomes=(outcome,)), n)
    finally:
        con.close()
    at = open_page("pages/referrals.py")
    at.multiselect(key="ref_outcome").set_value([outcome]).run()
    assert labels(at)[0] == f"Download {n:,} as CSV"
    back = pl.read_excel(table_bytes(frame, ".xlsx"), infer_schema_length=0)
    assert back.height == n > ROW_CAP  # beyond the table's cap
