"""Selection policies: which partner of a pool gets the next customer.

All policies share one :class:`Ledger` (remaining seats and the round-robin order), so
the order a committed run leaves behind is the same whatever policy chose. The heap
policies keep one heap per pool with *lazy* entries: a partner's key changes only when
it is assigned, so a stale entry is refreshed when it surfaces, and a full partner is
dropped for good (capacity never grows within a run). Each pick costs O(log pool).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.reasons import Policy

NOT_PLACED = -1


@dataclass
class Ledger:
    """Mutable state of one run: seats left and the round-robin order, by partner index."""

    capacity: list[int]
    load: list[int]  # active referrals before the run + those given in this run
    stamp: list[int]  # last_assigned; -1 = never assigned
    counter: int  # the next stamp to hand out
    pools_of: list[list[int]] = field(default_factory=list)
    full_count: list[int] = field(default_factory=list)  # per pool: partners with no room
    full_order: list[list[int]] = field(default_factory=list)  # per pool: in order they filled
    last_prev: int = -1  # the stamp the most recently given partner had before (for traces)

    @classmethod
    def start(
        cls, capacity: np.ndarray, active: np.ndarray, last_assigned: Sequence[int | None]
    ) -> Ledger:
        stamps = [-1 if v is None else int(v) for v in last_assigned]
        return cls(
            capacity=[int(c) for c in capacity],
            load=[int(a) for a in active],
            stamp=stamps,
            counter=max(stamps, default=0) + 1 if any(s >= 0 for s in stamps) else 1,
        )

    def room(self, i: int) -> bool:
        return self.load[i] < self.capacity[i]

    def rr_key(self, i: int) -> int:
        """Least recently assigned first; never assigned (-1) before all; ties by index."""
        return (self.stamp[i] + 1) * len(self.stamp) + i

    def register_pools(self, pools: Sequence[np.ndarray]) -> None:
        self.pools_of = [[] for _ in self.capacity]
        self.full_count = []
        self.full_order = []
        for q, members in enumerate(pools):
            full = [int(i) for i in members if not self.room(int(i))]
            self.full_count.append(len(full))
            self.full_order.append(full)
            for i in members:
                self.pools_of[int(i)].append(q)

    def give(self, i: int) -> int:
        """Record one referral to partner i; returns the partner's previous stamp."""
        prev = self.stamp[i]
        self.last_prev = prev
        self.load[i] += 1
        self.stamp[i] = self.counter
        self.counter += 1
        if self.load[i] == self.capacity[i]:
            for q in self.pools_of[i]:
                self.full_count[q] += 1
                self.full_order[q].append(i)
        return prev


class Picker:
    """Chooses a partner index from a pool, or NOT_PLACED when every member is full."""

    def __init__(self, ledger: Ledger, pools: Sequence[np.ndarray]) -> None:
        self.ledger = ledger
        self.pools = pools

    def pick(self, pool: int) -> int:
        raise NotImplementedError


class _HeapPicker(Picker):
    """Smallest key wins; subclasses define the key (a partner's key changes only when given)."""

    def __init__(self, ledger: Ledger, pools: Sequence[np.ndarray]) -> None:
        super().__init__(ledger, pools)
        self.heaps: list[list | None] = [None] * len(pools)

    def key(self, i: int) -> tuple | int:
        raise NotImplementedError

    def _heap(self, pool: int) -> list:
        heap = self.heaps[pool]
        if heap is None:
            led = self.ledger
            heap = [(self.key(int(i)), int(i)) for i in self.pools[pool] if led.room(int(i))]
            heapq.heapify(heap)
            self.heaps[pool] = heap
        return heap

    def pick(self, pool: int) -> int:
        heap = self._heap(pool)
        led = self.ledger
        while heap:
            k, i = heap[0]
            if not led.room(i):
                heapq.heappop(heap)
                continue
            current = self.key(i)
            if current != k:
                heapq.heapreplace(heap, (current, i))
                continue
            led.give(i)
            if led.room(i):
                heapq.heapreplace(heap, (self.key(i), i))
            else:
                heapq.heappop(heap)
            return i
        return NOT_PLACED


class RoundRobin(_HeapPicker):
    def key(self, i: int) -> int:
        return self.ledger.rr_key(i)


class LeastLoaded(_HeapPicker):
    def key(self, i: int) -> tuple[float, int]:
        # Floats order these fractions exactly: numerators and denominators are at most
        # MAX_CAPACITY, so distinct fractions differ far beyond double precision.
        led = self.ledger
        return ((led.load[i] + 1) / led.capacity[i], led.rr_key(i))


class Weighted(Picker):
    """Smooth weighted round robin (as in nginx) by effective capacity, per pool."""

    def __init__(self, ledger: Ledger, pools: Sequence[np.ndarray]) -> None:
        super().__init__(ledger, pools)
        self.current: list[dict[int, int] | None] = [None] * len(pools)

    def pick(self, pool: int) -> int:
        led = self.ledger
        cur = self.current[pool]
        if cur is None:
            cur = {int(i): 0 for i in self.pools[pool] if led.room(int(i))}
            self.current[pool] = cur
        for i in [i for i in cur if not led.room(i)]:
            del cur[i]
        if not cur:
            return NOT_PLACED
        total = 0
        best = NOT_PLACED
        best_val = 0
        best_rr = 0
        cap = led.capacity
        for i in cur:
            w = cap[i]
            total += w
            v = cur[i] + w
            cur[i] = v
            if best == NOT_PLACED or v > best_val or (v == best_val and led.rr_key(i) < best_rr):
                best, best_val, best_rr = i, v, led.rr_key(i)
        cur[best] -= total
        led.give(best)
        return best


class Planned(Picker):
    """Follows a precomputed allotment per pool (from the optimal solver).

    Within a pool's allotment the least recently assigned partner goes first, so
    customers still rotate through the partners the plan chose.
    """

    def __init__(
        self, ledger: Ledger, pools: Sequence[np.ndarray], allotment: Sequence[dict[int, int]]
    ) -> None:
        super().__init__(ledger, pools)
        self.left = [dict(a) for a in allotment]

    def pick(self, pool: int) -> int:
        left = self.left[pool]
        led = self.ledger
        best = NOT_PLACED
        best_rr = 0
        for i, n in left.items():
            if n > 0 and led.room(i):
                rr = led.rr_key(i)
                if best == NOT_PLACED or rr < best_rr:
                    best, best_rr = i, rr
        if best == NOT_PLACED:
            return NOT_PLACED
        left[best] -= 1
        led.give(best)
        return best


def make_picker(
    policy: Policy,
    ledger: Ledger,
    pools: Sequence[np.ndarray],
    allotment: Sequence[dict[int, int]] | None = None,
) -> Picker:
    if policy is Policy.ROUND_ROBIN:
        return RoundRobin(ledger, pools)
    if policy is Policy.LEAST_LOADED:
        return LeastLoaded(ledger, pools)
    if policy is Policy.WEIGHTED:
        return Weighted(ledger, pools)
    if policy is Policy.OPTIMAL:
        if allotment is None:
            raise ValueError("the optimal policy needs an allotment from engine.optimal.plan")
        return Planned(ledger, pools, allotment)
    raise ValueError(f"unknown policy {policy!r}")
