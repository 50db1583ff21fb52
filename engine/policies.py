"""Selection policies: which partner of a pool gets the next customer.

All policies share one :class:`Ledger` (remaining seats and the round-robin order), so
the order a committed run leaves behind is the same whatever policy chose. The heap
policies keep one heap per pool with *lazy* entries: a partner's key changes only when
it is assigned, so a stale entry is refreshed when it surfaces, and a full partner is
dropped for good (capacity never grows within a run). Each pick costs O(log pool).

:func:`select` walks a whole cohort in compiled code (``engine.jit``). The Python loop
here, :func:`select_python`, is the reference the compiled kernels are tested against
(identical Choices, every policy): each policy's pick is inlined into one loop over plain
lists, and customers of pools whose members are all full are settled in bulk between
batches.

A split (``engine.split``) enters through one hook, ``on_miss``: a loop calls it with a
customer that missed, the hook gives its parts through the :class:`Ledger` and returns
the partners it gave, and the loop refreshes its own copies of their turns
(:func:`_split_at_miss`). With a hook, a customer of a full pool is settled in bulk only
when the hook knows it cannot be split either (``on_miss.settled``). The Python loop with
a hook walks on the ledger's own arrays (the hook reads and gives through them); the
compiled loop gives through its own state (``engine.jit.SplitAtMiss``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.reasons import Policy

NOT_PLACED = -1


#: How a hook makes a referral to partner i -> (its previous stamp, its new load): the
#: ledger's own (the Python loop) or the compiled loop's (``engine.jit.Picker.give``).
Give = Callable[[int], tuple[int, int]]


class OnMiss(Protocol):
    """The split hook (``engine.split.Splitter``)."""

    def __call__(self, k: int, give: Give | None = None) -> list[int]:
        """Customer k missed: the partners it gave a part to (none: no split), each
        through ``give`` (default: the ledger's)."""
        ...

    def settled(self, rows: np.ndarray) -> np.ndarray:
        """Of ``rows``, customers of pools with no room, those known not to split."""
        ...


@dataclass
class Ledger:
    """Mutable state of one run: seats left and the round-robin order, by partner index.

    Per pool it counts the members with no room (``full_count``, a numpy array): what a
    customer's turn records. Which members those were, and in what order they filled,
    follows from the partners' state after the run (``engine.explain``).
    """

    # Per partner, int64 numpy arrays (the compiled loop works on them in place):
    capacity: np.ndarray  # what weights and utilisation are measured against
    #: The load at which a partner is full: its capacity, or sooner its monthly quota
    #: (``engine.matching.PartnerIndex.limit``). Every "has room" test reads this.
    limit: np.ndarray
    load: np.ndarray  # active referrals before the run + those given in this run
    stamp: np.ndarray  # last_assigned; -1 = never assigned
    counter: int  # the next stamp to hand out
    pools_of: list[np.ndarray] = field(default_factory=list)  # per partner: its pools
    full_count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def start(
        cls,
        capacity: np.ndarray,
        active: np.ndarray,
        last_assigned: Sequence[int | None],
        limit: np.ndarray | None = None,
    ) -> Ledger:
        """A run's ledger; ``limit`` defaults to the capacity (no partner has a quota)."""
        stamps = np.array([-1 if v is None else int(v) for v in last_assigned], dtype=np.int64)
        return cls(
            capacity=np.array(capacity, dtype=np.int64),
            limit=np.array(capacity if limit is None else limit, dtype=np.int64),
            load=np.array(active, dtype=np.int64),
            stamp=stamps,
            counter=int(stamps.max()) + 1 if (stamps >= 0).any() else 1,
        )

    def rr_key(self, i: int) -> int:
        """Least recently assigned first; never assigned (-1) before all; ties by index."""
        return (int(self.stamp[i]) + 1) * len(self.stamp) + i

    def register_pools(self, pools: Sequence[np.ndarray]) -> None:
        n = len(self.capacity)
        arrays = [np.asarray(p, dtype=np.int64) for p in pools]
        sizes = np.array([p.size for p in arrays], dtype=np.int64)
        members = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        pool_id = np.repeat(np.arange(len(arrays), dtype=np.int64), sizes)
        no_room = self.load >= self.limit
        full = no_room[members] if members.size else np.zeros(0, dtype=bool)
        self.full_count = np.bincount(pool_id[full], minlength=len(arrays)).astype(np.int64)
        by_partner = np.argsort(members, kind="stable")  # pools ascending within a partner
        counts = np.bincount(members, minlength=n)
        self.pools_of = np.split(pool_id[by_partner], np.cumsum(counts)[:-1]) if n else []

    def mark_full(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Partner i has just filled up: count it in each of its pools.

        Returns those pools and their new full counts.
        """
        qs = self.pools_of[i]
        fc = self.full_count[qs] + 1
        self.full_count[qs] = fc
        return qs, fc

    def give(self, i: int) -> int:
        """Record one referral to partner i; returns the partner's previous stamp."""
        prev = int(self.stamp[i])
        self.load[i] += 1
        self.stamp[i] = self.counter
        self.counter += 1
        if self.load[i] == self.limit[i]:
            self.mark_full(i)
        return prev


@dataclass
class Choices:
    """The selection step's result, one entry per customer (numpy arrays of length n)."""

    chosen: np.ndarray  # partner index, NOT_PLACED when none
    prev: np.ndarray  # the chosen partner's stamp before this customer; -1 = never / not placed
    n_full: np.ndarray  # partners of the pool with no room when the customer's turn came
    load_after: np.ndarray  # the chosen partner's load after this customer; 0 = not placed


#: Customers handled per batch of the selection loop: between batches, customers of pools
#: whose every member is full are settled at once (vectorised) instead of one by one.
BATCH = 8_192


#: Picks (at most: customers with a pool, or the free seats of their pools' partners) from
#: which :func:`select` compiles: loading numba costs about 0.3 s of CPU and 130 MiB in a
#: fresh process, what the Python loop spends on some 50,000-100,000 picks. The benchmark's
#: capacity-bound world (55,245 free seats) stays in Python; its world with room compiles.
COMPILED_FROM = 100_000


def select(
    policy: Policy,
    ledger: Ledger,
    pools: Sequence[np.ndarray],
    pool_of: np.ndarray,
    allotment: Sequence[dict[int, int]] | None = None,
    progress: Callable[[int], None] | None = None,
    on_miss: OnMiss | None = None,
    *,
    compiled: bool | None = None,
) -> Choices:
    """Walk the customers in cohort order (``pool_of``: each one's pool, -1 = none): in
    compiled code (``engine.jit``) when there are COMPILED_FROM picks or more to make, or
    ``compiled`` says so; the same Choices as :func:`select_python` either way. With a
    split hook the kernels stop at each miss for it (``engine.jit.SplitAtMiss``)."""
    if compiled is None:
        compiled = compiles(ledger, pools, pool_of)
    if not compiled:
        return select_python(policy, ledger, pools, pool_of, allotment, progress, on_miss)
    from engine.jit import SplitAtMiss, select_compiled  # numba loads only where needed

    choices = _empty_choices(int(pool_of.size))
    out = (choices.chosen, choices.prev, choices.n_full, choices.load_after)
    if on_miss is None:
        select_compiled(policy, ledger, pools, pool_of, allotment, progress, out)
    else:
        split = SplitAtMiss(on_miss, pool_of, choices.n_full)
        select_compiled(
            policy, ledger, pools, pool_of, allotment, progress, out, split, split.settle
        )
    return choices


def compiles(ledger: Ledger, pools: Sequence[np.ndarray], pool_of: np.ndarray) -> bool:
    """Whether :func:`select`, not told, walks these customers in compiled code."""
    return _most_picks(ledger, pools, pool_of) >= COMPILED_FROM


def _most_picks(ledger: Ledger, pools: Sequence[np.ndarray], pool_of: np.ndarray) -> int:
    """At most this many customers can be placed: those with a pool, and the seats free
    at the partners of the pools they have (or anywhere, when that is below COMPILED_FROM:
    only the comparison with it is used)."""
    customers = int(np.count_nonzero(pool_of >= 0))
    if customers < COMPILED_FROM:
        return customers
    # Every partner's free seats bound those of the pools used; when they are already too
    # few the finer count (50 ms of finding the pools a million customers use) is moot.
    free_anywhere = int(np.maximum(ledger.limit - ledger.load, 0).sum())
    if free_anywhere < COMPILED_FROM:
        return free_anywhere
    # Marks, not sorts: the pools used from a count per pool, their partners as a mask.
    used = np.flatnonzero(np.bincount(pool_of[pool_of >= 0], minlength=len(pools)))
    member = np.zeros(len(ledger.limit), dtype=bool)
    member[np.concatenate([pools[q] for q in used.tolist()])] = True
    free = np.maximum(ledger.limit[member] - ledger.load[member], 0)
    return min(customers, int(free.sum()))


def _empty_choices(n: int) -> Choices:
    """No one placed yet. 32-bit where the values allow (partner indexes, counts within a
    pool, loads): a million customers are 4 MB a column instead of 8. Stamps stay 64-bit."""
    return Choices(
        chosen=np.full(n, NOT_PLACED, dtype=np.int32),
        prev=np.full(n, -1, dtype=np.int64),
        n_full=np.zeros(n, dtype=np.int32),
        load_after=np.zeros(n, dtype=np.int32),
    )


def select_python(
    policy: Policy,
    ledger: Ledger,
    pools: Sequence[np.ndarray],
    pool_of: np.ndarray,
    allotment: Sequence[dict[int, int]] | None = None,
    progress: Callable[[int], None] | None = None,
    on_miss: OnMiss | None = None,
) -> Choices:
    """Walk the customers in cohort order (``pool_of``: each one's pool, -1 = none).

    The reference loop (see the module docstring): each policy's pick is inlined over
    plain lists. A pool whose members are all full stays so for the rest of the run
    (capacity never grows), so its later customers are settled in bulk.
    """
    choices = _empty_choices(int(pool_of.size))
    chosen, prev, n_full = choices.chosen, choices.prev, choices.n_full
    load_after = choices.load_after
    # With a split hook the loop works on the ledger itself: the hook reads and gives there.
    lists: _Lists | Ledger = _Lists(ledger) if on_miss is None else ledger
    sizes = np.array([len(p) for p in pools], dtype=np.int64)
    dead = np.array(ledger.full_count, dtype=np.int64) >= sizes  # every member full
    step = _STEPS[policy](lists, pools, allotment, dead, on_miss)

    rows = np.flatnonzero(pool_of >= 0)
    out = _Out()
    for start in range(0, rows.size, BATCH):
        batch = rows[start : start + BATCH]
        qs = pool_of[batch]
        settled = dead[qs]
        if on_miss is not None and settled.any():
            at = np.flatnonzero(settled)
            settled[at[~on_miss.settled(batch[at])]] = False
        if settled.any():
            n_full[batch[settled]] = sizes[qs[settled]]
            live = ~settled
            batch, qs = batch[live], qs[live]
        step(batch.tolist(), qs.tolist(), out)
        if progress is not None:
            progress(int(rows[min(start + BATCH, rows.size) - 1]))
    k = np.array(out.k, dtype=np.int64)
    chosen[k] = out.i
    prev[k] = out.prev
    n_full[k] = out.full
    load_after[k] = out.load
    missed = np.array(out.missed, dtype=np.int64)
    n_full[missed] = out.missed_full
    if isinstance(lists, _Lists):
        lists.write_back(ledger)
    return choices


class _Lists:
    """The ledger's per-partner arrays as plain lists, for the Python loop (indexing a
    list is several times faster than a numpy array); written back after the run."""

    def __init__(self, ledger: Ledger) -> None:
        self.capacity: list[int] = ledger.capacity.tolist()
        self.limit: list[int] = ledger.limit.tolist()
        self.load: list[int] = ledger.load.tolist()
        self.stamp: list[int] = ledger.stamp.tolist()
        self.counter = ledger.counter
        self.full_count = ledger.full_count
        self.pools_of = ledger.pools_of

    def mark_full(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        qs = self.pools_of[i]
        fc = self.full_count[qs] + 1
        self.full_count[qs] = fc
        return qs, fc

    def write_back(self, ledger: Ledger) -> None:
        ledger.load[:] = self.load
        ledger.stamp[:] = self.stamp
        ledger.counter = self.counter


class _Out:
    """What the loop records: placed customers (k, i, prev, full, load) and missed ones."""

    def __init__(self) -> None:
        self.k: list[int] = []
        self.i: list[int] = []
        self.prev: list[int] = []
        self.full: list[int] = []
        self.load: list[int] = []
        self.missed: list[int] = []
        self.missed_full: list[int] = []


def _filler(ledger: _Lists, dead: np.ndarray, sizes: list[int]):
    """Mark partner i full in every pool it belongs to, and the pools now all full as dead."""
    size_of = np.array(sizes, dtype=np.int64)
    mark_full = ledger.mark_full

    def fill(i: int) -> None:
        qs, fc = mark_full(i)
        dead[qs[fc >= size_of[qs]]] = True

    return fill


def _split_at_miss(on_miss: OnMiss, ledger: Ledger, k: int, counter: int, rr, key=None) -> int:
    """Let the split hook take customer k, which missed; refresh the loop's turns (and
    least-loaded keys) of the partners it gave. Returns the run's next stamp."""
    ledger.counter = counter
    for i in on_miss(k):
        r = ledger.rr_key(i)
        rr[i] = r
        if key is not None:
            key[i] = ((int(ledger.load[i]) + 1) / int(ledger.capacity[i]), r)
    return ledger.counter


def _round_robin_step(ledger, pools, allotment, dead, on_miss=None):
    return _heap_step(ledger, pools, dead, on_miss, least_loaded=False)


def _least_loaded_step(ledger, pools, allotment, dead, on_miss=None):
    return _heap_step(ledger, pools, dead, on_miss, least_loaded=True)


def _heap_step(ledger, pools, dead, on_miss, *, least_loaded: bool):
    """Round robin and least-loaded: one lazy heap per pool (see the module docstring).

    Round-robin keys are plain ints ``(stamp + 1) * n + i`` (so the partner is
    ``key % n``); least-loaded keys are flat ``((load + 1) / capacity, rr key)`` pairs
    (the partner is ``rr key % n``). The current key of every partner is kept in a list,
    updated when the partner is given; an entry is stale when it differs from that.
    """
    cap = ledger.capacity
    limit = ledger.limit
    load = ledger.load
    stamp = ledger.stamp
    full_count = ledger.full_count
    size = len(stamp)
    sizes = [len(p) for p in pools]
    fill = _filler(ledger, dead, sizes)
    heappop, heapreplace, heapify = heapq.heappop, heapq.heapreplace, heapq.heapify
    rr = [(s + 1) * size + i for i, s in enumerate(stamp)]
    key: list[Any]  # (utilisation, turn) or None per partner for least-loaded, else the turn
    if least_loaded:
        key = [((load[i] + 1) / cap[i], rr[i]) if cap[i] > 0 else None for i in range(size)]
    else:
        key = rr
    heaps: list[list | None] = [None] * len(pools)

    def step(ks: list[int], qs: list[int], out: _Out) -> None:
        counter = ledger.counter
        out_k, out_i, out_prev = out.k.append, out.i.append, out.prev.append
        out_full, out_load = out.full.append, out.load.append
        missed, missed_full = out.missed.append, out.missed_full.append
        for k, q in zip(ks, qs, strict=True):
            heap = heaps[q]
            if heap is None:
                members = [i for i in pools[q].tolist() if load[i] < limit[i]]
                heap = [key[i] for i in members]
                heapify(heap)
                heaps[q] = heap
            before = full_count[q]
            while heap:
                entry = heap[0]
                i = (entry[1] if least_loaded else entry) % size
                if load[i] >= limit[i]:
                    heappop(heap)
                    continue
                current = key[i]
                if current != entry:
                    heapreplace(heap, current)
                    continue
                # give(i)
                out_prev(stamp[i])
                li = load[i] + 1
                load[i] = li
                stamp[i] = counter
                r = (counter + 1) * size + i
                rr[i] = r
                counter += 1
                if least_loaded:
                    key[i] = ((li + 1) / cap[i], r)
                if li >= limit[i]:
                    heappop(heap)
                    fill(i)
                else:
                    heapreplace(heap, key[i])
                out_k(k)
                out_i(i)
                out_full(before)
                out_load(li)
                break
            else:
                missed(k)
                missed_full(full_count[q])
                if on_miss is not None:
                    keys = key if least_loaded else None
                    counter = _split_at_miss(on_miss, ledger, k, counter, rr, keys)
        ledger.counter = counter

    return step


def _weighted_step(ledger, pools, allotment, dead, on_miss=None):
    """Smooth weighted round robin (as in nginx) by effective capacity, per pool.

    Each pool keeps a current weight per member with room; every pick adds each
    member's capacity to its weight, the highest weight wins (ties: least recently
    assigned) and gives back the pool's total.
    """
    cap = ledger.capacity
    limit = ledger.limit
    load = ledger.load
    stamp = ledger.stamp
    full_count = ledger.full_count
    size = len(stamp)
    sizes = [len(p) for p in pools]
    fill = _filler(ledger, dead, sizes)
    rr = [(s + 1) * size + i for i, s in enumerate(stamp)]
    current: list[dict[int, int] | None] = [None] * len(pools)

    def step(ks: list[int], qs: list[int], out: _Out) -> None:
        counter = ledger.counter
        for k, q in zip(ks, qs, strict=True):
            cur = current[q]
            if cur is None:
                cur = {i: 0 for i in pools[q].tolist() if load[i] < limit[i]}
                current[q] = cur
            before = full_count[q]
            if before:
                for i in [i for i in cur if load[i] >= limit[i]]:
                    del cur[i]
            if not cur:
                out.missed.append(k)
                out.missed_full.append(full_count[q])
                if on_miss is not None:
                    counter = _split_at_miss(on_miss, ledger, k, counter, rr)
                continue
            total = 0
            best = NOT_PLACED
            best_val = 0
            best_rr = 0
            for i, v in cur.items():
                w = cap[i]
                total += w
                v += w
                cur[i] = v
                if best == NOT_PLACED or v > best_val or (v == best_val and rr[i] < best_rr):
                    best, best_val, best_rr = i, v, rr[i]
            cur[best] -= total
            i = best
            out.prev.append(stamp[i])
            li = load[i] + 1
            load[i] = li
            stamp[i] = counter
            rr[i] = (counter + 1) * size + i
            counter += 1
            if li >= limit[i]:
                fill(i)
            out.k.append(k)
            out.i.append(i)
            out.full.append(before)
            out.load.append(li)
        ledger.counter = counter

    return step


def _planned_step(ledger, pools, allotment, dead, on_miss=None):
    """Follow a precomputed allotment per pool (from the optimal solver).

    Within a pool's allotment the least recently assigned partner goes first, so
    customers still rotate through the partners the plan chose.
    """
    if allotment is None:
        raise ValueError("the optimal policy needs an allotment from engine.optimal.plan")
    limit = ledger.limit
    load = ledger.load
    stamp = ledger.stamp
    full_count = ledger.full_count
    size = len(stamp)
    sizes = [len(p) for p in pools]
    fill = _filler(ledger, dead, sizes)
    rr = [(s + 1) * size + i for i, s in enumerate(stamp)]
    left = [dict(a) for a in allotment]

    def step(ks: list[int], qs: list[int], out: _Out) -> None:
        counter = ledger.counter
        for k, q in zip(ks, qs, strict=True):
            best = NOT_PLACED
            best_rr = 0
            pool_left = left[q]
            spent = None
            for i, n in pool_left.items():
                if n > 0 and load[i] < limit[i]:
                    r = rr[i]
                    if best == NOT_PLACED or r < best_rr:
                        best, best_rr = i, r
                elif spent is None:
                    spent = [i]
                else:
                    spent.append(i)
            if spent is not None:  # allotment used up or partner full: never chosen again
                for i in spent:
                    del pool_left[i]
            if best == NOT_PLACED:
                out.missed.append(k)
                out.missed_full.append(full_count[q])
                if on_miss is not None:
                    counter = _split_at_miss(on_miss, ledger, k, counter, rr)
                continue
            i = best
            pool_left[i] -= 1
            before = full_count[q]
            out.prev.append(stamp[i])
            li = load[i] + 1
            load[i] = li
            stamp[i] = counter
            rr[i] = (counter + 1) * size + i
            counter += 1
            if li >= limit[i]:
                fill(i)
            out.k.append(k)
            out.i.append(i)
            out.full.append(before)
            out.load.append(li)
        ledger.counter = counter

    return step


_STEPS = {
    Policy.ROUND_ROBIN: _round_robin_step,
    Policy.LEAST_LOADED: _least_loaded_step,
    Policy.WEIGHTED: _weighted_step,
    Policy.OPTIMAL: _planned_step,
}
