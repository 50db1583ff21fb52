"""The Referrals page's "Expire now" (ui/expiry.py), through Streamlit's AppTest on the demo
world with the clock set by ``FRP_NOW``: the counts due are shown first, a manager's click
expires, re-assigns and queues reminders, a viewer's changes nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.demo import DEMO_AS_OF
from engine.rules import load_rules
from store import clock
from store.commits import commit
from store.db import connect
from store.lifecycle import due
from tests.app_helpers import MANAGER, VIEWER, open_page, value

pytestmark = pytest.mark.usefixtures("fresh_caches")

#: Six days after the test commits the demo's backlog at the demo's "now": the demo's own
#: referrals still waiting (made the Monday before) are past their 7-day window, and the
#: backlog's referrals are past the 5 days after which a reminder is due.
NOW = DEMO_AS_OF + timedelta(days=6)

EXPIRED = "SELECT count(*) FROM referrals WHERE status = 'expired'"
REMINDERS = "SELECT count(*) FROM outbox WHERE message_id LIKE '%-reminder@%'"


@pytest.fixture
def db(demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo with its backlog committed at the demo's "now" (``frp commit``), read at
    :data:`NOW`."""
    con = connect(demo_db)
    try:
        with clock.frozen(DEMO_AS_OF):
            commit(con, load_rules(), "round-robin", actor="test")
    finally:
        con.close()
    monkeypatch.setenv(clock.ENV, NOW.isoformat())
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
    # What the demo left waiting expires; what the backlog's commit made is due a reminder
    # (to the partner and to its PSM).
    waiting_before = value(
        db,
        "SELECT count(*) FROM referrals WHERE outcome = 'frp' AND status = 'active' "
        "AND created_at < ?",
        [DEMO_AS_OF],
    )
    made = value(
        db,
        "SELECT count(*) FROM referrals WHERE outcome = 'frp' AND status = 'active' "
        "AND created_at = ?",
        [DEMO_AS_OF],
    )
    assert want.expiring == waiting_before > 0
    assert want.reminders == 2 * made > 0
    at = open_page("pages/referrals.py")
    text = panel_text(at)
    assert f"{want.expiring:,} referrals past their window, {want.reminders:,} reminders due" in (
        text
    )
    assert f"at {NOW:%Y-%m-%d %H:%M} UTC; accept within 7 days, remind after 5" in text
    assert not at.button(key="expire_now").disabled


def test_expire_now_expires_reassigns_and_reminds(db: Path) -> None:
    want = expected(db)
    assert want.expiring > 0 and want.reminders > 0
    expired_before, reminders_before = value(db, EXPIRED), value(db, REMINDERS)
    last_audit = value(db, "SELECT max(id) FROM audit_log")
    at = open_page("pages/referrals.py", user=MANAGER)
    at.button(key="expire_now").click().run()
    assert not at.exception
    n = value(db, EXPIRED) - expired_before
    assert n == want.expiring
    reminders = value(db, REMINDERS) - reminders_before
    assert reminders == want.reminders
    expiries = value(
        db, "SELECT list(actor) FROM audit_log WHERE action = 'expire' AND id > ?", [last_audit]
    )
    assert expiries == ["boss@example.com"]
    success = " ".join(s.value for s in at.success)
    assert f"{n:,} referrals expired (no response)" in success
    assert [t.value for t in at.toast] == [
        f"Expire now: {n:,} expired, {reminders:,} reminders queued"
    ]
    # Nothing is due any more at this "now": the counts say so and the button is off.
    assert "0 referrals past their window, 0 reminders due" in panel_text(at)
    assert at.button(key="expire_now").disabled


def test_a_viewer_cannot_expire(db: Path) -> None:
    assert expected(db).expiring > 0
    expired_before = value(db, EXPIRED)
    at = open_page("pages/referrals.py", user=VIEWER)
    at.button(key="expire_now").click().run()
    assert not at.exception
    assert any("Only managers can expire referrals" in e.value for e in at.error)
    assert value(db, EXPIRED) == expired_before
    assert expected(db).expiring > 0
