"""Sections of the Partner capacity page: the table, coverage maps, headroom, one partner.

The page reads its filters and calls these in order; each section reads through
``ui.reads`` (cached) and draws with ``ui.charts``.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

import store.capacity
from engine.coverage import NO_COVER, ONE_PARTNER, split_cover
from engine.iso import COUNTRIES
from engine.rules import Rules
from engine.sizes import SIZE_BUCKETS
from store import state
from ui import charts, db, maps, privacy
from ui import labels as human
from ui.reads import backlog_run, view

PARTNER_COLUMNS = {
    "partner_id": st.column_config.TextColumn("Partner", pinned=True),
    "name": st.column_config.TextColumn("Name"),
    "referral_ready": st.column_config.CheckboxColumn("Referral Ready"),
    "paused": st.column_config.CheckboxColumn(
        "Paused", help="Referral Ready, but takes no referrals before its paused-until date"
    ),
    "utilisation": st.column_config.ProgressColumn("Utilisation", **human.PERCENT_BAR),
    "capacity": st.column_config.NumberColumn("Capacity"),
    "active": st.column_config.NumberColumn("Active referrals"),
    "free": st.column_config.NumberColumn(
        "Free seats", help="Capacity minus active referrals, or less when the quota leaves less"
    ),
    "paused_until": st.column_config.DateColumn(
        "Paused until", help="Takes no referrals before this date, then returns by itself"
    ),
    "quota_used": st.column_config.TextColumn(
        "Quota this month", help="Referrals made this calendar month / monthly quota"
    ),
    "rr_position": st.column_config.NumberColumn(
        "Round-robin turn", help="1 = next in line among Referral Ready partners"
    ),
    "countries": st.column_config.ListColumn("Countries"),
    "languages": st.column_config.ListColumn("Languages"),
    "workloads": st.column_config.ListColumn("Workloads"),
    "psm_name": st.column_config.TextColumn("PSM"),
}


def partners_table(partners: pl.DataFrame, top_n: int) -> None:
    """Utilisation histogram and top-N free seats, then every partner as a sortable table."""
    left, right = st.columns(2)
    left.altair_chart(
        charts.utilisation_histogram(
            store.capacity.utilisation_bins(partners),
            "How full are the partners?",
            f"{partners.height} partners shown; red: at or over capacity",
        ),
        width="stretch",
    )
    right.altair_chart(
        charts.free_seats_bars(
            store.capacity.top_free(partners, top_n),
            f"Top {top_n} Referral Ready partners by free seats",
        ),
        width="stretch",
    )
    st.dataframe(
        partners,
        hide_index=True,
        height=420,
        column_order=list(PARTNER_COLUMNS),
        column_config=PARTNER_COLUMNS,
        key=TABLE_KEY,
        on_select=_selected_row,
        selection_mode="single-row",
    )
    st.session_state[_SHOWN] = partners["partner_id"].to_list()


PARTNER_KEY = "cap_partner"
TABLE_KEY = "cap_table"
_SHOWN = "_cap_table_ids"  # the partner ids of the table's rows, in order
_SEEN = "_cap_partner_param"


def _selected_row() -> None:
    """A row selected in the partners table opens that partner's detail below it."""
    rows = st.session_state[TABLE_KEY].selection.rows
    shown = st.session_state.get(_SHOWN, [])
    if rows and rows[0] < len(shown):
        st.session_state[PARTNER_KEY] = shown[rows[0]]


def follow_partner_link(names: dict[str, str]) -> None:
    """``?partner=P0042`` (a link from another page): open that partner's detail."""
    param = st.query_params.get("partner")
    if param == st.session_state.get(_SEEN):
        return
    st.session_state[_SEEN] = param
    if param in names:
        st.session_state[PARTNER_KEY] = param
    elif param is not None:
        st.warning(f"Partner {param!r} is not in this database.")


def paused_list(paused: pl.DataFrame) -> None:
    """The partners away for now, and the date each returns (nothing when none is)."""
    if paused.height == 0:
        return
    with st.expander(f"Paused: {paused.height} Referral Ready partner(s) back later"):
        st.dataframe(
            paused,
            hide_index=True,
            column_config={
                "partner_id": "Partner",
                "name": "Name",
                "paused_until": st.column_config.DateColumn("Back on"),
            },
        )


# --- The world map (ui.maps): a click on a country filters the page ----------------------

MAP_KEY = "cap_map"
_PICKED = "cap_map_country"  # the country picked on the map, or linked as ?country=SE
_ROUND = "_cap_map_round"  # bumped to clear the chart's own selection
_SEEN_COUNTRY = "_cap_country_param"


def _map_key() -> str:
    return f"{MAP_KEY}_{st.session_state.get(_ROUND, 0)}"


