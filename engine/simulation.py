"""A run's result: :class:`Simulation`, the compact per-customer codes it keeps, the small
tables they index (:class:`Lookup`) and the frames spelled out from them.

The process (``engine.assign``) builds one; fairness and the per-customer explanation
(``engine.explain``) read one. Neither needs the process, so this module sits below all
three and loads nothing heavy (no OR-Tools).

Parts (docs/domain.md, "Split by workload"). ``rows`` stays one row per customer: a
split customer's row carries its first part's partner, so it counts as placed and every
per-customer reader (counts, detail, fairness, the store's commit) works unchanged.
The parts are a frame of their own (``parts``, engine.split.PARTS_SCHEMA: row, part,
partner, workloads mask), holding every part of each customer with more than one (split
by workload, or with a CSS part for its CSS workloads). When the rules can make parts
(``max_partners_per_customer`` above 1 or ``css_workloads``), ``assignments`` and the
result file have one row per part with the columns ``part`` and ``workloads``; otherwise
they are exactly as without the feature.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from engine.columns import ASSIGNMENT_SCHEMA
from engine.matching import PartnerIndex, mask_names, match_mask_of
from engine.reasons import FRP_QUEUE, Outcome, Policy, Reason
from engine.rules import Rules
from engine.sizes import size_bucket_expr
from engine.split import PARTS_SCHEMA

#: Rows a result file's sink spells out at a time (see ``Simulation.output_lazy``): as
#: many as the sink's row groups (store.files.PARQUET_ROW_GROUP), so that neither holds
#: more than one of the other. Half of 32,768 took 40-50 MiB off the write's peak at 1M
#: with room (about 110 -> 65 MiB above the run's), for 0.04-0.09 s more of its 0.85 s
#: (twice as many row groups; producing the slices costs the same).
OUTPUT_SLICE = 16_384
#: Slices made ahead of the sink that reads them (see ``_sliced``).
SLICES_AHEAD = 4
#: The ``detail`` columns a result file carries after the assignment columns.
OUTPUT_DETAIL = ("pool_key", "region", "country", "language", "eligible_workloads")
#: Reason names by the codes a run's rows carry (position in :class:`Reason`).
REASONS = pl.Series("reason", [r.value for r in Reason], dtype=pl.String)
#: The code of each reason in a run's rows.
REASON_CODE = {r: i for i, r in enumerate(Reason)}


@dataclass(frozen=True)
class Lookup:
    """The small tables a run's per-customer codes index (see :class:`Simulation`)."""

    index: PartnerIndex  # the partners as the run saw them (what explanations re-match)
    partner_ids: pl.Series  # by partner index
    psm_emails: pl.Series  # by partner index
    pool_keys: pl.Series  # by pool
    pool_sizes: pl.Series  # by pool
    workloads: pl.DataFrame  # by distinct workloads list (wid): workloads, eligible, mask
    traces: pl.Series  # by trace code
    #: By trace code: the text is the head of a placed customer's trace, whose end (the
    #: choice) is spelled out from the row (engine.explain.traces_expr).
    trace_head: pl.Series
    region_of_country: Mapping[str, str]
    queue_of_country: Mapping[str, str]


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
    #: Every part of the customers with more than one (see the module docstring); None
    #: when the rules make no parts.
    parts: pl.DataFrame | None = None

    @property
    def by_part(self) -> bool:
        """Whether the output has one row per part (the rules can make parts)."""
        return self.parts is not None

    @cached_property
    def assignments(self) -> pl.DataFrame:
        if self.by_part:
            return self._expand_parts()
        return self._assignments(self.rows)

    def part_counts(self) -> dict[str, int]:
        """Customers split across partners, partner parts (a placed customer's first
        part among them) and CSS parts (for CSS workloads)."""
        if self.parts is None:
            return {"split_customers": 0, "partner_parts": self.placed, "css_parts": 0}
        frp = self.parts.get_column("chosen").is_not_null()
        later = self.parts.filter(frp & (pl.col("part") > 1))
        return {
            "split_customers": later.get_column("row").n_unique(),
            "partner_parts": self.placed + later.height,
            "css_parts": int((~frp).sum()),
        }

    @cached_property
    def detail(self) -> pl.DataFrame:
        return self._detail(self.rows)

    @property
    def placed(self) -> int:
        return self.rows.height - self.rows.get_column("chosen").null_count()

    def with_detail(self, *columns: str) -> pl.DataFrame:
        """``assignments`` with ``detail`` columns alongside, without a join.

        Both are in cohort order, row for row, so the columns are placed side by side; a
        join on tenant_id would hash a million keys and copy every column again. With a
        row per part, each part gets its customer's detail (a join, over few rows more).
        """
        if self.assignments.height != self.rows.height:
            detail = self.detail.select("tenant_id", *columns)
            return self.assignments.join(detail, on="tenant_id", how="left", maintain_order="left")
        return pl.concat([self.assignments, self.detail.select(columns)], how="horizontal")

    def output(self) -> pl.DataFrame:
        """The result file: docs/domain.md's output columns, the trace, then what fairness
        needs."""
        if self.by_part:
            return self._output_by_part()
        return self.rows.select(self._output_exprs(self._text))

    def counts(self) -> dict[str, int]:
        """Customers per reason, every reason present (zero when absent)."""
        codes = self.rows.get_column("reason").to_numpy()
        got = np.bincount(codes, minlength=len(REASONS)) if codes.size else np.zeros(len(REASONS))
        return {r.value: int(got[i]) for i, r in enumerate(Reason)}

    def _assignments(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Every row at once: the codes' texts are gathered (shared, not copied) and only
        the rows whose text is a head are spelled whole, as the result file spells them."""
        out = rows.select(self._assignment_exprs(self._text, ends=False)).cast(ASSIGNMENT_SCHEMA)
        lk = self.lookup
        if not lk.trace_head.any():
            return out
        at = rows.select(gather(lk.trace_head, "trace")).to_series().arg_true()
        whole = rows[at].select(self._trace_expr()).to_series()
        return out.with_columns(out.get_column("trace").scatter(at, whole))

    def _detail(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.select(self._detail_exprs().values())

    def output_lazy(self, slice_rows: int = OUTPUT_SLICE, *, coded: bool = False) -> pl.LazyFrame:
        """:meth:`output` as a lazy source a sink reads ``slice_rows`` customers at a time.

        Each slice is spelled out eagerly, in Python, when the sink asks for it (a Polars
        IO source, :func:`_sliced`): a million-row result file costs the memory of one
        slice, not of the whole frame. As a concatenation of lazy slices instead, each
        slice was planned on its own and the write took 0.12-0.16 s longer at 1M
        (docs/scaling.md).

        ``coded``: the columns of few values (:class:`Texts`) come as Enum, the same
        values; for a sink that writes them as text (store.files.write_table).
        """
        texts = self._coded if coded else self._text
        if self.by_part:
            columns = self._part_columns(texts, detail=True)
            return _sliced(
                self.rows.height, slice_rows, lambda at, n: self._part_slice(at, n, columns)
            )
        exprs = self._output_exprs(texts)
        return _sliced(
            self.rows.height, slice_rows, lambda at, n: self.rows.slice(at, n).select(exprs)
        )

    @cached_property
    def _text(self) -> Texts:
        return Texts.of(self.lookup, coded=False)

    @cached_property
    def _coded(self) -> Texts:
        return Texts.of(self.lookup, coded=True)

    def _output_exprs(self, texts: Texts) -> list[pl.Expr]:
        """The result file's columns, from ``rows`` (without parts)."""
        detail = self._detail_exprs(texts)
        return [*self._assignment_exprs(texts), *[detail[name] for name in OUTPUT_DETAIL]]

    def _assignment_exprs(self, texts: Texts, *, ends: bool = True) -> list[pl.Expr]:
        """The assignment columns; ``ends``: placed customers' traces whole (else only
        the text of each code)."""
        return [
            pl.col("tenant_id"),
            *self._placement_exprs(texts),
            gather(texts.reasons, "reason").alias("reason"),
            self._trace_expr() if ends else gather(self.lookup.traces, "trace").alias("trace"),
        ]

    def _trace_expr(self) -> pl.Expr:
        """Each row's trace: its code's text, and a placed customer's choice after it
        (not kept per customer: see engine.explain.trace_texts)."""
        from engine.explain import traces_expr  # engine.explain builds on this module

        lk = self.lookup
        return traces_expr(self.policy, lk.traces, lk.trace_head, lk.partner_ids)

    def _placement_exprs(self, texts: Texts, chosen: str = "chosen") -> list[pl.Expr]:
        """Outcome, partner, PSM and queue of a row (a customer or a part) by ``chosen``
        (the column of the partner; null = CSS) and ``country`` (whose CSS queue)."""
        placed = pl.col(chosen).is_not_null()
        frp_queue = pl.lit(texts.queues.len() - 1, dtype=pl.UInt32)
        return [
            gather(texts.outcomes, placed.cast(pl.UInt32)).alias("outcome"),
            gather(texts.partner_ids, chosen).alias("partner_id"),
            gather(texts.psm_emails, chosen).alias("psm_email"),
            gather(
                texts.queues, pl.when(placed).then(frp_queue).otherwise(texts.country_code)
            ).alias("queue"),
        ]

    def _detail_exprs(self, texts: Texts | None = None) -> dict[str, pl.Expr]:
        lk = self.lookup
        texts = texts or self._text
        exprs = [
            pl.col("tenant_id"),
            gather(lk.pool_keys, "pool").alias("pool_key"),
            gather(texts.regions, texts.country_code).alias("region"),
            texts.country,
            pl.col("language"),
            pl.col("seats"),
            pl.col("gateway"),
            gather(texts.eligible, "wid").alias("eligible_workloads"),
            gather(lk.pool_sizes, "pool").fill_null(0).cast(pl.Int64).alias("n_matching"),
            pl.col("n_full").cast(pl.Int64),
            pl.col("prev").alias("prev_last_assigned"),
            pl.col("load_after").cast(pl.Int64),
            size_bucket_expr(pl.col("seats")).alias("size"),
        ]
        return {e.meta.output_name(): e for e in exprs}

    def _output_by_part(self) -> pl.DataFrame:
        """The result file with one row per part, whole (see :meth:`_part_slice`)."""
        return self._part_slice(0, self.rows.height, self._part_columns(self._text, detail=True))

    def _expand_parts(self) -> pl.DataFrame:
        """``assignments`` with a row per part (see :meth:`_part_slice`), whole."""
        out = self._part_slice(0, self.rows.height, self._part_columns(self._text, detail=False))
        return out.cast(ASSIGNMENT_SCHEMA)

    def _part_columns(self, texts: Texts, *, detail: bool) -> list[pl.Expr]:
        columns = self._part_exprs(texts)
        if detail:
            exprs = self._detail_exprs(texts)
            columns += [exprs[name] for name in OUTPUT_DETAIL]
        return columns

    def _part_slice(self, start: int, n: int, columns: list[pl.Expr]) -> pl.DataFrame:
        """Customers ``start`` to ``start + n`` with a row per part, spelled out
        (``columns``): a customer's codes are repeated once per part, beside the part's
        own (``part``, null for a customer with one; its partner; its workloads).

        A customer with one part keeps its row (part 1, the workloads it was matched on);
        one with more has a row per part instead, each with its customer's trace and
        detail. Done eagerly, a slice at a time: as a lazy query, repeating rows once per
        part cost twice the CPU of the rest of the write (a gather by a literal), or
        75 MiB more of the sink's peak at 1M (a join).
        """
        parts = self._part_codes[0]
        a, b = parts.get_column("_row").search_sorted(pl.Series([start, start + n])).to_list()
        rows = self.rows.slice(start, n)
        m = rows.height
        mine = parts.slice(a, b - a)
        counts = np.bincount(mine.get_column("_row").to_numpy() - start, minlength=m)
        at = np.repeat(np.arange(m, dtype=np.uint32), np.maximum(counts, 1))
        extra = pl.DataFrame({"_at": at}).select(
            pl.lit(None, dtype=pl.Int32).alias("part"),
            rows.get_column("chosen").gather(at).alias("_part_chosen"),
            pl.lit(None, dtype=pl.UInt32).alias("_part_workloads"),
        )
        where = pl.Series(np.flatnonzero((counts > 0)[at]))
        extra = extra.with_columns(
            extra[c].scatter(where, mine.get_column(c))
            for c in ("part", "_part_chosen", "_part_workloads")
        )
        if a < b:
            rows = rows[pl.Series(at)]
        return pl.concat([rows, extra], how="horizontal").select(columns)

    def _part_exprs(self, texts: Texts) -> list[pl.Expr]:
        """The assignment columns, ``part`` and ``workloads`` of :meth:`_part_slice`: a
        part's own partner and reason, its customer's trace (from the customer's choice,
        ``chosen``)."""
        _, part_names, matched_names = self._part_codes
        in_part = pl.col("part").is_not_null()
        return [
            pl.col("tenant_id"),
            *self._placement_exprs(texts, "_part_chosen"),
            pl.when(~in_part)
            .then(gather(REASONS, "reason"))
            .when(pl.col("_part_chosen").is_not_null())
            .then(pl.lit(Reason.ASSIGNED.value))
            .otherwise(pl.lit(Reason.CSS_WORKLOAD.value))
            .alias("reason"),
            self._trace_expr(),
            pl.col("part").fill_null(1),
            pl.when(in_part)
            .then(gather(part_names, "_part_workloads"))
            .when(pl.col("chosen").is_not_null())
            .then(gather(matched_names, "wid"))
            .otherwise(gather(self.lookup.workloads.get_column("eligible"), "wid"))
            .alias("workloads"),
        ]

    @cached_property
    def _part_codes(self) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
        """The parts as codes (row, part, partner, a code for their workloads), the
        workloads' names by that code, and by ``wid`` the workloads a customer was
        matched on (its eligible ones but CSS workloads)."""
        rules = self.rules
        parts = self.parts if self.parts is not None else pl.DataFrame(schema=PARTS_SCHEMA)
        masks = parts.get_column("mask").unique().sort()
        matched = self.lookup.workloads.get_column("mask") & match_mask_of(rules)

        def names(of: pl.Series, name: str) -> pl.Series:
            words = [list(mask_names(m, rules.eligible_workloads)) for m in of.to_list()]
            return pl.Series(name, words, dtype=pl.List(pl.String))

        codes = parts.select(
            pl.col("row").alias("_row"),
            "part",
            pl.col("chosen").alias("_part_chosen"),
            (pl.col("mask").rank("dense") - 1).alias("_part_workloads"),
        )
        return codes, names(masks, "workloads"), names(matched, "workloads")


def gather(table: pl.Series, codes: str | pl.Expr) -> pl.Expr:
    """``table[code]`` per row (null where the code is null), also when the table is empty;
    ``codes``: a column's name or an expression."""
    if table.len() == 0:
        return pl.lit(None, dtype=table.dtype)
    return pl.lit(table).gather(pl.col(codes) if isinstance(codes, str) else codes)


@dataclass(frozen=True)
class Texts:
    """The tables a run's columns of few values are gathered from, each by a code a row
    carries: as text (String) for the frames the engine and the dashboard read, or
    ``coded`` (Enum: each value once, a code per row) for a result file.

    A Parquet writer stores such a column as a dictionary and codes. Given text, Polars
    finds that dictionary by hashing every cell, a million per column at 1M; given an
    Enum it writes the one it has. store.files.write_table writes Enum columns as text,
    so the file reads the same either way. Measured at 1M with room: the write 0.91 ->
    0.78 s, 0.25 s less CPU (docs/scaling.md).
    """

    outcomes: pl.Series  # by placed (0: css, 1: frp)
    partner_ids: pl.Series  # by partner index
    psm_emails: pl.Series  # by partner index
    reasons: pl.Series  # by reason code
    regions: pl.Series  # by country code
    queues: pl.Series  # by country code, then the FRP queue
    eligible: pl.Series  # by wid
    country_code: pl.Expr  # the row's country as its position in the countries known
    country: pl.Expr  # the row's country (as the input had it, or coded)

    @classmethod
    def of(cls, lookup: Lookup, *, coded: bool) -> Texts:
        countries = sorted(lookup.region_of_country)
        known = pl.Enum(countries)
        code = pl.col("country").cast(known).to_physical()
        queues = [lookup.queue_of_country.get(c) for c in countries] + [FRP_QUEUE]
        eligible = lookup.workloads.get_column("eligible")
        if coded:
            words = eligible.explode().drop_nulls().unique(maintain_order=True)
            eligible = eligible.cast(pl.List(pl.Enum(words)))
        return cls(
            outcomes=_table("outcome", [Outcome.CSS.value, Outcome.FRP.value], coded),
            partner_ids=_table("partner_id", lookup.partner_ids, coded),
            psm_emails=_table("psm_email", lookup.psm_emails, coded),
            reasons=_table("reason", REASONS, coded),
            regions=_table("region", [lookup.region_of_country[c] for c in countries], coded),
            queues=_table("queue", queues, coded),
            eligible=eligible,
            country_code=code,
            country=gather(pl.Series(countries, dtype=known), code).alias("country")
            if coded
            else pl.col("country"),
        )


def _table(name: str, values: Sequence[str | None] | pl.Series, coded: bool) -> pl.Series:
    """``values`` as text, or (``coded``) as an Enum of the distinct ones."""
    table = pl.Series(name, values, dtype=pl.String)
    if coded:
        return table.cast(pl.Enum(table.drop_nulls().unique(maintain_order=True)))
    return table


def _sliced(height: int, slice_rows: int, make: Callable[[int, int], pl.DataFrame]) -> pl.LazyFrame:
    """A lazy frame of ``make(start, slice_rows)`` for each slice of ``height`` rows, in
    order, made when a sink or a collect starts reading it (a Polars IO source).

    The slices are made ahead of the reader (:data:`SLICES_AHEAD`), on two threads.
    Making them is the write's critical path: at 1M with room, one thread spent
    0.52-0.58 s of a 0.72 s write in ``make`` while the sink's encoding took turns with
    it on the two cores. Polars releases the interpreter while it spells a slice, so two
    threads spell two at once: the write 0.82 -> 0.72 s, a few slices more in memory.

    ``register_io_source`` is marked unstable by Polars; tests/test_engine.py and
    tests/test_split.py compare the sliced result with the whole one, so a Polars
    release that changes it fails them rather than a result file.
    """
    from polars.io.plugins import register_io_source

    def source(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        left = n_rows
        starts = range(0, max(height, 1), slice_rows)
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="frp-slices")
        try:
            ahead = deque(pool.submit(make, at, slice_rows) for at in starts[:SLICES_AHEAD])
            for k in range(len(starts)):
                out = ahead.popleft().result()
                if k + SLICES_AHEAD < len(starts):
                    ahead.append(pool.submit(make, starts[k + SLICES_AHEAD], slice_rows))
                if with_columns is not None:
                    out = out.select(with_columns)
                if predicate is not None:
                    out = out.filter(predicate)
                if left is not None:
                    out = out.head(left)
                    left -= out.height
                yield out
                if left == 0:
                    return
        finally:
            pool.shutdown(cancel_futures=True)

    return register_io_source(source, schema=make(0, 0).schema)
