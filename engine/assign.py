"""One run of the process over a cohort: eligibility, matching, capacity, selection, outcome.

``simulate`` is the whole of DOMAIN.md's process and nothing else: it takes validated
frames and returns frames, writes nothing, and gives the same output for the same
input. Only the selection step walks customers one by one (the policies are
sequential by nature); everything else is vectorised or done once per signature.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import polars as pl

from engine.columns import ASSIGNMENT_SCHEMA
from engine.matching import (
    TRACE_IDS,
    Cohort,
    Matcher,
    PartnerIndex,
    SignatureColumns,
    index_partners,
    pre_reason_code_expr,
    prepare_cohort,
)
from engine.policies import Choices, Ledger, select
from engine.reasons import FRP_QUEUE, Outcome, Policy, Reason
from engine.rules import Rules

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
#: Distinct traces whose sentences are built at a time (see ``_traces``).
TRACE_SLICE = 32_768
#: Rows a result file's sink spells out at a time (see ``Simulation.output_lazy``).
OUTPUT_SLICE = 65_536
#: The ``detail`` columns a result file carries after the assignment columns.
OUTPUT_DETAIL = ("pool_key", "region", "country", "language", "eligible_workloads")
#: How often (in customers) the selection loop reports progress.
PROGRESS_EVERY = 50_000


@dataclass(frozen=True)
class Lookup:
    """The small tables a run's per-customer codes index (see :class:`Simulation`)."""

    partner_ids: pl.Series  # by partner index
    psm_emails: pl.Series  # by partner index
    pool_keys: pl.Series  # by pool
    pool_sizes: pl.Series  # by pool
    eligible: pl.Series  # eligible workloads by distinct workloads list (wid)
    traces: pl.Series  # by trace code
    region_of_country: Mapping[str, str]
    queue_of_country: Mapping[str, str]


#: Reason names by the codes a run's rows carry (position in :class:`Reason`).
REASONS = pl.Series("reason", [r.value for r in Reason], dtype=pl.String)
_REASON_CODE = {r: i for i, r in enumerate(Reason)}