def picked_country() -> str | None:
    """The country picked on the map (``?country=SE`` links to one): the page's filter."""
    param = st.query_params.get("country")
    if param != st.session_state.get(_SEEN_COUNTRY):
        st.session_state[_SEEN_COUNTRY] = param
        code = (param or "").strip().upper()
        if code in COUNTRIES:
            st.session_state[_PICKED] = code
        elif param is not None:
            st.warning(f"Country {param!r} is not an ISO 3166-1 alpha-2 code.")
    code = st.session_state.get(_PICKED)
    if code:
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.info(
            f"Showing **{country_words(code)}** only (picked on the map): partners serving "
            "it, and its backlog. The other filters still apply."
        )
        right.button("Clear the country", on_click=_clear_pick, key="cap_map_clear")
    return code


def country_words(code: str) -> str:
    return f"{COUNTRIES[code].name} ({code})" if code in COUNTRIES else code


def _on_pick() -> None:
    st.session_state[_PICKED] = maps.picked(st.session_state.get(_map_key()))


def _clear_pick() -> None:
    st.session_state[_PICKED] = None
    st.session_state[_ROUND] = st.session_state.get(_ROUND, 0) + 1
    if "country" in st.query_params:
        del st.query_params["country"]


def world_map(where: store.capacity.PartnerFilter) -> None:
    """Free seats by country for the page's languages and workloads; a click on a
    country filters the page to it (a double click, or the Clear button, undoes it)."""
    seats = view(store.capacity.country_seats, where)
    scope = " and ".join(
        words
        for words in (
            where.languages and "speaking " + ", ".join(where.languages),
            where.workloads and "covering " + ", ".join(where.workloads),
        )
        if words
    )
    st.vega_lite_chart(
        spec=maps.seats_map(
            seats,
            f"Referral Ready partners taking referrals{' ' + scope if scope else ''}; "
            "click a country to filter the page, double-click to clear",
        ),
        key=_map_key(),
        on_select=_on_pick,
        selection_mode=maps.PICK,
        width="stretch",
    )
    gaps = seats.filter(pl.col("status") != "room")
    hidden = maps.not_on_map(seats)
    st.caption(
        "Grey: no partner serves it and no customer is there. "
        + (
            f"No free seat in {', '.join(gaps['label'].to_list())}. "
            if gaps.height
            else "Every country with customers has free seats. "
        )
        + (f"Too small for the map: {', '.join(hidden)}." if hidden else "")
    )


#: The size selector's choices: every size, then each bucket (docs/domain.md, "Customer size").
SIZE_CHOICES: list[str | None] = [None, *SIZE_BUCKETS]


def coverage() -> None:
    """Country x workload and language x workload heatmaps, with the gaps listed; the
    backlog of one size bucket; where a split would cover what no single partner does."""
    st.caption(
        "Every cell counts the Referral Ready partners serving that country (or speaking that "
        "language) and covering that workload; a partner serving several countries counts in "
        "each. **no partner** marks a gap nobody covers; **full** means partners exist but have "
        "no free seat. The filters above do not apply here."
    )
    rules = db.active_rules()
    eligible = tuple(rules.eligible_workloads)
    c1, c2 = st.columns([1, 2])
    size = c1.selectbox(
        "Backlog of size",
        SIZE_CHOICES,
        format_func=lambda s: "Every size" if s is None else f"{s} ({human.size_words(s)})",
        key="cap_size",
        help="Count only the backlog customers of this size bucket (from their seats). "
        "Partners take every size.",
    )
    split = c2.toggle(
        "With a split of 2",
        key="cap_split",
        help="Mark the sets of workloads customers ask for together that no single partner "
        "covers in their country, but two partners together do",
    )
    tabs = st.tabs(["Country × workload", "Language × workload"])
    for tab, by in zip(tabs, ("country", "language"), strict=True):
        key_title = by.capitalize()
        cells = view(store.capacity.coverage, by, eligible, size)
        gaps = cells.filter(pl.col("status") != "room")
        tab.altair_chart(
            charts.coverage_heatmap(cells, key_title, f"Free seats by {by} and workload"),
            width="stretch",
        )
        with tab.expander(f"Gaps: {gaps.height} {by}-workload cells without free seats"):
            st.dataframe(
                gaps.sort(["backlog", "key"], descending=[True, False]).select(
                    "label", "workload", "status", "partners", "backlog"
                ),
                hide_index=True,
                column_config={"label": key_title, "backlog": "Backlog asking for it"},
            )
    if split:
        split_gaps(rules, size)


