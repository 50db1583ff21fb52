"""The selection loop compiled (numba): the same picks as ``engine.policies``' Python loop.

The Python loop costs about 16 µs a placement (the interpreter, and one Python object per
placement); these kernels walk the same customers over numpy arrays, writing each
customer's result straight into the output columns. ``engine.policies`` keeps the Python
loop as the reference: the property tests require identical Choices from both, for every
policy.

State is flat numpy arrays: per partner its load, limit, capacity, stamp and round-robin
key (``rr``); per pool its members (CSR: ``ptr``/``members``) and full count, and whether
it is dead (every member full); per partner its pools (CSR), to count a partner that
fills up in each of them. Each policy adds its per-pool state in the same CSR layout: the
members with room (round robin, least-loaded, weighted), their current weights
(weighted) or what is left of the plan (optimal); built at the pool's first customer.

A kernel walks ``ks[start:]`` (customer rows) with their pools ``qs``. With ``stop`` set it
returns at the first customer it cannot place (its pool has no partner with room, or none
left in the plan), recording nothing for it, so the caller can handle that customer in
Python (:meth:`Picker.give` keeps every array consistent) and resume after it; without
``stop`` it records the miss (``n_full``) and goes on. It returns how far it got.

Compiled with ``cache=True``: the machine code is kept on disk (``__pycache__``), so only
the first process after an install compiles (a few seconds); later ones load it. The
kernels run without the interpreter (``nogil``): while they walk the customers,
``engine.assign`` spells the words of the traces on another thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from engine.reasons import Policy

if TYPE_CHECKING:
    from engine.policies import Ledger
    from engine.policies import OnMiss as SplitHook

# ----------------------------------------------------------------------------- kernels


@njit(cache=True, inline="always")
def _give(i, load, limit, stamp, rr, ctr, full_count, dead, sizes, pptr, pof):
    """One referral to partner i; counts it full in its pools when it fills. -> new load."""
    n = load.size
    li = load[i] + 1
    load[i] = li
    c = ctr[0]
    stamp[i] = c
    rr[i] = (c + 1) * n + i
    ctr[0] = c + 1
    if li == limit[i]:
        for t in range(pptr[i], pptr[i + 1]):
            q = pof[t]
            fc = full_count[q] + 1
            full_count[q] = fc
            if fc >= sizes[q]:
                dead[q] = True
    return li


@njit(cache=True, inline="always")
def _place(k, i, before, s, out):
    """Customer k goes to partner i (``before``: its pool's full count at its turn)."""
    load, limit, _, stamp, rr, ctr, full_count, dead, sizes, _, _, pptr, pof = s
    chosen, prev, n_full, load_after = out
    prev[k] = stamp[i]
    li = _give(i, load, limit, stamp, rr, ctr, full_count, dead, sizes, pptr, pof)
    chosen[k] = i
    n_full[k] = before
    load_after[k] = li
    return li


@njit(cache=True, inline="always")
def _members_with_room(q, s, wm, wlen):
    """Pool q's members with room, compacted in place (CSR, in the pool's order) -> count.

    Built at the pool's first customer; a member that fills up is dropped at the next
    customer (the pool's full count says whether any did)."""
    load, limit, _, _, _, _, full_count, _, sizes, ptr, members, _, _ = s
    base = ptr[q]
    length = wlen[q]
    if length < 0:
        length = 0
        for t in range(ptr[q], ptr[q + 1]):
            i = members[t]
            if load[i] < limit[i]:
                wm[base + length] = i
                length += 1
    if length > sizes[q] - full_count[q]:
        kept = 0
        for t in range(base, base + length):
            i = wm[t]
            if load[i] < limit[i]:
                wm[base + kept] = i
                kept += 1
        length = kept
    wlen[q] = length
    return length


@njit(cache=True, nogil=True)
def turn_kernel(ks, qs, start, stop, least_loaded, s, p, out):
    """Round robin (the member with room least recently assigned: the smallest ``rr``) and
    least-loaded (the smallest ((load + 1) / capacity, rr)).

    ``s``: (load, limit, cap, stamp, rr, ctr, full_count, dead, sizes, ptr, members, pptr,
    pof); ``p``: (wm, wlen, cf) each pool's members with room, their count (-1: not yet
    listed) and each partner's utilisation key; ``out``: (chosen, prev, n_full,
    load_after). The Python loop keeps a lazy heap per pool; a partner is in some 150
    pools, so its stale entries cost more to refresh than a scan of the pool's members
    with room (about 20), which picks the same partner.
    """
    cap, rr, full_count, ptr = s[2], s[4], s[6], s[9]
    wm, wlen, cf = p
    n_full = out[2]
    for j in range(start, ks.size):
        k = ks[j]
        q = qs[j]
        before = full_count[q]
        length = _members_with_room(q, s, wm, wlen)
        if length == 0:
            if stop:
                return j
            n_full[k] = full_count[q]
            continue
        base = ptr[q]
        i = wm[base]
        for t in range(base + 1, base + length):
            m = wm[t]
            if least_loaded:
                if cf[m] < cf[i] or (cf[m] == cf[i] and rr[m] < rr[i]):
                    i = m
            elif rr[m] < rr[i]:
                i = m
        li = _place(k, i, before, s, out)
        if least_loaded:
            cf[i] = (li + 1) / cap[i]
    return ks.size


@njit(cache=True, nogil=True)
def weighted_kernel(ks, qs, start, stop, s, p, out):
    """Smooth weighted round robin; ``p``: (wm, wv, wlen) members with room and their
    current weights by pool (CSR, in the pool's order), their count (-1: not built)."""
    load, limit, cap, rr, full_count, sizes, ptr = s[0], s[1], s[2], s[4], s[6], s[8], s[9]
    wm, wv, wlen = p
    n_full = out[2]
    for j in range(start, ks.size):
        k = ks[j]
        q = qs[j]
        base = ptr[q]
        length = wlen[q]
        if length < 0:
            for t in range(ptr[q], ptr[q + 1]):
                wv[t] = 0
        before = full_count[q]
        if length > sizes[q] - before:  # some of them filled up since: drop them, in order
            kept = 0
            for t in range(base, base + length):
                if load[wm[t]] < limit[wm[t]]:
                    wv[base + kept] = wv[t]
                    kept += 1
        length = _members_with_room(q, s, wm, wlen)
        if length == 0:
            if stop:
                return j
            n_full[k] = full_count[q]
            continue
        total = 0
        best = -1
        best_val = 0
        best_rr = 0
        for t in range(base, base + length):
            i = wm[t]
            w = cap[i]
            total += w
            v = wv[t] + w
            wv[t] = v
            if best < 0 or v > best_val or (v == best_val and rr[i] < best_rr):
                best, best_val, best_rr = t, v, rr[i]
        wv[best] -= total
        _place(k, wm[best], before, s, out)
    return ks.size


@njit(cache=True, nogil=True)
def planned_kernel(ks, qs, start, stop, s, p, out):
    """Follow the optimal plan; ``p``: (am, an, alen) the partners of each pool's
    allotment with what is left of it (CSR, in the plan's order) and their count."""
    load, limit, rr, full_count, ptr = s[0], s[1], s[4], s[6], s[9]
    am, an, alen = p
    n_full = out[2]
    for j in range(start, ks.size):
        k = ks[j]
        q = qs[j]
        base = ptr[q]
        best = -1
        best_rr = 0
        kept = 0
        for t in range(base, base + alen[q]):
            i = am[t]
            if an[t] > 0 and load[i] < limit[i]:
                if best < 0 or rr[i] < best_rr:
                    best, best_rr = base + kept, rr[i]
                am[base + kept] = i
                an[base + kept] = an[t]
                kept += 1
        alen[q] = kept  # allotment used up or partner full: never chosen again
        if best < 0:
            if stop:
                return j
            n_full[k] = full_count[q]
            continue
        an[best] -= 1
        _place(k, am[best], full_count[q], s, out)
    return ks.size


# ----------------------------------------------------------------------------- driver


class Picker:
    """One run's compiled selection: the state arrays, shared with the ledger, and the
    policy's per-pool state. :meth:`run` walks customers; :meth:`give` is a referral made
    from Python (for a customer the kernel stopped at), keeping every array consistent."""

    def __init__(
        self,
        policy: Policy,
        ledger: Ledger,
        pools: Sequence[np.ndarray],
        allotment: Sequence[dict[int, int]] | None,
    ) -> None:
        n = len(ledger.capacity)
        self.policy = policy
        self.ledger = ledger
        sizes = np.array([len(p) for p in pools], dtype=np.int64)
        ptr = np.zeros(len(pools) + 1, dtype=np.int64)
        np.cumsum(sizes, out=ptr[1:])
        members = np.concatenate(pools).astype(np.int64) if len(pools) else np.zeros(0, np.int64)
        pptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(x) for x in ledger.pools_of], out=pptr[1:])
        pof = (
            np.concatenate(ledger.pools_of).astype(np.int64)
            if n and pptr[-1]
            else np.zeros(0, np.int64)
        )
        self.ctr = np.array([ledger.counter], dtype=np.int64)
        self.rr = (ledger.stamp + 1) * n + np.arange(n, dtype=np.int64)
        self.dead = ledger.full_count >= sizes
        self.state = (
            ledger.load,
            ledger.limit,
            ledger.capacity,
            ledger.stamp,
            self.rr,
            self.ctr,
            ledger.full_count,
            self.dead,
            sizes,
            ptr,
            members,
            pptr,
            pof,
        )
        self.cf = np.zeros(n, dtype=np.float64)
        if policy is Policy.LEAST_LOADED:
            cap = ledger.capacity
            with np.errstate(divide="ignore"):
                self.cf = np.where(cap > 0, (ledger.load + 1) / np.maximum(cap, 1), np.inf)
        total = int(ptr[-1])
        self.pstate = self._policy_state(policy, len(pools), total, ptr, allotment)

    def _policy_state(self, policy, n_pools, total, ptr, allotment):
        unbuilt = np.full(n_pools, -1, dtype=np.int64)
        if policy in (Policy.ROUND_ROBIN, Policy.LEAST_LOADED):
            return (np.zeros(total, np.int64), unbuilt, self.cf)
        if policy is Policy.WEIGHTED:
            return (np.zeros(total, np.int64), np.zeros(total, np.int64), unbuilt)
        if allotment is None:
            raise ValueError("the optimal policy needs an allotment from engine.optimal.plan")
        am = np.zeros(total, dtype=np.int64)
        an = np.zeros(total, dtype=np.int64)
        alen = np.zeros(n_pools, dtype=np.int64)
        for q, a in enumerate(allotment):
            base = int(ptr[q])
            alen[q] = len(a)
            am[base : base + len(a)] = list(a.keys())
            an[base : base + len(a)] = list(a.values())
        return (am, an, alen)

    def run(self, ks: np.ndarray, qs: np.ndarray, start: int, stop: bool, out: tuple) -> int:
        """Walk ``ks[start:]``; see the module docstring. Returns how far it got."""
        if self.policy in (Policy.ROUND_ROBIN, Policy.LEAST_LOADED):
            least = self.policy is Policy.LEAST_LOADED
            done = turn_kernel(ks, qs, start, stop, least, self.state, self.pstate, out)
        elif self.policy is Policy.WEIGHTED:
            done = weighted_kernel(ks, qs, start, stop, self.state, self.pstate, out)
        else:
            done = planned_kernel(ks, qs, start, stop, self.state, self.pstate, out)
        self.ledger.counter = int(self.ctr[0])
        return int(done)

    def give(self, i: int) -> tuple[int, int]:
        """A referral to partner i made outside the kernels -> (its previous stamp, new
        load); the kernels read the new key at the pool's next customer."""
        load, limit, cap, stamp, rr, ctr, full_count, dead, sizes, _, _, pptr, pof = self.state
        prev = int(stamp[i])
        li = int(_give(i, load, limit, stamp, rr, ctr, full_count, dead, sizes, pptr, pof))
        if self.policy is Policy.LEAST_LOADED:
            self.cf[i] = (li + 1) / cap[i]
        self.ledger.counter = int(self.ctr[0])
        return prev, li


