"""Simulate cohort: a what-if of a cohort under one or more policies; commit one of them.

Nothing is written until the manager confirms a commit. The work and the charts live in
``ui.simulation``; this page reads widgets, calls it and draws.
"""

import streamlit as st

from engine.cohorts import CohortMix, synthetic_cohort
from engine.rules import RulesError
from engine.schema import InputError
from store import state
from ui import db
from ui import simulation as sim_ui
from ui.router import through_router
from ui.uploads import read_upload

through_router(__file__)

st.title("Simulate cohort")
st.caption(
    "If this cohort arrived now, who would get it under each policy, how many would fall "
    "back to CSS, and why? Nothing is written until you commit one policy's result."
)

counts = db.read(
    "SELECT (SELECT count(*) FROM partners) AS partners, "
    "(SELECT count(*) FROM customers WHERE in_ftcq) AS backlog"
).row(0, named=True)
if counts["partners"] == 0:
    st.info(
        "There are no partners in the database yet, so nobody could receive a customer. "
        "Import a partners file on the **Data** page (or build the demo with `frp demo`), "
        "then come back here."
    )
    st.page_link("pages/data.py", label="Go to Data", icon=":material/database:")
    st.stop()

# --- The cohort ---------------------------------------------------------------------------
SOURCES = {
    "backlog": f"FTCQ backlog ({counts['backlog']:,} waiting)",
    "upload": "Upload a customers file",
    "synthetic": "Synthetic cohort",
}
source = st.radio(
    "Cohort", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="cohort_source"
)
uploaded = None
if source == "backlog" and counts["backlog"] == 0:
    st.info(
        "The FTCQ backlog is empty: nobody is waiting for assignment. Import customers on the "
        "**Data** page, upload a cohort file or try a synthetic cohort."
    )
elif source == "upload":
    file = st.file_uploader(
        "Customers file (.csv or .parquet), in cohort order; the same columns as `frp import`",
        type=["csv", "parquet"],
        key="cohort_file",
    )
    if file is None:
        st.info("Upload a customers file to simulate it instead of the backlog.")
    else:
        try:
            uploaded = read_upload(file.getvalue(), file.name, "customers")
            st.success(f"{file.name}: {uploaded.height:,} customers ready to simulate.")
        except InputError as exc:
            st.error(f"{exc.one_line()}. Fix these rows and upload the file again.")
            st.dataframe(exc.to_frame(), hide_index=True)

# --- Inputs -------------------------------------------------------------------------------
active = db.active_rules()
partner_names = dict(
    db.read("SELECT partner_id, name FROM partners ORDER BY partner_id").iter_rows()
)
with st.form("simulate"):
    if source == "synthetic":
        st.markdown(
            "**Synthetic cohort** — invented customers from the countries and languages "
            "the partners serve (same seed, same cohort)"
        )
        c1, c2, c3, c4, c5, c6 = st.columns(6)
        size = c1.number_input("Customers", 1, 100_000, 500, step=100, key="syn_size")
        seed = c2.number_input("Seed", 0, 1_000_000, 1, key="syn_seed")
        small = c3.slider("Small tenants %", 0, 100, 10, key="syn_small")
        gateway = c4.slider("Gateway %", 0, 100, 20, key="syn_gateway")
        no_consent = c5.slider("No consent %", 0, 100, 5, key="syn_consent")
        other = c6.slider("No eligible workload %", 0, 100, 5, key="syn_other")
    st.markdown("**Rule overrides** for this what-if (the Data page edits the rules themselves)")
    c1, c2, c3 = st.columns([1, 1, 2])
    min_seats = c1.number_input(
        "Minimum seats", 0, 1_000_000, active.min_seats, step=10, key="ov_min_seats"
    )
    scale = c2.slider(
        "Capacity scaling",
        0.0,
        max(3.0, float(active.capacity_scale)),
        float(active.capacity_scale),
        0.05,
        format="%.2f×",
        key="ov_scale",
    )
    switched_off = c3.multiselect(
        "Partners switched off",
        list(partner_names),
        default=sorted(set(active.disabled_partners) & set(partner_names)),
        format_func=lambda p: f"{p} · {partner_names[p]}",
        key="ov_off",
    )
    policies = st.multiselect(
        "Policies, side by side",
        sim_ui.POLICIES,
        default=["round-robin", "least-loaded"],
        format_func=sim_ui.policy_words,
        key="policies",
    )
    run_clicked = st.form_submit_button("Run simulation", type="primary")

if run_clicked:
    cohort, label, error = None, "", ""
    try:
        rules = active.replace(
            min_seats=int(min_seats),
            capacity_scale=float(scale),
            disabled_partners=frozenset(switched_off),
        )
        if source == "backlog":
            with db.session() as con:
                cohort, label = state.backlog(con), "FTCQ backlog"
        elif source == "upload":
            cohort, label = uploaded, f"uploaded file {file.name}" if uploaded is not None else ""
        else:
            mix = CohortMix(small / 100, gateway / 100, no_consent / 100, other / 100)
            with db.session() as con:
                partners = state.partners(con)
            cohort = synthetic_cohort(int(size), int(seed), mix, partners)
            label = f"synthetic cohort (seed {int(seed)})"
    except (RulesError, ValueError) as exc:
        error = str(exc)
    if error:
        st.error(error)
    elif not policies:
        st.warning("Choose at least one policy.")
    elif cohort is None or cohort.height == 0:
        st.warning("There is no cohort to simulate: see the note under “Cohort” above.")
    else:
        with st.status(f"Simulating {cohort.height:,} customers…", expanded=True) as status:
            bar = st.progress(0.0, text="starting")
            with db.session() as con:  # closed before the results are drawn
                run = sim_ui.run_policies(
                    con,
                    rules,
                    policies,
                    cohort,
                    source=label,
                    committable=source != "synthetic",
                    overrides={"text": sim_ui.describe_overrides(rules, active)},
                    progress=lambda share, text: bar.progress(share, text=text),
                )
            status.update(
                label=f"Simulated {cohort.height:,} customers under "
                + (policies[0] if len(policies) == 1 else f"{len(policies)} policies"),
                state="complete",
                expanded=False,
            )
        st.session_state[sim_ui.RUN_KEY] = run
        st.session_state[sim_ui.LATEST_KEY] = dict(run.simulations)
        st.session_state.pop(sim_ui.COMMIT_KEY, None)

run = st.session_state.get(sim_ui.RUN_KEY)
if run is None:
    st.info("Choose a cohort and policies above and press **Run simulation** to see the results.")
    st.stop()

# --- Results ------------------------------------------------------------------------------
sim_ui.show_results(run)

# --- Commit -------------------------------------------------------------------------------
sim_ui.show_commit(run)
