"""The Referrals page's "Expire now" (ui/expiry.py), through Streamlit's AppTest on the demo
world with the clock set by ``FRP_NOW``: the counts due are shown first, a manager's click
expires, re-assigns and queues reminders, a viewer's changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.rules import load_rules
from store import clock
from store.db import connect
from store.lifecycle import due
from tests.app_helpers import MANAGER, VIEWER, open_page, value

pytestmark = pytest.mark.usefixtures("fresh_caches")

#: A week after the demo's last referral (2026-11-23 17:48): most of its active referrals
#: are past their window, and those of 23 to 25 November are due a reminder.
NOW = "2026-11-30T12:00:00"


@pytest.fixture
def db(demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(clock.ENV, NOW)
    return demo_db


def expected(db: Path):
    con = connect(db, read_only=True)
    try:
        return due(con, load_rules())
    finally:
        con.close()


def panel_text(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Acceptance window**"))


def test_the_counts_due_are_shown_before_the_button(db: Path) -> None:
    want = expected(db)
    assert want.expiring > 1_000 and want.reminders > 0
    at = open_page("pages/referrals.py")
    text = panel_text(at)
    assert f"{want.expiring:,} referrals past their window, {want.reminders:,} reminders due" in (
        text
    )
    assert "at 2026-11-30 12:00 UTC; accept within 7 days, remind after 5" in text
    assert not at.button(key="expire_now").disabled


def test_expire_now_expires_reassigns_and_reminds(db: Path) -> None:
    want = expected(db)
    at = open_page("pages/referrals.py", user=MANAGER)
    at.button(key="expire_now").click().run()
    assert not at.exception
    n = value(db, "SELECT count(*) FROM referrals WHERE status = 'expired'")
    assert n == want.expiring
    reminders = value(db, "SELECT count(*) FROM outbox WHERE message_id LIKE '%-reminder@%'")
    assert reminders == want.reminders
    assert value(db, "SELECT actor FROM audit_log WHERE action = 'expire'") == "boss@example.com"
    success = " ".join(s.value for s in at.success)
    assert f"{n:,} referrals expired (no response)" in success
    assert [t.value for t in at.toast] == [
        f"Expire now: {n:,} expired, {reminders:,} reminders queued"
    ]
    # Nothing is due any more at this "now": the counts say so and the button is off.
    assert "0 referrals past their window, 0 reminders due" in panel_text(at)
    assert at.button(key="expire_now").disabled


def test_a_viewer_cannot_expire(db: Path) -> None:
    at = open_page("pages/referrals.py", user=VIEWER)
    at.button(key="expire_now").click().run()
    assert not at.exception
    assert any("Only managers can expire referrals" in e.value for e in at.error)
    assert value(db, "SELECT count(*) FROM referrals WHERE status = 'expired'") == 0