#: What handles a customer the kernel stopped at (its row and pool), given the picker.
OnMiss = Callable[[Picker, int, int], None]
#: What drops from a batch of customers those settled without the kernel (-> the rest).
Settle = Callable[[Picker, np.ndarray], np.ndarray]


class SplitAtMiss:
    """The split hook (``engine.split.Splitter``) in the compiled loop.

    At a customer the kernel stopped at, it records the miss as the kernel would (its
    pool's full count) and lets the hook split it, giving each part through
    :meth:`Picker.give` so that the kernels see every seat and turn it took. Before each
    batch, customers of pools with no room that the hook knows cannot split either are
    settled at once (as ``engine.policies.select_python`` does): each stop costs a
    return to Python and a new kernel call (15-25 µs), far more than a pick.
    """

    def __init__(self, hook: SplitHook, pool_of: np.ndarray, n_full: np.ndarray) -> None:
        self.hook = hook
        self.pool_of = pool_of
        self.n_full = n_full

    def __call__(self, picker: Picker, k: int, q: int) -> None:
        self.n_full[k] = picker.ledger.full_count[q]
        self.hook(k, picker.give)

    def settle(self, picker: Picker, ks: np.ndarray) -> np.ndarray:
        qs = self.pool_of[ks]
        at = np.flatnonzero(picker.dead[qs])
        if not at.size:
            return ks
        done = at[self.hook.settled(ks[at])]
        self.n_full[ks[done]] = picker.state[8][qs[done]]  # every member of the pool full
        return np.delete(ks, done)


