"""One set of words on every page (#17): reasons and columns in words, counts with their
plural, the glossary in the sidebar; downloads keep the machine names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store.db import DELIVERABLE, OPEN_STATUSES
from tests.app_helpers import open_app, open_page, run_simulation
from ui.labels import COLUMNS, REASONS, columns, for_people, plural

pytestmark = pytest.mark.usefixtures("fresh_caches")


def test_the_glossary_is_in_the_sidebar(demo_db: Path) -> None:
    """app.py draws it before running the page, so every page has it (AppTest drops the
    sidebar after switch_page, so the browser test checks the other pages)."""
    at = open_app()
    (glossary,) = [e for e in at.sidebar.expander if e.label == "Glossary"]
    text = " ".join(m.value for m in glossary.markdown)
    for term in ("FTOP 3186", "Gateway", "frp import", "Jain's index", "Fair share", "CSS"):
        assert f"**{term}**" in text


def test_referrals_show_reasons_in_the_engines_words(committed_db: Path) -> None:
    at = open_page("pages/referrals.py")
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    shown = set(table["reason"])
    assert "Assigned to a partner" in shown
    assert not shown & {"assigned", "below_seat_threshold", "capacity_exhausted"}


def test_labels_round_numbers_and_keep_codes_out_of_sight() -> None:
    import polars as pl

    frame = pl.DataFrame(
        {"partner_id": ["P1"], "ideal_share": [4.5294], "reason": ["below_seat_threshold"]}
    )
    config = columns(frame)
    assert config["partner_id"]["label"] == "Partner ID"
    assert config["ideal_share"]["label"] == "Fair share"
    assert config["ideal_share"]["type_config"]["format"] == "%.1f"
    assert for_people(frame)["reason"].to_list() == ["Below the seat threshold"]
    assert REASONS["no_response"].startswith("No answer")
    assert {"pool_key", "active_before", "psm_name"} <= set(COLUMNS)
    assert (plural(1, "customer"), plural(2, "customer")) == ("1 customer", "2 customers")


def test_one_customer_is_one_customer(demo_db: Path) -> None:
    at = open_app("pages/simulate.py")
    at.radio(key="cohort_source").set_value("synthetic")
    at.run()
    run_simulation(at, ["round-robin"], syn_size=1)
    notes = " ".join(c.value for c in at.caption)
    assert "1 customer of the synthetic cohort" in notes
    assert "1 customers" not in notes


# --- Names beside ids, and ids that open their detail ----------------------------------


def test_the_why_picker_lists_customers_by_id_and_company_name(demo_db: Path) -> None:
    at = run_simulation(open_app("pages/simulate.py"), ["round-robin"])
    box = at.selectbox(key="why_tenant")
    sim = at.session_state["simulate_run"]
    names = dict(sim.prepared.cohort.select("tenant_id", "name").iter_rows())
    first = box.value
    assert box.options[0] == f"{first} · {names[first]}"  # searchable by the company name
    chose = " ".join(m.value for m in at.markdown if "Chose **" in m.value)
    if chose:  # the chosen partner is named beside its id
        assert " · " in chose.split("Chose **")[1].split("**")[0]


def test_a_partner_link_opens_its_detail_under_the_table(demo_db: Path) -> None:
    at = open_page("pages/capacity.py", query_params={"partner": "P0042"})
    assert at.selectbox(key="cap_partner").value == "P0042"
    heads = [h.value for h in at.subheader]
    assert heads.index("Partner detail") == heads.index("Capacity and active referrals") + 1
    assert any("P0042" in m.value for m in at.markdown)


def test_referral_ids_link_to_the_partner_and_the_customer(committed_db: Path) -> None:
    at = open_page("pages/referrals.py")
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    frp = table[table["outcome"] == "frp"].iloc[0]
    assert frp["partner_id"].startswith("capacity?partner=P")
    assert frp["tenant_id"].startswith("referrals?customer=T")
    tenant = frp["tenant_id"].split("=")[1]
    again = open_page("pages/referrals.py", query_params={"customer": tenant})
    assert again.text_input(key="ref_tenant").value == tenant
    shown = next(d.value for d in again.dataframe if "reason" in d.value.columns)
    assert set(shown["tenant_id"]) == {f"referrals?customer={tenant}"}


# --- Statuses in words, shown whole ------------------------------------------------------


def test_every_referral_status_is_shown_whole_in_words(committed_db: Path) -> None:
    """ "declined" was cut to "decline": the grid sized the column to the first rows'
    "active". The column is as wide as the longest status label (at 8 px a character, the
    grid's 14 px font and more, plus its padding), and every status is in words."""
    from engine.rules import load_rules
    from store import lifecycle
    from store.db import connect
    from ui.labels import STATUSES

    con = connect(committed_db)
    try:
        (tenant,) = con.execute(  # a referral the fixture's commit made, still open
            "SELECT tenant_id FROM referrals WHERE outcome = 'frp' AND status = 'active' "
            "AND run_id = (SELECT max(run_id) FROM runs) ORDER BY tenant_id LIMIT 1"
        ).fetchall()[0]
        lifecycle.decline(con, tenant, "at_capacity", load_rules())
    finally:
        con.close()
    at = open_page("pages/referrals.py")
    at.multiselect(key="ref_status").set_value(["declined"]).run()
    grid = next(d for d in at.dataframe if "reason" in d.value.columns)
    assert set(grid.value["status"]) == {"Declined"}
    width = json.loads(grid.proto.columns)["status"]["width"]
    assert width >= 8 * max(len(words) for words in STATUSES.values()) + 24
    for code in (*OPEN_STATUSES, *DELIVERABLE, "declined", "expired"):
        assert STATUSES[code][0].isupper(), code  # a label of its own for each status
