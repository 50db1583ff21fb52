"""Data: import partners and customers, and keep the team's rules.

Imports go through the command line's own reading and validation (``ui.uploads``): a
bad file shows every bad row and writes nothing. The rules section (``ui.rules``) saves
the team's rules as a new version in the store (managers), tries edited rules in this
session's what-ifs (anyone; the Simulate page picks them up through ``active_rules()``),
and shows the versions with their differences.
"""

import streamlit as st

from engine.schema import InputError
from store import state
from store.imports import import_customers, import_partners
from ui import auth, db, privacy, rules
from ui.reads import view
from ui.router import through_router
from ui.uploads import read_upload

through_router(__file__)

TOAST = "data_toast"  # a toast to show after the rerun that follows an import


def _count(n: int, kind: str) -> str:
    return f"{n:,} {kind if n != 1 else kind[:-1]}"


st.title("Data")
if toast := st.session_state.pop(TOAST, None):
    st.toast(toast, icon=":material/check_circle:")
st.caption(
    "Import partner and customer files (the same files and checks as `frp import`), and keep "
    "the team's assignment rules: every version saved, with who saved it, when and why."
)

counts = view(state.counts)
cols = st.columns(5)
cols[0].metric("Partners", f"{counts['partners']:,}")
cols[1].metric("Referral Ready", f"{counts['referral_ready']:,}")
cols[2].metric("Customers known", f"{counts['customers']:,}")
cols[3].metric("Waiting in the FTCQ", f"{counts['backlog']:,}")
cols[4].metric("Referrals", f"{counts['referrals']:,}")
if counts["partners"] == 0:
    st.info(
        "The database is empty. Import a **partners** file first (who can receive customers), "
        "then a **customers** file (they join the FTCQ backlog); then simulate on the "
        "**Simulate cohort** page."
    )

# --- Imports --------------------------------------------------------------------------------
st.header("Import", divider="gray")
HELP = {
    "partners": "Columns: partner_id, name, countries, languages, workloads, capacity, "
    "active_referrals, referral_ready, psm_name, psm_email, contact_email, optional "
    "last_assigned, paused_until (YYYY-MM-DD) and monthly_quota. Lists are `;`-separated in "
    "CSV and Excel. A partner_id already stored is replaced.",
    "customers": "Columns: tenant_id, name, country, language, seats, workloads, gateway, "
    "contact_email, optional referral_consent. New customers join the FTCQ backlog in file "
    "order; known ones keep their place and get their details updated.",
}
IMPORTERS = {"partners": import_partners, "customers": import_customers}
for column, kind in zip(st.columns(2), ("partners", "customers"), strict=True):
    with column.container(border=True):
        st.subheader(kind.capitalize())
        st.caption(HELP[kind])
        file = st.file_uploader(
            f"{kind.capitalize()} file", type=["csv", "parquet", "xlsx"], key=f"{kind}_file"
        )
        if file is None:
            continue
        try:
            frame = read_upload(
                file.getvalue(),
                file.name,
                kind,
                max_pause_days=db.team_rules().max_pause_days,
            )
        except InputError as exc:
            st.error(f"{exc.one_line()}. Nothing was written: fix these rows and upload again.")
            st.dataframe(privacy.problems(exc.to_frame()), hide_index=True, key=f"{kind}_problems")
            continue
        st.success(f"{file.name}: {_count(frame.height, kind)}, every row valid.")
        preview = frame.head(5)
        if kind == "customers":
            preview = privacy.frame(preview)
        st.dataframe(preview, hide_index=True)
        file_id, done = st.session_state.get(f"{kind}_done", (None, ""))
        if file_id == file.file_id:
            st.success(done)
        elif st.button(
            f"Import {_count(frame.height, kind)}", type="primary", key=f"{kind}_import"
        ) and auth.require(auth.MANAGER, f"import {kind}"):
            summary = db.write(
                IMPORTERS[kind], frame, actor=auth.actor(), source=file.name, what="the import"
            )
            done = f"Imported from {file.name}: {summary.describe()}."
            st.session_state[f"{kind}_done"] = (file.file_id, done)
            st.session_state[TOAST] = f"Imported: {summary.describe()}"
            st.rerun()  # the counts at the top of the page changed

# --- Rules --------------------------------------------------------------------------------
st.header("Rules", divider="gray")
rules.editor()
with st.expander("History of the team's rules: versions, differences, restore"):
    rules.history()

with st.expander("Recent imports and commits"):
    log = view(state.recent_changes, 20)
    if log.height:
        st.dataframe(log, hide_index=True)
    else:
        st.info("Nothing imported or committed yet.")
