"""One run of the process over a cohort: eligibility, matching, capacity, selection, outcome.

``simulate`` is the whole of the process (docs/domain.md, "The process") and nothing
else: it takes validated frames and returns a :class:`~engine.simulation.Simulation`,
writes nothing, and gives the same output for the same input. Only the selection step
walks customers one by one (the policies are sequential by nature); everything else is
vectorised or done once per signature. The traces' words are ``engine.explain``'s.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from functools import partial

import numpy as np
import polars as pl

from engine.explain import RunRecord, trace_texts
from engine.matching import (
    COHORT_COLUMNS,
    Cohort,
    Matcher,
    PartnerIndex,
    SignatureColumns,
    index_partners,
    mask_names,
    match_mask_of,
    pool_keys,
    pre_reason_code_expr,
    prepare_cohort,
    workload_mask,
)
from engine.policies import Ledger, compiles, select
from engine.reasons import Policy, Reason
from engine.rules import Rules
from engine.simulation import REASON_CODE, Lookup, Simulation
from engine.sizes import size_code_expr
from engine.split import Parts, Splitter, parts_frame
from engine.threads import later

Progress = Callable[[int, int], None]
#: The customer columns a run reads; callers holding a large cohort can keep only these.
INPUT_COLUMNS = (
    "tenant_id",
    "country",
    "language",
    "seats",
    "workloads",
    "gateway",
    "referral_consent",
)
#: How often (in customers) the selection loop reports progress.
PROGRESS_EVERY = 50_000


def simulate(
    partners: pl.DataFrame,
    customers: pl.DataFrame | Cohort,
    rules: Rules,
    policy: Policy | str = Policy.ROUND_ROBIN,
    *,
    excluded: Mapping[str, Collection[str]] | None = None,
    today: date | None = None,
    progress: Progress | None = None,
    compiled: bool | None = None,
) -> Simulation:
    """Assign a cohort under ``rules`` and ``policy``; see the module docstring.

    ``customers`` is a validated customers frame, or a :class:`Cohort` prepared from one
    under the same rules' eligible workloads. ``excluded`` maps a tenant to the partners
    that declined it (the referral life cycle): they are never chosen for it again, and
    ``rules.max_declines`` of them send it to CSS. ``today`` is the run's date (the
    clock's, given by the caller): partners paused until a later date take no one; None
    considers no pause. A ``monthly_quota`` counts the partners' MONTH_REFERRALS column,
    which the caller counts for ``today``'s month (docs/domain.md, "Partner availability
    and intake"). ``compiled``: see :func:`engine.policies.select` (None: by the number of
    picks, as suits a process that runs once).
    """
    with gc_paused():
        if isinstance(customers, Cohort):
            if excluded:
                raise ValueError("give excluded to prepare_cohort, not with a prepared Cohort")
            if customers.eligible_workloads != tuple(rules.eligible_workloads):
                raise ValueError("the cohort was prepared under other eligible workloads")
            cohort = customers
        else:
            cohort = prepare_cohort(customers, rules, excluded)
        return _simulate(partners, cohort, rules, Policy(policy), today, progress, compiled)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (restored after, as it was).

    A run makes hundreds of thousands of small lists and tuples (heaps, signatures,
    turns) and no reference cycles; the collector would walk them again and again,
    about a tenth of a million-customer run. ``frp simulate`` pauses it for the whole
    command (cli/assignment.py).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _simulate(
    partners: pl.DataFrame,
    cohort: Cohort,
    rules: Rules,
    policy: Policy,
    today: date | None,
    progress: Progress | None,
    compiled: bool | None = None,
) -> Simulation:
    index = index_partners(partners, rules, today)
    prepared = cohort.frame.with_columns(pre_reason_code_expr(rules))
    n = prepared.height

    # 1. Signatures of FRP-eligible customers, each matched once; pools deduplicated.
    sig_of, signatures = _signatures(prepared, cohort.workloads, rules, index.sizes_listed)
    matcher = Matcher(index)
    sig_pool, pools, sig_texts = matcher.match_cohort_later(signatures)
    pool = np.full(n, -1, dtype=np.int32)
    has_sig = sig_of >= 0
    pool[has_sig] = sig_pool[sig_of[has_sig]]

    # 2. Selection, customer by customer, in cohort order; a customer that misses may
    # be split (engine.split). Customers no single partner matches wait in an empty pool
    # of their own, so that their turn comes in cohort order too.
    ledger = Ledger.start(index.capacity, index.active, index.last_assigned, index.limit)
    split = rules.max_partners_per_customer > 1
    turn_pools = [*pools, np.zeros(0, dtype=np.int64)] if split else pools
    turn_pool = np.where(has_sig & (pool < 0), len(pools), pool).astype(np.int32)
    ledger.register_pools(turn_pools)
    allotment = None
    if policy is Policy.OPTIMAL:
        demand = np.bincount(pool[pool >= 0], minlength=len(pools))
        from engine.optimal import plan  # OR-Tools loads only for the policy that needs it

        allotment = plan(ledger, pools, demand.tolist())
        if split:
            allotment.append({})  # the empty pool's: nothing planned
    splitter = None
    if split:
        splitter = Splitter(
            ledger,
            matcher,
            signatures,
            sig_of,
            rules.max_partners_per_customer,
            _spare(ledger, allotment),
        )
    del signatures
    pool_of = turn_pool if split else pool
    if compiled is None:
        compiled = compiles(ledger, turn_pools, pool_of)
    choose = partial(
        select,
        policy,
        ledger,
        turn_pools,
        pool_of,
        allotment,
        _reporter(progress, n),
        splitter,
        compiled=compiled,
    )
    words = partial(_Words.of, sig_texts, index, pools)
    if compiled and splitter is None:
        # The compiled selection leaves the interpreter (nogil): the words of the traces
        # and the pools' keys, which it does not read, are spelled beside it. (Beside
        # the Python loop they would only take turns with it.)
        spelling = later(words, name="frp-words")
        choices = choose()
        spelled = spelling()
    else:  # the Python loop; or a split, which matches as it goes (the matcher is its own)
        choices = choose()
        spelled = words()
    if progress is not None:
        progress(n, n)

    record = RunRecord(sig_of, sig_pool, spelled.sig_trace, pool, pools, choices)
    parts = splitter.parts if splitter is not None else Parts()
    return _build(policy, rules, index, prepared, cohort.workloads, ledger, record, parts, spelled)


@dataclass(frozen=True)
class _Words:
    """What a run spells from its matching alone, never from its choices: each
    signature's match words, and the pools' member ids and keys (see :func:`_simulate`,
    which spells them while the selection runs)."""

    sig_trace: list[str]
    partner_ids: pl.Series
    member_ids: pl.Series
    pool_keys: list[str]

    @classmethod
    def of(
        cls, sig_texts: Callable[[], list[str]], index: PartnerIndex, pools: list[np.ndarray]
    ) -> _Words:
        partner_ids = pl.Series("partner_id", index.ids, dtype=pl.String)
        member_ids = _member_ids(partner_ids, pools)
        return cls(sig_texts(), partner_ids, member_ids, pool_keys(member_ids))


def _spare(ledger: Ledger, allotment: list[dict[int, int]] | None) -> list[int] | None:
    """Under ``optimal``, per partner the seats its plan leaves free: all a split may take
    (see engine.split); None for the other policies."""
    if allotment is None:
        return None
    spare = [lim - load for lim, load in zip(ledger.limit, ledger.load, strict=True)]
    for pool_allotment in allotment:
        for i, seats in pool_allotment.items():
            spare[i] -= seats
    return spare


def _signatures(
    prepared: pl.DataFrame, workloads: pl.DataFrame, rules: Rules, by_size: bool
) -> tuple[np.ndarray, SignatureColumns]:
    """Each customer's signature (-1 when a check before matching failed) and the
    distinct signatures (country, language, workloads matched on, partners that
    declined, and the size bucket when some partner takes only some sizes)."""
    css = bool(rules.css_workloads)
    mask = pl.col("mask") & match_mask_of(rules) if css else pl.col("mask")
    size = size_code_expr(pl.col("seats")) if by_size else pl.lit(0, dtype=pl.UInt8)
    sigs = (
        prepared.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
            "country",
            "language",
            mask.alias("mask"),
            "excluded",
            "wid",
            "pre",
            size.alias("size"),
        )
        .filter(pl.col("pre").is_null())
        .group_by("country", "language", "mask", "excluded", "size", maintain_order=True)
        .agg(pl.col("row"), pl.col("wid").first())
    )
    sig_of = np.full(prepared.height, -1, dtype=np.int32)
    sig_of[sigs["row"].explode().to_numpy()] = np.repeat(
        np.arange(sigs.height, dtype=np.int32), sigs["row"].list.len().to_numpy()
    )
    masks = sigs.get_column("mask").to_numpy()
    if css:  # named by the workloads matched on: one entry per signature
        wid = np.arange(sigs.height)
        eligible = [mask_names(m, rules.eligible_workloads) for m in masks.tolist()]
    else:
        wid = sigs.get_column("wid").to_numpy()
        eligible = [tuple(e or ()) for e in workloads.get_column("eligible").to_list()]
    columns = SignatureColumns(
        countries=sigs.get_column("country").to_list(),
        languages=sigs.get_column("language").to_list(),
        masks=masks,
        wid=wid,
        eligible=eligible,
        excluded=sigs.get_column("excluded").to_list(),
        sizes=sigs.get_column("size").to_numpy(),
    )
    return sig_of, columns


def _reporter(progress: Progress | None, n: int) -> Callable[[int], None] | None:
    """What the selection loop calls as it goes: ``progress`` every PROGRESS_EVERY
    customers (said once at 0 here)."""
    if progress is None:
        return None
    every = [PROGRESS_EVERY]

    def report(k: int) -> None:
        if k >= every[0]:
            progress(k, n)
            every[0] = (k // PROGRESS_EVERY + 1) * PROGRESS_EVERY

    progress(0, n)
    return report


def _build(
    policy: Policy,
    rules: Rules,
    index: PartnerIndex,
    prepared: pl.DataFrame,
    workloads: pl.DataFrame,
    ledger: Ledger,
    record: RunRecord,
    split: Parts,
    spelled: _Words,
) -> Simulation:
    """The run's result from what the steps left: compact rows, their lookup tables, the
    partners' state and the pools, then the traces (``engine.explain``).

    A split customer's row carries its first part's partner (so it counts as placed);
    ``parts`` lists every part of the customers with more than one.
    """
    choices, pool, pools = record.choices, record.pool, record.pools
    chosen, prev = choices.chosen, choices.prev
    firsts = [t for t, part in enumerate(split.part) if part == 1]
    at = np.array([split.row[t] for t in firsts], dtype=np.int64)
    chosen[at] = [split.partner[t] for t in firsts]
    prev[at] = [split.prev[t] for t in firsts]
    choices.load_after[at] = [split.load[t] for t in firsts]
    placed = chosen >= 0
    # Reason per customer: an eligibility check's when one failed, else by placement.
    exhausted = pool >= 0
    exhausted[np.array(split.cover_exists, dtype=np.int64)] = True
    code = np.where(
        placed,
        REASON_CODE[Reason.ASSIGNED],
        np.where(
            exhausted,
            REASON_CODE[Reason.CAPACITY_EXHAUSTED],
            REASON_CODE[Reason.NO_PARTNER_MATCH],
        ),
    ).astype(np.uint8)
    rows = prepared.select(
        *COHORT_COLUMNS,
        "wid",
        pl.coalesce(pl.col("pre"), pl.Series(code)).alias("reason"),
        pl.Series("pool", pool, dtype=pl.Int32).set(pl.Series(pool < 0), None),
        pl.Series("chosen", chosen, dtype=pl.Int32).set(pl.Series(~placed), None),
        pl.Series("n_full", choices.n_full, dtype=pl.Int32),
        pl.Series("prev", prev).set(pl.Series(prev < 0), None),
        pl.Series("load_after", choices.load_after, dtype=pl.Int32),
    )
    queue_of_country = {
        country: rules.queue_of_region[r]
        for country, r in rules.region_of_country.items()
        if r in rules.queue_of_region
    }
    lookup = Lookup(
        index=index,
        partner_ids=spelled.partner_ids,
        psm_emails=pl.Series("psm_email", index.psm_email, dtype=pl.String),
        pool_keys=pl.Series("pool_key", spelled.pool_keys, dtype=pl.String),
        pool_sizes=pl.Series("n_matching", [p.size for p in pools], dtype=pl.Int64),
        workloads=workloads,
        traces=pl.Series("trace", [], dtype=pl.String),
        trace_head=pl.Series("trace_head", [], dtype=pl.Boolean),
        region_of_country=rules.region_of_country,
        queue_of_country=queue_of_country,
    )
    partner_state = _partner_state(index, ledger)
    pool_frame = _pool_frame(lookup, spelled.member_ids, pool, placed)
    parts = None
    if rules.max_partners_per_customer > 1 or rules.css_workloads:
        mask = prepared.get_column("mask").to_numpy()
        css = workload_mask(rules.css_workloads, rules.eligible_workloads)
        parts = parts_frame(split, chosen, mask, css)
    sim = Simulation(policy, rules, rows, lookup, partner_state, pool_frame, parts)
    codes, texts, head = trace_texts(sim, replace(record, split_rows=at))
    return replace(
        sim,
        rows=rows.with_columns(pl.Series("trace", codes, dtype=pl.UInt32)),
        lookup=replace(lookup, traces=texts, trace_head=head),
    )


def _partner_state(index: PartnerIndex, ledger: Ledger) -> pl.DataFrame:
    """Per partner: load before and after the run (every part of a split counts), the
    load at which it is full (its capacity or sooner its monthly quota), and the
    round-robin order after."""
    assigned = np.array(ledger.load, dtype=np.int64) - index.active
    cap = index.capacity
    with np.errstate(divide="ignore", invalid="ignore"):
        util_before = np.where(cap > 0, index.active / np.maximum(cap, 1), np.nan)
        util_after = np.where(cap > 0, (index.active + assigned) / np.maximum(cap, 1), np.nan)
    return pl.DataFrame(
        {
            "partner_id": index.ids,
            "available": index.available,
            "paused": index.paused,
            "capacity": cap,
            "seat_limit": index.limit,
            "active_before": index.active,
            "assigned": assigned,
            "active_after": index.active + assigned,
            "utilisation_before": util_before,
            "utilisation_after": util_after,
            "last_assigned_before": index.last_assigned,
            "last_assigned_after": [s if s >= 0 else None for s in ledger.stamp.tolist()],
            "pools": [len(p) for p in ledger.pools_of],
        },
        schema_overrides={"last_assigned_before": pl.Int64, "last_assigned_after": pl.Int64},
    )


def _member_ids(partner_ids: pl.Series, pools: list[np.ndarray]) -> pl.Series:
    """Per pool, its members' ids in id order: one gather and one grouping for all pools,
    for their keys (:func:`pool_keys`) and the pools frame.

    A run's pools list their members ascending and partners are indexed in id order, so
    the members are in id order already; that is checked (column-wise), and sorted
    only if it ever does not hold (Polars' ``list.sort`` of 22k lists took 0.5 s).
    """
    sizes = np.array([p.size for p in pools], dtype=np.int64)
    members = np.concatenate(pools) if pools else np.zeros(0, dtype=np.int64)
    pool_id = np.repeat(np.arange(len(pools), dtype=np.int64), sizes)
    rank = np.empty(partner_ids.len(), dtype=np.int64)
    rank[np.argsort(partner_ids.to_numpy(), kind="stable")] = np.arange(partner_ids.len())
    r = rank[members]
    same_pool = pool_id[1:] == pool_id[:-1]
    if (r[1:][same_pool] < r[:-1][same_pool]).any():
        members = members[np.lexsort((r, pool_id))]
    out = (
        pl.DataFrame(
            {"pool": pool_id, "partner_ids": partner_ids.gather(pl.Series(members))},
            schema={"pool": pl.Int64, "partner_ids": pl.String},
        )
        .group_by("pool", maintain_order=True)
        .agg("partner_ids")
        .get_column("partner_ids")
    )
    assert out.len() == len(pools), "a pool without members"  # a run's pools never are
    return out


def _pool_frame(
    lookup: Lookup, member_ids: pl.Series, pool: np.ndarray, placed: np.ndarray
) -> pl.DataFrame:
    """Per pool: its key, members (``member_ids``, from :func:`_member_ids`), size,
    customers and those placed."""
    n = lookup.pool_sizes.len()
    return pl.DataFrame(
        {
            "pool_key": lookup.pool_keys,
            "partner_ids": member_ids,
            "size": lookup.pool_sizes,
            "customers": np.bincount(pool[pool >= 0], minlength=n).astype(np.int64),
            "placed": np.bincount(pool[placed & (pool >= 0)], minlength=n).astype(np.int64),
        },
        schema={
            "pool_key": pl.String,
            "partner_ids": pl.List(pl.String),
            "size": pl.Int64,
            "customers": pl.Int64,
            "placed": pl.Int64,
        },
    )
