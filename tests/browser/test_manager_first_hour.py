"""A manager's first hour (#17), in a real browser: results that went out of date are
marked and cannot be committed, and a decline is confirmed before anything changes."""

from __future__ import annotations

import re

import duckdb
from playwright.sync_api import Page, expect

from tests.browser.test_pages import TIMEOUT, no_exception, open_page, run_simulation, wait_idle


def test_results_go_out_of_date_and_the_cohort_choice_stays(page: Page, own_server) -> None:
    url, _ = own_server
    open_page(page, f"{url}/simulate", "Simulate cohort")
    run_simulation(page)
    page.get_by_text("I confirm", exact=False).click()
    commit = page.get_by_role("button", name="Commit", exact=True)
    expect(commit).to_be_enabled(timeout=TIMEOUT)
    page.get_by_text("Synthetic cohort", exact=True).first.click()  # another cohort
    wait_idle(page)
    expect(page.get_by_text("Out of date", exact=False).first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("the cohort changed", exact=False).first).to_be_visible()
    expect(commit).to_be_disabled(timeout=TIMEOUT)
    # Away to the Data page and back: the choice and the marking are still there.
    page.get_by_test_id("stSidebarNav").get_by_text("Data", exact=True).click()
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible(timeout=TIMEOUT)
    page.get_by_test_id("stSidebarNav").get_by_text("Simulate cohort", exact=True).click()
    expect(page.get_by_text("Out of date", exact=False).first).to_be_visible(timeout=TIMEOUT)
    synthetic = page.get_by_role("radio", name="Synthetic cohort")
    expect(synthetic).to_be_checked(timeout=TIMEOUT)
    no_exception(page)


def test_a_decline_is_confirmed_then_names_and_opens_the_new_referral(
    page: Page, own_server
) -> None:
    url, db = own_server
    con = duckdb.connect(str(db), read_only=True)
    try:
        rid, partner = con.execute(
            "SELECT referral_id, partner_id FROM referrals WHERE outcome = 'frp' "
            "AND status = 'active' ORDER BY referral_id DESC LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    open_page(page, f"{url}/referrals?referral={rid}", "Referrals")
    decline = page.get_by_role("button", name="Decline and re-assign…")
    expect(decline).to_be_disabled(timeout=TIMEOUT)  # no preset reason
    page.get_by_test_id("stSelectbox").filter(has_text="Decline reason").click()
    page.get_by_role("option", name="Customer unresponsive").click()
    expect(decline).to_be_enabled(timeout=TIMEOUT)
    decline.click()
    ask = page.get_by_text(f"Decline referral #{rid}", exact=False)
    expect(ask).to_be_visible(timeout=TIMEOUT)
    expect(ask).to_contain_text("Customer unresponsive")
    page.get_by_role("button", name="Yes, decline and re-assign").click()
    done = page.get_by_text(re.compile(rf"Referral #{rid} of .* declined by {partner}"))
    expect(done.first).to_be_visible(timeout=TIMEOUT)
    expect(done.first).to_contain_text("Re-assigned in run")
    page.get_by_role("button", name=re.compile(r"Open referral #\d+")).click()
    wait_idle(page)
    expect(page).to_have_url(re.compile(r"referral=\d+"), timeout=TIMEOUT)
    no_exception(page)
