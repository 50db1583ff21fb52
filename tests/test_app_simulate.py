"""The Simulate cohort page, driven through the app's router with Streamlit's AppTest."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

import store.commits
from engine.assign import simulate
from engine.cohorts import synthetic_cohort
from engine.columns import LIST_SEPARATOR
from engine.explain import explain
from engine.fairness import report_for
from engine.reasons import CSS_REASONS, Policy, Reason
from engine.rules import load_rules, to_toml
from store.commits import prepare, simulate_stored
from store.db import connect
from tests.app_helpers import chart_titles, open_app, run_simulation, value
from ui.db import RULES_KEY
from ui.simulation import (
    COMPILED_FROM_SERVER,
    LATEST_KEY,
    RUN_KEY,
    SPLITS,
    freshness,
    policy_words,
    result_bytes,
    run_policies,
)
from ui.simulation.comparison import best_marks, css_by_reason
from ui.simulation.results import PAGE_ROWS
from ui.uploads import read_upload, template_csv

pytestmark = pytest.mark.usefixtures("fresh_caches")


def open_page(page: str = "pages/simulate.py") -> AppTest:
    return open_app(page)


def comparison_table(at: AppTest):
    tables = [d.value for d in at.dataframe if "jain" in d.value.columns]
    assert len(tables) == 1
    return tables[0]


def referral_count(db: Path) -> int:
    return value(db, "SELECT count(*) FROM referrals")


def direct(db: Path, policy: str, **overrides: object):
    con = connect(db)
    try:
        rules = load_rules().replace(**overrides) if overrides else load_rules()
        return simulate_stored(con.cursor(), rules, policy)[0]
    finally:
        con.close()


def test_the_backlog_under_two_policies_matches_the_store_and_writes_nothing(
    demo_db: Path,
) -> None:
    before = referral_count(demo_db)
    at = run_simulation(open_page(), ["round-robin", "least-loaded"])
    table = comparison_table(at)
    assert len(table) == 2
    sims = at.session_state[LATEST_KEY]
    assert list(sims) == ["round-robin", "least-loaded"]
    for i, policy in enumerate(["round-robin", "least-loaded"]):
        expected = direct(demo_db, policy)
        rep = report_for(expected)
        row = table.iloc[i]
        assert row["placed"] == expected.placed
        assert row["css"] == expected.assignments.height - expected.placed
        counts = expected.counts()
        for reason in CSS_REASONS:  # the reasons a new cohort can give
            assert row[reason.value] == counts[reason.value]
        assert row["jain"] == pytest.approx(rep.jain)
        assert row["at_capacity"] == rep.at_capacity
        assert row["mean_utilisation"] == pytest.approx(rep.mean_utilisation)
        assert row["policy"] == Policy(policy).words
        assert sims[policy].assignments.equals(expected.assignments)
    assert referral_count(demo_db) == before


def test_a_synthetic_cohort_of_200_runs_and_cannot_be_committed(demo_db: Path) -> None:
    at = open_page()
    at.radio(key="cohort_source").set_value("synthetic")
    at.run()
    run_simulation(at, ["round-robin", "optimal"], syn_size=200, syn_seed=3)
    sims = at.session_state[LATEST_KEY]
    assert {p: s.assignments.height for p, s in sims.items()} == {
        "round-robin": 200,
        "optimal": 200,
    }
    assert all(t.startswith("SYN3-") for t in sims["round-robin"].assignments["tenant_id"])
    assert comparison_table(at)["customers"].tolist() == [200, 200]
    assert any("what-if only" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Commit"]


def test_a_minimum_seats_override_changes_the_below_threshold_count(demo_db: Path) -> None:
    at = run_simulation(open_page(), ["round-robin"])
    default = comparison_table(at)["below_seat_threshold"].iloc[0]
    run_simulation(at, ["round-robin"], ov_min_seats=1000)
    raised = comparison_table(at)["below_seat_threshold"].iloc[0]
    assert raised > default
    assert raised == direct(demo_db, "round-robin", min_seats=1000).counts()["below_seat_threshold"]
    assert "minimum seats 1,000" in " ".join(c.value for c in at.caption)


def test_switching_partners_off_reaches_the_engine(demo_db: Path) -> None:
    at = open_page()
    at.multiselect(key="ov_off").set_value(["P0001", "P0002"])
    run_simulation(at, ["round-robin"])
    sim = at.session_state[LATEST_KEY]["round-robin"]
    assert sim.rules.disabled_partners == frozenset({"P0001", "P0002"})
    assert "P0001" not in set(sim.assignments["partner_id"].drop_nulls())


def test_commit_with_confirmation_then_the_results_are_out_of_date(demo_db: Path) -> None:
    before = referral_count(demo_db)
    run = value(demo_db, "SELECT coalesce(max(run_id), 0) + 1 FROM runs")  # after the demo's
    at = run_simulation(open_page(), ["round-robin", "optimal"])
    cohort = at.session_state[LATEST_KEY]["optimal"].assignments.height
    commit_button = at.button(key="commit_button")
    assert commit_button.disabled  # nothing is written without the confirmation
    at.selectbox(key="commit_policy").set_value("optimal")
    at.checkbox(key="commit_confirm").check()
    at.run()
    at.button(key="commit_button").click()
    at.run()
    assert not at.exception
    assert referral_count(demo_db) == before + cohort
    assert [t.value for t in at.toast] == [
        f"Run {run} committed: {at.session_state[LATEST_KEY]['optimal'].placed:,} "
        "referrals to partners"
    ]
    assert at.success[0].value.startswith(f"Run {run} committed (optimal)")

    # The backlog the results were computed from is gone: they are out of date, and the
    # same results cannot be committed twice.
    at.run()
    assert at.success[0].value.startswith(f"Run {run} committed (optimal)")
    assert at.button(key="commit_button").disabled
    assert "Out of date" in at.warning[0].value
    assert freshness.PARTS["store"] in at.warning[0].value  # the backlog is the store's
    assert referral_count(demo_db) == before + cohort


def test_the_why_panel_splits_a_trace_into_steps(demo_db: Path) -> None:
    at = run_simulation(open_page(), ["round-robin"])
    at.selectbox(key="detail_reason").set_value("capacity_exhausted")
    at.run()
    tenant = at.selectbox(key="why_tenant").value
    sim = at.session_state[LATEST_KEY]["round-robin"]
    row = sim.assignments.filter(pl.col("tenant_id") == tenant).row(0, named=True)
    assert row["reason"] == "capacity_exhausted"
    steps = [m.value for m in at.markdown if m.value.startswith("**")]
    titles = [s.split("**")[1] for s in steps if s[2].isdigit()]
    assert titles == ["1. Eligibility", "2. Matching partners", "3. Capacity", "4. Outcome"]
    assert any(row["queue"] in s for s in steps)
    assert any(row["trace"] == t.value for t in at.text)


def test_email_previews_and_downloads(demo_db: Path) -> None:
    at = run_simulation(open_page(), ["round-robin"])
    previews = [e.label for e in at.expander if e.label.startswith("Referral ")]
    assert len(previews) == 3
    # Three recipients each (customer, partner, PSM), in the customer's language.
    bodies = [t.value for t in at.text if "FastTrack" in t.value and "\n\n" in t.value]
    assert len(bodies) == 9
    assert [b.proto.label for b in at.get("download_button")] == [
        "Download CSV",
        "Download Parquet",
        "Download Excel",
    ]

    sim = at.session_state[LATEST_KEY]["round-robin"]
    expected = sim.output()
    back = pl.read_parquet(io.BytesIO(result_bytes(expected, ".parquet")))
    assert back.equals(expected)
    csv = pl.read_csv(io.BytesIO(result_bytes(expected, ".csv")), infer_schema=False)
    assert csv["tenant_id"].to_list() == expected["tenant_id"].to_list()


def test_an_uploaded_cohort_is_validated_then_simulated(demo_db: Path, tmp_path: Path) -> None:
    at = open_page()
    at.radio(key="cohort_source").set_value("upload")
    at.run()
    at.file_uploader(key="cohort_file").upload("cohort.csv", b"tenant_id,name\nT1,x\n", "text/csv")
    at.run()
    assert "cohort.csv" in at.error[0].value
    problems = at.dataframe[0].value
    assert set(problems["column"]) >= {"country", "seats", "workloads"}

    cohort = synthetic_cohort(50, 4)
    text = cohort.with_columns(pl.col("workloads").list.join(LIST_SEPARATOR)).write_csv()
    at.file_uploader(key="cohort_file").set_value(("good.csv", text.encode(), "text/csv"))
    at.run()
    assert "50 customers ready" in at.success[0].value
    run_simulation(at, ["weighted"])
    sim = at.session_state[LATEST_KEY]["weighted"]
    assert sim.assignments["tenant_id"].to_list() == cohort["tenant_id"].to_list()


def test_an_empty_database_says_what_to_do(empty_db: Path) -> None:
    at = open_page()
    assert not at.exception
    assert "no partners in the database" in at.info[0].value
    assert not at.get("form")


def test_a_rule_change_marks_the_results_out_of_date_and_disables_commit(demo_db: Path) -> None:
    at = run_simulation(open_page(), ["round-robin"])
    at.checkbox(key="commit_confirm").check()
    at.run()
    assert not at.button(key="commit_button").disabled
    assert not [w for w in at.warning if "Out of date" in w.value]

    # The Data page raises the minimum seats (this session's rules).
    at.session_state[RULES_KEY] = to_toml(load_rules().replace(min_seats=300))
    at.run()
    stale = [w.value for w in at.warning if "Out of date" in w.value]
    assert len(stale) == 1 and "the rules (Data page)" in stale[0]
    assert at.button(key="commit_button").disabled
    assert any(h.value.startswith("Results (out of date)") for h in at.header)

    run_simulation(at, ["round-robin"])  # run again: fresh, and the old run is the baseline
    assert not [w for w in at.warning if "Out of date" in w.value]
    assert at.number_input(key="ov_min_seats").value == 300  # the override follows the rules
    (table,) = [d.value for d in at.dataframe if "Measure" in d.value.columns]
    below = table[table["Measure"] == "Sent to CSS"].iloc[0]
    assert below["Policy"] == Policy.ROUND_ROBIN.words and below["Before"] != below["After"]
    assert below["Change"].startswith("+")


def test_a_partner_edit_that_keeps_every_count_marks_the_results_out_of_date(
    demo_db: Path,
) -> None:
    """The stored state is judged by a fingerprint of its content, not by its counts: one
    partner's capacity changed (made by another process, as `frp` or a second manager
    would) is enough."""
    at = run_simulation(open_page(), ["round-robin"])
    at.checkbox(key="commit_confirm").check()
    at.run()
    assert not at.button(key="commit_button").disabled
    counts = value(demo_db, "SELECT count(*) FROM partners")
    con = connect(demo_db)
    try:
        con.execute(
            "UPDATE partners SET capacity = capacity + 5 "
            "WHERE partner_id = (SELECT min(partner_id) FROM partners)"
        )
    finally:
        con.close()
    assert value(demo_db, "SELECT count(*) FROM partners") == counts
    at.run()
    stale = [w.value for w in at.warning if "Out of date" in w.value]
    assert len(stale) == 1 and freshness.PARTS["store"] in stale[0]
    assert at.button(key="commit_button").disabled


def test_changing_the_policies_or_the_cohort_marks_the_results_out_of_date(
    demo_db: Path,
) -> None:
    at = run_simulation(open_page(), ["round-robin"])
    at.multiselect(key="policies").set_value(["optimal"])
    at.button[0].click()  # submitting the form runs it again: fresh
    at.run()
    assert not [w for w in at.warning if "Out of date" in w.value]
    at.radio(key="cohort_source").set_value("synthetic")
    at.run()
    stale = [w.value for w in at.warning if "Out of date" in w.value]
    assert len(stale) == 1 and "the cohort" in stale[0]


def test_the_cohort_choice_survives_a_visit_to_another_page(demo_db: Path) -> None:
    at = open_page()
    at.radio(key="cohort_source").set_value("synthetic")
    at.run()
    run_simulation(at, ["round-robin"], syn_size=50)
    at.switch_page("pages/data.py")
    at.run()
    at.switch_page("pages/simulate.py")
    at.run()
    assert at.radio(key="cohort_source").value == "synthetic"
    assert at.number_input(key="syn_size").value == 50
    assert at.multiselect(key="policies").value == ["round-robin"]
    assert not [w for w in at.warning if "Out of date" in w.value]


def test_the_upload_shows_its_columns_and_a_template_that_reads_back(demo_db: Path) -> None:
    at = open_page()
    at.radio(key="cohort_source").set_value("upload")
    at.run()
    columns = " ".join(m.value for m in at.markdown if "`tenant_id`" in m.value)
    for name in ("tenant_id", "country", "seats", "workloads", "gateway", "referral_consent"):
        assert f"`{name}`" in columns
    assert any(b.proto.label == "Download template (CSV)" for b in at.get("download_button"))
    template = template_csv()
    assert read_upload(template, "template.csv", "customers").height == 1  # a valid file


def test_a_file_with_bad_rows_can_be_simulated_without_them_but_not_committed(
    demo_db: Path,
) -> None:
    cohort = synthetic_cohort(20, 5)
    text = cohort.with_columns(pl.col("workloads").list.join(LIST_SEPARATOR)).cast(pl.String)
    text = text.with_columns(
        pl.when(pl.int_range(pl.len()).is_in([2, 7]))
        .then(pl.lit("many"))
        .otherwise(pl.col("seats"))
        .alias("seats")
    ).write_csv()
    at = open_page()
    at.radio(key="cohort_source").set_value("upload")
    at.run()
    at.file_uploader(key="cohort_file").upload("mixed.csv", text.encode(), "text/csv")
    at.run()
    assert "mixed.csv" in at.error[0].value
    partial = at.checkbox(key="cohort_partial")
    assert "18 valid rows" in partial.label and "2 rows" in partial.label
    partial.check().run()
    run_simulation(at, ["round-robin"])
    sim = at.session_state[LATEST_KEY]["round-robin"]
    kept = cohort["tenant_id"].to_list()
    assert sim.assignments["tenant_id"].to_list() == kept[:2] + kept[3:7] + kept[8:]
    assert any("2 bad rows left out" in c.value for c in at.caption)
    assert not [b for b in at.button if b.label == "Commit"]
    assert any("what-if only" in i.value for i in at.info)


# --- Split by workload (#13) -----------------------------------------------------------------


def run_splits(at: AppTest, policies: list[str], splits: list[int]) -> AppTest:
    at.multiselect(key="splits").set_value(splits)
    return run_simulation(at, policies)


def test_split_settings_are_compared_side_by_side_like_policies(demo_db: Path) -> None:
    at = run_splits(open_page(), ["round-robin"], [1, 2, 3])
    table = comparison_table(at)
    names = ["round-robin · split off", "round-robin · split 2", "round-robin · split 3"]
    assert list(table["policy"]) == [policy_words(n) for n in names]
    assert list(table["split"]) == ["split off", "split 2", "split 3"]
    sims = at.session_state[LATEST_KEY]
    assert list(sims) == names
    for i, limit in enumerate([1, 2, 3]):
        expected = direct(demo_db, "round-robin", max_partners_per_customer=limit)
        row = table.iloc[i]
        assert row["placed"] == expected.placed
        assert row["split_customers"] == expected.part_counts()["split_customers"]
        assert row["partner_parts"] == expected.part_counts()["partner_parts"]
        assert row["customers"] == expected.rows.height  # a customer once, however split
        assert sims[names[i]].rules.max_partners_per_customer == limit
    assert table.iloc[1]["placed"] > table.iloc[0]["placed"]  # a split places more
    assert table.iloc[1]["split_customers"] > 0 and table.iloc[0]["split_customers"] == 0
    assert list(table["policy"]) == [f"{Policy.ROUND_ROBIN.words} · {s}" for s in SPLITS.values()]
    assert "Customers sent to CSS queues, by reason" in chart_titles(at)


def test_the_css_chart_counts_css_workloads_as_a_reason(demo_db: Path) -> None:
    at = open_page()
    at.session_state[RULES_KEY] = to_toml(load_rules().replace(css_workloads=["defender"]))
    run_splits(at, ["round-robin"], [1, 2])
    sims = at.session_state[LATEST_KEY]
    frame = css_by_reason(at.session_state[RUN_KEY])
    words = Reason.CSS_WORKLOAD.words
    for name, sim in sims.items():
        got = frame.filter((pl.col("policy") == policy_words(name)) & (pl.col("reason") == words))
        expected = sim.counts()["css_workload"] + sim.part_counts()["css_parts"]
        assert got["customers"].to_list() == [expected] and expected > 0
        row = comparison_table(at).set_index("policy").loc[policy_words(name)]
        assert row["css_workload"] == expected and row["css_parts"] > 0


def test_the_css_chart_leaves_out_reasons_no_run_has(demo_db: Path) -> None:
    # Default rules deliver no workload through CSS: no empty "Workloads CSS always
    # delivers" row (#17).
    at = run_splits(open_page(), ["round-robin", "least-loaded"], [1])
    frame = css_by_reason(at.session_state[RUN_KEY])
    assert Reason.CSS_WORKLOAD.words not in frame["reason"].to_list()
    totals = frame.group_by("reason").agg(pl.col("customers").sum())
    assert totals.height > 0 and (totals["customers"] > 0).all()


def test_the_load_chart_shows_partner_names_whole(demo_db: Path) -> None:
    at = run_splits(open_page(), ["round-robin"], [1])
    chart = next(c for c in at.get("vega_lite_chart") if "Partner load before" in c.proto.spec)
    spec = json.loads(chart.proto.spec)
    y = spec["layer"][0]["encoding"]["y"]
    # Vega-Lite cuts axis labels at 180 px unless told otherwise; 0 means never.
    assert y["axis"]["labelLimit"] == 0, "long partner names are cut"
    assert any(t["field"] == y["field"] for t in spec["layer"][0]["encoding"]["tooltip"])


def test_the_css_chart_legend_shows_policy_names_whole(demo_db: Path) -> None:
    # The legend beside the bars cut the longest names ("Least loaded (lowest utili…").
    at = run_splits(open_page(), [p.value for p in Policy], [1, 2])
    chart = next(c for c in at.get("vega_lite_chart") if "sent to CSS queues" in c.proto.spec)
    spec = json.loads(chart.proto.spec)
    legend = spec["encoding"]["color"]["legend"]
    # Vega-Lite cuts legend labels at 160 px unless told otherwise; 0 means never. Below
    # the chart, one name a line, the longest names need no room beside the bars.
    assert legend["labelLimit"] == 0, "long policy names are cut"
    assert legend["orient"] == "bottom" and legend["columns"] == 1
    # The bars of a reason go top to bottom in the legend's order.
    assert spec["encoding"]["yOffset"]["sort"] == spec["encoding"]["color"]["sort"]
    longest = max((policy_words(n) for n in at.session_state[LATEST_KEY]), key=len)
    assert longest == f"{Policy.OPTIMAL.words} · split off"
    assert longest in css_by_reason(at.session_state[RUN_KEY])["policy"].to_list()


def test_the_split_settings_are_part_of_the_inputs_a_run_is_computed_from(
    demo_db: Path,
) -> None:
    at = run_splits(open_page(), ["round-robin"], [1])
    then = at.session_state[RUN_KEY].key
    assert then["splits"] == "1"
    # The form holds its widgets until it is submitted; the key of the new inputs differs
    # only in the split settings, which the out-of-date note names.
    now = {**then, "splits": "1,2"}
    assert freshness.changed(then, now) == ["the split settings"]
    run_splits(at, ["round-robin"], [1, 2])
    assert at.session_state[RUN_KEY].key == now
    assert not [w for w in at.warning if "Out of date" in w.value]
    assert len(at.session_state[LATEST_KEY]) == 2


def test_a_split_run_is_committed_as_a_referral_per_part(demo_db: Path) -> None:
    """The run chosen to commit is committed with its own split setting: its split
    customers get a referral per part (docs/domain.md, "Split by workload")."""
    before = referral_count(demo_db)
    at = run_splits(open_page(), ["round-robin"], [1, 2])
    sim = at.session_state[LATEST_KEY]["round-robin · split 2"]
    assert sim.parts is not None and sim.parts.height > 0
    at.selectbox(key="commit_policy").set_value("round-robin · split 2")
    at.checkbox(key="commit_confirm").check()
    at.run()
    assert not at.button(key="commit_button").disabled
    at.button(key="commit_button").click()
    at.run()
    assert not at.exception
    assert referral_count(demo_db) == before + sim.assignments.height
    split = value(demo_db, "SELECT count(DISTINCT tenant_id) FROM referrals WHERE part = 2")
    assert split == sim.parts["row"].n_unique()


def test_the_why_panel_shows_a_split_customers_parts(demo_db: Path) -> None:
    at = run_splits(open_page(), ["round-robin"], [2])
    sim = at.session_state[LATEST_KEY]["round-robin"]
    assert sim.parts is not None
    row = sim.parts.filter(pl.col("part") == 2)["row"][0]
    tenant = sim.rows["tenant_id"][row]
    at.selectbox(key="why_tenant").set_value(tenant)
    at.run()
    assert not at.exception
    e = explain(sim, tenant)
    assert e.split and len(e.parts) >= 2
    steps = [m.value for m in at.markdown if m.value.startswith("**")]
    titles = [s.split("**")[1] for s in steps if s[2].isdigit()]
    assert titles[-1].endswith("Parts") and "Selection" not in " ".join(titles)
    (parts,) = [d.value for d in at.dataframe if "why" in d.value.columns]
    assert list(parts["part"]) == [p.part for p in e.parts]
    assert list(parts["workloads"]) == [", ".join(p.workloads) for p in e.parts]
    assert [p.split("·")[0].strip() for p in parts["partner"]] == [p.partner_id for p in e.parts]
    assert all(w.startswith("covers ") for w in parts["why"])


def test_one_table_compares_the_policies_under_their_names_with_the_best_marked(
    demo_db: Path,
) -> None:
    # #17 item 8: no cards, no machine names, partners at capacity instead of a "max
    # utilisation" that reads 100% for any cohort, and the best value per measure marked.
    at = open_page()
    at.radio(key="cohort_source").set_value("synthetic")
    at.run()
    run_simulation(at, ["round-robin", "least-loaded"], syn_size=5, syn_seed=1)
    assert not [m for m in at.metric if m.label in ("Max utilisation", "Placed with partners")]
    table = comparison_table(at)
    assert list(table["policy"]) == [Policy.ROUND_ROBIN.words, Policy.LEAST_LOADED.words]
    assert "max_utilisation" not in table.columns
    sims = at.session_state[LATEST_KEY]
    for i, sim in enumerate(sims.values()):
        rep = report_for(sim)
        before = sim.partners.filter(
            pl.col("available") & (pl.col("capacity") > 0) & (pl.col("utilisation_before") >= 1)
        ).height
        row = table.iloc[i]
        assert row["at_capacity"] == rep.at_capacity
        assert before <= row["at_capacity"] <= before + 5  # five customers fill five at most
        assert row["at_capacity"] < sim.partners.filter(pl.col("available")).height
    best = dict(zip(table["policy"], table["best"], strict=True))
    most = table["placed"].max()
    for words, placed in zip(table["policy"], table["placed"], strict=True):
        assert ("most placed" in best[words]) == (placed == most)
    shown = " ".join(str(v) for d in at.dataframe for v in d.value.to_numpy().ravel())
    assert "round-robin" not in shown and "least-loaded" not in shown
    detail = at.selectbox(key="detail_policy")
    assert detail.options == [Policy.ROUND_ROBIN.words, Policy.LEAST_LOADED.words]
    legend = css_by_reason(at.session_state[RUN_KEY])["policy"].unique().to_list()
    assert set(legend) <= {Policy.ROUND_ROBIN.words, Policy.LEAST_LOADED.words}


def test_the_best_value_of_each_measure_is_marked_and_a_tie_marks_both() -> None:
    frame = pl.DataFrame(
        {
            "policy": ["A", "B", "C"],
            "placed": [5, 5, 3],
            "css": [0, 0, 2],
            "jain": [0.9, 0.8, 0.95],
            "at_capacity": [2, 1, 1],
        }
    )
    got = best_marks(frame)["best"].to_list()
    assert got == [
        "most placed, fewest to CSS",
        "most placed, fewest to CSS, fewest at capacity",
        "most even, fewest at capacity",
    ]
    assert best_marks(frame.head(1))["best"].to_list() == [""]  # nothing to compare with
    near = frame.with_columns(pl.Series("jain", [0.95, 0.8, 0.95 + 1e-12]))
    assert [m.count("most even") for m in best_marks(near)["best"]] == [1, 0, 1]  # as shown


def counted(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Calls of ``module.name`` from now on, one item each (the function still runs)."""
    calls: list[int] = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def prepared_demo(demo_db: Path) -> store.commits.Prepared:
    con = connect(demo_db)
    try:
        return prepare(con.cursor())
    finally:
        con.close()


