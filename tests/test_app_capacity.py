"""The Partner capacity page, driven through Streamlit's AppTest on the demo world."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from engine.coverage import split_cover
from engine.rules import load_rules
from engine.sizes import SIZE_BUCKETS
from store.capacity import coverage, fills_up, split_cover_inputs
from store.commits import simulate_stored
from store.db import connect
from store.state import partner_names
from tests.app_helpers import chart_titles, open_app, open_page, page_text, row, value

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


# --- pauses and quotas (docs/domain.md, "Partner availability and intake") ----------------

#: The day after the demo's last referral: its month (November 2026) has referrals.
DEMO_NEXT_DAY = "2026-11-24"


def partners_table(at: AppTest):
    """The partners table (after the paused list, when there is one)."""
    return next(d.value for d in at.dataframe if "quota_used" in d.value.columns)


@pytest.fixture
def intake_db(demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo with P0042 paused until 1 December and P0074 (a South Korean partner the
    demo referred customers to in November) given a quota of 40, on the clock's date
    24 November 2026."""
    monkeypatch.setenv("FRP_NOW", DEMO_NEXT_DAY)
    con = connect(demo_db)
    try:
        con.execute(
            "UPDATE partners SET referral_ready = true, paused_until = DATE '2026-12-01' "
            "WHERE partner_id = 'P0042'"
        )
        con.execute("UPDATE partners SET monthly_quota = 40 WHERE partner_id = 'P0074'")
    finally:
        con.close()
    return demo_db


def test_paused_partners_are_counted_and_their_seats_are_not_free(intake_db: Path) -> None:
    at = open_page(PAGE)
    shown = metrics(at)
    assert shown["Paused"] == "1"
    free = sql(
        intake_db,
        "SELECT sum(greatest(capacity - active_total, 0)) FROM partner_state "
        "WHERE referral_ready AND partner_id NOT IN ('P0042', 'P0074')",
    )
    made = sql(
        intake_db,
        "SELECT count(*) FROM referrals WHERE partner_id = 'P0074' AND outcome = 'frp' "
        "AND created_at >= TIMESTAMP '2026-11-01'",
    )
    p0074 = sql(
        intake_db,
        "SELECT greatest(least(capacity - active_total, 40 - ?), 0) FROM partner_state "
        "WHERE partner_id = 'P0074'",
        [made],
    )
    assert shown["Free seats"] == f"{free + p0074:,}"
    assert any("Paused: 1 Referral Ready partner(s) back later" in e.label for e in at.expander)

    table = partners_table(at)
    p42 = table[table["partner_id"] == "P0042"].iloc[0]
    assert str(p42["paused_until"])[:10] == "2026-12-01" and bool(p42["paused"])
    p74 = table[table["partner_id"] == "P0074"].iloc[0]
    assert p74["quota_used"] == f"{made} / 40" and made > 0


def test_the_paused_filter_shows_only_paused_partners(intake_db: Path) -> None:
    at = open_page(PAGE)
    at.selectbox(key="cap_ready").set_value("Paused (Referral Ready, back later)").run()
    assert not at.exception
    assert metrics(at)["Partners"] == "1"
    assert partners_table(at)["partner_id"].tolist() == ["P0042"]


def test_partner_detail_shows_the_pause_and_the_quota_used(intake_db: Path) -> None:
    at = open_page(PAGE)
    at.selectbox(key="cap_partner").set_value("P0042").run()
    text = "\n".join(m.value for m in at.markdown)
    assert "**Paused until:** 2026-12-01 (takes referrals again from that day)" in text
    assert "paused until 2026-12-01, so skipped by round robin" in text
    # Short, so the narrow metric is not cut to "no …" (#17); the words are in its help.
    quota = [m for m in at.metric if m.label == "Quota this month"]
    assert [m.value for m in quota] == ["none"]
    assert "no monthly quota" in quota[0].proto.help.lower()
    at.selectbox(key="cap_partner").set_value("P0074").run()
    quota = [m.value for m in at.metric if m.label == "Quota this month"]
    assert len(quota) == 1 and quota[0].endswith(" / 40")