def select_compiled(
    policy: Policy,
    ledger: Ledger,
    pools: Sequence[np.ndarray],
    pool_of: np.ndarray,
    allotment: Sequence[dict[int, int]] | None,
    progress: Callable[[int], None] | None,
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    on_miss: OnMiss | None = None,
    settle: Settle | None = None,
    batch: int = 65_536,
) -> None:
    """Fill ``out`` (chosen, prev, n_full, load_after) for the customers with a pool, in
    cohort order, ``batch`` at a time (progress is reported between batches). With
    ``on_miss`` the kernel stops at each customer it cannot place and ``on_miss`` handles
    it; without, the miss is recorded as the Python loop records it. ``settle`` takes
    customers out of each batch before the kernel walks it (see :class:`SplitAtMiss`)."""
    picker = Picker(policy, ledger, pools, allotment)
    rows = np.flatnonzero(pool_of >= 0)
    for first in range(0, rows.size, batch):
        ks = rows[first : first + batch].astype(np.int64)
        last = int(ks[-1])
        if settle is not None:
            ks = settle(picker, ks)
        qs = pool_of[ks].astype(np.int64)
        j = 0
        while j < ks.size:
            j = picker.run(ks, qs, j, on_miss is not None, out)
            if j < ks.size and on_miss is not None:
                on_miss(picker, int(ks[j]), int(qs[j]))
                j += 1
        if progress is not None:
            progress(last)


