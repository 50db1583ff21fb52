"""Deep links on a freshly started server.

Streamlit treats a `pages/` folder beside the main script as an old-style multipage app
until the first `st.navigation` call in the process. So the very first request of a new
server to, say, `/referrals?run=3` would run the page file alone: no `app.py`, no wide
layout, the sidebar listing file names. Each page calls :func:`through_router` first;
when a page runs without `app.py` routing it (and `app.py` is the main script), the run
is sent through `app.py`, which then opens the page that was asked for, with its query
parameters. A page run on its own, and any run under AppTest, is left alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import Mock

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

PENDING_KEY = "_frp_deep_link"
_state = threading.local()


@contextmanager
def routing() -> Iterator[None]:
    """Wraps `navigation.run()` in app.py: pages run inside it were routed."""
    _state.routed = True
    try:
        yield
    finally:
        _state.routed = False


def through_router(page_file: str) -> None:
    if getattr(_state, "routed", False) or _under_apptest():
        return
    ctx = get_script_run_ctx()
    main = Path(ctx.pages_manager.main_script_path).name if ctx is not None else ""
    if main == "app.py":  # a page run by Streamlit directly, bypassing app.py
        st.session_state[PENDING_KEY] = (Path(page_file).name, st.query_params.to_dict())
        st.switch_page("app.py")


def _under_apptest() -> bool:
    """AppTest re-detects the `pages/` folder on every run (as if each run were a new
    server), so there the redirect would drop widget events; AppTest's runtime is a mock."""
    return isinstance(Runtime.instance(), Mock) if Runtime.exists() else True


def follow_deep_link(pages_by_file: dict) -> None:
    """In app.py, after st.navigation: open the page a first request asked for."""
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending is not None and pending[0] in pages_by_file:
        st.switch_page(pages_by_file[pending[0]], query_params=pending[1])
