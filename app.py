"""FRP Assign dashboard: a short router over the pages in pages/."""

import streamlit as st

from store.errors import StoreError
from ui import auth
from ui.router import follow_deep_link, routing

st.set_page_config(page_title="FRP Assign", page_icon=":handshake:", layout="wide")
try:  # the sign-in screen (and nothing else) until signed in, then who and what role
    auth.sidebar()
except StoreError as exc:  # a file that is not a store, a newer or damaged one: one line
    st.error(str(exc))
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
follow_deep_link(PAGES)
try:
    with routing():
        navigation.run()
except StoreError as exc:  # the same, found by the page
    st.error(str(exc))
