"""Split by workload on the Simulate page (#13), in a real browser: split settings chosen
next to the policies run side by side, and the comparison draws them."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.test_pages import TIMEOUT, no_exception, open_page, run_simulation


def test_the_split_comparison_draws(page: Page, own_server) -> None:
    url, _ = own_server  # its own backlog: another browser test commits the shared one
    open_page(page, f"{url}/simulate", "Simulate cohort")
    page.get_by_test_id("stMultiSelect").filter(has_text="Split by workload").click()
    page.get_by_role("option", name="split 2").click()
    page.keyboard.press("Escape")
    run_simulation(page)
    # One row per run in the comparison table, the policy in words with its split setting
    # (the grid draws on a canvas; its cells are in the page for assistive technology).
    for policy in ("Round robin", "Least loaded"):
        for split in ("split off", "split 2"):
            cell = page.locator("[role=gridcell]").filter(has_text=policy).filter(has_text=split)
            expect(cell.first).to_be_attached(timeout=TIMEOUT)
    # The split's own column (the grid keeps only the columns in view in the page).
    header = page.locator("[role=columnheader]").filter(has_text="Split customers")
    expect(header.first).to_be_attached(timeout=TIMEOUT)
    chart = page.get_by_test_id("stVegaLiteChart").filter(
        has_text="Customers sent to CSS queues, by reason"
    )
    expect(chart.first).to_be_visible(timeout=TIMEOUT)
    expect(chart.first.locator("canvas, svg").first).to_be_visible(timeout=TIMEOUT)
    no_exception(page)
