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
    n_pools = len(pools)
    allot: list[dict[int, int]] = [{} for _ in pools]
    demand_np = np.asarray(demand, dtype=np.int64).reshape(-1)
    wanted = np.flatnonzero(demand_np > 0)
    if wanted.size == 0:
        return allot
    room = np.array(ledger.load, dtype=np.int64) < np.array(ledger.limit, dtype=np.int64)
    # Members with room of every pool with demand, pool by pool (members ascending).
    lens = np.array([len(pools[q]) for q in wanted.tolist()], dtype=np.int64)
    member = np.concatenate([np.asarray(pools[q], dtype=np.int64) for q in wanted.tolist()])
    pool_of = np.repeat(wanted, lens)
    ok = room[member]
    member, pool_of = member[ok], pool_of[ok]
    # Partner nodes numbered by partner index; arcs to the sink in order of first use.
    uniq, first = np.unique(member, return_index=True)
    used = uniq[np.argsort(first, kind="stable")]
    source, sink = 0, 1
    node = np.zeros(len(ledger.capacity), dtype=np.int64)
    node[uniq] = 2 + n_pools + np.arange(uniq.size, dtype=np.int64)

    # Arc order as built one by one: per pool its source arc then its assignment arcs.
    per_pool = np.bincount(pool_of, minlength=n_pools)[wanted]
    starts = np.concatenate(([0], np.cumsum(per_pool + 1)[:-1]))
    n_front = int(per_pool.sum() + wanted.size)
    tails = np.empty(n_front, dtype=np.int64)
    heads = np.empty(n_front, dtype=np.int64)
    caps = np.empty(n_front, dtype=np.int64)
    tails[starts] = source
    heads[starts] = 2 + wanted
    caps[starts] = demand_np[wanted]
    assign_at = np.ones(n_front, dtype=bool)
    assign_at[starts] = False
    assign_pos = np.flatnonzero(assign_at)  # in pool order, members ascending: as `member`
    tails[assign_pos] = 2 + pool_of
    heads[assign_pos] = node[member]
    caps[assign_pos] = demand_np[pool_of]
    costs = np.zeros(n_front, dtype=np.int64)

    if assign_pos.size == 0:
        return allot
    s_tails, s_caps, s_costs = _sink_arcs(ledger, used, node)
    smcf = min_cost_flow.SimpleMinCostFlow()
    smcf.add_arcs_with_capacity_and_unit_cost(
        np.concatenate((tails, s_tails)).astype(np.int32),
        np.concatenate((heads, np.full(s_tails.size, sink, dtype=np.int64))).astype(np.int32),
        np.concatenate((caps, s_caps)),
        np.concatenate((costs, s_costs)),
    )
    # The solver pushes as much as it can from supply to demand nodes, then minimises cost.
    total = int(demand_np.sum())
    smcf.set_node_supply(source, total)
    smcf.set_node_supply(sink, -total)
    status = smcf.solve_max_flow_with_min_cost()
    if status != smcf.OPTIMAL:
        raise SolverError(f"min-cost flow solver stopped with status {status}")
    flows = smcf.flows(assign_pos)
    hit = np.flatnonzero(flows)
    for q, i, f in zip(
        pool_of[hit].tolist(), member[hit].tolist(), flows[hit].tolist(), strict=True
    ):
        allot[q][i] = int(f)
    return allot


def _sink_arcs(
    ledger: Ledger, used: np.ndarray, node: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arcs from each used partner's node to the sink: its free seats in up to
    SEGMENTS pieces, each priced by the utilisation once it is filled (tails,
    capacities, unit costs; in partner order of ``used``)."""
    tails: list[int] = []
    caps: list[int] = []
    costs: list[int] = []
    for i in used.tolist():
        free = ledger.limit[i] - ledger.load[i]
        pieces = min(free, SEGMENTS)
        start = 0
        for k in range(pieces):
            end = free * (k + 1) // pieces
            if end <= start:
                continue
            util_after = (ledger.load[i] + end) / ledger.capacity[i]
            tails.append(int(node[i]))
            caps.append(end - start)
            costs.append(int(round(COST_SCALE * util_after)))
            start = end
    int64 = np.int64
    return np.array(tails, dtype=int64), np.array(caps, dtype=int64), np.array(costs, dtype=int64)
