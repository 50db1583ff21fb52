"""The Referrals page's "Expire now": what the clock says is due, and applying it.

The panel shows first what :func:`store.lifecycle.due` counts at the clock's "now" (referrals
past their acceptance window, reminders due), then a button that runs
:func:`store.lifecycle.expire` as `frp expire` would, for managers (the role is checked
when it writes). The counts are read at every run, not cached: they change with the clock
as much as with the database. The rules: docs/domain.md, "Referral life cycle".
"""

from __future__ import annotations

import streamlit as st

from store import lifecycle
from ui import auth, db
from ui.referrals import TOAST_KEY

RESULT_KEY = "expiry_result"  # ("success" | "error", message) for the next run


def _expire_now() -> None:
    rules, who = db.team_rules(), auth.actor()
    summary = auth.managers_write(
        RESULT_KEY,
        "expire referrals",
        lambda con: lifecycle.expire(con, rules, actor=who),
        doing="expiring",
    )
    if summary is None:
        return
    text = summary.describe()
    st.session_state[RESULT_KEY] = ("success", auth.sentence(text) + ".")
    st.session_state[TOAST_KEY] = (
        f"Expire now: {summary.expired:,} expired, {summary.reminders:,} reminders queued"
    )


def expiry_panel() -> None:
    """The counts due now, then **Expire now** (off when nothing is due)."""
    result = st.session_state.pop(RESULT_KEY, None)
    if result is not None:
        getattr(st, result[0])(result[1])
    rules = db.team_rules()  # what Expire now uses
    with db.session() as con:
        now_due = lifecycle.due(con, rules)
    window = (
        f"accept within {rules.accept_within_days} days"
        if rules.accept_within_days
        else "no acceptance window"
    )
    remind = (
        f"remind after {rules.remind_after_days}" if rules.remind_after_days else "no reminders"
    )
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(
            f"**Acceptance window** · {now_due.describe()} "
            f"(at {now_due.at:%Y-%m-%d %H:%M} UTC; {window}, {remind})"
        )
        st.button(
            "Expire now",
            key="expire_now",
            on_click=_expire_now,
            disabled=not (now_due.expiring or now_due.reminders),
            icon=":material/timer_off:",
            help="Expire the referrals past their window (their customers are re-assigned "
            "at once) and queue the reminders due, as `frp expire` does; sends nothing.",
        )
