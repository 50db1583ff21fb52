"""The Data page (imports and rules) through AppTest, and the upload reader behind it."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from engine.cohorts import synthetic_cohort
from engine.columns import LIST_SEPARATOR
from engine.rules import DEFAULT_RULES_PATH, parse_rules
from engine.schema import InputError
from store import rules as team_rules
from store.db import connect
from tests.app_helpers import MANAGER, VIEWER, open_app, rows, run_simulation, value
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


def team(db: Path) -> team_rules.RulesVersion:
    """The team's rules as the demo left them (it saves versions of its own)."""
    con = connect(db)
    try:
        return team_rules.current(con)
    finally:
        con.close()


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


def test_a_valid_edit_tried_in_a_session_changes_its_what_ifs_only(demo_db: Path) -> None:
    before = team(demo_db)
    at = open_data()
    assert at.text_area(key="rules_text").value == before.text
    text = at.text_area(key="rules_text").value.replace("min_seats = 150", "min_seats = 400")
    at.text_area(key="rules_text").set_value(text)
    at.button(key="rules_use").click()
    at.run()
    assert parse_rules(at.session_state[RULES_KEY]).min_seats == 400
    assert any("now uses the edited rules for what-ifs" in s.value for s in at.success)
    assert "min_seats = 150" in at.code[0].value  # the team's rules shown, unchanged
    assert "tries edited rules" in captions(at)
    assert team(demo_db) == before  # nothing saved
    assert value(demo_db, "SELECT count(*) FROM rules_versions") == before.version

    at.switch_page("pages/simulate.py")
    at.run()
    assert at.number_input(key="ov_min_seats").value == 400  # active_rules() on Simulate

    at.switch_page("pages/data.py")
    at.run()
    at.button(key="rules_reset").click()
    at.run()
    assert RULES_KEY not in at.session_state
    assert at.text_area(key="rules_text").value == before.text


# --- The team's rules, saved in the store -----------------------------------------------------

SHIPPED = DEFAULT_RULES_PATH.read_text(encoding="utf-8")


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def save(at: AppTest, text: str, note: str) -> AppTest:
    at.text_area(key="rules_text").set_value(text)
    at.text_input(key="rules_save_note").set_value(note)
    at.button(key="rules_save").click()
    return at.run()


def test_two_managers_see_the_same_saved_rules_and_a_run_records_its_version(
    demo_db: Path,
) -> None:
    new = team(demo_db).version + 1
    last_run = value(demo_db, "SELECT max(run_id) FROM runs")
    ann = open_app("pages/data.py", MANAGER)
    bo = open_app("pages/data.py", {**MANAGER, "email": "kim@managers.example", "name": "Kim"})
    stricter = SHIPPED.replace("min_seats = 150", "min_seats = 400")
    save(ann, stricter, "larger customers only")
    assert not ann.exception
    assert any(f"Saved as the team's rules, version {new}:" in s.value for s in ann.success)
    assert ann.text_input(key="rules_save_note").value == ""

    bo.run()  # the other manager's next run: the store's rules, not a session's
    assert "min_seats = 400" in bo.code[0].value
    assert f"version {new}, saved by boss@example.com" in captions(bo)
    assert "larger customers only" in captions(bo)

    bo.switch_page("pages/simulate.py")
    bo.run()
    assert bo.number_input(key="ov_min_seats").value == 400
    run_simulation(bo, ["round-robin"])
    bo.checkbox(key="commit_confirm").check().run()
    bo.button(key="commit_button").click().run()
    assert not bo.exception
    made = rows(demo_db, "SELECT actor, rules_version FROM runs WHERE run_id > ?", [last_run])
    assert made == [("kim@managers.example", new)]


def test_a_viewer_tries_rules_but_cannot_save_or_restore_them(demo_db: Path) -> None:
    con = connect(demo_db)
    try:
        team_rules.save(
            con,
            SHIPPED.replace("max_declines = 2", "max_declines = 3"),
            actor="bo",
            note="one more chance",
        )
    finally:
        con.close()
    at = open_app("pages/data.py", VIEWER)
    before = rows(demo_db, "SELECT * FROM rules_versions")
    save(at, SHIPPED.replace("min_seats = 150", "min_seats = 1"), "sneaky")
    assert not at.exception
    assert "Only managers can save the team's rules" in at.error[0].value
    assert rows(demo_db, "SELECT * FROM rules_versions") == before
    at.button(key="rules_use").click().run()  # a what-if for the viewer's session is fine
    assert parse_rules(at.session_state[RULES_KEY]).min_seats == 1
    at.button(key="rules_restore").click().run()  # the version before, over the newest
    assert "Only managers can restore a version of the team's rules" in at.error[0].value
    assert rows(demo_db, "SELECT * FROM rules_versions") == before


