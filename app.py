"""FRP Assign dashboard: a short router over the pages in pages/."""

import streamlit as st

from ui import auth, labels
from ui.router import follow_deep_link, routing

st.set_page_config(page_title="FRP Assign", page_icon=":handshake:", layout="wide")
auth.sidebar()  # the sign-in screen (and nothing else) until signed in, then who and what role

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
with routing():
    navigation.run()
