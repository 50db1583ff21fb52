""" "Expire now" on the Referrals page, in a real browser, on a demo copy whose clock
(``FRP_NOW``) stands a week after its last referral, so that some referrals are due."""

from __future__ import annotations

import re

import duckdb
import pytest
from playwright.sync_api import Page, expect

from store import clock
from tests.browser.test_pages import TIMEOUT, no_exception, open_page, wait_idle

NOW = "2026-11-30T12:00:00"


@pytest.fixture
def server_env() -> dict[str, str]:
    """The clock a week after the demo's last referral (the shared server runs on the real
    clock)."""
    return {clock.ENV: NOW}


def test_expire_now_expires_and_says_what_it_did(page: Page, own_server) -> None:
    url, db = own_server
    open_page(page, f"{url}/referrals", "Referrals")
    no_exception(page)
    due = page.get_by_text(re.compile(r"[\d,]+ referrals past their window, [\d,]+ reminders due"))
    expect(due.first).to_be_visible(timeout=TIMEOUT)
    expiring = int(
        re.search(r"([\d,]+) referrals past", due.first.inner_text())[1].replace(",", "")
    )
    assert expiring > 0
    page.get_by_role("button", name="Expire now").click()
    expect(page.get_by_text(f"{expiring:,} referrals expired (no response)").first).to_be_visible(
        timeout=TIMEOUT
    )
    wait_idle(page)
    no_exception(page)
    expect(page.get_by_text("0 referrals past their window, 0 reminders due").first).to_be_visible(
        timeout=TIMEOUT
    )
    expect(page.get_by_role("button", name="Expire now")).to_be_disabled()
    con = duckdb.connect(str(db), read_only=True)
    try:
        # Expired now, at the clock's time (the demo's history has expiries of its own).
        (n,) = con.execute(
            "SELECT count(*) FROM referrals WHERE status = 'expired' AND updated_at = ?",
            [clock.parse(NOW)],
        ).fetchall()[0]
    finally:
        con.close()
    assert n == expiring