def test_a_pause_ends_by_itself_on_its_date(intake_db: Path, monkeypatch) -> None:
    monkeypatch.setenv("FRP_NOW", "2026-12-01")
    at = open_page(PAGE)
    assert metrics(at)["Paused"] == "0"


# --- Customer size and split coverage (#13) --------------------------------------------------


def _dataset_rows(chart) -> list[dict]:
    """The rows a chart ships to the browser (Arrow IPC, one dataset per chart here)."""
    rows: list[dict] = []
    for d in chart.proto.datasets:
        rows += pl.read_ipc_stream(io.BytesIO(d.data.data)).to_dicts()
    return rows


def test_the_coverage_maps_count_the_backlog_of_one_size(demo_db: Path, at: AppTest) -> None:
    eligible = tuple(load_rules().eligible_workloads)
    con = connect(demo_db)
    try:
        every = coverage(con.cursor(), "country", eligible)
        sized = {s: coverage(con.cursor(), "country", eligible, s) for s in SIZE_BUCKETS}
        (m_seats,) = con.execute(
            "SELECT count(*) FROM customers WHERE in_ftcq AND seats >= 5000 AND seats < 10000 "
            "AND list_contains(workloads, 'teams') AND country = 'DE'"
        ).fetchone()
    finally:
        con.close()
    # Each backlog customer counts in exactly one bucket.
    assert sum(int(f["backlog"].sum()) for f in sized.values()) == int(every["backlog"].sum())
    de_teams = sized["M"].filter((pl.col("key") == "DE") & (pl.col("workload") == "teams"))
    assert de_teams["backlog"].to_list() == [m_seats]
    at.selectbox(key="cap_size").set_value("M")
    at.run()
    assert not at.exception
    assert at.selectbox(key="cap_size").value == "M"
    rows = _rows_of(at, "Free seats by country and workload")
    shown = {(r["key"], r["workload"]): r["backlog"] for r in rows}
    assert shown[("DE", "teams")] == m_seats
    assert sum(shown.values()) == int(sized["M"]["backlog"].sum())


def _rows_of(at: AppTest, title: str) -> list[dict]:
    for chart in at.get("vega_lite_chart"):
        got = json.loads(chart.proto.spec).get("title")
        if (got["text"] if isinstance(got, dict) else got) == title:
            return _dataset_rows(chart)
    raise AssertionError(f"no chart titled {title!r}")


def test_the_split_toggle_marks_gaps_two_partners_cover(demo_db: Path, at: AppTest) -> None:
    assert "Where a split of 2 covers a gap" not in chart_titles(at)
    at.toggle(key="cap_split").set_value(True)
    at.run()
    assert not at.exception
    assert "Where a split of 2 covers a gap" in chart_titles(at)
    rows = _rows_of(at, "Where a split of 2 covers a gap")
    con = connect(demo_db)
    try:
        partners, demand = split_cover_inputs(con.cursor())
    finally:
        con.close()
    rules = load_rules()
    cells = split_cover(partners, demand, rules.eligible_workloads, 2)
    expected = cells.filter(pl.col("cover") != "one partner")
    assert {(r["key"], r["workload_set"], r["cover"]) for r in rows} == set(
        expected.select("country", "workload_set", "cover").iter_rows()
    )
    helped = expected.filter(pl.col("cover") == "split of 2")
    assert helped.height > 0
    # Each marked cell: no partner of the country covers the set alone, two together do.
    country, wanted = helped.row(0)[0], helped.row(0)[1].split("+")
    serving = partners.filter(pl.col("countries").list.contains(country))
    covers = [set(w) for w in serving["workloads"].to_list()]
    assert not any(set(wanted) <= c for c in covers)
    assert any(set(wanted) <= a | b for a in covers for b in covers)
    said = [m.value for m in at.markdown if "no single partner covers" in m.value]
    assert said and f"{int(helped['customers'].sum()):,} backlog customer" in said[0]


