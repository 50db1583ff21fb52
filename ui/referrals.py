"""Pieces of the Referrals page: the run filter that follows ``?run=``, one referral's
trace, the capped-table note, and delivery: the outbox as this user may see it (for
viewers rendered from masked customers, ``store.referrals.previews``), its send button,
closing an FTOP task, the PSM load.

The Simulate page links to a run's referrals with ``?run=<id>``; ``?run=history`` shows
the referrals imported without a run.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

import store.referrals
import store.state
from store import lifecycle, tasks
from store.db import OPEN_STATUSES
from store.errors import StoreError
from store.outbox import DeliveryError, SmtpSettings, retry, send_pending
from store.referrals import HISTORY, ROW_CAP
from ui import auth, db, labels, privacy
from ui.reads import view

RUN_KEY = "ref_run"
_SEEN = "_ref_run_param"  # the ?run= value this session last acted on
REASON_WORDS = labels.REASONS


def run_from_param(value: str | None) -> int | str | None:
    """``"3"`` -> 3, ``"history"`` -> HISTORY, anything else -> None (all runs)."""
    if value == HISTORY:
        return HISTORY
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _to_param() -> None:
    """Keep ``?run=`` in step with the run filter, so the address can be shared."""
    value = st.session_state[RUN_KEY]
    if value is None:
        st.query_params.pop("run", None)
    else:
        st.query_params["run"] = str(value)
    st.session_state[_SEEN] = st.query_params.get("run")


def run_filter(opts: dict[str, Any]) -> int | str | None:
    """The run selectbox (all runs, imported history, each run), preset from ``?run=``."""
    info = {r["run_id"]: r for r in view(store.referrals.runs).iter_rows(named=True)}
    options: list[int | str | None] = [None]
    if opts["history"]:
        options.append(HISTORY)
    options += opts["runs"]
    param = st.query_params.get("run")
    if param != st.session_state.get(_SEEN):  # arrived with a new ?run= (a link)
        st.session_state[_SEEN] = param
        wanted = run_from_param(param)
        if wanted in options:
            st.session_state[RUN_KEY] = wanted
        elif param is not None:
            st.warning(f"Run {param!r} is not in this database; showing all runs.")

    def label(run: int | str | None) -> str:
        if run is None:
            return "All runs"
        if run == HISTORY:
            return f"History (imported without a run, {opts['history']:,} referrals)"
        r = info[run]
        return (
            f"Run {run} · {r['policy']} · {r['created_at']:%Y-%m-%d %H:%M} · "
            f"{labels.plural(r['customers'], 'customer')} ({r['placed']:,} placed, "
            f"{r['css']:,} to CSS)"
        )

    return st.selectbox("Run", options, format_func=label, key=RUN_KEY, on_change=_to_param)


_SEEN_REFERRAL = "_ref_referral_param"  # the ?referral= value this session last acted on
_SEEN_CUSTOMER = "_ref_customer_param"
_WANTED = "_ref_wanted"
FILTERS = {"ref_outcome": [], "ref_status": [], "ref_reason": [], "ref_partner": None}


def follow_referral_link() -> None:
    """Arriving with a new ``?referral=N`` (a link, e.g. after a decline): filter on its
    customer only, and pick it in the trace below (:func:`pick_linked`); with a new
    ``?customer=T0042`` (a customer id clicked elsewhere), show that customer's referrals."""
    customer = st.query_params.get("customer")  # ?customer=T0042: that customer's referrals
    if customer != st.session_state.get(_SEEN_CUSTOMER):
        st.session_state[_SEEN_CUSTOMER] = customer
        if customer:
            for key, empty in FILTERS.items():
                st.session_state[key] = empty
            st.session_state["ref_tenant"] = customer
    param = st.query_params.get("referral")
    if param == st.session_state.get(_SEEN_REFERRAL):
        return
    st.session_state[_SEEN_REFERRAL] = param
    if param is None or not param.isdigit():
        return
    ref = view(store.referrals.referral_detail, int(param))
    if ref is None:
        st.warning(f"Referral {param} is not in this database.")
        return
    for key, empty in FILTERS.items():
        st.session_state[key] = empty
    st.session_state["ref_tenant"] = ref["tenant_id"]  # listed even past the row cap
    st.session_state[_WANTED] = int(param)


def pick_linked(shown: list[int], key: str) -> None:
    """Select the linked referral in the picker ``key`` when it is listed."""
    wanted = st.session_state.pop(_WANTED, None)
    if wanted in shown:
        st.session_state[key] = wanted


