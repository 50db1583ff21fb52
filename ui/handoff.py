"""The Referrals page's CSS hand-off: open CSS referrals per queue, a download of a queue
for the delivery team (CSV or Excel, formulas neutralised, audited as an export of personal
data), and the hand-off of what was listed (``store.handoff``; managers only).

The download and the hand-off both stop at the newest open referral the page listed
(``last_open``), so a customer sent to the queue meanwhile is neither handed off unseen
nor left out of a file that was already sent.
"""

from __future__ import annotations

import json
import re

import streamlit as st

from store import handoff
from store.files import table_bytes
from store.referrals import ROW_CAP
from ui import auth, db, downloads, labels, privacy
from ui.reads import view
from ui.referrals import TOAST_KEY, capped

QUEUE_KEY = "css_queue"
RESULT_KEY = "handoff_result"  # ("success" | "error", message) of the last hand-off


def file_name(queue: str, suffix: str = ".csv") -> str:
    """``CSS EMEA`` -> ``css-handoff-css-emea.csv``."""
    return "css-handoff-" + re.sub(r"[^a-z0-9]+", "-", queue.lower()).strip("-") + suffix


def _csv(queue: str, up_to: int, personal: bool, suffix: str = ".csv") -> bytes:
    """The queue's file (CSV, or ``suffix``): whole for a manager, the customers masked
    for a viewer."""
    with db.session() as con:
        return table_bytes(handoff.open_referrals(con, queue, up_to, personal=personal), suffix)


def _hand_off(queue: str, up_to: int) -> None:
    who = auth.actor()
    done = auth.managers_write(
        RESULT_KEY,
        "hand off CSS referrals",
        lambda con: handoff.hand_off(con, queue=queue, up_to=up_to, actor=who),
        doing="the hand-off",
    )
    if done is None:
        return
    text = done.describe()
    st.session_state[RESULT_KEY] = ("success", auth.sentence(text) + ".")
    st.session_state[TOAST_KEY] = text


def css_handoff() -> None:
    """The tab: the queues, one queue's open referrals, its download and its hand-off."""
    result = st.session_state.pop(RESULT_KEY, None)
    if result is not None:
        getattr(st, result[0])(result[1])
    queues = view(handoff.queues)
    if queues.height == 0:
        st.info("No customer has gone to a CSS queue yet.")
        return
    st.dataframe(
        queues.drop("last_open"),
        hide_index=True,
        column_config={
            "queue": "Queue",
            "open": labels.STATUSES["queued"],
            "handed_off": labels.STATUSES["handed_off"],
        },
    )
    info = {r["queue"]: r for r in queues.iter_rows(named=True)}
    queue = st.selectbox(
        "Queue",
        list(info),
        format_func=lambda q: f"{q} · {info[q]['open']:,} open",
        key=QUEUE_KEY,
    )
    n, last = info[queue]["open"], info[queue]["last_open"]
    if n == 0 or last is None:
        st.caption(f"Every CSS referral of {queue} has been handed off.")
        return
    rows = privacy.view(handoff.open_referrals, queue, last, ROW_CAP)
    capped(rows.height, n, "open referrals")
    st.dataframe(rows, hide_index=True, height=320)
    personal = privacy.personal()
    with st.container(horizontal=True):
        downloads.buttons(
            lambda suffix: _csv(queue, last, personal, suffix),
            file_name(queue, ""),
            key="css_download",
            details=json.dumps({"queue": queue, "referrals": n, "up_to": last}),
            suffixes=(".csv", ".xlsx"),
            label=f"Download {n:,} as {{format}}",
        )
        st.button(
            f"Hand off {n:,} to delivery",
            key="css_handoff",
            on_click=_hand_off,
            args=(queue, last),
            type="primary",
            icon=":material/outbox:",
        )
    st.caption(
        "Download the list for the delivery team (Assign Delivery Resources), then hand it "
        f"off: the referrals go from **{labels.STATUSES['queued']}** to "
        f"**{labels.STATUSES['handed_off']}**, and their customers stay out of later runs. "
        "`frp css export` and `frp css handoff` do the same from the command line."
    )