def test_the_runs_of_one_press_prepare_the_cohort_once(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a run reads of the cohort (its workload lists grouped, the declines joined)
    # depends on the eligible workloads alone: made once for every policy and split.
    calls = counted(monkeypatch, store.commits, "prepare_cohort")
    prepared = prepared_demo(demo_db)
    # Partners that declined customers, so the refusals joined in are part of it.
    tenants = prepared.cohort["tenant_id"].head(40).to_list()
    partner_ids = prepared.partners["partner_id"].to_list()
    refused = {t: partner_ids[i % 7 :: 40] for i, t in enumerate(tenants)}
    prepared = dataclasses.replace(prepared, refused=refused)
    rules = load_rules()
    policies = [p.value for p in Policy]
    run = run_policies(
        prepared, rules, policies, prepared.cohort, source="x", committable=True, splits=[1, 2]
    )
    assert len(run.simulations) == 8 and len(calls) == 1
    for name, sim in run.simulations.items():
        expected = simulate(
            prepared.partners,
            prepared.cohort,
            sim.rules,
            sim.policy,
            excluded=prepared.refused,
            today=prepared.today,
        )
        assert sim.assignments.equals(expected.assignments), name
    other = rules.replace(eligible_workloads=rules.eligible_workloads[:-1])
    prepared.simulate(other, "round-robin")
    assert len(calls) == 2  # other eligible workloads, another prepared cohort


def test_a_large_what_if_runs_the_compiled_loop_on_the_server(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command line compiles from engine.policies.COMPILED_FROM picks (a one-off process
    # would pay numba's load each run); a server keeps numba loaded, so a large what-if
    # compiles from COMPILED_FROM_SERVER customers, with the same rows as the Python loop.
    import engine.jit

    calls = counted(monkeypatch, engine.jit, "select_compiled")
    prepared = prepared_demo(demo_db)
    big = synthetic_cohort(COMPILED_FROM_SERVER, 3, partners=prepared.partners)
    small = big.head(500)
    rules = load_rules()
    for cohort, expected_calls in ((small, 0), (big, 2)):
        calls.clear()
        ready = dataclasses.replace(prepared, cohort=cohort)
        run = run_policies(
            ready, rules, ["round-robin", "weighted"], cohort, source="x", committable=False
        )
        assert len(calls) == expected_calls
        python = simulate(prepared.partners, cohort, rules, "weighted", today=prepared.today)
        assert run.simulations["weighted"].assignments.equals(python.assignments)


def test_the_customers_table_is_drawn_a_page_at_a_time(demo_db: Path) -> None:
    # A 100,000-customer cohort's table went to the browser whole up to 5,000 rows; a page
    # at a time it stays small, and the "why" picker lists the page's customers.
    at = open_page()
    at.radio(key="cohort_source").set_value("synthetic")
    at.run()
    n = 2 * PAGE_ROWS + 7
    run_simulation(at, ["round-robin"], syn_size=n)
    sim = at.session_state[LATEST_KEY]["round-robin"]

    def table():
        return next(d.value for d in at.dataframe if "eligible_workloads" in d.value.columns)

    assert len(table()) == PAGE_ROWS
    assert at.number_input(key="customers_page").max == 3
    assert any(f"1–{PAGE_ROWS:,} of {n:,}" in c.value for c in at.caption)
    at.number_input(key="customers_page").set_value(3)
    at.run()
    last = sim.assignments["tenant_id"].tail(7).to_list()
    assert table()["tenant_id"].to_list() == last
    assert [o.split(" · ")[0] for o in at.selectbox(key="why_tenant").options] == last
    # Another reason has fewer pages: the page goes back to the first.
    at.selectbox(key="detail_reason").set_value("capacity_exhausted")
    at.run()
    assert not at.exception
    pages = [w for w in at.number_input if w.key == "customers_page"]
    assert not pages or pages[0].value == 1
    full = sim.assignments.filter(pl.col("reason") == "capacity_exhausted")["tenant_id"]
    assert 0 < len(full) and table()["tenant_id"].to_list() == full.head(PAGE_ROWS).to_list()


def test_a_synthetic_cohort_is_drawn_once_for_the_same_knobs_and_partners(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same seed, same cohort: a second press (or another session) reuses it.
    import ui.simulation.cohort as cohorts

    calls = []
    real = cohorts.synthetic_cohort
    monkeypatch.setattr(
        cohorts, "synthetic_cohort", lambda *a, **k: calls.append(a[:2]) or real(*a, **k)
    )
    at = open_page()
    at.radio(key="cohort_source").set_value("synthetic")
    at.run()
    run_simulation(at, ["round-robin"], syn_size=300)
    first = at.session_state[RUN_KEY].cohort
    run_simulation(at, ["round-robin"], syn_size=300)
    assert calls == [(300, 1)]
    assert at.session_state[RUN_KEY].cohort.equals(first)
    run_simulation(at, ["round-robin"], syn_size=300, syn_seed=2)
    assert calls == [(300, 1), (300, 2)]
    assert not at.session_state[RUN_KEY].cohort.equals(first)
