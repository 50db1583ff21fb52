"""Placeholder: built in the dashboard issue."""

import streamlit as st

st.title("Referrals")
st.info("This page is being built.")