@dataclass(frozen=True)
class Simulation:
    """A run's result. Nothing here is written anywhere until the store commits it.

    - ``assignments``: one row per customer in cohort order (ASSIGNMENT_SCHEMA).
    - ``detail``: per customer, what fairness and the "why" view need (pool, region,
      eligible workloads, partners matching and full at the time of choice).
    - ``partners``: per partner, load before and after, and the round-robin order after.
    - ``pools``: each pool's partner ids and its customers.

    A run keeps one compact row per customer (``rows``: codes and numbers, with the
    input's own columns shared, not copied) and the small tables the codes index
    (``lookup``). ``assignments`` and ``detail`` are spelled out from them on first use,
    and :meth:`output_lazy` lets a sink spell out a slice at a time: a million-customer
    result file never has to exist in memory whole.
    """

    policy: Policy
    rules: Rules
    rows: pl.DataFrame
    lookup: Lookup
    partners: pl.DataFrame
    pools: pl.DataFrame

    @cached_property
    def assignments(self) -> pl.DataFrame:
        return self._assignments(self.rows)

    @cached_property
    def detail(self) -> pl.DataFrame:
        return self._detail(self.rows)

    @property
    def placed(self) -> int:
        return self.rows.height - self.rows.get_column("chosen").null_count()

    def with_detail(self, *columns: str) -> pl.DataFrame:
        """``assignments`` with ``detail`` columns alongside, without a join.

        Both are in cohort order, row for row, so the columns are placed side by side; a
        join on tenant_id would hash a million keys and copy every column again.
        """
        return pl.concat([self.assignments, self.detail.select(columns)], how="horizontal")

    def output(self) -> pl.DataFrame:
        """The result file: DOMAIN.md's columns, the trace, then what fairness needs.

        The trace is categorical here (each distinct text once, a code per row): written
        to Parquet it is dictionary-encoded rather than a million compressed sentences,
        and any reader still sees text.
        """
        return self.output_lazy(max(self.rows.height, 1)).collect()

    def counts(self) -> dict[str, int]:
        """Customers per reason, every reason present (zero when absent)."""
        codes = self.rows.get_column("reason").to_numpy()
        got = np.bincount(codes, minlength=len(REASONS)) if codes.size else np.zeros(len(REASONS))
        return {r.value: int(got[i]) for i, r in enumerate(Reason)}

    def _assignments(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.select(self._assignment_exprs()).cast(ASSIGNMENT_SCHEMA)

    def _detail(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.select(self._detail_exprs().values())

    def output_lazy(self, slice_rows: int = OUTPUT_SLICE) -> pl.LazyFrame:
        """:meth:`output` as a lazy query a sink runs a slice of rows at a time.

        The slices are separate inputs of one concatenation, so a streaming sink spells
        out ``slice_rows`` customers, writes them and moves on: a million-row result
        file costs the memory of one slice, not of the whole frame.
        """
        detail = self._detail_exprs()
        exprs = [
            *self._assignment_exprs(categorical_trace=True),
            *[detail[name] for name in OUTPUT_DETAIL],
        ]
        rows = self.rows.lazy()
        slices = [
            rows.slice(start, slice_rows).select(exprs)
            for start in range(0, max(self.rows.height, 1), slice_rows)
        ]
        return pl.concat(slices) if len(slices) > 1 else slices[0]

    def _assignment_exprs(self, *, categorical_trace: bool = False) -> list[pl.Expr]:
        lk = self.lookup
        traces = lk.traces.cast(pl.Categorical) if categorical_trace else lk.traces
        placed = pl.col("chosen").is_not_null()
        return [
            pl.col("tenant_id"),
            pl.when(placed)
            .then(pl.lit(Outcome.FRP.value))
            .otherwise(pl.lit(Outcome.CSS.value))
            .alias("outcome"),
            _gather(lk.partner_ids, "chosen").alias("partner_id"),
            _gather(lk.psm_emails, "chosen").alias("psm_email"),
            pl.when(placed)
            .then(pl.lit(FRP_QUEUE))
            .otherwise(
                pl.col("country").replace_strict(lk.queue_of_country, return_dtype=pl.String)
            )
            .alias("queue"),
            _gather(REASONS, "reason").alias("reason"),
            _gather(traces, "trace").alias("trace"),
        ]

    def _detail_exprs(self) -> dict[str, pl.Expr]:
        lk = self.lookup
        exprs = [
            pl.col("tenant_id"),
            _gather(lk.pool_keys, "pool").alias("pool_key"),
            pl.col("country")
            .replace_strict(lk.region_of_country, return_dtype=pl.String)
            .alias("region"),
            pl.col("country"),
            pl.col("language"),
            pl.col("seats"),
            pl.col("gateway"),
            _gather(lk.eligible, "wid").alias("eligible_workloads"),
            _gather(lk.pool_sizes, "pool").fill_null(0).cast(pl.Int64).alias("n_matching"),
            pl.col("n_full").cast(pl.Int64),
            pl.col("prev").alias("prev_last_assigned"),
            pl.col("load_after").cast(pl.Int64),
        ]
        return {e.meta.output_name(): e for e in exprs}


def _gather(table: pl.Series, codes: str) -> pl.Expr:
    """``table[code]`` per row (null where the code is null), also when the table is empty."""
    if table.len() == 0:
        return pl.lit(None, dtype=table.dtype)
    return pl.lit(table).gather(pl.col(codes))


def pool_key(partner_ids: list[str]) -> str:
    """A short stable name for a pool (its sorted member ids), kept with committed referrals."""
    return hashlib.sha1(";".join(sorted(partner_ids)).encode()).hexdigest()[:12]


def simulate(
    partners: pl.DataFrame,
    customers: pl.DataFrame | Cohort,
    rules: Rules,
    policy: Policy | str = Policy.ROUND_ROBIN,
    *,
    excluded: Mapping[str, Collection[str]] | None = None,
    progress: Progress | None = None,
) -> Simulation:
    """Assign a cohort under ``rules`` and ``policy``; see the module docstring.

    ``customers`` is a validated customers frame, or a :class:`Cohort` prepared from one
    under the same rules' eligible workloads. ``excluded`` maps a tenant to the partners
    that declined it (the referral life cycle): they are never chosen for it again, and
    ``rules.max_declines`` of them send it to CSS.
    """
    with _gc_paused():
        if isinstance(customers, Cohort):
            if excluded:
                raise ValueError("give excluded to prepare_cohort, not with a prepared Cohort")
            if customers.eligible_workloads != tuple(rules.eligible_workloads):
                raise ValueError("the cohort was prepared under other eligible workloads")
            cohort = customers
        else:
            cohort = prepare_cohort(customers, rules, excluded)
        return _simulate(partners, cohort, rules, Policy(policy), progress)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a run (restored after, as it was).

    A run makes hundreds of thousands of small lists and tuples (heaps, signatures,
    turns) and no reference cycles; the collector would walk them again and again,
    about a tenth of a million-customer run.
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
    progress: Progress | None,
) -> Simulation:
    index = index_partners(partners, rules)
    workloads = cohort.workloads
    prepared = cohort.frame.with_columns(pre_reason_code_expr(rules))
    n = prepared.height

    # 1. Signatures of FRP-eligible customers, each matched once; pools deduplicated.
    sigs = (
        prepared.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
            "country",
            "language",
            "mask",
            "excluded",
            "wid",
            "pre",
        )
        .filter(pl.col("pre").is_null())
        .group_by("country", "language", "mask", "excluded", maintain_order=True)
        .agg(pl.col("row"), pl.col("wid").first())
    )
    sig_of = np.full(n, -1, dtype=np.int32)
    sig_of[sigs["row"].explode().to_numpy()] = np.repeat(
        np.arange(sigs.height, dtype=np.int32), sigs["row"].list.len().to_numpy()
    )
    signatures = SignatureColumns(
        countries=sigs.get_column("country").to_list(),
        languages=sigs.get_column("language").to_list(),
        masks=sigs.get_column("mask").to_numpy(),
        wid=sigs.get_column("wid").to_numpy(),
        eligible=[tuple(e or ()) for e in workloads.get_column("eligible").to_list()],
        excluded=sigs.get_column("excluded").to_list(),
    )
    sig_pool, pools, sig_trace = Matcher(index).match_cohort(signatures)
    del sigs
    pool_col = np.full(n, -1, dtype=np.int32)
    has_sig = sig_of >= 0
    pool_col[has_sig] = sig_pool[sig_of[has_sig]]

    # 2. Selection, customer by customer, in cohort order.
    ledger = Ledger.start(index.capacity, index.active, index.last_assigned)
    ledger.register_pools(pools)
    allotment = None
    if policy is Policy.OPTIMAL:
        demand = np.bincount(pool_col[pool_col >= 0], minlength=len(pools))
        from engine.optimal import plan  # OR-Tools loads only for the policy that needs it

        allotment = plan(ledger, pools, demand.tolist())
    report = None
    if progress is not None:
        every = [PROGRESS_EVERY]

        def report(k: int) -> None:
            if k >= every[0]:
                progress(k, n)
                every[0] = (k // PROGRESS_EVERY + 1) * PROGRESS_EVERY

        progress(0, n)
    choices = select(policy, ledger, pools, pool_col, allotment, report)
    if progress is not None:
        progress(n, n)

    return _build(
        policy,
        rules,
        index,
        prepared,
        workloads,
        pools,
        ledger,
        choices,
        sig_of,
        sig_pool,
        sig_trace,
        pool_col,
    )


def _build(
    policy: Policy,
    rules: Rules,
    index: PartnerIndex,
    prepared: pl.DataFrame,
    workloads: pl.DataFrame,
    pools: list[np.ndarray],
    ledger: Ledger,
    choices: Choices,
    sig_of: np.ndarray,
    sig_pool: np.ndarray,
    sig_trace: list[str],
    pool: np.ndarray,
) -> Simulation:
    chosen = choices.chosen
    placed = chosen >= 0
    pool_sizes = np.array([len(p) for p in pools] + [0], dtype=np.int64)
    n_matching = pool_sizes[pool]  # -1 picks the trailing 0
    # Reason per customer: an eligibility check's when one failed, else by placement.
    code = np.where(
        placed,
        _REASON_CODE[Reason.ASSIGNED],
        np.where(
            pool >= 0,
            _REASON_CODE[Reason.CAPACITY_EXHAUSTED],
            _REASON_CODE[Reason.NO_PARTNER_MATCH],
        ),
    ).astype(np.uint8)
    prev = choices.prev
    rows = prepared.select(
        "tenant_id",
        "country",
        "language",
        "seats",
        "gateway",
        "excluded",
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
    # Pool members are ascending indexes of partners sorted by id: already sorted ids.
    encoded = [pid.encode() for pid in index.ids]
    keys = [
        hashlib.sha1(b";".join([encoded[i] for i in p.tolist()])).hexdigest()[:12] for p in pools
    ]
    lookup = Lookup(
        partner_ids=pl.Series("partner_id", index.ids, dtype=pl.String),
        psm_emails=pl.Series("psm_email", index.psm_email, dtype=pl.String),
        pool_keys=pl.Series("pool_key", keys, dtype=pl.String),
        pool_sizes=pl.Series("n_matching", pool_sizes[:-1], dtype=pl.Int64),
        eligible=workloads.get_column("eligible"),
        traces=pl.Series("trace", [], dtype=pl.String),
        region_of_country=rules.region_of_country,
        queue_of_country=queue_of_country,
    )
    codes, texts = _traces(
        policy,
        rules,
        index,
        rows,
        lookup,
        workloads,
        pool_sizes,
        ledger,
        choices,
        sig_of,
        sig_pool,
        pool,
        n_matching,
        sig_trace,
    )
    rows = rows.drop("excluded").with_columns(pl.Series("trace", codes, dtype=pl.UInt32))
    lookup = replace(lookup, traces=texts)

    assigned = np.bincount(chosen[placed], minlength=index.size)
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
    in_pool = pool >= 0
    members = np.concatenate(pools) if pools else np.zeros(0, dtype=np.int64)
    partner_ids = (
        pl.DataFrame(
            {
                "pool": np.repeat(np.arange(len(pools), dtype=np.int64), pool_sizes[:-1]),
                "partner_ids": lookup.partner_ids.gather(pl.Series(members)),
            }
        )
        .group_by("pool", maintain_order=True)
        .agg("partner_ids")
        .get_column("partner_ids")
    )
    pool_frame = pl.DataFrame(
        {
            "pool_key": keys,
            "partner_ids": partner_ids,
            "size": pool_sizes[:-1],
            "customers": np.bincount(pool[in_pool], minlength=len(pools)).astype(np.int64),
            "placed": np.bincount(pool[placed], minlength=len(pools)).astype(np.int64),
        },
        schema={
            "pool_key": pl.String,
            "partner_ids": pl.List(pl.String),
            "size": pl.Int64,
            "customers": pl.Int64,
            "placed": pl.Int64,
        },
    )
    return Simulation(policy, rules, rows, lookup, partner_state, pool_frame)


def _traces(
    policy: Policy,
    rules: Rules,
    index: PartnerIndex,
    frame: pl.DataFrame,
    lookup: Lookup,
    workloads: pl.DataFrame,
    pool_sizes: np.ndarray,  # members per pool, then a trailing 0 (pool -1)
    ledger: Ledger,
    choices: Choices,
    sig_of: np.ndarray,
    sig_pool: np.ndarray,
    pool: np.ndarray,
    n_matching: np.ndarray,
    sig_trace: list[str],
) -> tuple[np.ndarray, pl.Series]:
    """Each customer's trace code, and the text of each code.

    Customers whose traces read the same values (signature, full partners, chosen
    partner, the policy's detail; or the eligibility check and what it names) share one
    text, so a million rows cost one pass of grouping plus the few distinct texts.
    """
    n = frame.height
    chosen = choices.chosen
    n_full = choices.n_full
    placed = chosen >= 0
    has_sig = sig_of >= 0
    code = np.empty(n, dtype=np.int32)
    firsts: list[np.ndarray] = []
    # a. Placed customers: (chosen partner, its turn or load) never repeats, one text each.
    rows = np.flatnonzero(placed)
    code[rows] = np.arange(rows.size)
    firsts.append(rows)
    kinds = ["placed"]
    offset = rows.size
    # b. Matched but not placed: the text depends on the signature and n_full only.
    rows = np.flatnonzero(has_sig & ~placed)
    if rows.size:
        first = _distinct_pairs(rows, sig_of, n_full, sig_pool, pool_sizes, code, offset)
        firsts.append(rows[first])
        kinds.append("missed")
        offset += first.size
    del rows
    # c. Not FRP-eligible: the failing check, what it names, and the CSS queue (country).
    rows = np.flatnonzero(~has_sig)
    if rows.size:
        pre = pl.col("reason")
        groups = (
            frame.select("reason", "seats", "wid", "excluded", "country")
            .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))
            .filter(pl.Series(~has_sig))
            .select(
                pre,
                pl.when(pre == _REASON_CODE[Reason.BELOW_SEAT_THRESHOLD]).then(pl.col("seats")),
                pl.when(pre == _REASON_CODE[Reason.NO_ELIGIBLE_WORKLOAD]).then(pl.col("wid")),
                pl.when(pre == _REASON_CODE[Reason.DECLINED_BY_PARTNERS]).then(pl.col("excluded")),
                "country",
                "_row",
            )
            .group_by("reason", "seats", "wid", "excluded", "country")
            .agg(pl.col("_row"))
            .get_column("_row")
        )
        code[groups.explode().to_numpy()] = offset + np.repeat(
            np.arange(groups.len(), dtype=np.int64), groups.list.len().to_numpy()
        )
        firsts.append(groups.list.first().to_numpy().astype(np.int64))
        kinds.append("css")
        del groups
    first = np.concatenate(firsts)

    # One representative row per distinct trace, with everything _trace_expr reads.
    rep_pool = pool[first]
    rep_full = n_full[first]
    full_ids = _full_ids(index.ids, ledger.full_head, rep_pool, rep_full)
    rep_sig = sig_of[first]
    sig_text = pl.Series([*sig_trace, None], dtype=pl.String)
    reps = frame[first].select(
        pl.when(pl.Series(rep_sig < 0)).then(_gather(REASONS, "reason")).alias("pre_reason"),
        "seats",
        workloads["workloads"].gather(frame["wid"].gather(first)).alias("workloads"),
        "excluded",
        pl.col("country")
        .replace_strict(lookup.queue_of_country, return_dtype=pl.String)
        .alias("css_queue"),
        _gather(lookup.partner_ids, "chosen").alias("partner_id"),
        sig_text.gather(pl.Series(rep_sig)).alias("match_trace"),
        pl.Series("pool", np.where(rep_sig >= 0, rep_pool, -1)).set(pl.Series(rep_sig < 0), None),
        pl.Series("chosen", chosen[first]),
        pl.Series("n_full", rep_full),
        pl.Series("n_matching", n_matching[first]),
        full_ids,
        pl.Series("prev_stamp", choices.prev[first]),
        pl.Series("load_after", choices.load_after[first]),
    )
    exprs = _trace_exprs(policy, rules)
    # A slice of rows at a time: the sentences are built from several columns of text,
    # and a run can have a few hundred thousand distinct ones (`optimal` at 1M: 220k).
    parts, start = [], 0
    for kind, size in zip(kinds, (f.size for f in firsts), strict=True):
        for at in range(start, start + size, TRACE_SLICE):
            piece = reps.slice(at, min(TRACE_SLICE, start + size - at))
            parts.append(piece.select(exprs[kind].alias("trace")).to_series())
        start += size
    texts = pl.concat(parts) if parts else pl.Series("trace", [], dtype=pl.String)
    return code, texts


