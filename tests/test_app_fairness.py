"""The Fairness page, driven through Streamlit's AppTest on the demo world."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from engine.demo import DEMO_AS_OF
from engine.rules import load_rules
from engine.sizes import SIZE_BUCKETS
from store import clock
from store.commits import commit, simulate_stored
from store.db import connect, open_db
from store.fairness import committed_fairness
from tests.app_helpers import ROOT, chart_titles, open_app, open_page, row, rows

PAGE = "pages/fairness.py"


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture
def at(demo_db: Path) -> AppTest:
    return open_page(PAGE)


def test_committed_referrals_headline(demo_db: Path, at: AppTest) -> None:
    """Committed history counts referrals (each one a partner's turn) and says so; the
    customers behind them are counted apart, once each."""
    n, frp, customers = row(
        demo_db,
        "SELECT count(*), count(*) FILTER (WHERE outcome = 'frp'), count(DISTINCT tenant_id) "
        "FROM referrals",
    )
    assert customers < n  # re-assigned customers and split customers have several referrals
    shown = metrics(at)
    assert shown["Referrals"] == f"{n:,}"
    assert shown["Customers"] == f"{customers:,}"
    assert shown["To partners"] == f"{frp:,}"
    assert shown["CSS fallback"] == f"{(n - frp) / n:.1%}"
    helps = {m.label: m.help for m in at.metric}
    assert "re-assigned" in helps["Referrals"] and "part" in helps["Referrals"]
    assert "share of referrals" in helps["CSS fallback"].lower()
    assert 0 < float(shown["Jain's index of utilisation now"]) <= 1
    assert 0 <= float(shown["Gini of utilisation"]) < 1
    assert not at.radio  # no simulation in this session: nothing to choose


def test_turns_are_said_to_count_referrals(at: AppTest) -> None:
    """A pool's turns are its referrals to partners: a split customer's part is one, and
    so is a re-assignment after a decline (docs/domain.md, "Fairness")."""
    words = " ".join(c.value for c in at.caption) + " ".join(s.value for s in at.success)
    words += " ".join(w.value for w in at.warning)
    assert "one turn (one customer)" not in words
    assert "a part of a split customer" in words and "re-assign" in words
    titles = chart_titles(at)
    assert any(t and "referrals placed among" in t for t in titles), titles


def test_a_committed_split_counts_each_part_as_a_referral_and_a_turn(demo_db: Path) -> None:
    """A split customer's parts are referrals of their own, each a turn of its partner
    (docs/domain.md, "Split by workload"): the page counts them so, and the customer once."""
    rules = load_rules().replace(max_partners_per_customer=2)
    con = connect(demo_db)
    try:
        with clock.frozen(DEMO_AS_OF):
            commit(con, rules, "round-robin", actor="test")
        fair, _ = committed_fairness(con, None, None, rules)
    finally:
        con.close()
    n, customers, parts, turns = row(
        demo_db,
        "SELECT count(*), count(DISTINCT tenant_id), count(*) FILTER (WHERE part > 1), "
        "count(*) FILTER (WHERE outcome = 'frp' AND pool_key IS NOT NULL) FROM referrals",
    )
    assert parts > 0  # the backlog had customers no single partner could take
    assert fair.per_pool["placed"].sum() == turns  # every part is a turn in its pool
    shown = metrics(open_page(PAGE))
    assert (shown["Referrals"], shown["Customers"]) == (f"{n:,}", f"{customers:,}")


def test_every_section_has_its_chart_and_numbers(at: AppTest) -> None:
    titles = chart_titles(at)
    for expected in (
        "Partners furthest above and below their fair share (summed over their pools)",
        "Utilisation of Referral Ready partners today",
        "Monthly Jain's index and Gini of new referrals per seat of capacity",
        "CSS fallback rate by region",
        "CSS fallback rate by language",
        "CSS fallback rate by workload",
        "Why customers went to CSS",
    ):
        assert expected in titles
    # The turn ledger of the busiest pool, titled by its signature.
    assert any(t and "placed among" in t for t in titles)
    labels = [e.label for e in at.expander]
    assert "Numbers by region" in labels and "Numbers by reason" in labels


def test_date_range_narrows_the_referrals(demo_db: Path, at: AppTest) -> None:
    n, customers = row(
        demo_db,
        "SELECT count(*), count(DISTINCT tenant_id) FROM referrals "
        "WHERE created_at >= '2026-08-01' AND created_at < '2026-09-01'",
    )
    assert n > 0  # the demo's history runs from June to November 2026
    at.date_input(key="fair_dates").set_value((date(2026, 8, 1), date(2026, 8, 31))).run()
    assert not at.exception
    assert metrics(at)["Referrals"] == f"{n:,}"
    assert metrics(at)["Customers"] == f"{customers:,}"


def test_choosing_another_pool_redraws_its_ledger(at: AppTest) -> None:
    box = at.selectbox(key="fair_pool")
    assert len(box.options) > 10
    assert not any("[" in o for o in box.options)  # pools in words, no hash
    box.select_index(5).run()
    assert not at.exception
    ledger = next(d.value for d in at.dataframe if "given" in d.value.columns)
    assert len(ledger) > 0
    assert at.selectbox(key="fair_pool").index == 5


def test_latest_simulation_can_be_judged(demo_db: Path) -> None:
    con = connect(demo_db)
    try:
        sim, _ = simulate_stored(con, load_rules(), "least-loaded")
    finally:
        con.close()
    app = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    app.session_state["latest_simulations"] = {"least-loaded": sim}
    app.run()
    assert not app.exception
    radio = app.radio(key="fair_source")
    assert radio.options == ["Committed referrals", "Simulation: least-loaded"]
    radio.set_value("Simulation: least-loaded").run()
    assert not app.exception
    shown = metrics(app)
    assert shown["Customers"] == f"{sim.assignments.height:,}"
    assert shown["With partners"] == f"{sim.placed:,}"
    assert any("committed referrals" in i.value for i in app.info)  # no trend for a simulation
    # The simulation has its own pool picker, starting at its busiest pool.
    busiest = sim.pools.sort(["customers", "pool_key"], descending=[True, False])["pool_key"][0]
    assert app.selectbox(key="Simulation: least-loaded").value == busiest


def test_through_the_router(demo_db: Path) -> None:
    app = open_app(PAGE)
    assert app.title[0].value == "Fairness"


def test_empty_database_says_what_to_do(empty_db: Path) -> None:
    app = open_page(PAGE)
    assert any("No referrals yet" in i.value and "Simulate" in i.value for i in app.info)


# --- partners' answers and CSS after declines -------------------------------------------


def test_partner_answers_acceptance_rate_and_expiries(demo_db: Path) -> None:
    """The demo's partners answered through the life cycle (store/demo.py): the page shows
    what they did."""
    at = open_page(PAGE)
    expired, declined = row(
        demo_db,
        "SELECT count(*) FILTER (WHERE status = 'expired'), "
        "count(*) FILTER (WHERE status = 'declined') FROM referrals WHERE outcome = 'frp'",
    )
    assert expired > 0 and declined > 0
    accepted, answered = row(
        demo_db,
        "SELECT count(*) FILTER (WHERE status IN ('accepted', 'completed')), "
        "count(*) FILTER (WHERE status IN ('accepted', 'completed', 'declined', 'expired')) "
        "FROM referrals WHERE outcome = 'frp'",
    )
    shown = metrics(at)
    assert shown["Acceptance rate"] == f"{accepted / answered:.1%}"
    assert shown["Answered"] == f"{answered:,}"
    assert shown["Expired"] == f"{expired:,}"
    assert "Partners with the lowest acceptance rate" in chart_titles(at)
    table = next(d.value for d in at.dataframe if "acceptance_rate" in d.value.columns)
    assert table["expired"].sum() == expired and table["declined"].sum() == declined
    assert (
        table["made"].sum()
        == row(demo_db, "SELECT count(*) FROM referrals WHERE outcome = 'frp'")[0]
    )


def test_css_after_declines_and_expiries_is_shown_apart(demo_db: Path) -> None:
    at = open_page(PAGE)
    css, after = row(
        demo_db,
        "SELECT count(*), count(*) FILTER (WHERE reason = 'declined_by_partners') "
        "FROM referrals WHERE outcome = 'css'",
    )
    assert after > 0
    shown = metrics(at)
    assert shown["CSS after declines and expiries"] == f"{after:,}"
    assert shown["CSS at assignment"] == f"{css - after:,}"
    chart = next(
        c for c in at.get("vega_lite_chart") if "Why customers went to CSS" in c.proto.spec
    )
    assert "after partners declined or let the referral expire" in chart.proto.spec


def test_a_simulation_has_no_partner_answers(demo_db: Path) -> None:
    at = open_page(PAGE)
    assert "Acceptance rate" in metrics(at)
    with open_db(demo_db) as con:
        simulated = {"round-robin": simulate_stored(con, load_rules())[0]}
    at.session_state["latest_simulations"] = simulated
    at.run()
    at.radio(key="fair_source").set_value("Simulation: round-robin").run()
    assert not at.exception
    assert any("answers are shown for committed referrals" in i.value for i in at.info)
    assert "Acceptance rate" not in metrics(at)


def test_the_page_opens_with_a_verdict_on_the_pools(demo_db: Path, at: AppTest) -> None:
    first = (at.success or at.warning)[0].value
    assert "pools are within one turn of their fair share" in first
    if "off by more than one turn:" in first:  # the pools named in words, no hash
        named = first.split("off by more than one turn:")[1]
        assert " · " in named and "[" not in named and "turns)" in named
    assert "(+" not in " ".join(at.selectbox(key="fair_pool").options)


def test_each_jain_index_is_named_and_explained_apart(at: AppTest) -> None:
    helps = {m.label: m.help for m in at.metric}
    assert "Not the monthly index" in helps["Jain's index of utilisation now"]
    assert any("headline Jain's index" in c.value for c in at.caption)


# --- Customer size (#13) ---------------------------------------------------------------------


def test_committed_referrals_break_down_by_size(demo_db: Path, at: AppTest) -> None:
    assert "CSS fallback rate by customer size" in chart_titles(at)
    (table,) = [d.value for d in at.dataframe if "size_bucket" in d.value.columns]
    by_db = dict(
        rows(
            demo_db,
            "SELECT CASE WHEN c.seats >= 10000 THEN 'L' WHEN c.seats >= 5000 THEN 'M' "
            "WHEN c.seats >= 500 THEN 'S' ELSE 'XS' END, count(*) "
            "FROM referrals r JOIN customers c USING (tenant_id) GROUP BY 1",
        )
    )
    assert dict(zip(table["size_bucket"], table["customers"], strict=True)) == by_db
    assert list(table["size_bucket"]) == [b for b in SIZE_BUCKETS if b in by_db]  # in order
    (m_css,) = row(
        demo_db,
        "SELECT count(*) FROM referrals r JOIN customers c USING (tenant_id) "
        "WHERE c.seats >= 5000 AND c.seats < 10000 AND r.outcome = 'css'",
    )
    assert table[table["size_bucket"] == "M"]["css"].iloc[0] == m_css
    at.selectbox(key="fair_size").set_value("M")
    at.run()
    assert not at.exception
    assert "Why customers went to CSS (size M)" in chart_titles(at)


def test_a_split_simulation_breaks_down_by_size_once_per_customer(demo_db: Path) -> None:
    con = connect(demo_db)
    try:
        sim, _ = simulate_stored(con, load_rules().replace(max_partners_per_customer=2), "weighted")
    finally:
        con.close()
    assert sim.part_counts()["split_customers"] > 0
    app = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    app.session_state["latest_simulations"] = {"weighted · split 2": sim}
    app.run()
    app.radio(key="fair_source").set_value("Simulation: weighted · split 2").run()
    assert not app.exception
    (table,) = [d.value for d in app.dataframe if "size_bucket" in d.value.columns]
    assert table["customers"].sum() == sim.rows.height  # a split customer counts once
    assert table["placed"].sum() == sim.placed
    sizes = sim.detail.group_by("size").len()
    assert dict(zip(table["size_bucket"], table["customers"], strict=True)) == dict(
        sizes.iter_rows()
    )


# --- The CSS fallback map (#16) --------------------------------------------------------------


def _css_map_rows(at: AppTest) -> dict[str, dict]:
    chart = next(c for c in at.get("vega_lite_chart") if "CSS fallback by country" in c.proto.spec)
    shipped: list[dict] = []
    for d in chart.proto.datasets:
        shipped += pl.read_ipc_stream(io.BytesIO(d.data.data)).to_dicts()
    return {r["code"]: r for r in shipped}


def test_the_css_map_gives_each_countrys_share_sent_to_css(demo_db: Path, at: AppTest) -> None:
    shown = _css_map_rows(at)
    counted = dict(
        (country, (n, css))
        for country, n, css in rows(
            demo_db,
            "SELECT country, count(*), count(*) FILTER (WHERE outcome = 'css') "
            "FROM referrals GROUP BY country",
        )
    )
    assert set(shown) == set(counted)
    for code, (n, css) in counted.items():
        assert (shown[code]["customers"], shown[code]["css"]) == (n, css)
        assert shown[code]["css_rate"] == pytest.approx(css / n)
    assert shown["IS"]["css_rate"] == 1.0  # no partner serves Iceland


def test_a_simulation_has_its_css_map_once_per_customer(demo_db: Path) -> None:
    con = connect(demo_db)
    try:
        rules = load_rules().replace(max_partners_per_customer=2)
        sim, _ = simulate_stored(con, rules, "round-robin")
    finally:
        con.close()
    app = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    app.session_state["latest_simulations"] = {"round-robin": sim}
    app.run()
    app.radio(key="fair_source").set_value("Simulation: round-robin").run()
    assert not app.exception
    shown = _css_map_rows(app)
    assert sum(r["customers"] for r in shown.values()) == sim.rows.height
    assert sum(r["css"] for r in shown.values()) == sim.rows.height - sim.placed
