"""Every page of the dashboard in a real browser: it loads, with no exception box."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

PAGES = [
    ("", "Partner capacity"),
    ("simulate", "Simulate cohort"),
    ("fairness", "Fairness"),
    ("referrals", "Referrals"),
    ("data", "Data"),
]


def wait_idle(page: Page, timeout: float = 30_000) -> None:
    """Wait until Streamlit has finished the current run (no running indicator)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')""",
        timeout=timeout,
    )


@pytest.mark.parametrize(("path", "title"), PAGES)
def test_page_loads_without_exception(page: Page, app_server: str, path: str, title: str) -> None:
    started = time.perf_counter()
    page.goto(f"{app_server}/{path}")
    expect(page.get_by_role("heading", name=title).first).to_be_visible(timeout=60_000)
    wait_idle(page)
    elapsed = time.perf_counter() - started
    assert page.locator('[data-testid="stException"]').count() == 0
    print(f"page {title!r} shown in {elapsed:.2f} s")
