"""The Data page (imports and rules) through AppTest, and the upload reader behind it."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from engine.cohorts import synthetic_cohort
from engine.columns import LIST_SEPARATOR
from engine.rules import load_rules, parse_rules, to_toml
from engine.schema import InputError
from tests.app_helpers import open_app, value
from ui.db import RULES_KEY
from ui.uploads import read_upload

HEADER = (
    "partner_id,name,countries,languages,workloads,capacity,active_referrals,"
    "referral_ready,psm_name,psm_email,contact_email"
)
GOOD_PARTNERS = (
    f"{HEADER}\n"
    "P9001,Tidewell Onboarding,US;CA,en,exchange;teams,40,0,true,Ada Lowell,"
    "ada.lowell@psm.example,referrals@tidewell.example\n"
    "P9002,Quartzline Advisory,DE,de;en,intune,12,3,false,Nils Varga,"
    "nils.varga@psm.example,referrals@quartzline.example\n"
).encode()
BAD_PARTNERS = (
    f"{HEADER}\n"
    "P9001,Tidewell Onboarding,US,en,exchange,40,0,true,Ada Lowell,"
    "ada.lowell@psm.example,referrals@tidewell.example\n"
    "P9003,Broken,XX,en,exchange,-5,0,maybe,Nobody,not-an-email,referrals@broken.example\n"
).encode()


pytestmark = pytest.mark.usefixtures("fresh_caches")


def open_data() -> AppTest:
    return open_app("pages/data.py")


def count(db: Path, sql: str) -> int:
    return value(db, sql)


def test_a_bad_partners_file_shows_every_bad_row_and_writes_nothing(demo_db: Path) -> None:
    before = count(demo_db, "SELECT count(*) FROM partners")
    at = open_data()
    at.file_uploader(key="partners_file").upload("partners.csv", BAD_PARTNERS, "text/csv")
    at.run()
    assert not at.exception
    assert at.error[0].value.startswith("partners.csv: line 3")
    assert "Nothing was written" in at.error[0].value
    problems = at.dataframe[0].value
    assert problems["line"].tolist() == [3, 3, 3, 3]
    assert set(problems["column"]) == {"countries", "capacity", "referral_ready", "psm_email"}
    assert not [b for b in at.button if b.label.startswith("Import")]
    assert count(demo_db, "SELECT count(*) FROM partners") == before


def test_a_good_partners_file_imports(demo_db: Path) -> None:
    before = count(demo_db, "SELECT count(*) FROM partners")
    at = open_data()
    at.file_uploader(key="partners_file").upload("partners.csv", GOOD_PARTNERS, "text/csv")
    at.run()
    assert "2 partners, every row valid" in at.success[0].value
    assert count(demo_db, "SELECT count(*) FROM partners") == before  # not before the button
    at.button(key="partners_import").click()
    at.run()
    assert not at.exception
    assert count(demo_db, "SELECT count(*) FROM partners") == before + 2
    assert any("partners: 2 added, 0 updated" in s.value for s in at.success)
    assert [t.value for t in at.toast] == ["Imported: partners: 2 added, 0 updated"]
    assert at.metric[0].value == f"{before + 2:,}"  # the counts above are fresh


def test_a_customers_file_joins_the_backlog(demo_db: Path) -> None:
    before = count(demo_db, "SELECT count(*) FROM customers WHERE in_ftcq")
    cohort = synthetic_cohort(30, 12)
    data = io.BytesIO()
    cohort.write_parquet(data)
    at = open_data()
    at.file_uploader(key="customers_file").upload("new.parquet", data.getvalue())
    at.run()
    at.button(key="customers_import").click()
    at.run()
    assert not at.exception
    assert count(demo_db, "SELECT count(*) FROM customers WHERE in_ftcq") == before + 30


def test_a_rules_edit_with_an_unknown_key_shows_the_error(demo_db: Path) -> None:
    at = open_data()
    text = at.text_area(key="rules_text").value
    at.text_area(key="rules_text").set_value("min_seat = 100\n" + text)
    at.button(key="rules_use").click()
    at.run()
    assert not at.exception
    assert "min_seat: unknown key" in at.error[0].value
    assert RULES_KEY not in at.session_state


@pytest.mark.parametrize(
    "nested", ["a = " + "[" * 5000 + "]" * 5000, "a = " + "{b = " * 5000 + "1" + " }" * 5000]
)
def test_a_rules_edit_nested_too_deeply_shows_one_line_error(demo_db: Path, nested: str) -> None:
    at = open_data()
    at.text_area(key="rules_text").set_value(nested + "\n")
    at.button(key="rules_use").click()
    at.run()
    assert not at.exception
    assert "nested too deeply" in at.error[0].value
    assert "\n" not in at.error[0].value
    assert RULES_KEY not in at.session_state


def test_a_valid_edit_changes_the_active_rules_and_reset_restores_them(demo_db: Path) -> None:
    at = open_data()
    text = at.text_area(key="rules_text").value.replace("min_seats = 150", "min_seats = 400")
    at.text_area(key="rules_text").set_value(text)
    at.button(key="rules_use").click()
    at.run()
    assert parse_rules(at.session_state[RULES_KEY]).min_seats == 400
    assert any("now uses the edited rules" in s.value for s in at.success)
    assert "min_seats = 400" in at.code[0].value  # the active rules shown

    at.switch_page("pages/simulate.py")
    at.run()
    assert at.number_input(key="ov_min_seats").value == 400  # active_rules() on Simulate

    at.switch_page("pages/data.py")
    at.run()
    at.button(key="rules_reset").click()
    at.run()
    assert RULES_KEY not in at.session_state
    assert at.text_area(key="rules_text").value == to_toml(load_rules())


def test_an_empty_database_says_what_to_do_and_accepts_partners(empty_db: Path) -> None:
    at = open_data()
    assert "The database is empty" in at.info[0].value
    at.file_uploader(key="partners_file").upload("p.csv", GOOD_PARTNERS, "text/csv")
    at.run()
    at.button(key="partners_import").click()
    at.run()
    assert not at.exception
    assert count(empty_db, "SELECT count(*) FROM partners") == 2
    assert not [i for i in at.info if "The database is empty" in i.value]


# --- ui.uploads.read_upload: the bytes-and-name reader the pages use -------------------------


def test_an_upload_reads_like_the_cli_and_names_the_uploaded_file() -> None:
    frame = read_upload(GOOD_PARTNERS, "mine.csv", "partners")
    assert frame["partner_id"].to_list() == ["P9001", "P9002"]
    assert frame["countries"].to_list() == [["US", "CA"], ["DE"]]
    with pytest.raises(InputError) as caught:
        read_upload(BAD_PARTNERS, "mine.csv", "partners")
    assert caught.value.source == "mine.csv"
    assert caught.value.to_frame().height == 4


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (b"x", "partners.ods", "a file ending in .csv, .parquet or .xlsx"),
        (b"x", "partners.xlsx", "an Excel workbook, not CSV or other text"),
        (b"\xff\xfe\x00bad", "partners.csv", "UTF-8 text"),
        (b"", "partners.csv", "a header line and rows"),
        (b"not parquet", "partners.parquet", "a Parquet file"),
    ],
)
def test_an_unreadable_upload_is_an_input_error_naming_it(
    data: bytes, name: str, expected: str
) -> None:
    with pytest.raises(InputError) as caught:
        read_upload(data, name, "partners")
    assert caught.value.source == name
    assert expected in str(caught.value)


def test_a_parquet_customers_upload_round_trips() -> None:
    cohort = synthetic_cohort(20, 3)
    data = io.BytesIO()
    cohort.write_parquet(data)
    assert read_upload(data.getvalue(), "c.parquet", "customers").equals(cohort)
    text = cohort.with_columns(pl.col("workloads").list.join(LIST_SEPARATOR)).write_csv()
    assert read_upload(text.encode(), "c.csv", "customers").equals(cohort)
