"""Referrals: what was assigned and why, referrals waiting for the partner's answer (by
age against the acceptance window) and each partner's answers, the hand-off of CSS
referrals to delivery, the FTOP 3186 tasks, the notification outbox (sent from here) and
the load on each Partner Success Manager."""

from __future__ import annotations

import streamlit as st

from store import state
from store.referrals import (
    ROW_CAP,
    ReferralFilter,
    ftop_tasks,
    outbox_count,
    outbox_statuses,
    referral_count,
    referral_detail,
    referral_options,
    referral_rows,
    task_count,
)
from ui import downloads, handoff, privacy, referrals, rules, waiting
from ui import labels as human
from ui.expiry import expiry_panel
from ui.reads import view
from ui.router import through_router

through_router(__file__)

st.title("Referrals")
if view(state.counts)["referrals"] == 0:
    st.info(
        "No referrals yet: simulate and commit a cohort on the **Simulate** page, or run "
        "`frp demo` to build the demo world with its history."
    )
    st.stop()

waiting.clock_note()
referrals.toast_pending()
expiry_panel()  # "N referrals past their window, M reminders due" and Expire now
opts = view(referral_options)
run = referrals.run_filter(opts)  # applies to referrals, tasks and the outbox; follows ?run=
referrals.follow_referral_link()  # ?referral=N: that referral's trace, filters cleared
tab_refs, tab_wait, tab_css, tab_tasks, tab_outbox, tab_psm = st.tabs(
    [
        "Referrals",
        "Waiting for partners",
        "CSS hand-off",
        "FTOP 3186 tasks",
        "Notification outbox",
        "PSM load",
    ]
)

with tab_refs:
    c1, c2, c3 = st.columns(3)
    outcomes = c1.multiselect(
        "Outcome",
        opts["outcomes"],
        format_func=lambda o: {"frp": "frp (partner)", "css": "css (CSS queue)"}.get(o, o),
        key="ref_outcome",
    )
    statuses = c2.multiselect(
        "Status",
        opts["statuses"],
        format_func=lambda s: human.STATUSES.get(s, s),
        key="ref_status",
    )
    reasons = c3.multiselect(
        "Reason",
        opts["reasons"],
        format_func=lambda r: referrals.REASON_WORDS.get(r, r),
        key="ref_reason",
    )
    c4, c5, c6 = st.columns([2, 2, 1])
    names = dict(view(state.partner_names).iter_rows())
    partner = c4.selectbox(
        "Partner",
        [None, *names],
        format_func=lambda p: "Any partner" if p is None else f"{p} · {names[p]}",
        key="ref_partner",
    )
    tenant = c5.text_input("Customer (tenant id or name)", key="ref_tenant")
    version = rules.version_filter("ref_rules_version", c6)
    where = ReferralFilter(
        outcomes=tuple(outcomes),
        statuses=tuple(statuses),
        reasons=tuple(reasons),
        partner_id=partner,
        run=run,
        tenant=tenant,
        rules_version=version,
    )
    total = privacy.view(referral_count, where)
    rows = privacy.view(referral_rows, where, ROW_CAP)
    st.metric("Referrals matching", f"{total:,}")
    referrals.capped(rows.height, total, "referrals")
    if rows.height == 0:
        st.info("No referral matches these filters.")
    else:
        human.table(rows, height=360, links=True)  # ids open the partner, the customer
        downloads.referrals(where, total)  # all of them, as CSV, Parquet or Excel
        st.subheader("Why? The trace of one referral")
        shown = {r["referral_id"]: r for r in rows.iter_rows(named=True)}
        referrals.pick_linked(list(shown), "ref_pick")
        rid = st.selectbox(
            "Referral",
            list(shown),
            format_func=lambda i: (
                f"#{i} · {shown[i]['tenant_id']} {shown[i]['customer'] or ''} → "
                f"{shown[i]['partner_id'] or shown[i]['queue']}"
            ),
            key="ref_pick",
        )
        ref = privacy.view(referral_detail, rid)
        if ref:
            referrals.trace(ref)
            referrals.respond(ref)

with tab_wait:
    waiting.waiting()

with tab_css:
    handoff.css_handoff()

with tab_tasks:
    n_tasks = view(task_count, run)
    c1, c2 = st.columns(2)
    c1.metric("FTOP 3186 tasks", f"{n_tasks:,}")
    c2.metric("Open", f"{view(task_count, run, 'open'):,}")
    if n_tasks == 0:
        st.info(
            "No FTOP task 3186 here: one is opened for each Gateway customer that a commit "
            "refers to a partner."
        )
    else:
        tasks = privacy.view(ftop_tasks, run, ROW_CAP)
        referrals.capped(tasks.height, n_tasks, "tasks")
        human.table(tasks, height=360)
        st.subheader("Close a task")
        referrals.close_task(run)

with tab_outbox:
    referrals.send_outbox()
    referrals.retry_failed(run)
    picked = st.multiselect("Message status", view(outbox_statuses), key="ref_outbox_status")
    n_msgs = view(outbox_count, tuple(picked), run)
    st.metric("Notifications", f"{n_msgs:,}")
    if n_msgs == 0:
        st.info(
            "No notifications here: a commit queues three (customer, partner, PSM) for each "
            "referral to a partner."
        )
    else:
        msgs = referrals.outbox_rows(tuple(picked), run)
        referrals.capped(msgs.height, n_msgs, "messages")
        human.table(
            msgs.select(
                "referral_id",
                "recipient_role",
                "status",
                "to_email",
                "subject",
                "attempts",
                "created_at",
                "sent_at",
                "last_error",
                "message_id",
            ),  # fmt: skip
            height=360,
            column_config={"to_email": "To", "recipient_role": "Recipient"},
        )
        by_id = {r[0]: r for r in msgs.select("message_id", "recipient_role", "to_email").rows()}
        mid = st.selectbox(
            "Message",
            list(by_id),
            format_func=lambda m: f"{by_id[m][1]} → {by_id[m][2]}  {m}",
            key="ref_message",
        )
        referrals.message(mid)

with tab_psm:
    referrals.psm_load()