# --- The world map (#16) and the table's words (#17) -----------------------------------------


def _map(at: AppTest):
    return next(c for c in at.get("vega_lite_chart") if "Free seats by country" in c.proto.spec)


def test_the_map_marks_countries_without_a_partner_and_all_full(demo_db: Path) -> None:
    # Israel's partners are made full; Iceland has customers and no partner (the demo).
    sql(
        demo_db,
        "UPDATE partners SET active_referrals = capacity "
        "WHERE list_contains(countries, 'IL') RETURNING 1",
    )
    at = open_page(PAGE)
    rows = {r["code"]: r for r in _dataset_rows(_map(at)) if "band" in r}
    assert rows["IS"]["band"] == "no partner" and rows["IS"]["partners"] == 0
    assert rows["IL"]["band"] == "all full" and rows["IL"]["partners"] > 0
    assert rows["IL"]["free_seats"] == 0
    assert rows["US"]["band"] == "500+ free"
    spec = json.loads(_map(at).proto.spec)
    assert spec["params"][0]["name"] == "country"  # a click picks a country
    assert "No free seat in IL Israel, IS Iceland." in page_text(at)


def test_the_map_follows_the_pages_workloads(demo_db: Path, at: AppTest) -> None:
    at.multiselect(key="cap_workloads").set_value(
        ["exchange", "intune", "sharepoint", "teams"]
    ).run()
    rows = {r["code"]: r["band"] for r in _dataset_rows(_map(at)) if "band" in r}
    assert rows["BE"] == rows["MY"] == "no partner"  # nobody covers all four there


def _infos(at: AppTest) -> str:
    return "\n".join(i.value for i in at.info)


def test_a_country_picked_on_the_map_filters_the_page_and_clears(
    demo_db: Path, at: AppTest
) -> None:
    # A click on the map and ?country=SE set the same filter; AppTest cannot click a
    # canvas, so the link stands in for the click here (the browser test clicks).
    expected = sql(demo_db, "SELECT count(*) FROM partners WHERE list_contains(countries, 'SE')")
    everyone = len(partners_table(at))
    at.query_params["country"] = "SE"
    at.run()
    assert not at.exception
    assert "Showing **Sweden (SE)** only" in _infos(at)
    table = partners_table(at)
    assert len(table) == expected < everyone
    assert all("SE" in list(c) for c in table["countries"])
    backlog = sql(demo_db, "SELECT count(*) FROM customers WHERE in_ftcq AND country = 'SE'")
    assert metrics(at)["Backlog waiting in FTCQ"] == str(backlog)
    at.button(key="cap_map_clear").click().run()
    assert "Showing **Sweden (SE)** only" not in _infos(at)
    assert len(partners_table(at)) > expected


def test_a_country_that_is_not_a_code_is_refused(at: AppTest) -> None:
    at.query_params["country"] = "Narnia"
    at.run()
    assert [w.value for w in at.warning] == ["Country 'Narnia' is not an ISO 3166-1 alpha-2 code."]


def _shown_percent(config: dict, value: float) -> str:
    """A fraction as Streamlit's "percent" format shows it: up to two decimals, or as many
    as the column's step leaves (tests/test_app_capacity.py, #17)."""
    step = config.get("type_config", {}).get("step")
    decimals = max(len(f"{step}".split(".")[1]) - 2, 0) if step else 2
    shown = f"{value * 100:.{decimals}f}"
    return (shown.rstrip("0").rstrip(".") if "." in shown else shown) + "%"


def test_the_tables_utilisation_is_rounded_for_people(at: AppTest) -> None:
    table = next(d for d in at.dataframe if "rr_position" in d.value.columns)
    config = json.loads(table.proto.columns)["utilisation"]
    assert config["type_config"]["format"] == "percent"
    shown = {_shown_percent(config, u) for u in table.value["utilisation"].dropna()}
    assert shown and all(re.fullmatch(r"\d+%", s) for s in shown), sorted(shown)[:5]
