"""Fairness: does every pool member get its turn, is load balanced, who falls back to CSS."""

from __future__ import annotations

import streamlit as st

from engine.fairness import acceptance
from store import state
from store.fairness import (
    committed_customers,
    monthly_fairness,
    outcomes_by_size,
    partner_responses,
    referral_dates,
)
from ui import fairness, rules
from ui.reads import committed_fairness, view
from ui.router import through_router

through_router(__file__)

COMMITTED = "Committed referrals"
SIMULATION = "Simulation: "

st.title("Fairness")
counts = view(state.counts)
sims = st.session_state.get("latest_simulations") or {}
if counts["referrals"] == 0 and not sims:
    st.info(
        "No referrals yet: commit a cohort on the **Simulate** page (or run `frp demo` for the "
        "demo world), or simulate one there to judge its fairness before committing."
    )
    st.stop()

sources = ([COMMITTED] if counts["referrals"] else []) + [SIMULATION + p for p in sims]
source = (
    st.radio("Judge the fairness of", sources, horizontal=True, key="fair_source")
    if len(sources) > 1
    else sources[0]
)
monthly = answers = customers = None
if source == COMMITTED:
    first, last = view(referral_dates)
    picked = st.date_input(
        "Referrals created between",
        (first, last),
        min_value=first,
        max_value=last,
        key="fair_dates",
    )
    since, until = fairness.period(picked)
    version = rules.version_filter("fair_rules_version")
    fair, labels = committed_fairness(since, until, version)
    customers = view(committed_customers, since, until, version)
    monthly = view(monthly_fairness, since, until, version)
    answers = acceptance(view(partner_responses, since, until, version))
    sizes = view(outcomes_by_size, since, until, version)
    by_country = fairness.committed_by_country(since, until, version)
    st.caption(
        "Utilisation is each partner's load today; the referrals of the period are counted, "
        "each one a partner's turn. "
        "History imported without pools is grouped by the pool its customer matches today."
    )
else:
    policy = source.removeprefix(SIMULATION)
    fair, labels = fairness.simulated(policy, sims[policy])
    sizes = fairness.simulated_by_size(sims[policy])
    by_country = fairness.simulated_by_country(sims[policy])
    st.caption(
        f"The latest {policy} simulation from the Simulate page: nothing of it is committed."
    )

if fair.customers == 0:
    st.info("No referrals in this period: widen the date range.")
    st.stop()

fairness.headline(fair, labels, customers)
names = view(state.partner_names)
tabs = st.tabs(
    [
        "Turns per pool",
        "Deviation by partner",
        "Utilisation",
        "Over time",
        "CSS fallback",
        "By customer size",
        "Partner answers",
    ]
)
with tabs[0]:
    fairness.turns(fair, labels, names, key="fair_pool" if source == COMMITTED else source)
with tabs[1]:
    fairness.deviation(fair, names)
with tabs[2]:
    fairness.utilisation(fair, names, "today" if source == COMMITTED else "after the simulated run")
with tabs[3]:
    fairness.trend(monthly)
with tabs[4]:
    fairness.css_fallback(fair, by_country)
with tabs[5]:
    fairness.by_size(sizes)
with tabs[6]:
    fairness.responses(answers, names)
