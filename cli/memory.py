"""Giving memory back to the system between a command's phases (Linux with glibc).

A what-if is a few bursts of large allocations, and what one phase is done with still
counts in the process's resident memory during the next:

- **The compiler libraries.** Loading the compiled selection loop (``engine.jit``)
  touches about 66 MiB of numba's ``libllvmlite.so``, code and read-only data, which
  stay resident once the kernels are loaded although nothing runs them again: the
  kernels' machine code lives in memory of its own (OR-Tools' library, after the
  optimal plan, likewise). Those pages are unchanged copies of the file, so the process
  can drop them (``MADV_DONTNEED``): they stay in the system's file cache, and were the
  library needed again (a kernel not loaded yet) they would be mapped back in from
  there. Only read-only mappings without a changed page are dropped (not the ones the
  loader relocated), since dropping a changed private page would lose it.
- **glibc's heap.** numpy's arrays come from glibc, which keeps the space of freed ones
  below its (growing) mmap threshold for reuse: about 40 MiB free in the heap after a
  1M-customer selection, while the result file's write that follows allocates through
  Polars' own allocator. ``malloc_trim`` hands that back.

Neither ever changes a result; where they are not available (another libc, another
system) they do nothing. Measured in docs/scaling.md.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Collection

_MADV_DONTNEED = 4


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


#: Libraries whose code a run is done with once loaded, by the module that loads them.
DONE_WITH = {"numba": "libllvmlite", "ortools": "libortools"}


def release_loaded() -> int:
    """:func:`release_libraries` for DONE_WITH's libraries whose module is loaded
    -> bytes advised."""
    return release_libraries([lib for mod, lib in DONE_WITH.items() if mod in sys.modules])


def release_libraries(names: Collection[str]) -> int:
    """Drop this process's pages of the unchanged read-only mappings of the loaded
    libraries ``names`` (one read of /proc/self/smaps for all) -> bytes advised (0: none
    loaded, or nothing could be advised)."""
    libc = _libc() if names else None
    if libc is None or not hasattr(libc, "madvise"):
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    advised = 0
    for start, end in _clean_mappings(names):
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            advised += end - start
    return advised


def _clean_mappings(
    names: Collection[str], smaps: list[str] | None = None
) -> list[tuple[int, int]]:
    """Address ranges of the read-only mappings, with no private dirty page, of the
    libraries ``names`` (a path containing one of them), from ``smaps`` (the lines of
    /proc/self/smaps; read when not given)."""
    if smaps is None:
        try:
            with open("/proc/self/smaps", encoding="ascii", errors="replace") as f:
                smaps = f.readlines()
        except OSError:
            return []
    found: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in smaps:
        fields = line.split()
        if not fields:
            continue
        if fields[0].endswith(":"):
            if fields[0] == "Private_Dirty:" and current is not None:
                if fields[1] == "0":
                    found.append(current)
                current = None
            continue
        # A mapping's header: "start-end perms offset dev inode [path]".
        current = None
        if len(fields) >= 6 and "w" not in fields[1] and any(n in fields[5] for n in names):
            start, _, end = fields[0].partition("-")
            current = (int(start, 16), int(end, 16))
    return found


def trim_heap() -> bool:
    """Return glibc's free heap memory to the system -> whether any was returned."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    return bool(trim(0)) if trim is not None else False
