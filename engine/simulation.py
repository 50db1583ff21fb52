"""A run's result: :class:`Simulation`, the compact per-customer codes it keeps, the small
tables they index (:class:`Lookup`) and the frames spelled out from them.

The process (``engine.assign``) builds one; fairness and the per-customer explanation
(``engine.explain``) read one. Neither needs the process, so this module sits below all
three and loads nothing heavy (no OR-Tools).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from engine.columns import ASSIGNMENT_SCHEMA
from engine.matching import PartnerIndex
from engine.reasons import FRP_QUEUE, Outcome, Policy, Reason
from engine.rules import Rules

#: Rows a result file's sink spells out at a time (see ``Simulation.output_lazy``).
OUTPUT_SLICE = 65_536
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
        """The result file: docs/domain.md's output columns, the trace, then what fairness
        needs.

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
            gather(lk.partner_ids, "chosen").alias("partner_id"),
            gather(lk.psm_emails, "chosen").alias("psm_email"),
            pl.when(placed)
            .then(pl.lit(FRP_QUEUE))
            .otherwise(
                pl.col("country").replace_strict(lk.queue_of_country, return_dtype=pl.String)
            )
            .alias("queue"),
            gather(REASONS, "reason").alias("reason"),
            gather(traces, "trace").alias("trace"),
        ]

    def _detail_exprs(self) -> dict[str, pl.Expr]:
        lk = self.lookup
        exprs = [
            pl.col("tenant_id"),
            gather(lk.pool_keys, "pool").alias("pool_key"),
            pl.col("country")
            .replace_strict(lk.region_of_country, return_dtype=pl.String)
            .alias("region"),
            pl.col("country"),
            pl.col("language"),
            pl.col("seats"),
            pl.col("gateway"),
            gather(lk.workloads.get_column("eligible"), "wid").alias("eligible_workloads"),
            gather(lk.pool_sizes, "pool").fill_null(0).cast(pl.Int64).alias("n_matching"),
            pl.col("n_full").cast(pl.Int64),
            pl.col("prev").alias("prev_last_assigned"),
            pl.col("load_after").cast(pl.Int64),
        ]
        return {e.meta.output_name(): e for e in exprs}


def gather(table: pl.Series, codes: str) -> pl.Expr:
    """``table[code]`` per row (null where the code is null), also when the table is empty."""
    if table.len() == 0:
        return pl.lit(None, dtype=table.dtype)
    return pl.lit(table).gather(pl.col(codes))
