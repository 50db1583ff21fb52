"""The Referrals page, driven through Streamlit's AppTest on the demo world after one commit."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from engine.rules import load_rules
from store.commits import commit
from store.db import connect

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "referrals.py")


@pytest.fixture(scope="module")
def committed_master(demo_db_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo world plus run 1 (round robin over the backlog): tasks and outbox exist."""
    path = tmp_path_factory.mktemp("committed") / "frp.duckdb"
    shutil.copy(demo_db_master, path)
    con = connect(path)
    try:
        commit(con, load_rules(), "round-robin", actor="test")
    finally:
        con.close()
    return path


@pytest.fixture
def db(committed_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "frp.duckdb"
    shutil.copy(committed_master, path)
    monkeypatch.setenv("FRP_DB", str(path))
    return path


def row(path: Path, query: str, params: list | None = None) -> tuple:
    con = duckdb.connect(str(path))
    try:
        return con.execute(query, params or []).fetchall()[0]
    finally:
        con.close()


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def run_page(query_params: dict[str, str] | None = None) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.query_params.update(query_params or {})
    app.run()
    assert not app.exception
    return app


def test_all_referrals_are_counted_and_the_table_is_capped(db: Path) -> None:
    at = run_page()
    (n,) = row(db, "SELECT count(*) FROM referrals")
    assert metric(at, "Referrals matching") == f"{n:,}"
    table = at.dataframe[0].value
    assert len(table) == 1_000
    assert any(f"newest 1,000 of {n:,} referrals" in c.value for c in at.caption)


def test_filters_change_the_referrals(db: Path) -> None:
    at = run_page()
    at.multiselect(key="ref_outcome").set_value(["css"]).run()
    (css,) = row(db, "SELECT count(*) FROM referrals WHERE outcome = 'css'")
    assert metric(at, "Referrals matching") == f"{css:,}"
    at.multiselect(key="ref_reason").set_value(["no_partner_match"]).run()
    at.multiselect(key="ref_status").set_value(["active"]).run()
    (n,) = row(
        db,
        "SELECT count(*) FROM referrals WHERE reason = 'no_partner_match' AND status = 'active'",
    )
    assert metric(at, "Referrals matching") == f"{n:,}"
    assert set(at.dataframe[0].value["reason"]) == {"no_partner_match"}


def test_partner_filter_and_trace(db: Path) -> None:
    at = run_page()
    at.selectbox(key="ref_partner").set_value("P0030").run()
    (n,) = row(db, "SELECT count(*) FROM referrals WHERE partner_id = 'P0030'")
    assert metric(at, "Referrals matching") == f"{n:,}"
    rid = at.selectbox(key="ref_pick").value
    trace, psm = row(db, "SELECT trace, psm_name FROM referrals WHERE referral_id = ?", [rid])
    text = "\n".join(m.value for m in at.markdown)
    assert "P0030" in text and psm in text
    assert at.code[0].value == trace  # the trace as stored, in full
    assert text.count("1. ") >= 1


def test_run_query_parameter_selects_the_run(db: Path) -> None:
    at = run_page({"run": "1"})
    assert at.selectbox(key="ref_run").value == 1
    (n,) = row(db, "SELECT count(*) FROM referrals WHERE run_id = 1")
    assert metric(at, "Referrals matching") == f"{n:,}"
    # Back to all runs: the URL follows the filter.
    at.selectbox(key="ref_run").set_value(None).run()
    assert "run" not in at.query_params
    (total,) = row(db, "SELECT count(*) FROM referrals")
    assert metric(at, "Referrals matching") == f"{total:,}"


def test_history_run_and_unknown_run(db: Path) -> None:
    at = run_page({"run": "history"})
    (n,) = row(db, "SELECT count(*) FROM referrals WHERE run_id IS NULL")
    assert metric(at, "Referrals matching") == f"{n:,}"
    assert metric(at, "FTOP 3186 tasks") == "0"
    at = run_page({"run": "99"})
    assert at.selectbox(key="ref_run").value is None
    assert any("99" in w.value for w in at.warning)


def test_ftop_tasks_and_outbox(db: Path) -> None:
    at = run_page({"run": "1"})
    (tasks,) = row(db, "SELECT count(*) FROM ftop_tasks")
    (msgs,) = row(db, "SELECT count(*) FROM outbox")
    assert metric(at, "FTOP 3186 tasks") == f"{tasks:,}"
    assert metric(at, "Notifications") == f"{msgs:,}"
    task_table = next(d.value for d in at.dataframe if "task_number" in d.value.columns)
    assert set(task_table["task_number"]) == {3186}
    outbox = next(d.value for d in at.dataframe if "subject" in d.value.columns)
    assert {"to_email", "subject", "status"} <= set(outbox.columns)
    mid = at.selectbox(key="ref_message").options[1]
    at.selectbox(key="ref_message").select_index(1).run()
    message_id = at.selectbox(key="ref_message").value
    assert message_id in mid
    (body,) = row(db, "SELECT body FROM outbox WHERE message_id = ?", [message_id])
    assert at.code[-1].value == body.strip()  # st.code drops the final newline
    at.multiselect(key="ref_outbox_status").set_value(["pending"]).run()
    assert metric(at, "Notifications") == f"{msgs:,}"


def test_through_the_router(db: Path) -> None:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.run()
    app.switch_page("pages/referrals.py").run()
    assert not app.exception
    assert app.title[0].value == "Referrals"


def test_empty_database_says_what_to_do(empty_db: Path) -> None:
    at = run_page()
    assert any("No referrals yet" in i.value and "frp demo" in i.value for i in at.info)
