"""One run of the process over a cohort: eligibility, matching, capacity, selection, outcome.

``simulate`` is the whole of DOMAIN.md's process and nothing else: it takes validated
frames and returns frames, writes nothing, and gives the same output for the same
input. Only the selection step walks customers one by one (the policies are
sequential by nature); everything else is vectorised or done once per signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.columns import ASSIGNMENT_SCHEMA
from engine.matching import (
    TRACE_IDS,
    PartnerIndex,
    Signature,
    describe_steps,
    index_partners,
    match_signature,
    prepare_customers,
)
from engine.optimal import plan
from engine.policies import NOT_PLACED, Ledger, make_picker
from engine.reasons import FRP_QUEUE, Outcome, Policy, Reason
from engine.rules import Rules

Progress = Callable[[int, int], None]
#: How often (in customers) the selection loop reports progress.
PROGRESS_EVERY = 50_000


@dataclass(frozen=True)
class Simulation:
    """A run's result. Nothing here is written anywhere until the store commits it.

    - ``assignments``: one row per customer in cohort order (ASSIGNMENT_SCHEMA).
    - ``detail``: per customer, what fairness and the "why" view need (pool, region,
      eligible workloads, partners matching and full at the time of choice).
    - ``partners``: per partner, load before and after, and the round-robin order after.
    - ``pools``: each pool's partner ids and its customers.
    """

    policy: Policy
    rules: Rules
    assignments: pl.DataFrame
    detail: pl.DataFrame
    partners: pl.DataFrame
    pools: pl.DataFrame

    @property
    def placed(self) -> int:
        return int((self.assignments["outcome"] == Outcome.FRP.value).sum())

    def counts(self) -> dict[str, int]:
        """Customers per reason, every reason present (zero when absent)."""
        got = dict(self.assignments.group_by("reason").len().iter_rows())
        return {r.value: int(got.get(r.value, 0)) for r in Reason}


def pool_key(partner_ids: list[str]) -> str:
    """A short stable name for a pool (its sorted member ids), kept with committed referrals."""
    return hashlib.sha1(";".join(sorted(partner_ids)).encode()).hexdigest()[:12]


def simulate(
    partners: pl.DataFrame,
    customers: pl.DataFrame,
    rules: Rules,
    policy: Policy | str = Policy.ROUND_ROBIN,
    *,
    excluded: Mapping[str, Collection[str]] | None = None,
    progress: Progress | None = None,
) -> Simulation:
    """Assign a cohort under ``rules`` and ``policy``; see the module docstring.

    ``excluded`` maps a tenant to the partners that declined it (the referral life cycle):
    they are never chosen for it again, and ``rules.max_declines`` of them send it to CSS.
    """
    policy = Policy(policy)
    index = index_partners(partners, rules)
    if excluded:
        keys = pl.DataFrame(
            {
                "tenant_id": list(excluded),
                "excluded": [";".join(sorted(set(v))) for v in excluded.values()],
            },
            schema={"tenant_id": pl.String, "excluded": pl.String},
        )
        customers = customers.join(keys, on="tenant_id", how="left", maintain_order="left")
        customers = customers.with_columns(pl.col("excluded").fill_null(""))
    prepared = prepare_customers(customers, rules)
    n = prepared.height

    # 1. Signatures of FRP-eligible customers, each matched once; pools deduplicated.
    eligible = prepared.filter(pl.col("pre_reason").is_null())
    sigs = eligible.group_by("country", "language", "mask", "excluded", maintain_order=True).agg(
        pl.col("eligible").first()
    )
    pool_of: dict[bytes, int] = {}
    pools: list[np.ndarray] = []
    sig_pool: list[int] = []
    sig_trace: list[str] = []
    for country, language, mask, excl, elig in sigs.iter_rows():
        sig = Signature(
            country, language, mask, tuple(elig), tuple(excl.split(";")) if excl else ()
        )
        m = match_signature(index, sig)
        sig_trace.append(describe_steps(m.steps))
        if m.partners.size == 0:
            sig_pool.append(-1)
            continue
        key = m.partners.tobytes()
        if key not in pool_of:
            pool_of[key] = len(pools)
            pools.append(m.partners)
        sig_pool.append(pool_of[key])
    sigs = sigs.with_columns(
        pl.Series("pool", sig_pool, dtype=pl.Int64),
        pl.Series("match_trace", sig_trace, dtype=pl.String),
    ).drop("eligible")
    prepared = prepared.join(
        sigs, on=["country", "language", "mask", "excluded"], how="left", maintain_order="left"
    )
    # The join matches by signature alone: customers that failed eligibility share
    # signatures with eligible ones but must never reach selection.
    prepared = prepared.with_columns(
        pl.when(pl.col("pre_reason").is_null()).then(pl.col("pool")).alias("pool")
    )

    # 2. Selection, customer by customer, in cohort order.
    ledger = Ledger.start(index.capacity, index.active, index.last_assigned)
    ledger.register_pools(pools)
    pool_col = prepared["pool"].fill_null(-1).to_list()
    allotment = None
    if policy is Policy.OPTIMAL:
        demand = np.bincount([q for q in pool_col if q >= 0], minlength=len(pools))
        allotment = plan(ledger, pools, demand.tolist())
    picker = make_picker(policy, ledger, pools, allotment)
    chosen = [NOT_PLACED] * n
    prev = [-1] * n
    n_full = [0] * n
    load_after = [0] * n
    pick = picker.pick
    for k, q in enumerate(pool_col):
        if q < 0:
            continue
        n_full[k] = ledger.full_count[q]
        i = pick(q)
        if i != NOT_PLACED:
            chosen[k] = i
            prev[k] = ledger.last_prev
            load_after[k] = ledger.load[i]
        else:
            n_full[k] = ledger.full_count[q]
        if progress is not None and k % PROGRESS_EVERY == 0:
            progress(k, n)
    if progress is not None:
        progress(n, n)

    return _build(policy, rules, index, prepared, pools, ledger, chosen, prev, n_full, load_after)


def _build(
    policy: Policy,
    rules: Rules,
    index: PartnerIndex,
    prepared: pl.DataFrame,
    pools: list[np.ndarray],
    ledger: Ledger,
    chosen: list[int],
    prev: list[int],
    n_full: list[int],
    load_after: list[int],
) -> Simulation:
    ids = pl.Series("partner_id", index.ids, dtype=pl.String)
    psm = pl.Series("psm_email", index.psm_email, dtype=pl.String)
    pool_sizes = pl.Series([len(p) for p in pools], dtype=pl.Int64)
    chosen_s = pl.Series("chosen", chosen, dtype=pl.Int64)
    region = pl.col("country").replace_strict(rules.region_of_country, return_dtype=pl.String)
    queue = region.replace_strict(rules.queue_of_region, return_dtype=pl.String)

    # Text of "which partners were full" for each (pool, count) that occurred.
    full_pairs = {
        (q, f)
        for q, f in zip(prepared["pool"].fill_null(-1).to_list(), n_full, strict=True)
        if q >= 0 and f > 0
    }
    full_text = {
        (q, f): _ids_text([index.ids[i] for i in ledger.full_order[q][:f]], f)
        for q, f in sorted(full_pairs)
    }
    full_frame = pl.DataFrame(
        {
            "pool": [q for q, _ in full_text],
            "n_full": [f for _, f in full_text],
            "full_ids": list(full_text.values()),
        },
        schema={"pool": pl.Int64, "n_full": pl.Int64, "full_ids": pl.String},
    )

    frame = prepared.with_columns(
        chosen_s,
        pl.Series("prev_stamp", prev, dtype=pl.Int64),
        pl.Series("n_full", n_full, dtype=pl.Int64),
        pl.Series("load_after", load_after, dtype=pl.Int64),
        region.alias("region"),
        queue.alias("css_queue"),
    ).with_columns(
        pl.when(pl.col("pool") >= 0)
        .then(pl.col("pool").replace_strict(list(range(len(pools))), pool_sizes, default=0))
        .otherwise(0)
        .alias("n_matching")
    )
    frame = frame.join(full_frame, on=["pool", "n_full"], how="left", maintain_order="left")
    placed = pl.col("chosen") >= 0
    reason = (
        pl.when(pl.col("pre_reason").is_not_null())
        .then(pl.col("pre_reason"))
        .when(pl.col("pool").is_null() | (pl.col("pool") < 0))
        .then(pl.lit(Reason.NO_PARTNER_MATCH.value))
        .when(~placed)
        .then(pl.lit(Reason.CAPACITY_EXHAUSTED.value))
        .otherwise(pl.lit(Reason.ASSIGNED.value))
    )
    if len(ids):
        partner_id = ids.gather(chosen_s.clip(0)).set(chosen_s < 0, None)
        psm_email = psm.gather(chosen_s.clip(0)).set(chosen_s < 0, None)
    else:
        partner_id = pl.Series("partner_id", [None] * prepared.height, dtype=pl.String)
        psm_email = pl.Series("psm_email", [None] * prepared.height, dtype=pl.String)
    frame = frame.with_columns(
        reason.alias("reason"), partner_id.alias("partner_id"), psm_email.alias("psm_email")
    )
    frame = frame.with_columns(_trace_expr(policy, rules).alias("trace"))

    is_frp = pl.col("reason") == Reason.ASSIGNED.value
    assignments = frame.select(
        pl.col("tenant_id"),
        pl.when(is_frp)
        .then(pl.lit(Outcome.FRP.value))
        .otherwise(pl.lit(Outcome.CSS.value))
        .alias("outcome"),
        pl.col("partner_id"),
        pl.col("psm_email"),
        pl.when(is_frp).then(pl.lit(FRP_QUEUE)).otherwise(pl.col("css_queue")).alias("queue"),
        pl.col("reason"),
        pl.col("trace"),
    ).cast(ASSIGNMENT_SCHEMA)

    keys = [pool_key([index.ids[i] for i in p]) for p in pools]
    detail = frame.select(
        "tenant_id",
        pl.col("pool")
        .replace_strict(list(range(len(keys))), keys, default=None, return_dtype=pl.String)
        .alias("pool_key"),
        "region",
        "country",
        "language",
        "seats",
        "gateway",
        pl.col("eligible").alias("eligible_workloads"),
        "n_matching",
        "n_full",
        pl.when(pl.col("prev_stamp") >= 0).then(pl.col("prev_stamp")).alias("prev_last_assigned"),
        "load_after",
    )

    assigned = np.bincount(
        np.array([c for c in chosen if c >= 0], dtype=np.int64), minlength=index.size
    )
    cap = index.capacity
    with np.errstate(divide="ignore", invalid="ignore"):
        util_before = np.where(cap > 0, index.active / np.maximum(cap, 1), np.nan)
        util_after = np.where(cap > 0, (index.active + assigned) / np.maximum(cap, 1), np.nan)
    partner_state = pl.DataFrame(
        {
            "partner_id": index.ids,
            "available": index.available,
            "capacity": cap,
            "active_before": index.active,
            "assigned": assigned,
            "active_after": index.active + assigned,
            "utilisation_before": util_before,
            "utilisation_after": util_after,
            "last_assigned_before": index.last_assigned,
            "last_assigned_after": [s if s >= 0 else None for s in ledger.stamp],
            "pools": [len(p) for p in ledger.pools_of],
        },
        schema_overrides={"last_assigned_before": pl.Int64, "last_assigned_after": pl.Int64},
    )
    pool_counts = (
        frame.filter(pl.col("pool") >= 0)
        .group_by("pool")
        .agg(pl.len().alias("customers"), (pl.col("chosen") >= 0).sum().alias("placed"))
    )
    pool_frame = (
        pl.DataFrame(
            {
                "pool": list(range(len(pools))),
                "pool_key": keys,
                "partner_ids": [[index.ids[i] for i in p] for p in pools],
                "size": [len(p) for p in pools],
            },
            schema={
                "pool": pl.Int64,
                "pool_key": pl.String,
                "partner_ids": pl.List(pl.String),
                "size": pl.Int64,
            },
        )
        .join(pool_counts, on="pool", how="left")
        .with_columns(
            pl.col("customers").fill_null(0).cast(pl.Int64),
            pl.col("placed").fill_null(0).cast(pl.Int64),
        )
        .drop("pool")
    )
    return Simulation(policy, rules, assignments, detail, partner_state, pool_frame)


def _ids_text(ids: list[str], count: int) -> str:
    shown = ", ".join(ids[:TRACE_IDS])
    more = count - min(count, TRACE_IDS)
    return shown + (f" +{more} more" if more else "")


_WHY = {
    Policy.ROUND_ROBIN: "least recently assigned of those with room",
    Policy.WEIGHTED: "highest smooth weight (by capacity) of those with room",
    Policy.LEAST_LOADED: "lowest utilisation after assignment of those with room",
    Policy.OPTIMAL: "allotted by the optimal plan, least recently assigned of those allotted",
}


def _trace_expr(policy: Policy, rules: Rules) -> pl.Expr:
    """The human-readable trace, built column-wise so a million rows cost milliseconds."""
    c = pl.col
    eligible_list = ", ".join(rules.eligible_workloads)
    pre = (
        pl.when(c("pre_reason") == Reason.BELOW_SEAT_THRESHOLD.value)
        .then(pl.format("seats {} < minimum {}", c("seats"), pl.lit(rules.min_seats)))
        .when(c("pre_reason") == Reason.NO_ELIGIBLE_WORKLOAD.value)
        .then(
            pl.format(
                "no eligible workload among [{}] (eligible: {})",
                c("workloads").list.join(", "),
                pl.lit(eligible_list),
            )
        )
        .when(c("pre_reason") == Reason.DECLINED_BY_PARTNERS.value)
        .then(
            pl.format(
                "declined by {} partners ({}), the most allowed is {}",
                c("excluded").str.count_matches(";") + 1,
                c("excluded").str.replace_all(";", ", "),
                pl.lit(rules.max_declines),
            )
        )
        .otherwise(pl.lit("no consent to share contact details with a partner"))
    )
    to_css = pl.format(" -> {}", c("css_queue"))
    full = (
        pl.when(c("n_full") > 0)
        .then(pl.format("{} of {} full ({})", c("n_full"), c("n_matching"), c("full_ids")))
        .otherwise(pl.format("none of {} full", c("n_matching")))
    )
    turn = (
        pl.when(c("prev_stamp") >= 0)
        .then(pl.format("last assigned at turn {}", c("prev_stamp")))
        .otherwise(pl.lit("never assigned before"))
    )
    detail = {
        Policy.ROUND_ROBIN: turn,
        Policy.OPTIMAL: turn,
        Policy.WEIGHTED: turn,
        Policy.LEAST_LOADED: pl.format("{} of its seats taken after this", c("load_after")),
    }[policy]
    # Under `optimal` a customer can miss out while a matching partner still has room: the
    # plan gave that seat to another customer (any maximum plan must). Say so, not "full".
    exhausted = (
        pl.when(c("n_full") < c("n_matching"))
        .then(
            pl.lit(
                ": capacity exhausted (the optimal plan used their free seats for "
                "other customers of the cohort)"
            )
        )
        .otherwise(pl.lit(": capacity exhausted"))
        if policy is Policy.OPTIMAL
        else pl.lit(": capacity exhausted")
    )
    return (
        pl.when(c("pre_reason").is_not_null())
        .then(
            pl.concat_str(
                pl.when(c("pre_reason") == Reason.DECLINED_BY_PARTNERS.value)
                .then(pl.lit(""))
                .otherwise(pl.lit("not FRP-eligible: ")),
                pre,
                to_css,
            )
        )
        .when(c("pool").is_null() | (c("pool") < 0))
        .then(pl.concat_str(c("match_trace"), pl.lit("; no partner matches"), to_css))
        .when(c("chosen") < 0)
        .then(pl.concat_str(c("match_trace"), pl.lit("; "), full, exhausted, to_css))
        .otherwise(
            pl.concat_str(
                c("match_trace"),
                pl.lit("; "),
                full,
                pl.format("; chose {}: {} ({})", c("partner_id"), pl.lit(_WHY[policy]), detail),
            )
        )
    )