def capped(shown: int, total: int, what: str) -> None:
    if total > shown:
        st.caption(
            f"Showing the newest {shown:,} of {total:,} {what}; narrow the filters to see others."
        )


def trace(ref: dict[str, Any]) -> None:
    """Where one referral went and why: a sentence, the trace step by step, and as stored."""
    if ref["outcome"] == "frp":
        to = (
            f"partner **[{ref['partner_id']} {ref['partner_name'] or ''}]"
            f"({labels.link('partner_id', ref['partner_id'])})** "
            f"(PSM {ref['psm_name']}, {ref['psm_email']})"
        )
    else:
        to = f"**{ref['queue']}**"
    gateway = "Gateway" if ref["gateway"] else "not Gateway"
    code = ref.get("decline_reason")
    decline = labels.REASONS.get(code, code) if code else ""
    declined = f" (reason: **{decline}**)" if decline else ""
    run = f"run {ref['run_id']}" if ref["run_id"] else "imported history"
    st.markdown(
        f"**{ref['customer'] or ref['tenant_id']}** "
        f"({ref['tenant_id']}; "
        f"{ref['country']}, {ref['language']}, {ref['seats'] or '?'} seats, {gateway}) went "
        f"to {to}: {REASON_WORDS.get(ref['reason'], ref['reason'])}. Status "
        f"**{labels.STATUSES.get(ref['status'], ref['status'])}**{declined}, {run}, "
        f"{ref['created_at']:%Y-%m-%d %H:%M}."
    )
    steps = store.referrals.trace_steps(ref["trace"])
    if decline:
        steps.append(f"{ref['status']} by {ref['partner_id']}: {decline}")
    st.markdown("\n".join(f"{n}. {s}" for n, s in enumerate(steps, 1)) or "_no trace_")
    with st.expander("Trace as stored"):
        st.code(ref["trace"] or "", language=None, wrap_lines=True)


# --- Delivery: the outbox and sending it, closing FTOP tasks, PSM load -------------------


def outbox_rows(statuses: tuple[str, ...], run: int | str | None) -> pl.DataFrame:
    """The newest queued notifications (``ROW_CAP``) as this user may see them: for a
    viewer, customers' addresses masked and subjects rendered from masked customers."""
    window = db.active_rules().accept_within_days
    return privacy.view(store.referrals.outbox, statuses, run, ROW_CAP, window=window)


def message(message_id: str) -> None:
    """One notification, addressed and written as it goes out, masked as ``outbox_rows``."""
    window = db.active_rules().accept_within_days
    msg = privacy.view(store.referrals.message, message_id, window=window)
    if not msg:
        return
    st.markdown(f"**To:** {msg['to_email']}  \n**Subject:** {msg['subject']}")
    if msg.get("body_html"):
        with st.expander("HTML part"):
            st.html(msg["body_html"])
    st.code(msg["body"], language=None, wrap_lines=True)


SEND_KEY = "outbox_sent"  # the last send's SendSummary, shown after the rerun
TOAST_KEY = "_referrals_toast"
TASK_PICK = "task_pick"
TASK_RESULT = "task_closed"  # ("success" | "error", message)


def toast_pending() -> None:
    """A toast queued by an action before the page reran (st.rerun drops live toasts)."""
    text = st.session_state.pop(TOAST_KEY, None)
    if text:
        st.toast(text, icon=":material/check_circle:")


