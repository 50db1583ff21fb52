"""The dashboard in a real browser (Debian's Chromium): pages load, the three jobs work.

Each test prints how long its page took to show; `make screenshots` saves each page under
docs/screenshots/ (set FRP_SCREENSHOTS=DIR).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import Locator, Page, expect

PAGES = [
    ("", "Partner capacity"),
    ("simulate", "Simulate cohort"),
    ("fairness", "Fairness"),
    ("referrals", "Referrals"),
    ("data", "Data"),
]
TIMEOUT = 60_000


def wait_idle(page: Page) -> None:
    """Until the script run has finished and every element has drawn (no skeletons)."""
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning'
                && !document.querySelector('[data-testid="stSkeleton"]')
                && !document.querySelector('[data-testid="stStatusWidget"]');
        }""",
        timeout=TIMEOUT,
    )


def no_exception(page: Page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


def open_page(page: Page, url: str, title: str) -> float:
    started = time.perf_counter()
    page.goto(url)
    expect(page.get_by_role("heading", name=title, exact=True).first).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)
    return time.perf_counter() - started


def save_screenshot(page: Page, name: str, part: Locator | None = None) -> None:
    """Only when FRP_SCREENSHOTS names a folder (`make screenshots`); ``part``: just that
    element."""
    shots = os.environ.get("FRP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        (part or page).screenshot(path=str(Path(shots) / f"{name}.png"))


def run_simulation(page: Page) -> None:
    """Press "Run simulation" until results show: a click that lands while the page's
    first run is still finishing can be dropped by Streamlit, so it is retried (3 tries)."""
    button = page.get_by_role("button", name="Run simulation")
    for _ in range(3):
        button.click()
        try:
            expect(page.get_by_text("One policy in detail").first).to_be_visible(timeout=20_000)
            break
        except AssertionError:
            continue
    expect(page.get_by_text("One policy in detail").first).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)


@pytest.mark.parametrize(("path", "title"), PAGES)
def test_page_loads_without_exception(page: Page, app_server: str, path: str, title: str) -> None:
    elapsed = open_page(page, f"{app_server}/{path}", title)
    no_exception(page)
    # Routed through app.py: the sidebar lists page titles, not file names.
    expect(page.get_by_test_id("stSidebarNav")).to_contain_text("Simulate cohort")
    # The glossary is one click away on every page.
    expect(page.get_by_test_id("stSidebar").get_by_text("Glossary")).to_be_visible()
    print(f"\npage {title!r} shown in {elapsed:.2f} s")
    save_screenshot(page, path or "capacity")


def test_the_map_draws_and_a_click_on_a_country_filters_the_page(
    page: Page, app_server: str, demo_db_master: Path
) -> None:
    open_page(page, app_server, "Partner capacity")
    shape = '[aria-roledescription="geoshape"]'
    world = page.get_by_test_id("stVegaLiteChart").filter(has=page.locator(shape))
    expect(world.locator("canvas, svg").first).to_be_visible(timeout=TIMEOUT)
    # Vega labels each drawn country with its tooltip: every country of ours has a shape.
    countries = world.locator(f'{shape}[aria-label*="Country: "]')
    expect(countries.first).to_be_visible(timeout=TIMEOUT)
    assert countries.count() >= 40
    expect(world.locator(f'{shape}[aria-label*="Country: IS Iceland"]')).to_have_attribute(
        "aria-label", re.compile("Free seats: no partner")
    )
    save_screenshot(page, "capacity-map", world)
    partners = page.get_by_test_id("stMetric").first
    everyone = partners.inner_text()
    con = duckdb.connect(str(demo_db_master), read_only=True)
    try:
        (serving,) = con.execute(
            "SELECT count(*) FROM partners WHERE list_contains(countries, 'BR')"
        ).fetchone()
    finally:
        con.close()
    # A real click on Brazil's shape (the middle of its box lies inside it).
    world.locator(f'{shape}[aria-label*="Country: BR Brazil"]').click()
    expect(page.get_by_text("Showing Brazil (BR) only")).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)
    expect(partners).to_contain_text(str(serving))
    no_exception(page)
    page.get_by_role("button", name="Clear the country").click()
    expect(page.get_by_text("Showing Brazil (BR) only")).to_have_count(0, timeout=TIMEOUT)
    wait_idle(page)
    assert partners.inner_text() == everyone


def test_simulation_runs_and_its_chart_renders(page: Page, app_server: str) -> None:
    open_page(page, f"{app_server}/simulate", "Simulate cohort")
    run_simulation(page)
    no_exception(page)
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    expect(charts.first).to_be_visible(timeout=TIMEOUT)
    # Vega draws into a canvas or an svg once the spec has rendered.
    expect(charts.first.locator("canvas, svg").first).to_be_visible(timeout=TIMEOUT)
    # One aligned table compares the policies (#17 item 8): no cards, whose wrapping titles
    # put their numbers out of line.
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=TIMEOUT)
    assert page.get_by_test_id("stMetric").count() == 0
    # The backlog's customers a page of 500 at a time (the downloads hold them all).
    expect(page.get_by_text("Customers 1–500 of", exact=False)).to_be_visible(timeout=TIMEOUT)
    save_screenshot(page, "simulate-results")


def test_commit_creates_referrals_visible_on_referrals_page(page: Page, app_server: str) -> None:
    open_page(page, f"{app_server}/simulate", "Simulate cohort")
    run_simulation(page)
    confirm = page.get_by_text("I confirm", exact=False)
    expect(confirm).to_be_visible(timeout=TIMEOUT)
    confirm.click()
    page.get_by_role("button", name="Commit", exact=True).click()
    link = page.get_by_role("link", name="See the referrals of run")
    expect(link).to_be_visible(timeout=TIMEOUT)
    run = link.inner_text().rsplit(" ", 1)[-1]
    link.click()
    expect(page.get_by_role("heading", name="Referrals", exact=True)).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)
    no_exception(page)
    assert f"run={run}" in page.url
    run_filter = page.get_by_test_id("stSelectbox").first
    expect(run_filter.locator("input")).to_have_value(re.compile(rf"^Run {run} ·"), timeout=TIMEOUT)
    expect(page.get_by_role("tab", name="FTOP 3186 tasks")).to_be_visible(timeout=TIMEOUT)
    # The run's referrals are listed: the table's first rows carry its run id.
    expect(page.get_by_text("Referrals matching")).to_be_visible(timeout=TIMEOUT)


def test_invalid_upload_shows_errors_and_writes_nothing(
    page: Page, app_server: str, tmp_path: Path
) -> None:
    bad = tmp_path / "partners.csv"
    bad.write_text(
        "partner_id,name,countries,languages,workloads,capacity,active_referrals,"
        "referral_ready,psm_name,psm_email,contact_email\n"
        "PX1,Bad Partner,SE,sv,teams,lots,0,true,Ann,ann@example.com,p@example.com\n",
        encoding="utf-8",
    )
    open_page(page, f"{app_server}/data", "Data")
    before = page.get_by_test_id("stMetric").first.inner_text()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(bad))
    expect(page.get_by_text("Nothing was written", exact=False)).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("column capacity", exact=False).first).to_be_visible()
    no_exception(page)
    assert page.get_by_role("button", name="Import", exact=False).count() == 0
    page.reload()
    wait_idle(page)
    assert page.get_by_test_id("stMetric").first.inner_text() == before