def test_bad_rules_or_no_note_save_nothing_and_say_why(demo_db: Path) -> None:
    before = rows(demo_db, "SELECT * FROM rules_versions ORDER BY version")
    now = team(demo_db)
    at = open_data()
    save(at, "min_seat = 1\n" + SHIPPED, "typo")
    assert "Not saved:" in at.error[0].value and "min_seat: unknown key" in at.error[0].value
    save(at, SHIPPED.replace("min_seats = 150", "min_seats = 200"), " ")
    assert "a note is required" in at.error[0].value
    save(at, now.text, "the same again")
    assert f"Unchanged: this is the text of version {now.version};" in at.info[0].value
    assert rows(demo_db, "SELECT * FROM rules_versions ORDER BY version") == before


def test_the_history_shows_a_diff_and_restores_an_old_version(demo_db: Path) -> None:
    was = team(demo_db)
    new, restored = was.version + 1, was.version + 2
    at = open_data()
    save(at, was.text.replace("min_seats = 150", "min_seats = 400"), "larger customers")
    history = next(d.value for d in at.dataframe if "saved_by" in d.value.columns)
    assert history["version"].tolist() == list(range(new, 0, -1))
    assert history["note"].tolist()[0] == "larger customers"
    diff = [c.value for c in at.code if c.language == "diff"][0]
    assert "-min_seats = 150\n+min_seats = 400" in diff
    assert at.selectbox(key=f"rules_a_{new}").value == was.version  # the one before
    at.button(key="rules_restore").click().run()
    assert not at.exception
    restored_says = f"Version {was.version} restored as the team's rules (version {restored})"
    assert any(restored_says in s.value for s in at.success)
    saved = rows(demo_db, "SELECT version, note FROM rules_versions ORDER BY version")
    assert saved[0] == (1, "data/rules.toml, when the store was created")
    assert saved[was.version :] == [
        (new, "larger customers"),
        (restored, f"restored version {was.version}"),
    ]
    restored_text = "SELECT rules_toml FROM rules_versions WHERE version = ?"
    assert value(demo_db, restored_text, [restored]) == was.text
    assert at.text_area(key="rules_text").value == was.text


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


# --- The rules form: the common rules as fields over the same TOML text ----------------------


def test_minimum_seats_set_in_the_form_and_tried_reach_the_sessions_what_ifs(
    demo_db: Path,
) -> None:
    before = team(demo_db)
    at = open_app("pages/data.py", VIEWER)  # a viewer may try, not save
    assert at.number_input(key="rule_min_seats").value == 150  # filled from the team's text
    at.number_input(key="rule_min_seats").set_value(300).run()
    assert not at.exception
    assert "min_seats = 300" in at.text_area(key="rules_text").value  # one text, both views
    at.button(key="rules_use").click().run()
    assert parse_rules(at.session_state[RULES_KEY]).min_seats == 300
    assert "tries edited rules" in captions(at)
    at.text_input(key="rules_save_note").set_value("mine")
    at.button(key="rules_save").click().run()
    assert "Only managers can save the team's rules" in at.error[0].value
    assert team(demo_db) == before
    typed = at.text_area(key="rules_text").value.replace("min_seats = 300", "min_seats = 250")
    at.text_area(key="rules_text").set_value(typed).run()
    assert at.number_input(key="rule_min_seats").value == 250  # the text typed fills the form
    at.text_area(key="rules_text").set_value(typed.replace("250", "300")).run()
    at.switch_page("pages/simulate.py")
    at.run()
    assert at.number_input(key="ov_min_seats").value == 300


def test_a_managers_form_edit_with_a_note_saves_a_new_version(demo_db: Path) -> None:
    new = team(demo_db).version + 1
    at = open_data()
    at.selectbox(key="rule_when_full").set_value("hold").run()
    at.number_input(key="rule_max_declines").set_value(3).run()
    at.text_input(key="rules_save_note").set_value("hold when full, three declines")
    at.button(key="rules_save").click().run()
    assert not at.exception
    assert any(f"version {new}:" in s.value for s in at.success)
    saved = team(demo_db)
    assert saved.version == new
    assert 'when_full = "hold"' in saved.text and "max_declines = 3" in saved.text
    assert parse_rules(saved.text).max_declines == 3


def test_an_invalid_form_value_names_the_rule_and_saves_nothing(demo_db: Path) -> None:
    before = rows(demo_db, "SELECT * FROM rules_versions ORDER BY version")
    now = team(demo_db)
    at = open_data()
    window = at.number_input(key="rule_accept_within_days").value
    at.number_input(key="rule_remind_after_days").set_value(window + 3).run()
    assert not at.exception
    assert at.error[0].value.startswith("Not applied: Reminder after (days)")
    assert "line" not in at.error[0].value
    assert at.text_area(key="rules_text").value == now.text  # the text keeps the last valid
    at.text_input(key="rules_save_note").set_value("try a late reminder")
    at.button(key="rules_save").click().run()
    assert rows(demo_db, "SELECT * FROM rules_versions ORDER BY version") == before


def test_a_toml_typo_names_the_rule_rather_than_a_line_and_column(demo_db: Path) -> None:
    at = open_data()
    text = at.text_area(key="rules_text").value.replace("min_seats = 150", "min_seats = abc")
    at.text_area(key="rules_text").set_value(text)
    at.button(key="rules_use").click().run()
    assert "Minimum seats (min_seats)" in at.error[0].value
    assert RULES_KEY not in at.session_state
