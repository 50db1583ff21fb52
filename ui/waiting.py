"""The Referrals page over time: partner referrals waiting for an answer by age against
the acceptance window, those waiting more than N days or expiring within N days, each
partner's answers (made, accepted, declined, expired, median days to accept), and
placing the customers held in the FTCQ for capacity (a drain).

Ages count to the clock's time (``store.clock``); when ``FRP_NOW`` sets it, the page says
so (:func:`clock_note`), since every age and window on it depends on that time.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
import streamlit as st

from engine.fairness import acceptance
from store import clock, lifecycle, state
from store.fairness import partner_responses
from store.referrals import (
    ROW_CAP,
    ReferralFilter,
    days_to_accept,
    waiting_ages,
    waiting_count,
    waiting_rows,
)
from ui import auth, charts, db, privacy
from ui import labels as human
from ui.reads import view
from ui.referrals import TOAST_KEY, capped

HELD_RESULT = "held_result"  # ("success" | "error", message) of the last placing


def clock_minute() -> datetime:
    """The clock's time to the minute: reads are cached by their arguments, and a minute
    changes no age in days."""
    return clock.now().replace(second=0, microsecond=0)


def clock_note() -> None:
    """A caption naming the clock's time when it is set (FRP_NOW), not the real time."""
    setting = clock.setting()
    if setting is not None:
        st.caption(
            f"Clock set to {clock.now():%Y-%m-%d %H:%M} ({setting}): ages and acceptance "
            "windows on this page are counted at that time.",
        )


def waiting() -> None:
    """The tab: how long referrals have waited for the partner's answer, which ones, and
    how each partner answers."""
    at, window = clock_minute(), db.active_rules().accept_within_days
    ages = view(waiting_ages, at, window)
    total = int(ages["referrals"].sum())
    past = int(ages.filter(pl.col("past_window"))["referrals"].sum())
    with st.container(horizontal=True):
        st.metric("Waiting for an answer", f"{total:,}", border=True)
        if window > 0:
            st.metric(f"Past the {window}-day window", f"{past:,}", border=True)
    if total == 0:
        st.info("No referral is waiting for a partner's answer.")
    else:
        title = "Referrals waiting for the partner's answer, by days waiting"
        st.altair_chart(charts.waiting_ages(ages, window, title), width="stretch")
        if window == 0:
            st.caption("No acceptance window (`accept_within_days = 0`): nothing expires.")
    _waiting_table(at, window)
    st.subheader("How partners answer")
    partner_answers()
    st.subheader("Customers held for capacity")
    place_held()


def _waiting_table(at: datetime, window: int) -> None:
    c1, c2 = st.columns(2)
    over = c1.number_input(
        "Waiting more than (days)", min_value=0, value=None, step=1, key="wait_over"
    )
    within = c2.number_input(
        "Expires within (days; 0: due now)",
        min_value=0,
        value=None,
        step=1,
        key="wait_expires",
        disabled=window == 0,
    )
    where = ReferralFilter(
        waiting_over=None if over is None else int(over),
        expires_within=None if within is None or window == 0 else int(within),
        now=at,
        window=window,
    )
    n = privacy.view(waiting_count, where)
    st.metric("Matching waiting referrals", f"{n:,}")
    if n == 0:
        st.info("No waiting referral matches these filters.")
        return
    rows = privacy.view(waiting_rows, where, ROW_CAP)
    capped(rows.height, n, "waiting referrals")
    human.table(
        rows,
        height=320,
        column_config={"age_days": "Days waiting", "accept_by": "Accept by"},
    )
    st.caption("Oldest first. Record a partner's answer on the Referrals tab (find the customer).")


def partner_answers() -> None:
    """Per partner: referrals made and how it answered them, with the median days it took
    to accept (from the audit log's acceptances)."""
    answers = acceptance(view(partner_responses))
    if answers.height == 0:
        st.info("No referral to a partner yet.")
        return
    table = (
        answers.join(view(state.partner_names), on="partner_id", how="left")
        .join(view(days_to_accept), on="partner_id", how="left")
        .select(
            "partner_id",
            "name",
            "made",
            "waiting",
            "accepted",
            "declined",
            "expired",
            "acceptance_rate",
            "median_days_to_accept",
        )
        .sort(["made", "partner_id"], descending=[True, False])
    )
    human.table(
        table,
        height=320,
        key="partner_answers",
        column_config={
            "acceptance_rate": st.column_config.ProgressColumn(
                "acceptance rate", **human.PERCENT_BAR
            ),
            "median_days_to_accept": st.column_config.NumberColumn(
                "median days to accept", format="%.1f"
            ),
        },
    )
    st.caption(
        "Accepted counts referrals completed since. Acceptance rate = accepted / (accepted + "
        "declined + expired). Days to accept count from the referral to its acceptance."
    )


def _place() -> None:
    rules, who = db.team_rules(), auth.actor()
    summary = auth.managers_write(
        HELD_RESULT,
        "place held customers",
        lambda con: lifecycle.drain(con, rules, actor=who),
        doing="placing held customers",
    )
    if summary is None:
        return
    text = (
        f"Held customers placed: {summary.describe()}."
        if summary.run_id is not None
        else "Nothing to place: no customer is held."
    )
    st.session_state[HELD_RESULT] = ("success", text)
    st.session_state[TOAST_KEY] = text


def place_held() -> None:
    """How many customers wait in the FTCQ for a full pool, and the button that places
    them where partners now have room (round robin, like `frp drain`)."""
    result = st.session_state.pop(HELD_RESULT, None)
    if result is not None:
        getattr(st, result[0])(result[1])
    held = view(lifecycle.held).height
    st.caption(
        f"{held:,} customer{'s are' if held != 1 else ' is'} held in the FTCQ until a "
        'matching partner has room (rules `when_full = "hold"`).'
    )
    st.button(
        f"Place {held:,} held customer{'s' * (held != 1)}" if held else "No customer is held",
        key="place_held",
        on_click=_place,
        disabled=held == 0,
        icon=":material/move_down:",
    )
