"""Simulate cohort: a what-if of a cohort under one or more policies; commit one of them.

Nothing is written until the manager confirms a commit. The work and the charts live in
``ui.simulation``; this page reads widgets, calls it and draws.
"""

import streamlit as st

from engine.rules import RulesError
from store import state
from ui import db
from ui import simulation as sim_ui
from ui.labels import plural
from ui.reads import view
from ui.router import through_router
from ui.simulation import cohort as cohorts
from ui.simulation import freshness, warm
from ui.simulation.commit import show_commit
from ui.simulation.results import show_results

through_router(__file__)

st.title("Simulate cohort")
st.caption(
    "If this cohort arrived now, who would get it under each policy, how many would fall "
    "back to CSS, and why? Nothing is written until you commit one policy's result."
)

counts = view(state.counts)
if counts["partners"] == 0:
    st.info(
        "There are no partners in the database yet, so nobody could receive a customer. "
        "Import a partners file on the **Data** page (or build the demo with `frp demo`), "
        "then come back here."
    )
    st.page_link("pages/data.py", label="Go to Data", icon=":material/database:")
    st.stop()

# --- The cohort ---------------------------------------------------------------------------
choice = cohorts.choose(counts["backlog"])

# --- Inputs -------------------------------------------------------------------------------
active = db.active_rules()
partner_names = dict(view(state.partner_names).iter_rows())
with st.form("simulate"):
    synthetic = cohorts.synthetic_inputs() if choice.source == "synthetic" else None
    st.markdown("**Rule overrides** for this what-if (the Data page edits the rules themselves)")
    c1, c2, c3 = st.columns([1, 1, 2])
    freshness.follow_rules(active, list(partner_names))
    min_seats = c1.number_input("Minimum seats", 0, 1_000_000, step=10, key="ov_min_seats")
    scale = c2.slider(
        "Capacity scaling",
        0.0,
        max(3.0, float(active.capacity_scale)),
        step=0.05,
        format="%.2f×",
        key="ov_scale",
    )
    switched_off = c3.multiselect(
        "Partners switched off",
        list(partner_names),
        format_func=lambda p: f"{p} · {partner_names[p]}",
        key="ov_off",
    )
    freshness.keep("policies", ["round-robin", "least-loaded"])
    freshness.keep("splits", [active.max_partners_per_customer])
    p1, p2 = st.columns([3, 1])
    policies = p1.multiselect(
        "Policies, side by side",
        sim_ui.POLICIES,
        format_func=sim_ui.policy_words,
        key="policies",
    )
    splits = p2.multiselect(
        "Split by workload",
        list(sim_ui.SPLITS),
        format_func=sim_ui.SPLITS.__getitem__,
        key="splits",
        help="Up to how many partners may share one customer, by workload; each setting "
        "chosen runs every policy (the rules say "
        f"{sim_ui.SPLITS[active.max_partners_per_customer]})",
    )
    run_clicked = st.form_submit_button("Run simulation", type="primary")

# The inputs as they are now; results computed from other inputs are out of date.
inputs_now = freshness.inputs_key(
    active,
    (int(min_seats), float(scale), tuple(sorted(switched_off))),
    cohorts.identity(choice, synthetic),
    policies,
    sorted(splits),
    stored=view(state.fingerprint),
)

if run_clicked:
    inputs, error = None, ""
    try:
        rules = active.replace(
            min_seats=int(min_seats),
            capacity_scale=float(scale),
            disabled_partners=frozenset(switched_off),
        )
        inputs = cohorts.read_inputs(choice, synthetic)  # one short session, then closed
    except (RulesError, ValueError) as exc:
        error = str(exc)
    if error:
        st.error(error)
    elif not policies or not splits:
        st.warning("Choose at least one policy and one split setting.")
    elif inputs is None or inputs[0].height == 0:
        st.warning("There is no cohort to simulate: see the note under “Cohort” above.")
    else:
        cohort, prepared = inputs
        with st.status(f"Simulating {plural(cohort.height, 'customer')}…", expanded=True) as status:
            bar = st.progress(0.0, text="starting")
            run = sim_ui.run_policies(  # no connection open: the file stays free meanwhile
                prepared,
                rules,
                policies,
                cohort,
                source=cohorts.label(choice, synthetic),
                committable=choice.committable,
                overrides={"text": sim_ui.describe_overrides(rules, active)},
                progress=lambda share, text: bar.progress(share, text=text),
                key=inputs_now,
                splits=sorted(splits),
            )
            runs = list(run.simulations)
            status.update(
                label=f"Simulated {plural(cohort.height, 'customer')} under "
                + (runs[0] if len(runs) == 1 else f"{len(runs)} policy and split settings"),
                state="complete",
                expanded=False,
            )
        previous = st.session_state.get(sim_ui.RUN_KEY)
        if previous is not None:
            st.session_state[sim_ui.BASELINE_KEY] = previous
        st.session_state[sim_ui.RUN_KEY] = run
        st.session_state[sim_ui.LATEST_KEY] = dict(run.simulations)
        st.session_state.pop(sim_ui.COMMIT_KEY, None)

# Once per process, after the controls are drawn: what a first large what-if loads (the
# compiled loop), in the background while the manager chooses. Here, not in app.py: a
# server nobody simulates on does not hold numba's 130 MiB.
warm.in_background()

run = st.session_state.get(sim_ui.RUN_KEY)
if run is None:
    st.info("Choose a cohort and policies above and press **Run simulation** to see the results.")
    st.stop()

# --- Results ------------------------------------------------------------------------------
stale = freshness.changed(run.key, inputs_now)
show_results(run, stale, st.session_state.get(sim_ui.BASELINE_KEY))

# --- Commit -------------------------------------------------------------------------------
show_commit(run, stale)
