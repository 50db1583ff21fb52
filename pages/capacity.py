"""Partner capacity: who has room, where coverage is missing, who fills up next."""

from __future__ import annotations

import streamlit as st

from engine.iso import COUNTRIES, LANGUAGES
from store import state
from store.capacity import (
    PartnerFilter,
    capacity_headline,
    partner_capacity,
    partner_options,
    paused_partners,
)
from ui import capacity
from ui.reads import view
from ui.router import through_router

through_router(__file__)

TOP_N = 15

st.title("Partner capacity")
counts = view(state.counts)
if counts["partners"] == 0:
    st.info(
        "No partners yet: import a partner file on the **Data** page, or run `frp demo` "
        "to build the demo world."
    )
    st.stop()

# --- Filters ---------------------------------------------------------------------------------
options = view(partner_options)
c1, c2, c3 = st.columns(3)
countries = c1.multiselect(
    "Country served",
    options["countries"],
    format_func=lambda c: f"{c} {COUNTRIES[c].name}" if c in COUNTRIES else c,
    key="cap_countries",
)
languages = c2.multiselect(
    "Language spoken",
    options["languages"],
    format_func=lambda c: f"{c} {LANGUAGES.get(c, '')}".strip(),
    key="cap_languages",
)
workloads = c3.multiselect(
    "Workloads covered (all of them)", options["workloads"], key="cap_workloads"
)
c4, c5, c6 = st.columns(3)
READY_CHOICES = {
    "All partners": (None, None),
    "Referral Ready only": (True, None),
    "Not Referral Ready": (False, None),
    "Paused (Referral Ready, back later)": (True, True),
}
ready_choice = c4.selectbox("Referral Ready", list(READY_CHOICES), key="cap_ready")
min_free = c5.number_input("At least this many free seats", 0, 10_000, 0, key="cap_min_free")
search = c6.text_input("Search id, name or PSM", key="cap_search")
picked = capacity.picked_country()  # a click on the map, or ?country=SE
where = PartnerFilter(
    countries=tuple(countries),
    languages=tuple(languages),
    workloads=tuple(workloads),
    ready=READY_CHOICES[ready_choice][0],
    paused=READY_CHOICES[ready_choice][1],
    min_free=int(min_free),
    search=search,
    country=picked,
)

# --- Headline --------------------------------------------------------------------------------
head = view(capacity_headline, where)
paused = view(paused_partners, where)
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Partners", f"{head['partners']:,}", border=True)
m2.metric("Referral Ready", f"{head['referral_ready']:,}", border=True)
m3.metric(
    "Paused",
    f"{paused.height:,}",
    help="Referral Ready partners paused until a later date: they take no referrals until "
    "then, and their seats are not counted as free.",
    border=True,
)
m4.metric(
    "Free seats",
    f"{head['free_seats']:,}",
    help="Capacity minus active referrals (or what a monthly quota leaves, if less), over the "
    "Referral Ready partners shown that are not paused.",
    border=True,
)
m5.metric(
    "Backlog waiting in FTCQ",
    f"{head['backlog']:,}",
    help="Customers waiting for assignment (in the selected countries and languages, if any).",
    border=True,
)

capacity.paused_list(paused)
capacity.world_map(where)

# --- Sections --------------------------------------------------------------------------------
st.subheader("Capacity and active referrals")
partners = view(partner_capacity, where)
names = dict(view(state.partner_names).iter_rows())
capacity.follow_partner_link(names)  # ?partner=P0042 opens that partner's detail
if partners.height == 0:
    st.info("No partner matches these filters: clear some of them.")
else:
    capacity.partners_table(partners, TOP_N)  # selecting a row opens its detail below

st.subheader("Partner detail")
pid = st.selectbox(
    "Partner",
    list(names),
    format_func=lambda p: f"{p} · {names[p]}",
    key=capacity.PARTNER_KEY,
    help="Type a name or an id; or select a row in the table above",
)
capacity.partner_detail(pid)

st.subheader("Coverage: free seats of Referral Ready partners")
capacity.coverage()

st.subheader("Headroom: who fills up if the backlog arrived")
capacity.headroom(counts["backlog"])
