"""FRP Assign dashboard: a short router over the pages in pages/."""

import streamlit as st

st.set_page_config(page_title="FRP Assign", page_icon=":handshake:", layout="wide")

PAGES = [
    st.Page("pages/capacity.py", title="Partner capacity", icon=":material/groups:", default=True),
    st.Page("pages/simulate.py", title="Simulate cohort", icon=":material/science:"),
    st.Page("pages/fairness.py", title="Fairness", icon=":material/balance:"),
    st.Page("pages/referrals.py", title="Referrals", icon=":material/assignment:"),
    st.Page("pages/data.py", title="Data", icon=":material/database:"),
]

st.navigation(PAGES).run()
