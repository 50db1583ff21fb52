""" "Expire now" on the Referrals page, in a real browser, on a demo copy whose clock
(``FRP_NOW``) stands a week after its last referral, so that some referrals are due."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import Page, expect

from store import clock
from tests.browser.conftest import start_server, stop_server
from tests.browser.test_pages import TIMEOUT, no_exception, open_page, wait_idle

NOW = "2026-11-30T12:00:00"


@pytest.fixture
def clock_server(
    demo_db_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """A dashboard of its own (the shared one runs on the real clock), and its database."""
    monkeypatch.setenv(clock.ENV, NOW)  # the server inherits the environment
    proc, url = start_server(demo_db_master, tmp_path)
    yield url, tmp_path / "frp.duckdb"
    stop_server(proc)


def test_expire_now_expires_and_says_what_it_did(page: Page, clock_server) -> None:
    url, db = clock_server
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
        (n,) = con.execute("SELECT count(*) FROM referrals WHERE status = 'expired'").fetchall()[0]
    finally:
        con.close()
    assert n == expiring