# ----------------------------------------------------------------------------- warming


def warm(policies: Sequence[Policy] = tuple(Policy)) -> bool:
    """Load, now, what a process's first compiled run would otherwise load inside it: numba,
    each kernel's machine code from the on-disk cache (compiling it if the cache is
    missing), :meth:`Picker.give`'s, and OR-Tools with the ``optimal`` plan's solver
    (``policies``: those the process will run; every one by default). Returns whether
    some machine code was compiled rather than loaded (a compile leaves tens of MiB of
    cyclic garbage, which a caller that paused the collector may want to collect).

    The dashboard's Simulate page calls it in the background, so a manager's first large
    what-if does not pay about half a second of loading on the click; ``frp simulate``
    calls it for its policy while it reads the customers. numba keeps one
    machine code per type signature, so the kernels are called as a real run calls them: a
    tiny world's ledger and pools (``engine.policies.Ledger``), the output columns of
    ``engine.policies._empty_choices`` and :class:`Picker`, whose arrays are what every run
    passes whatever its input. It drives :class:`Picker` rather than
    :func:`select_compiled` so that it calls nothing a caller may have replaced.
    """
    from engine.policies import Ledger, _empty_choices

    compiled_before = _compiled()
    pools = [np.array([0, 1]), np.array([1, 2]), np.array([2])]
    pool_of = np.array([0, 1, 0, 2, 1, 0, 2, 1], dtype=np.int32)  # the third pool fills up
    for policy in policies:
        ledger = Ledger.start(np.array([3, 2, 1]), np.array([0, 1, 0]), [None, 2, 1])
        ledger.register_pools(pools)
        allotment = None
        if policy is Policy.OPTIMAL:
            from engine.optimal import plan  # OR-Tools: most of the policy's first call

            allotment = plan(ledger, pools, np.bincount(pool_of, minlength=len(pools)).tolist())
        choices = _empty_choices(int(pool_of.size))
        out = (choices.chosen, choices.prev, choices.n_full, choices.load_after)
        ks = np.arange(pool_of.size, dtype=np.int64)
        picker = Picker(policy, ledger, pools, allotment)
        picker.run(ks, pool_of.astype(np.int64), 0, False, out)
        if policy is Policy.ROUND_ROBIN:  # a split's parts, given from Python
            picker.give(0)
    return _compiled() > compiled_before


#: The functions numba compiles and Python calls (the others are inlined into these).
KERNELS = (turn_kernel, weighted_kernel, planned_kernel, _give)


def _compiled() -> int:
    """How many machine codes this process compiled rather than loaded from the cache."""
    return sum(sum(k.stats.cache_misses.values()) for k in KERNELS)
