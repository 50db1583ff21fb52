"""Work started on a thread of its own while the caller goes on with something else.

The engine does this where the two halves leave each other a core: a Polars pass, or a
compiled loop that releases the interpreter, beside Python (see the callers).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")


def later(fn: Callable[..., _T], *args: Any, name: str) -> Callable[[], _T]:
    """``fn(*args)`` started on a thread named after ``name``; the function returned waits
    for it and gives its value (or raises what it raised)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    pending = pool.submit(fn, *args)
    pool.shutdown(wait=False)  # the thread ends with its one task
    return pending.result
