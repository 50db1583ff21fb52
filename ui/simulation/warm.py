"""Warming the compiled selection loop in the background, once per server process.

A what-if of :data:`ui.simulation.COMPILED_FROM_SERVER` customers or more runs the
compiled loop (``engine.jit``). The first one in a process would load numba, the kernels'
cached machine code and OR-Tools inside the manager's click (about half a second of CPU,
more on a busy machine); :func:`engine.jit.warm` loads them ahead. Its results are the
first tables of a process whose first page drew none (the Simulate page opened by link):
Streamlit imports pandas for a table's first Polars frame (about 0.25 s), so that is
imported ahead too. The Simulate page starts this once its controls are drawn (the first
visit of the page in a process), so that neither shares the interpreter with it, and a
server nobody simulates on never loads numba (about 165 MiB with pandas).

Warming only saves time: if it fails, the first run loads what it needs itself, as it did
before, and the failure is logged, never shown on a page.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None


def in_background() -> threading.Thread:
    """Start warming in a daemon thread (a stopping server does not wait for it); later
    calls, from any session, return the same thread."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=warm_quietly, name="frp-warm", daemon=True)
            _thread.start()
        return _thread


def warm_quietly() -> bool:
    """:func:`engine.jit.warm` and pandas, any failure logged -> whether it warmed."""
    try:
        import pandas  # noqa: F401  (what st.dataframe converts a Polars frame with)

        from engine.jit import warm  # numba is imported here, in the thread

        warm()
    except Exception:
        log.warning("could not warm the compiled loop: the first run loads it", exc_info=True)
        return False
    return True