def send_outbox() -> None:
    """The outbox tab's send button: SMTP settings from ``FRP_SMTP_*``, a progress bar,
    then a rerun so every count on the page shows the new statuses."""
    try:
        settings: SmtpSettings | None = SmtpSettings.from_env()
        problem = ""
    except DeliveryError as exc:
        settings, problem = None, str(exc)
    pending = view(store.referrals.outbox_count, ("pending",), None)
    if settings is None:
        st.info(
            f"Sending is off: {problem}. Set the `FRP_SMTP_*` variables (README, "
            "*Delivery*) before starting the dashboard; `frp outbox export DIR` writes the "
            "messages as .eml files meanwhile."
        )
    else:
        st.caption(f"Sends through `{settings.describe()}`. Sent messages are never sent again.")
    clicked = st.button(
        f"Send {pending:,} pending notification{'s' if pending != 1 else ''}"
        if pending
        else "Nothing to send",
        type="primary",
        disabled=settings is None or pending == 0,
        key="outbox_send",
        icon=":material/send:",
    )
    if clicked and settings is not None and auth.require(auth.MANAGER, "send notifications"):
        with st.status("Sending notifications…", expanded=True) as status:
            bar = st.progress(0.0, text=f"0 of {pending:,}")
            try:
                summary = send_pending(  # no connection open while the server works
                    db.session,
                    settings,
                    actor=auth.actor(),
                    progress=lambda done, total: bar.progress(
                        done / total if total else 1.0, text=f"{done:,} of {total:,}"
                    ),
                )
            except StoreError as exc:
                db.after_write()  # some may have gone before the error
                status.update(label="Sending stopped", state="error")
                st.error(f"Sending stopped: {exc}")
                return
            status.update(label="Sent", state="complete", expanded=False)
        db.after_write()
        st.session_state[SEND_KEY] = summary
        st.session_state[TOAST_KEY] = f"Outbox: {summary.describe()}"
        st.rerun()
    summary = st.session_state.get(SEND_KEY)
    if summary is not None:
        if summary.ok:
            st.success(f"Last send: {summary.describe()}.")
        else:
            st.warning(f"Last send: {summary.describe()}. {summary.problem()}.")


RETRY_PICK = "outbox_retry_pick"
RETRY_ADDRESS = "outbox_retry_to"
RETRY_RESULT = "outbox_retried"  # ("success" | "error", message)


def _manager_pick(pick: str, result: str, what: str) -> Any:
    """The value picked under ``pick`` when a manager acts on it; None otherwise (the
    refusal is kept under ``result`` for the next run to show)."""
    value = st.session_state.get(pick)
    if value is None:
        return None
    refused = auth.refusal(auth.MANAGER, what)
    if refused:
        st.session_state[result] = ("error", refused)
        return None
    return value


def _retry_picked() -> None:
    message_id = _manager_pick(RETRY_PICK, RETRY_RESULT, "retry notifications")
    if message_id is None:
        return
    address = st.session_state.get(RETRY_ADDRESS) or ""
    try:
        db.write(
            lambda con: retry(con, message_id, address, actor=auth.actor()),
            what="the retry",
        )
    except StoreError as exc:
        st.session_state[RETRY_RESULT] = ("error", f"Nothing changed: {exc}")
        return
    text = f"{message_id} is pending again: the next send takes it."
    st.session_state[RETRY_RESULT] = ("success", text)
    st.session_state[TOAST_KEY] = text


def retry_failed(run: int | str | None) -> None:
    """Managers fix a failed message's address (the import's check) and send it again."""
    result = st.session_state.pop(RETRY_RESULT, None)
    if result is not None:
        getattr(st, result[0])(result[1])
    if not auth.is_manager():
        return
    failed = privacy.view(store.referrals.outbox, ("failed",), run, ROW_CAP)
    if failed.height == 0:
        return
    shown = {r["message_id"]: r["to_email"] for r in failed.iter_rows(named=True)}
    reasons = dict(failed.select("message_id", "last_error").iter_rows())
    if st.session_state.get(RETRY_PICK) not in shown:
        st.session_state[RETRY_PICK] = next(iter(shown))
        st.session_state[RETRY_ADDRESS] = shown[st.session_state[RETRY_PICK]]

    def fill() -> None:  # the picked message's address, to fix
        st.session_state[RETRY_ADDRESS] = shown[st.session_state[RETRY_PICK]]

    st.markdown(f"**{len(shown):,} failed**: fix the address and send again.")
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.selectbox(
            "Failed message",
            list(shown),
            format_func=lambda m: f"{m} · {reasons[m] or ''}",
            key=RETRY_PICK,
            on_change=fill,
        )
        st.text_input("Address", key=RETRY_ADDRESS)
        st.button(
            "Fix and retry", key="outbox_retry", on_click=_retry_picked, icon=":material/replay:"
        )


def _close_picked() -> None:
    task_id = _manager_pick(TASK_PICK, TASK_RESULT, "close tasks")
    if task_id is None:
        return
    try:
        task = db.write(
            lambda con: tasks.close(con, int(task_id), actor=auth.actor()),
            what="closing the task",
        )
    except StoreError as exc:
        st.session_state[TASK_RESULT] = ("error", str(exc))
        return
    db.after_write()
    text = (
        f"Task {task['task_id']} (FTOP {task['task_number']}, {task['tenant_id']} → "
        f"{task['partner_id']}) closed."
    )
    st.session_state[TASK_RESULT] = ("success", text)
    st.session_state[TOAST_KEY] = text


