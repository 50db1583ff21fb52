"""The Referrals page, driven through Streamlit's AppTest on the demo world after one commit:
referrals, waiting referrals by age (at a clock set after the data, never the real date)
and each partner's answers, placing held customers, the CSS hand-off, FTOP tasks (and
closing one), the outbox (and sending it to a real SMTP server on loopback), PSM load."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from store import clock, lifecycle
from store.db import connect
from store.handoff import EXPORT_COLUMNS
from store.notify import ROLES, message_id
from tests.app_helpers import VIEWER, chart_titles, open_app, open_page, row, rows
from tests.smtp_server import Server, running
from ui import handoff as handoff_ui

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture
def db(committed_db: Path) -> Path:
    return committed_db


def last_run(db: Path) -> int:
    """The newest run: the backlog's in ``committed_db`` (the demo's history has its own)."""
    return row(db, "SELECT max(run_id) FROM runs")[0]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def run_page(query_params: dict[str, str] | None = None) -> AppTest:
    return open_page("pages/referrals.py", query_params=query_params)


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
    at.multiselect(key="ref_status").set_value(["queued"]).run()
    (n,) = row(
        db,
        "SELECT count(*) FROM referrals WHERE reason = 'no_partner_match' AND status = 'queued'",
    )
    assert metric(at, "Referrals matching") == f"{n:,}"
    assert set(at.dataframe[0].value["reason"]) == {"No partner matches"}  # in words


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
    last = last_run(db)
    at = run_page({"run": str(last)})
    assert at.selectbox(key="ref_run").value == last
    (n,) = row(db, "SELECT count(*) FROM referrals WHERE run_id = ?", [last])
    assert metric(at, "Referrals matching") == f"{n:,}"
    # Back to all runs: the URL follows the filter.
    at.selectbox(key="ref_run").set_value(None).run()
    assert "run" not in at.query_params
    (total,) = row(db, "SELECT count(*) FROM referrals")
    assert metric(at, "Referrals matching") == f"{total:,}"


def test_history_run_and_unknown_run(db: Path) -> None:
    """Every referral of the demo belongs to a run, so there is no imported history to
    pick: ``?run=history`` says so and shows all runs (as an unknown run does)."""
    assert row(db, "SELECT count(*) FROM referrals WHERE run_id IS NULL") == (0,)
    at = run_page({"run": "history"})
    assert at.selectbox(key="ref_run").value is None
    assert any("'history' is not in this database" in w.value for w in at.warning)
    (total,) = row(db, "SELECT count(*) FROM referrals")
    assert metric(at, "Referrals matching") == f"{total:,}"
    at = run_page({"run": "99999"})
    assert at.selectbox(key="ref_run").value is None
    assert any("99999" in w.value for w in at.warning)


def test_ftop_tasks_and_outbox(db: Path) -> None:
    last = last_run(db)
    at = run_page({"run": str(last)})
    of_run = "JOIN referrals USING (referral_id) WHERE run_id = ?"
    (tasks,) = row(db, f"SELECT count(*) FROM ftop_tasks {of_run}", [last])
    (msgs,) = row(db, f"SELECT count(*) FROM outbox {of_run}", [last])
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
    app = open_app("pages/referrals.py")
    assert app.title[0].value == "Referrals"


def test_empty_database_says_what_to_do(empty_db: Path) -> None:
    at = run_page()
    assert any("No referrals yet" in i.value and "frp demo" in i.value for i in at.info)


# --- delivery: send the outbox, close a task, PSM load ----------------------------------


@pytest.fixture(autouse=True)
def no_smtp(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "STARTTLS", "USER", "PASSWORD", "FROM"):
        monkeypatch.delenv(f"FRP_SMTP_{name}", raising=False)


def test_html_part_of_a_message_is_shown(db: Path) -> None:
    at = run_page({"run": str(last_run(db))})
    message_id = at.selectbox(key="ref_message").value
    (html,) = row(db, "SELECT body_html FROM outbox WHERE message_id = ?", [message_id])
    shown = at.get("html")
    assert shown and "<!DOCTYPE html>" in html
    assert "FastTrack Ready Partner" in shown[-1].proto.body


def test_without_smtp_settings_sending_is_off(db: Path) -> None:
    at = run_page()
    assert at.button(key="outbox_send").disabled
    assert any("Sending is off" in i.value and "FRP_SMTP_HOST" in i.value for i in at.info)


def keep_pending(db: Path, referrals: list[int]) -> None:
    """Only these referrals' messages left pending, the others' recorded as sent."""
    con = duckdb.connect(str(db))
    try:
        con.execute(
            "UPDATE outbox SET status = 'sent', sent_at = now()::TIMESTAMP "
            "WHERE status = 'pending' AND NOT list_contains(?, referral_id)",
            [referrals],
        )
    finally:
        con.close()


def test_send_button_delivers_the_pending_notifications(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Leave two referrals' messages pending, so the real server gets six.
    sql = "SELECT DISTINCT referral_id FROM outbox WHERE status = 'pending' ORDER BY 1 LIMIT 2"
    keep = [r[0] for r in rows(db, sql)]
    keep_pending(db, keep)
    with running() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        at = run_page()
        button = at.button(key="outbox_send")
        assert not button.disabled and button.label == "Send 6 pending notifications"
        button.click().run()
        assert not at.exception
    assert len(server.mailbox.received) == 6
    assert {m["Message-ID"] for m in server.mailbox.received} == {
        message_id(r, role) for r in keep for role in ROLES
    }
    assert row(db, "SELECT count(*) FROM outbox WHERE status = 'pending'") == (0,)
    assert any("6 sent, 0 failed, 0 left pending" in s.value for s in at.success)
    assert [t.value for t in at.toast] == ["Outbox: 6 sent, 0 failed, 0 left pending"]
    assert at.button(key="outbox_send").disabled  # nothing left to send
    assert at.button(key="outbox_send").label == "Nothing to send"
    at.multiselect(key="ref_outbox_status").set_value(["sent"]).run()
    (n,) = row(db, "SELECT count(*) FROM outbox")
    assert metric(at, "Notifications") == f"{n:,}"


def test_send_to_an_unreachable_server_says_what_is_left(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server()  # a free port where nothing listens
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    at = run_page()
    at.button(key="outbox_send").click().run()
    assert not at.exception
    (n,) = row(db, "SELECT count(*) FROM outbox WHERE status = 'pending'")  # the demo's: sent
    warning = " ".join(w.value for w in at.warning)
    assert f"0 sent, 0 failed, {n:,} left pending ({n - 1:,} not tried" in warning
    assert f"cannot reach 127.0.0.1:{server.port}" in warning
    assert row(db, "SELECT count(*) FROM outbox WHERE status = 'pending'") == (n,)
    assert row(db, "SELECT max(attempts) FROM outbox WHERE status = 'pending'") == (3,)


def test_a_failed_message_is_shown_fixed_and_sent_again(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An address stored before the import refused control characters: it fails, alone,
    # among its referral's other messages and another referral's (a few, not the run's
    # 2,000-odd, which took the one send a minute).
    bad, referral = row(
        db,
        "SELECT message_id, referral_id FROM outbox WHERE message_id = (SELECT min(message_id) "
        "FROM outbox WHERE recipient_role = 'customer' AND status = 'pending')",
    )
    (other,) = row(
        db,
        "SELECT min(referral_id) FROM outbox WHERE status = 'pending' AND referral_id <> ?",
        [referral],
    )
    keep_pending(db, [referral, other])
    con = duckdb.connect(str(db))
    con.execute("UPDATE outbox SET to_email = 'it\x1c@x.example' WHERE message_id = ?", [bad])
    con.close()
    (n,) = row(db, "SELECT count(*) FROM outbox WHERE status = 'pending'")
    with running() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        at = run_page()
        at.button(key="outbox_send").click().run()
        assert not at.exception
        assert len(server.mailbox.received) == n - 1
        assert "failed" in at.multiselect(key="ref_outbox_status").options
        at.multiselect(key="ref_outbox_status").set_value(["failed"]).run()
        table = next(d.value for d in at.dataframe if "last_error" in d.value.columns)
        assert table["message_id"].to_list() == [bad]
        assert "cannot build the message" in table["last_error"][0]

        assert at.selectbox(key="outbox_retry_pick").value == bad
        assert at.text_input(key="outbox_retry_to").value == "it\x1c@x.example"
        at.text_input(key="outbox_retry_to").set_value("it@").run()
        at.button(key="outbox_retry").click().run()
        assert any("no control characters" in e.value for e in at.error)  # the import's check
        assert row(db, "SELECT status FROM outbox WHERE message_id = ?", [bad]) == ("failed",)

        at.text_input(key="outbox_retry_to").set_value(" it@fixed.example ").run()
        at.button(key="outbox_retry").click().run()
        assert not at.exception and any("pending again" in s.value for s in at.success)
        assert row(
            db, "SELECT status, to_email, last_error FROM outbox WHERE message_id = ?", [bad]
        ) == ("pending", "it@fixed.example", None)
        (details,) = row(db, "SELECT details FROM audit_log WHERE action = 'retry_message'")
        assert json.loads(details) == {"address_changed": True}
        at.button(key="outbox_send").click().run()
    assert server.mailbox.by_id(bad)["To"] == "it@fixed.example"
    assert row(db, "SELECT count(*) FROM outbox WHERE status IN ('pending', 'failed')") == (0,)


def test_a_viewer_gets_no_retry_form(db: Path) -> None:
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE outbox SET status = 'failed' WHERE recipient_role = 'psm'")
    at = open_page("pages/referrals.py", user=VIEWER)
    assert not at.exception
    assert not [b for b in at.button if b.key == "outbox_retry"]


def test_close_a_task_from_the_tasks_tab(db: Path) -> None:
    last = last_run(db)
    at = run_page({"run": str(last)})
    (n_open,) = row(
        db,
        "SELECT count(*) FROM ftop_tasks JOIN referrals USING (referral_id) "
        "WHERE ftop_tasks.status = 'open' AND run_id = ?",
        [last],
    )
    assert metric(at, "Open") == f"{n_open:,}"
    at.selectbox(key="task_pick").select_index(1).run()
    task_id = at.selectbox(key="task_pick").value
    at.button(key="task_close").click().run()
    assert not at.exception
    picked = at.selectbox(key="task_pick").value
    status, closed_at = row(
        db, "SELECT status, closed_at FROM ftop_tasks WHERE task_id = ?", [task_id]
    )
    assert status == "closed" and closed_at is not None
    assert picked != task_id  # the closed task left the list
    assert metric(at, "Open") == f"{n_open - 1:,}"
    assert any(f"Task {task_id} (FTOP 3186" in s.value for s in at.success)
    assert row(db, "SELECT actor FROM audit_log WHERE action = 'close_task'") == ("dashboard",)


def test_psm_load_tab(db: Path) -> None:
    at = run_page()
    (n_open,) = row(
        db,
        "SELECT count(*) FROM referrals WHERE outcome = 'frp' AND status IN ('active', 'accepted')",
    )
    (n_psm,) = row(db, "SELECT count(DISTINCT psm_email) FROM partners")
    assert metric(at, "Open referrals") == f"{n_open:,}"
    assert metric(at, "PSMs") == f"{n_psm:,}"
    table = next(d.value for d in at.dataframe if "psm_email" in d.value.columns)
    assert len(table) == n_psm and table["open_referrals"].sum() == n_open


def test_partner_response_accept_then_decline_reassigns(db: Path) -> None:
    rid, tenant, partner = row(
        db,
        "SELECT referral_id, tenant_id, partner_id FROM referrals "
        "WHERE run_id = (SELECT max(run_id) FROM runs) "
        "AND outcome = 'frp' ORDER BY referral_id DESC LIMIT 1",
    )
    at = run_page({"run": str(last_run(db))})
    at.selectbox(key="ref_partner").set_value(partner).run()
    assert at.selectbox(key="ref_pick").value == rid  # newest first
    at.button(key="ref_accept").click().run()
    assert not at.exception
    assert row(db, "SELECT status FROM referrals WHERE referral_id = ?", [rid]) == ("accepted",)
    assert any("active -> accepted" in s.value for s in at.success)
    assert at.selectbox(key="decline_reason").value is None  # no preset reason
    assert at.button(key="ref_decline").disabled  # a reason is required
    at.selectbox(key="decline_reason").set_value("outside_service_area").run()
    at.button(key="ref_decline").click().run()
    # Nothing changes before the confirmation.
    assert row(db, "SELECT status FROM referrals WHERE referral_id = ?", [rid]) == ("accepted",)
    (ask,) = [w.value for w in at.warning if w.value.startswith(f"Decline referral #{rid}")]
    assert "Outside the service area" in ask and partner in ask
    at.button(key="ref_decline_confirm").click().run()
    assert not at.exception
    assert row(db, "SELECT status, decline_reason FROM referrals WHERE referral_id = ?", [rid]) == (
        "declined",
        "outside_service_area",
    )
    new_rid, new_run, new_to = row(
        db,
        "SELECT referral_id, run_id, coalesce(partner_id, queue) FROM referrals "
        "WHERE tenant_id = ? ORDER BY referral_id DESC LIMIT 1",
        [tenant],
    )
    (done,) = [s.value for s in at.success if "declined by" in s.value]
    assert "(Outside the service area)" in done
    assert f"Re-assigned in run {new_run}: referral #{new_rid} to {new_to}" in done
    # The reason is shown on the referral and in its trace.
    trace = " ".join(m.value for m in at.markdown)
    assert "reason: **Outside the service area**" in trace
    assert f"declined by {partner}: Outside the service area" in trace
    # The link opens the new referral (and puts it in the address).
    assert at.button(key="open_new_referral").label == f"Open referral #{new_rid}"
    at.button(key="open_new_referral").click().run()
    assert at.query_params["referral"] == str(new_rid)
    assert at.selectbox(key="ref_run").value == new_run
    assert at.selectbox(key="ref_pick").value == new_rid
    (n_open,) = row(
        db,
        "SELECT count(*) FROM referrals WHERE tenant_id = ? AND status IN ('active', 'accepted')",
        [tenant],
    )
    assert n_open == 1
    (new_partner,) = row(
        db,
        "SELECT coalesce(partner_id, '') FROM referrals WHERE tenant_id = ? "
        "ORDER BY referral_id DESC LIMIT 1",
        [tenant],
    )
    assert new_partner != partner


def test_a_decline_can_be_cancelled_and_changes_nothing(db: Path) -> None:
    rid, partner = row(
        db,
        "SELECT referral_id, partner_id FROM referrals "
        "WHERE run_id = (SELECT max(run_id) FROM runs) "
        "AND outcome = 'frp' ORDER BY referral_id DESC LIMIT 1",
    )
    at = run_page({"run": str(last_run(db))})
    at.selectbox(key="ref_partner").set_value(partner).run()
    at.selectbox(key="decline_reason").set_value("at_capacity").run()
    at.button(key="ref_decline").click().run()
    assert at.button(key="ref_decline_confirm")
    at.button(key="ref_decline_cancel").click().run()
    assert not [b for b in at.button if b.key == "ref_decline_confirm"]
    assert row(db, "SELECT status FROM referrals WHERE referral_id = ?", [rid]) == ("active",)


def test_a_referral_link_opens_that_referral(db: Path) -> None:
    rid, tenant = row(
        db,
        "SELECT referral_id, tenant_id FROM referrals "
        "WHERE run_id = (SELECT max(run_id) FROM runs) "
        "ORDER BY referral_id LIMIT 1 OFFSET 3",
    )
    at = run_page({"run": str(last_run(db)), "referral": str(rid)})
    assert at.selectbox(key="ref_pick").value == rid
    assert any(tenant in m.value for m in at.markdown)


# --- over time: waiting referrals, partners' answers, held customers --------------------


def clock_after_last_referral(db: Path, monkeypatch: pytest.MonkeyPatch, days: int) -> datetime:
    """FRP_NOW ``days`` after the newest referral (to the minute): ages follow the data,
    never the real date."""
    (last,) = row(db, "SELECT max(created_at) FROM referrals")
    now = (last + timedelta(days=days)).replace(second=0, microsecond=0)
    monkeypatch.setenv("FRP_NOW", now.isoformat())
    return now


WAITING = "SELECT count(*) FROM referrals WHERE outcome = 'frp' AND status = 'active'"


def test_waiting_referrals_are_aged_at_the_clocks_time(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = clock_after_last_referral(db, monkeypatch, 3)
    at = run_page()
    assert any(f"Clock set to {now:%Y-%m-%d %H:%M} (FRP_NOW)" in c.value for c in at.caption)
    (waiting,) = row(db, WAITING)
    (past,) = row(db, WAITING + " AND created_at <= ?", [now - timedelta(days=7)])
    assert 0 < past < waiting
    assert metric(at, "Waiting for an answer") == f"{waiting:,}"
    assert metric(at, "Past the 7-day window") == f"{past:,}"
    assert "Referrals waiting for the partner's answer, by days waiting" in chart_titles(at)
    chart = next(c for c in at.get("vega_lite_chart") if "days waiting" in c.proto.spec)
    assert "7-day window" in str(chart.proto)  # the window's line is labelled


def test_waiting_more_than_and_expires_within_filter_the_table(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = clock_after_last_referral(db, monkeypatch, 3)
    at = run_page()
    # The demo's last week's silent referrals wait longer than 5 days; the backlog's 3.
    at.number_input(key="wait_over").set_value(5).run()
    (n,) = row(db, WAITING + " AND created_at < ?", [now - timedelta(days=5)])
    assert metric(at, "Matching waiting referrals") == f"{n:,}"
    table = next(d.value for d in at.dataframe if "age_days" in d.value.columns)
    assert len(table) == min(n, 1_000) > 0 and (table["age_days"] >= 5).all()
    at.number_input(key="wait_over").set_value(None)
    at.number_input(key="wait_expires").set_value(5).run()
    (n,) = row(db, WAITING + " AND created_at <= ?", [now + timedelta(days=5 - 7)])
    assert metric(at, "Matching waiting referrals") == f"{n:,}"
    table = next(d.value for d in at.dataframe if "accept_by" in d.value.columns)
    assert (table["accept_by"] <= now + timedelta(days=5)).all()


def test_without_frp_now_no_clock_caption(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRP_NOW", raising=False)
    at = run_page()
    assert not any("Clock set to" in c.value for c in at.caption)


def test_each_partners_answers_with_median_days_to_accept(db: Path) -> None:
    tenant, partner, created = row(
        db,
        "SELECT tenant_id, partner_id, created_at FROM referrals "
        "WHERE run_id = (SELECT max(run_id) FROM runs) AND outcome = 'frp' "
        # a partner that accepted nothing in the demo's history: its median is this one
        "AND partner_id NOT IN (SELECT partner_id FROM referrals "
        "WHERE status IN ('accepted', 'completed')) ORDER BY referral_id LIMIT 1",
    )
    con = connect(db)
    try:
        with clock.frozen(created + timedelta(days=3)):
            lifecycle.accept(con, tenant, actor="test")
    finally:
        con.close()
    at = run_page()
    table = next(d.value for d in at.dataframe if "median_days_to_accept" in d.value.columns)
    mine = table[table["partner_id"] == partner].iloc[0]
    made, accepted = row(
        db,
        "SELECT count(*), count(*) FILTER (WHERE status IN ('accepted', 'completed')) "
        "FROM referrals WHERE partner_id = ?",
        [partner],
    )
    assert (mine["made"], mine["accepted"]) == (made, accepted)
    assert mine["median_days_to_accept"] == pytest.approx(3.0)
    assert len(table) == row(db, "SELECT count(DISTINCT partner_id) FROM referrals")[0]


def hold(db: Path, n: int) -> list[str]:
    """Mark the first ``n`` customers of the FTCQ as held for capacity."""
    tenants = [
        t for (t,) in rows(db, "SELECT tenant_id FROM customers WHERE in_ftcq ORDER BY ftcq_seq")
    ][:n]
    con = connect(db)
    try:
        con.execute(
            "UPDATE customers SET held_since = queued_at WHERE list_contains(?, tenant_id)",
            [tenants],
        )
    finally:
        con.close()
    return tenants


def test_place_held_customers_shows_the_count_then_drains(demo_db: Path) -> None:
    held = hold(demo_db, 3)
    at = run_page()
    assert any("3 customers are held in the FTCQ" in c.value for c in at.caption)
    assert at.button(key="place_held").label == "Place 3 held customers"
    at.button(key="place_held").click().run()
    assert not at.exception
    last = last_run(demo_db)
    placed_msg = f"Held customers placed: run {last} committed"
    assert any(s.value.startswith(placed_msg) for s in at.success)
    assert at.button(key="place_held").label == "No customer is held"
    placed = rows(demo_db, "SELECT DISTINCT tenant_id FROM referrals WHERE run_id = ?", [last])
    assert sorted(t for (t,) in placed) == sorted(held)
    assert row(demo_db, "SELECT source, actor FROM runs WHERE run_id = ?", [last]) == (
        "drain: customers held for capacity",
        "dashboard",
    )


def test_a_viewer_cannot_place_held_customers_or_hand_off(demo_db: Path) -> None:
    hold(demo_db, 2)
    at = open_page("pages/referrals.py", VIEWER)
    before = rows(demo_db, "SELECT referral_id, status FROM referrals ORDER BY 1")
    at.button(key="place_held").click().run()
    assert any("Only managers can place held customers" in e.value for e in at.error)
    at.button(key="css_handoff").click().run()
    assert any("Only managers can hand off CSS referrals" in e.value for e in at.error)
    assert rows(demo_db, "SELECT referral_id, status FROM referrals ORDER BY 1") == before


# --- the CSS hand-off ---------------------------------------------------------------------


def test_css_queues_and_the_hand_off_of_one(db: Path) -> None:
    """The demo's history handed off the CSS referrals of its earlier weeks: counted apart."""
    (before,) = row(
        db, "SELECT count(*) FROM referrals WHERE queue = 'CSS APAC' AND status = 'handed_off'"
    )
    at = run_page()
    queues = next(d.value for d in at.dataframe if "handed_off" in d.value.columns)
    open_by_queue = dict(
        rows(
            db,
            "SELECT queue, count(*) FILTER (WHERE status = 'queued') FROM referrals "
            "WHERE outcome = 'css' GROUP BY queue",
        )
    )
    assert dict(zip(queues["queue"], queues["open"], strict=True)) == open_by_queue
    at.selectbox(key="css_queue").set_value("CSS APAC").run()
    n = open_by_queue["CSS APAC"]
    listed = next(d.value for d in at.dataframe if "contact_email" in d.value.columns)
    assert len(listed) == min(n, 1_000) and set(listed["queue"]) == {"CSS APAC"}
    assert f"Download {n:,} as CSV" in [b.proto.label for b in at.get("download_button")]
    assert at.button(key="css_handoff").label == f"Hand off {n:,} to delivery"
    at.button(key="css_handoff").click().run()
    assert not at.exception
    assert any(f"{n:,} CSS referrals of CSS APAC handed off" in s.value for s in at.success)
    assert row(
        db,
        "SELECT count(*) FILTER (WHERE status = 'handed_off'), count(*) FROM referrals "
        "WHERE queue = 'CSS APAC' AND outcome = 'css' "
        "AND status IN ('active', 'queued', 'handed_off')",
    ) == (before + n, before + n)
    by_page = "SELECT count(*) FROM audit_log WHERE action = 'css_handoff' AND actor = ?"
    assert row(db, by_page, ["dashboard"]) == (n,)
    assert any("Every CSS referral of CSS APAC has been handed off" in c.value for c in at.caption)


def test_css_download_is_the_export_and_is_audited(db: Path, wired: list[tuple[str, str]]) -> None:
    at = run_page()
    queue = at.selectbox(key="css_queue").value
    (n, last) = row(
        db,
        "SELECT count(*), max(referral_id) FROM referrals WHERE outcome = 'css' "
        "AND status = 'queued' AND queue = ?",
        [queue],
    )
    subject, details = wired[-2]
    assert subject == handoff_ui.file_name(queue) == "css-handoff-css-apac.csv"
    assert wired[-1] == (handoff_ui.file_name(queue, ".xlsx"), details)  # its Excel twin
    assert json.loads(details) == {"queue": queue, "referrals": n, "up_to": last}
    text = handoff_ui._csv(queue, last, True).decode()
    assert text.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert len(text.splitlines()) == n + 1
    # A viewer's file: the same rows, no customer's name or address in it.
    names = rows(db, "SELECT name, contact_email FROM customers WHERE length(name) >= 8")
    viewers = handoff_ui._csv(queue, last, False).decode()
    assert len(viewers.splitlines()) == n + 1 and viewers.count("***") >= 2 * n
    assert not [v for pair in names for v in pair if v in viewers]
