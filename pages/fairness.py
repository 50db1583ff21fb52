"""Placeholder: built in the dashboard issue."""

import streamlit as st

st.title("Fairness")
st.info("This page is being built.")