def close_task(run: int | str | None) -> None:
    """Pick an open task (of the run filter) and close it; the close runs as a callback,
    so the tables below already show it closed."""
    result = st.session_state.pop(TASK_RESULT, None)
    if result is not None:
        getattr(st, result[0])(result[1])
    open_tasks = privacy.view(store.referrals.ftop_tasks, run, ROW_CAP, "open")
    if open_tasks.height == 0:
        st.caption("Every task here is closed.")
        return
    shown = {r["task_id"]: r for r in open_tasks.iter_rows(named=True)}
    if st.session_state.get(TASK_PICK) not in shown:
        st.session_state.pop(TASK_PICK, None)
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.selectbox(
            "Open task to close",
            list(shown),
            format_func=lambda t: (
                f"#{t} · {shown[t]['tenant_id']} {shown[t]['customer'] or ''} → "
                f"{shown[t]['partner_id']} {shown[t]['partner'] or ''}"
            ),
            key=TASK_PICK,
        )
        st.button("Close task", key="task_close", on_click=_close_picked, icon=":material/done:")


def psm_load() -> None:
    """Open referrals per Partner Success Manager (today's partners and their PSMs)."""
    load = view(store.referrals.psm_load)
    if load.height == 0:
        st.info("No partners yet: import a partner file on the **Data** page.")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("PSMs", f"{load.height:,}")
    c2.metric("Open referrals", f"{int(load['open_referrals'].sum()):,}")
    c3.metric("Most on one PSM", f"{int(load['open_referrals'].max()):,}")
    st.dataframe(
        load,
        hide_index=True,
        height=420,
        column_config={
            "psm_name": "PSM",
            "psm_email": "email",
            "partners": st.column_config.NumberColumn("partners", help="partners they look after"),
            "open_referrals": st.column_config.ProgressColumn(
                "open referrals",
                format="%d",
                min_value=0,
                max_value=max(int(load["open_referrals"].max()), 1),
            ),
            "partner_ids": st.column_config.ListColumn("partner ids"),
        },
    )
    st.caption(
        "Open referrals (active or accepted) committed here, counted for each partner's "
        "current PSM; `frp psm` prints the same."
    )


# --- Life cycle: the partner's response to one referral ---------------------------------

LIFECYCLE_RESULT = "lifecycle_result"  # ("success" | "error", message[, link]) for the next run
DECLINE_REASON = "decline_reason"
DECLINE_CONFIRM = "decline_confirm"  # the referral id whose decline awaits confirmation


def _respond(tenant_id: str, action: str, partner_id: str | None = None) -> None:
    """Record a partner's response to the referral of ``tenant_id`` with ``partner_id``
    (a customer split by workload has one open referral per partner)."""
    st.session_state.pop(DECLINE_CONFIRM, None)
    refused = auth.refusal(auth.MANAGER, "record partner responses")
    if refused:
        st.session_state[LIFECYCLE_RESULT] = ("error", refused)
        return
    reason = st.session_state.get(DECLINE_REASON)
    if action == "decline" and not reason:
        st.session_state[LIFECYCLE_RESULT] = ("error", "Choose why the partner declines first.")
        return
    who = auth.actor()
    rules = db.team_rules()

    def change_status(con):
        if action == "accept":
            return lifecycle.accept(con, tenant_id, actor=who, partner_id=partner_id)
        if action == "complete":
            return lifecycle.complete(con, tenant_id, rules, actor=who, partner_id=partner_id)
        return lifecycle.decline(con, tenant_id, reason, rules, actor=who, partner_id=partner_id)

    try:
        change = db.write(change_status, what=f"the {action}")
    except StoreError as exc:
        st.session_state[LIFECYCLE_RESULT] = ("error", f"Nothing changed: {exc}")
        return
    db.after_write()
    st.session_state.pop(DECLINE_REASON, None)  # the next decline starts with no reason
    if action == "decline":
        st.session_state[LIFECYCLE_RESULT] = ("success", *_declined(change, str(reason)))
    else:
        st.session_state[LIFECYCLE_RESULT] = ("success", auth.sentence(change.describe()) + ".")
    st.session_state[TOAST_KEY] = f"{tenant_id}: {change.before} → {change.after}"


