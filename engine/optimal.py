"""The `optimal` policy's global plan: a min-cost max-flow over pools and partners.

Customers of one pool are interchangeable (they match exactly the same partners), so
the network has one node per pool, not per customer: source -> pool (its demand) ->
partner (any matching member) -> sink (the partner's free seats). The maximum flow is
the most customers any policy could place; among maximum flows the solver takes the
cheapest, and the sink arcs are priced by utilisation after the seat is filled
(a convex, piecewise-linear cost), which spreads load evenly against capacity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ortools.graph.python import min_cost_flow

from engine.policies import Ledger

#: Cost resolution: utilisation is priced in thousandths.
COST_SCALE = 1_000
#: Pieces of the convex cost per partner; more pieces, finer balance, bigger network.
SEGMENTS = 8


class SolverError(RuntimeError):
    pass


def plan(
    ledger: Ledger, pools: Sequence[np.ndarray], demand: Sequence[int]
) -> list[dict[int, int]]:
    """Seats per (pool, partner) that place the most customers with the most even load."""
    members: dict[int, int] = {}  # partner index -> node
    for q, pool in enumerate(pools):
        if demand[q] == 0:
            continue
        for i in pool:
            i = int(i)
            if i not in members and ledger.room(i):
                members[i] = 0
    n_pools = len(pools)
    source, sink = 0, 1
    next_node = 2 + n_pools
    for i in sorted(members):
        members[i] = next_node
        next_node += 1

    tails: list[int] = []
    heads: list[int] = []
    caps: list[int] = []
    costs: list[int] = []

    def arc(t: int, h: int, cap: int, cost: int) -> int:
        tails.append(t)
        heads.append(h)
        caps.append(cap)
        costs.append(cost)
        return len(tails) - 1

    assign_arcs: list[tuple[int, int, int]] = []  # (arc, pool, partner)
    for q, pool in enumerate(pools):
        d = int(demand[q])
        if d == 0:
            continue
        arc(source, 2 + q, d, 0)
        for i in pool:
            i = int(i)
            if i in members:
                assign_arcs.append((arc(2 + q, members[i], d, 0), q, i))
    for i, node in members.items():
        free = ledger.capacity[i] - ledger.load[i]
        pieces = min(free, SEGMENTS)
        start = 0
        for k in range(pieces):
            end = free * (k + 1) // pieces
            if end <= start:
                continue
            util_after = (ledger.load[i] + end) / ledger.capacity[i]
            arc(node, sink, end - start, int(round(COST_SCALE * util_after)))
            start = end

    allot: list[dict[int, int]] = [{} for _ in pools]
    if not assign_arcs:
        return allot
    smcf = min_cost_flow.SimpleMinCostFlow()
    smcf.add_arcs_with_capacity_and_unit_cost(
        np.array(tails, dtype=np.int32),
        np.array(heads, dtype=np.int32),
        np.array(caps, dtype=np.int64),
        np.array(costs, dtype=np.int64),
    )
    # The solver pushes as much as it can from supply to demand nodes, then minimises cost.
    total = int(sum(demand))
    smcf.set_node_supply(source, total)
    smcf.set_node_supply(sink, -total)
    status = smcf.solve_max_flow_with_min_cost()
    if status != smcf.OPTIMAL:
        raise SolverError(f"min-cost flow solver stopped with status {status}")
    for a, q, i in assign_arcs:
        f = smcf.flow(a)
        if f:
            allot[q][i] = int(f)
    return allot
