"""Pieces of the Referrals page: the run filter that follows ``?run=``, one referral's
trace, and the capped-table note.

The Simulate page links to a run's referrals with ``?run=<id>``; ``?run=history`` shows
the referrals imported without a run.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine.reasons import Reason
from store import views
from ui.reads import view

RUN_KEY = "ref_run"
_SEEN = "_ref_run_param"  # the ?run= value this session last acted on
REASON_WORDS = {r.value: r.words for r in Reason}


def run_from_param(value: str | None) -> int | str | None:
    """``"3"`` -> 3, ``"history"`` -> views.HISTORY, anything else -> None (all runs)."""
    if value == views.HISTORY:
        return views.HISTORY
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
    info = {r["run_id"]: r for r in view("runs").iter_rows(named=True)}
    options: list[int | str | None] = [None]
    if opts["history"]:
        options.append(views.HISTORY)
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
        if run == views.HISTORY:
            return f"History (imported without a run, {opts['history']:,} referrals)"
        r = info[run]
        return (
            f"Run {run} · {r['policy']} · {r['created_at']:%Y-%m-%d %H:%M} · "
            f"{r['customers']:,} customers ({r['placed']:,} placed, {r['css']:,} to CSS)"
        )

    return st.selectbox("Run", options, format_func=label, key=RUN_KEY, on_change=_to_param)


def capped(shown: int, total: int, what: str) -> None:
    if total > shown:
        st.caption(
            f"Showing the newest {shown:,} of {total:,} {what}; narrow the filters to see others."
        )


def trace(ref: dict[str, Any]) -> None:
    """Where one referral went and why: a sentence, the trace step by step, and as stored."""
    if ref["outcome"] == "frp":
        to = (
            f"partner **{ref['partner_id']} {ref['partner_name'] or ''}** "
            f"(PSM {ref['psm_name']}, {ref['psm_email']})"
        )
    else:
        to = f"**{ref['queue']}**"
    gateway = "Gateway" if ref["gateway"] else "not Gateway"
    run = f"run {ref['run_id']}" if ref["run_id"] else "imported history"
    st.markdown(
        f"**{ref['customer'] or ref['tenant_id']}** ({ref['tenant_id']}; {ref['country']}, "
        f"{ref['language']}, {ref['seats'] or '?'} seats, {gateway}) went to {to}: "
        f"{REASON_WORDS.get(ref['reason'], ref['reason'])}. Status **{ref['status']}**, {run}, "
        f"{ref['created_at']:%Y-%m-%d %H:%M}."
    )
    steps = views.trace_steps(ref["trace"])
    st.markdown("\n".join(f"{n}. {s}" for n, s in enumerate(steps, 1)) or "_no trace_")
    with st.expander("Trace as stored"):
        st.code(ref["trace"] or "", language=None, wrap_lines=True)