def _declined(change: lifecycle.Change, reason: str) -> tuple[str, dict[str, str] | None]:
    """What a decline did, in words, naming where the customer went next, and the deep
    link to that new referral (None when the customer was not re-assigned)."""
    names = dict(view(store.state.partner_names).iter_rows())
    text = (
        f"Referral #{change.referral_id} of {change.tenant_id} declined by "
        f"{labels.partner_label(change.partner_id, names)} ({labels.REASONS[reason]})."
    )
    run = change.follow_up.run_id if change.follow_up is not None else None
    if run is None:
        return text, None
    where = store.referrals.ReferralFilter(run=run, tenant=change.tenant_id)
    new = view(store.referrals.referral_rows, where, 1)
    if new.height == 0:
        return text + f" Re-assignment: run {run}.", {"run": str(run)}
    row = new.row(0, named=True)
    to = (
        labels.partner_label(row["partner_id"], names)
        if row["partner_id"]
        else f"the {row['queue']} queue ({labels.REASONS.get(row['reason'], row['reason'])})"
    )
    text += f" Re-assigned in run {run}: referral #{row['referral_id']} to {to}."
    return text, {"run": str(run), "referral": str(row["referral_id"])}


def _ask_to_confirm(referral_id: int) -> None:
    refused = auth.refusal(auth.MANAGER, "record partner responses")
    if refused:  # no confirmation to someone who may not decline
        st.session_state[LIFECYCLE_RESULT] = ("error", refused)
        return
    st.session_state[DECLINE_CONFIRM] = referral_id


def _cancel_decline() -> None:
    st.session_state.pop(DECLINE_CONFIRM, None)


def _show_result() -> None:
    result = st.session_state.pop(LIFECYCLE_RESULT, None)
    if result is None:
        return
    getattr(st, result[0])(result[1])
    link = result[2] if len(result) > 2 else None
    if link:  # this page, at the address of the new referral (which can be shared)
        st.button(
            f"Open referral #{link['referral']}" if "referral" in link else "Open the run",
            icon=":material/assignment:",
            key="open_new_referral",
            on_click=st.query_params.update,
            args=(link,),
        )


def respond(ref: dict[str, Any]) -> None:
    """Accept, decline or complete. A decline needs a reason (none is preset) and a
    confirmation: the customer is re-assigned at once, and the partner never gets it again."""
    _show_result()
    if ref["outcome"] != "frp" or ref["status"] not in OPEN_STATUSES:
        return
    st.markdown("**The partner's response**")
    with st.container(horizontal=True, vertical_alignment="bottom"):
        if ref["status"] == "active":
            st.button(
                "Accept",
                key="ref_accept",
                on_click=_respond,
                args=(ref["tenant_id"], "accept", ref["partner_id"]),
            )
        st.selectbox(
            "Decline reason",
            list(lifecycle.DECLINE_REASONS),
            index=None,
            placeholder="Choose why the partner declines",
            format_func=lifecycle.DECLINE_REASONS.__getitem__,
            key=DECLINE_REASON,
        )
        st.button(
            "Decline and re-assign…",
            key="ref_decline",
            disabled=not st.session_state.get(DECLINE_REASON),
            help="Choose a reason first; you confirm before anything changes",
            on_click=_ask_to_confirm,
            args=(ref["referral_id"],),
        )
        st.button(
            "Complete",
            key="ref_complete",
            on_click=_respond,
            args=(ref["tenant_id"], "complete", ref["partner_id"]),
        )
    reason = st.session_state.get(DECLINE_REASON)
    if st.session_state.get(DECLINE_CONFIRM) == ref["referral_id"] and reason:
        partner = f"{ref['partner_id']} {ref['partner_name'] or ''}".strip()
        with st.container(border=True, key="decline_confirmation"):
            st.warning(
                f"Decline referral #{ref['referral_id']} of {ref['tenant_id']} for "
                f"{partner}, because “{labels.REASONS[reason]}”? The customer is re-assigned "
                f"at once, and {ref['partner_id']} is never offered this customer again.",
                icon=":material/warning:",
            )
            with st.container(horizontal=True):
                st.button(
                    "Yes, decline and re-assign",
                    type="primary",
                    key="ref_decline_confirm",
                    on_click=_respond,
                    args=(ref["tenant_id"], "decline", ref["partner_id"]),
                )
                st.button("Cancel", key="ref_decline_cancel", on_click=_cancel_decline)
