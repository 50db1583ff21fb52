"""A fresh server's very first request is a deep link: it must still go through app.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import start_server, stop_server
from tests.browser.test_pages import TIMEOUT, no_exception, wait_idle


@pytest.fixture
def fresh_server(demo_db_master, tmp_path) -> Iterator[str]:
    proc, url = start_server(demo_db_master, tmp_path)
    yield url
    stop_server(proc)


def test_first_request_to_a_page_url_is_routed(page: Page, fresh_server: str) -> None:
    page.goto(f"{fresh_server}/referrals?run=history")
    expect(page.get_by_role("heading", name="Referrals", exact=True)).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)
    no_exception(page)
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav).to_contain_text("Partner capacity")
    # The old-style folder listing would name the files (app, capacity, ...).
    assert nav.get_by_role("link", name="app", exact=True).count() == 0
    assert "run=history" in page.url
