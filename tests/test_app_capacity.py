"""The Partner capacity page, driven through Streamlit's AppTest on the demo world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.rules import load_rules
from store.capacity import fills_up
from store.commits import simulate_stored
from store.db import connect
from store.state import partner_names
from tests.app_helpers import chart_titles, open_app, open_page, row, value

PAGE = "pages/capacity.py"
pytestmark = pytest.mark.usefixtures("fresh_caches")


def sql(path: Path, query: str, params: list | None = None):
    return value(path, query, params)


def metrics(at: AppTest) -> dict[str, str]:
    """Metric values by label; the first of a label wins (the headline, not the detail)."""
    shown: dict[str, str] = {}
    for m in at.metric:
        shown.setdefault(m.label, m.value)
    return shown


@pytest.fixture
def at(demo_db: Path) -> AppTest:
    return open_page(PAGE)


def test_headline_numbers_match_the_store(demo_db: Path, at: AppTest) -> None:
    shown = metrics(at)
    assert shown["Partners"] == f"{sql(demo_db, 'SELECT count(*) FROM partners'):,}"
    assert shown["Referral Ready"] == str(
        sql(demo_db, "SELECT count(*) FROM partners WHERE referral_ready")
    )
    free = sql(
        demo_db,
        "SELECT sum(greatest(capacity - active_total, 0)) FROM partner_state WHERE referral_ready",
    )
    assert shown["Free seats"] == f"{free:,}"
    backlog = sql(demo_db, "SELECT count(*) FROM customers WHERE in_ftcq")
    assert shown["Backlog waiting in FTCQ"] == f"{backlog:,}"


def test_charts_are_drawn_with_titles(at: AppTest) -> None:
    titles = chart_titles(at)
    assert "How full are the partners?" in titles
    assert "Top 15 Referral Ready partners by free seats" in titles
    assert "Free seats by country and workload" in titles
    assert "Free seats by language and workload" in titles
    # Aggregated before charting: no chart ships more than a heatmap's cells.
    for chart in at.get("vega_lite_chart"):
        assert chart.proto.datasets or json.loads(chart.proto.spec).get("data")


def test_country_filter_narrows_the_partners(demo_db: Path, at: AppTest) -> None:
    expected = sql(demo_db, "SELECT count(*) FROM partners WHERE list_contains(countries, 'JP')")
    at.multiselect(key="cap_countries").set_value(["JP"]).run()
    assert not at.exception
    assert metrics(at)["Partners"] == str(expected)
    table = at.dataframe[0].value
    assert len(table) == expected
    assert all("JP" in list(c) for c in table["countries"])


def test_ready_and_free_seat_filters(demo_db: Path, at: AppTest) -> None:
    at.selectbox(key="cap_ready").set_value("Not Referral Ready").run()
    not_ready = sql(demo_db, "SELECT count(*) FROM partners WHERE NOT referral_ready")
    assert metrics(at)["Partners"] == str(not_ready)
    assert metrics(at)["Referral Ready"] == "0"
    assert metrics(at)["Free seats"] == "0"  # partners that are off take no referrals
    at.selectbox(key="cap_ready").set_value("All partners")
    at.number_input(key="cap_min_free").set_value(50).run()
    roomy = sql(demo_db, "SELECT count(*) FROM partner_state WHERE capacity - active_total >= 50")
    assert metrics(at)["Partners"] == str(roomy)


def test_a_filter_with_no_partner_says_so(at: AppTest) -> None:
    at.text_input(key="cap_search").set_value("no such partner anywhere").run()
    assert not at.exception
    assert metrics(at)["Partners"] == "0"
    assert any("No partner matches these filters" in i.value for i in at.info)


def test_headroom_lists_partners_the_backlog_fills(demo_db: Path, at: AppTest) -> None:
    con = connect(demo_db)
    try:
        sim, _ = simulate_stored(con, load_rules(), "round-robin")
        full = fills_up(sim.partners, partner_names(con))
    finally:
        con.close()
    shown = metrics(at)
    assert shown["Partners that fill up"] == str(full.height)
    assert shown["To CSS: matching partners full"] == str(sim.counts()["capacity_exhausted"])
    table = next(d.value for d in at.dataframe if "utilisation_after" in d.value.columns)
    assert sorted(table["partner_id"]) == sorted(full["partner_id"].to_list())


def test_partner_detail_shows_the_selected_partners_psm(demo_db: Path, at: AppTest) -> None:
    psm, email, name = row(
        demo_db, "SELECT psm_name, psm_email, name FROM partners WHERE partner_id = 'P0042'"
    )
    at.selectbox(key="cap_partner").set_value("P0042").run()
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert f"{name} (P0042)" in text
    assert f"**PSM:** {psm} ({email})" in text
    assert "**Round-robin turn:**" in text


def test_through_the_router_capacity_is_the_default_page(demo_db: Path) -> None:
    app = open_app()
    assert app.title[0].value == "Partner capacity"


def test_empty_database_says_what_to_do(empty_db: Path) -> None:
    app = open_page(PAGE)
    assert any("No partners yet" in i.value and "frp demo" in i.value for i in app.info)
