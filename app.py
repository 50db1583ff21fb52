"""FRP Assign dashboard: a short router over the pages in pages/."""

import streamlit as st

from store.db import damaged, damaged_message, resolve_path
from store.errors import StoreError
from ui import auth, labels
from ui.router import follow_deep_link, routing


def one_line(exc: Exception) -> str | None:
    """A store that cannot be used (not ours, a newer version's, damaged) as one line;
    None for any other fault, which Streamlit shows as it is."""
    if isinstance(exc, StoreError):
        return str(exc)
    if damaged(exc):  # found by a query, past the checks made on opening the file
        return damaged_message(resolve_path(None), exc)
    return None


st.set_page_config(page_title="FRP Assign", page_icon=":handshake:", layout="wide")
try:  # the sign-in screen (and nothing else) until signed in, then who and what role
    auth.sidebar()
except Exception as exc:
    if (line := one_line(exc)) is None:
        raise
    st.error(line)
    st.stop()

PAGES = {
    "capacity.py": st.Page(
        "pages/capacity.py", title="Partner capacity", icon=":material/groups:", default=True
    ),
    "simulate.py": st.Page("pages/simulate.py", title="Simulate cohort", icon=":material/science:"),
    "fairness.py": st.Page("pages/fairness.py", title="Fairness", icon=":material/balance:"),
    "referrals.py": st.Page("pages/referrals.py", title="Referrals", icon=":material/assignment:"),
    "data.py": st.Page("pages/data.py", title="Data", icon=":material/database:"),
}

navigation = st.navigation(list(PAGES.values()))
labels.glossary()  # the terms every page uses, one click away on each
follow_deep_link(PAGES)
try:
    with routing():
        navigation.run()
except Exception as exc:  # the same, found by the page
    if (line := one_line(exc)) is None:
        raise
    st.error(line)