def split_gaps(rules: Rules, size: str | None, limit: int = 2) -> None:
    """The (country, workloads asked together) cells of the backlog no single partner
    covers: those a split across ``limit`` partners would cover, and those nobody does."""
    partners, demand = view(store.capacity.split_cover_inputs, size)
    matched = [w for w in rules.eligible_workloads if w not in rules.css_workloads]
    cells = store.capacity.with_labels(
        split_cover(partners, demand, matched, limit).rename({"country": "key"}), "country"
    ).filter(pl.col("cover") != ONE_PARTNER)
    helped = cells.filter(pl.col("cover") != NO_COVER)
    st.markdown(
        f"**{human.plural(int(helped['customers'].sum()), 'backlog customer')}** ask for "
        f"workloads no single partner covers in their country but {limit} partners together "
        f"do ({human.plural(helped.height, 'cell')}); "
        f"{human.plural(int(cells['customers'].sum()) - int(helped['customers'].sum()), 'other')}"
        " have no cover even split."
    )
    if cells.height == 0:
        st.success("Every set of workloads the backlog asks for has a single partner.")
        return
    st.altair_chart(
        charts.split_cover_map(cells, f"Where a split of {limit} covers a gap"), width="stretch"
    )
    with st.expander(f"Cells: {cells.height} without a single partner"):
        human.table(
            cells.sort(["cover", "customers"], descending=[False, True]).select(
                pl.col("label").alias("country"), "workload_set", "cover", "customers"
            )
        )


def headroom(backlog: int) -> None:
    """Which partners a round-robin run over the whole backlog would take to 100 %."""
    if backlog == 0:
        st.info("The FTCQ backlog is empty: import customers on the **Data** page to see headroom.")
        return
    sim_partners, run = backlog_run()
    full = store.capacity.fills_up(sim_partners, view(state.partner_names))
    h1, h2, h3, h4 = st.columns(4)
    h1.metric("Backlog customers", f"{run['customers']:,}")
    h2.metric("Referred to partners", f"{run['assigned']:,}")
    h3.metric("To CSS: matching partners full", f"{run['capacity_exhausted']:,}")
    h4.metric("Partners that fill up", f"{full.height:,}")
    st.caption("Round robin over the whole backlog on today's state; nothing is written.")
    if full.height == 0:
        st.success("No partner reaches 100 % utilisation with this backlog.")
        return
    st.dataframe(
        full,
        hide_index=True,
        column_config={
            "utilisation_before": st.column_config.ProgressColumn(
                "Utilisation now", **human.PERCENT_BAR
            ),
            "utilisation_after": st.column_config.ProgressColumn(
                "Utilisation after", **human.PERCENT_BAR
            ),
        },
    )


def partner_detail(partner_id: str, shown: int = 200) -> None:
    """One partner: PSM and contacts, endorsements, load, round-robin turn, its referrals."""
    detail = view(store.capacity.partner_detail, partner_id)
    if not detail:
        st.info(f"Partner {partner_id} is not in the database any more.")
        return
    a, b = st.columns([2, 3])
    with a:
        st.markdown(f"### {detail['name']} ({detail['partner_id']})")
        st.markdown(
            f"**PSM:** {detail['psm_name']} ({detail['psm_email']})  \n"
            f"**Referral contact:** {detail['contact_email']}  \n"
            f"**Referral Ready:** {'yes' if detail['referral_ready'] else 'no'}  \n"
            f"**Paused until:** {_paused(detail)}  \n"
            f"**Countries:** {', '.join(detail['countries'])}  \n"
            f"**Languages:** {', '.join(detail['languages'])}  \n"
            f"**Workloads:** {', '.join(detail['workloads'])}"
        )
        st.markdown(f"**Round-robin turn:** {_turn(detail)}")
        st.caption("1 = next in line; within a pool only its members compete.")
    with b:
        k1, k2, k3, k4, k5 = st.columns(5)
        k1.metric("Capacity", detail["capacity"])
        k2.metric("Active referrals", detail["active"])
        k3.metric("Free seats", detail["free"])
        util = detail["utilisation"]
        k4.metric("Utilisation", "n/a" if util is None else f"{util:.0%}")
        k5.metric(
            "Quota this month",
            detail["quota_used"] or "none",
            help="Referrals made to it this calendar month / its monthly quota"
            if detail["quota_used"]
            else "No monthly quota: it takes referrals up to its free seats",
        )
        n = view(store.capacity.partner_referral_counts, partner_id)
        st.caption(
            f"{n['total']:,} referrals: {n['open']:,} open, {n['completed']:,} completed"
            + (f" (newest {shown} shown)" if n["total"] > shown else "")
        )
        referrals = privacy.view(store.capacity.partner_referrals, partner_id, shown)
        human.table(referrals, height=300)


def _paused(detail: dict) -> str:
    until = detail["paused_until"]
    if until is None:
        return "not paused"
    if detail["paused"]:
        return f"{until.isoformat()} (takes referrals again from that day)"
    if not detail["referral_ready"]:
        return f"{until.isoformat()} (not Referral Ready in any case)"
    return f"not paused (the pause ended on {until.isoformat()})"


def _turn(detail: dict) -> str:
    if not detail["referral_ready"]:
        return "not Referral Ready, so skipped by round robin"
    if detail["paused"]:
        return f"paused until {detail['paused_until'].isoformat()}, so skipped by round robin"
    place = f"#{detail['rr_position']} of {detail['ready_partners']}"
    if detail["last_assigned"] is None:
        return f"{place}: never assigned yet"
    return f"{place} (last assigned at turn {detail['last_assigned']})"