def _distinct_pairs(
    rows: np.ndarray,
    sig_of: np.ndarray,
    n_full: np.ndarray,
    sig_pool: np.ndarray,
    pool_sizes: np.ndarray,
    code: np.ndarray,
    offset: int,
) -> np.ndarray:
    """Number the distinct (signature, partners full) pairs of ``rows`` into ``code``
    (from ``offset``); returns each pair's first row, as positions in ``rows``.

    n_full of a signature's customer is in 0..pool size: a dense key, when small
    enough, finds the distinct pairs without sorting. A function of its own so that its
    million-row temporaries are gone before the trace texts are built.
    """
    span = pool_sizes[sig_pool] + 1  # pool -1 picks the trailing 0
    start = np.concatenate(([0], np.cumsum(span)[:-1]))
    key = start[sig_of[rows]] + n_full[rows]
    if int(span.sum()) <= 4 * rows.size:
        first_row = np.full(int(span.sum()), rows.size, dtype=np.int64)
        np.minimum.at(first_row, key, np.arange(rows.size, dtype=np.int64))
        present = first_row < rows.size
        inverse = (np.cumsum(present) - 1)[key]
        first = first_row[present]
    else:
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    code[rows] = offset + inverse.reshape(-1)
    return first


def _full_ids(
    ids: list[str], full_head: list[list[int]], pool: np.ndarray, n_full: np.ndarray
) -> pl.Series:
    """Per representative row, the full partners a trace names: the first
    ``TRACE_IDS`` of its pool in the order they filled, then "+N more" (null if none).

    Each distinct (pool, shown) list is joined once; the rest is column arithmetic.
    """
    valid = (pool >= 0) & (n_full > 0)
    head = np.minimum(n_full, TRACE_IDS)
    key = (pool * (TRACE_IDS + 1) + head)[valid]
    distinct, inverse = np.unique(key, return_inverse=True)
    joined = [
        ", ".join([ids[i] for i in full_head[k // (TRACE_IDS + 1)][: k % (TRACE_IDS + 1)]])
        for k in distinct.tolist()
    ]
    shown = pl.Series(joined, dtype=pl.String).gather(pl.Series(inverse.reshape(-1)))
    more = pl.Series((n_full - head)[valid])
    text = pl.select(
        pl.when(more > 0).then(pl.format("{} +{} more", shown, more)).otherwise(shown)
    ).to_series()
    out = pl.Series("full_ids", [None] * pool.size, dtype=pl.String)
    return out.scatter(np.flatnonzero(valid), text) if valid.any() else out


_WHY = {
    Policy.ROUND_ROBIN: "least recently assigned of those with room",
    Policy.WEIGHTED: "highest smooth weight (by capacity) of those with room",
    Policy.LEAST_LOADED: "lowest utilisation after assignment of those with room",
    Policy.OPTIMAL: "allotted by the optimal plan, least recently assigned of those allotted",
}


def _trace_exprs(policy: Policy, rules: Rules) -> dict[str, pl.Expr]:
    """The human-readable trace, column-wise, for each kind of customer _traces groups.

    One expression per kind (placed, matched but not placed, not FRP-eligible), each run
    on its own rows only: polars computes every branch of a when/then for every row, and
    a trace is a few hundred characters.
    """
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
    css = pl.concat_str(
        pl.when(c("pre_reason") == Reason.DECLINED_BY_PARTNERS.value)
        .then(pl.lit(""))
        .otherwise(pl.lit("not FRP-eligible: ")),
        pre,
        to_css,
    )
    missed = (
        pl.when(c("pool").is_null() | (c("pool") < 0))
        .then(pl.concat_str(c("match_trace"), pl.lit("; no partner matches"), to_css))
        .otherwise(pl.concat_str(c("match_trace"), pl.lit("; "), full, exhausted, to_css))
    )
    placed = pl.concat_str(
        c("match_trace"),
        pl.lit("; "),
        full,
        pl.format("; chose {}: {} ({})", c("partner_id"), pl.lit(_WHY[policy]), detail),
    )
    return {"placed": placed, "missed": missed, "css": css}
