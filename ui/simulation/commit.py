"""Committing one policy's result from the Simulate page, after an explicit confirmation.

The commit re-runs the simulation inside its own transaction on the state as it is then
(``store.commits.commit`` through ``ui.db.write``), so what it writes may differ from the
run shown above if another session committed meanwhile; the page says so.
"""

from __future__ import annotations

import streamlit as st

from store.commits import commit
from store.errors import StoreError
from ui import auth, db
from ui.labels import plural
from ui.simulation import COMMIT_KEY, SimulationRun, policy_words


def show_commit(run: SimulationRun, stale: list[str] | None = None) -> None:
    """Commit one policy's result, after an explicit confirmation; then link to its
    referrals. Off while the results are out of date (``stale``): what would be written
    is not what is shown."""
    st.header("Commit", divider="gray")
    if not run.committable and run.source.startswith("uploaded file"):
        st.info(
            "The valid part of a file with bad rows is for what-if only: an import takes a "
            "file whole or not at all. Fix the rows listed above and upload it again to commit."
        )
        return
    if not run.committable:
        st.info(
            "A synthetic cohort is for what-if only: its invented customers cannot be "
            "committed. Simulate the FTCQ backlog or an uploaded file to commit."
        )
        return
    n = run.prepared.cohort.height
    name = st.selectbox(
        "Policy to commit", list(run.simulations), format_func=policy_words, key="commit_policy"
    )
    sim = run.simulations[name]
    rules, policy = sim.rules, sim.policy.value  # the chosen run's own (its split setting)
    confirmed = st.checkbox(
        f"I confirm: write referrals for the {plural(n, 'customer')} of the {run.source} "
        f"under {name}, open FTOP task 3186 for Gateway customers and queue the referral "
        "notifications.",
        key="commit_confirm",
    )
    if not auth.is_manager():
        st.caption("Only managers can commit; you can simulate and compare policies.")
    if stale:
        st.caption("Commit is off: the results above are out of date. Run the simulation again.")
    blocked = bool(stale)
    clicked = st.button(
        "Commit",
        type="primary",
        disabled=not confirmed or blocked,
        key="commit_button",
    )
    if clicked and not blocked and auth.require(auth.MANAGER, "commit referrals"):
        try:
            with st.status("Committing…", expanded=True) as status:
                bar = st.progress(0.0, text="re-running on the current state")
                summary = db.write(  # re-run if another session committed meanwhile
                    lambda con: commit(
                        con,
                        rules,
                        policy,
                        run.cohort,
                        actor=auth.actor(),
                        source=run.source,
                        progress=lambda done, total: bar.progress(done / total if total else 1.0),
                    ),
                    what="the commit",
                )
                status.update(
                    label="Committed" if summary.run_id else "Nothing new to commit",
                    state="complete",
                    expanded=False,
                )
        except StoreError as exc:
            st.error(f"Nothing was written: {exc}")
        else:
            db.after_write()
            st.session_state[COMMIT_KEY] = summary
            if summary.run_id is not None:
                st.toast(
                    f"Run {summary.run_id} committed: {summary.placed:,} referrals to partners",
                    icon=":material/check_circle:",
                )

    summary = st.session_state.get(COMMIT_KEY)
    if summary is not None and summary.run_id is None:
        st.warning(auth.sentence(summary.describe()))
    elif summary is not None:
        st.success(auth.sentence(summary.describe()))
        st.caption(
            f"The results above were simulated before run {summary.run_id}; run the simulation "
            "again to see the state after it."
        )
        st.page_link(
            "pages/referrals.py",
            label=f"See the referrals of run {summary.run_id}",
            icon=":material/assignment:",
            query_params={"run": str(summary.run_id)},
        )
