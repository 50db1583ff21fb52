"""Fairness of a run: is load balanced, does every pool member get its turn, who falls to CSS.

This module owns the answers to the "Is round robin fair?" question (docs/domain.md): Jain's
index and the Gini coefficient of partner utilisation, per-pool turn-taking (how many
customers each member of a pool was given against an equal share), CSS fallback rates
by region, language, workload and reason (those sent there because partners declined or
let referrals expire, ``declined_by_partners``, apart), and, over time, how partners
answered their referrals: acceptance rate and expiries per partner (``acceptance``).

It takes plain frames rather than a ``Simulation`` so that the same report can be made
for a fresh simulation (``report_for``) and for committed referrals loaded from the
store (``report``). It is pure: polars and numpy in, a frozen ``FairnessReport`` out,
nothing written and no UI imported, so the command line, the dashboard and the tests
all share one definition of "fair".

Input frames (extra columns are ignored):

- ``outcomes``: one row per customer: ``tenant_id, outcome (frp|css), partner_id``
  (null for css), ``reason, region, country, language, eligible_workloads``
  (List(String)), ``pool_key`` (null when no partner matched). Or counted: one row per
  distinct combination of those columns (``tenant_id`` left out) with ``customers``, how
  many customers it stands for (``WEIGHT``), so that a million committed referrals can
  be grouped in the database and reach this module as a few thousand rows; both forms
  give the same report.
- ``partners``: ``partner_id, available, capacity, active_before, assigned``.
- ``pools`` (optional): ``pool_key, partner_ids`` (List(String)).
- ``responses`` (optional; committed referrals only): ``partner_id, response,
  referrals``: how many partner referrals got each response (``RESPONSES``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from engine.reasons import Outcome, Reason
from engine.simulation import Simulation

#: The dimensions ``css_by`` gives CSS fallback rates by, in the order reports show them
#: (``css_by`` then has CSS customers by "reason").
CSS_RATE_DIMENSIONS = ("region", "language", "workload")
#: Key used for customers with no eligible workload in the by-workload breakdown.
NO_WORKLOAD = "(none)"
#: Key used when a region or language is missing (for example in old store rows).
UNKNOWN = "(unknown)"
_REASON_WORDS = {r.value: r.words for r in Reason}
#: The column of counted ``outcomes``: how many customers a row stands for.
WEIGHT = "customers"
#: Decimal places kept for floats in ``to_dict`` (JSON output).
DECIMALS = 4

OUTCOME_COLUMNS = pl.Schema(
    {
        "tenant_id": pl.String(),
        "outcome": pl.String(),
        "partner_id": pl.String(),
        "reason": pl.String(),
        "region": pl.String(),
        "country": pl.String(),
        "language": pl.String(),
        "eligible_workloads": pl.List(pl.String),
        "pool_key": pl.String(),
    }
)
PARTNER_COLUMNS = pl.Schema(
    {
        "partner_id": pl.String(),
        "available": pl.Boolean(),
        "capacity": pl.Int64(),
        "active_before": pl.Int64(),
        "assigned": pl.Int64(),
    }
)
POOL_COLUMNS = pl.Schema(
    {
        "pool_key": pl.String(),
        "partner_ids": pl.List(pl.String),
    }
)

PER_PARTNER_SCHEMA = pl.Schema(
    {
        "partner_id": pl.String(),
        "capacity": pl.Int64(),
        "active_before": pl.Int64(),
        "assigned": pl.Int64(),
        "active_after": pl.Int64(),
        "utilisation_before": pl.Float64(),
        "utilisation_after": pl.Float64(),
        "available": pl.Boolean(),
    }
)
PER_POOL_SCHEMA = pl.Schema(
    {
        "pool_key": pl.String(),
        "size": pl.Int64(),
        "customers": pl.Int64(),
        "placed": pl.Int64(),
        "min_given": pl.Int64(),
        "max_given": pl.Int64(),
        "spread": pl.Int64(),
        "ideal_share": pl.Float64(),
        "max_deviation": pl.Float64(),
    }
)
POOL_MEMBER_SCHEMA = pl.Schema(
    {
        "pool_key": pl.String(),
        "partner_id": pl.String(),
        "given": pl.Int64(),
        "ideal_share": pl.Float64(),
        "deviation": pl.Float64(),
    }
)
CSS_RATE_SCHEMA = pl.Schema(
    {
        "key": pl.String(),
        "customers": pl.Int64(),
        "css": pl.Int64(),
        "css_rate": pl.Float64(),
    }
)
#: How a partner answered a referral: not yet, took it (accepted, maybe completed since),
#: declined it, or let its acceptance window close (an expiry counts as a decline).
RESPONSES = ("waiting", "accepted", "declined", "expired")
RESPONSE_COLUMNS = pl.Schema(
    {
        "partner_id": pl.String(),
        "response": pl.String(),
        "referrals": pl.Int64(),
    }
)
ACCEPTANCE_SCHEMA = pl.Schema(
    {
        "partner_id": pl.String(),
        "made": pl.Int64(),
        **{r: pl.Int64() for r in RESPONSES},
        "answered": pl.Int64(),
        "acceptance_rate": pl.Float64(),
    }
)
CSS_REASON_SCHEMA = pl.Schema(
    {
        "key": pl.String(),
        "css": pl.Int64(),
        "share": pl.Float64(),
        "words": pl.String(),
    }
)


# --- Inequality measures ---------------------------------------------------------------------


def _as_array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size and (not np.all(np.isfinite(x)) or np.any(x < 0)):
        raise ValueError(f"{what}: expected finite values >= 0 (utilisations), got {x.tolist()}")
    return x


def jain_index(values: Sequence[float] | np.ndarray) -> float:
    """Jain's fairness index (Σx)² / (n·Σx²): 1.0 when all equal, 1/n when one takes all.

    Defined as 1.0 for no values or all zeros (nobody is treated worse than anyone).
    """
    x = _as_array(values, "jain_index")
    top = float(x.max()) if x.size else 0.0
    if top == 0.0:
        return 1.0
    x = x / top  # the index is scale-free; normalising keeps Σx² from overflowing
    n = x.size
    value = float(x.sum() ** 2 / (n * float(np.dot(x, x))))
    # Cauchy-Schwarz bounds it to [1/n, 1]; clip the last-bit rounding error.
    return min(1.0, max(1.0 / n, value))


def gini(values: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient (population form) of non-negative values: 0 equal, (n-1)/n one takes all.

    Standard sorted formula: G = Σ (2i - n - 1)·x₍ᵢ₎ / (n·Σx), i = 1..n ascending.
    Defined as 0.0 for no values or a zero sum.
    """
    x = _as_array(values, "gini")
    top = float(x.max()) if x.size else 0.0
    if top == 0.0:
        return 0.0
    x = np.sort(x / top)
    n = x.size
    i = np.arange(1, n + 1, dtype=np.float64)
    value = float(np.dot(2.0 * i - n - 1.0, x) / (n * x.sum()))
    # Mathematically in [0, (n-1)/n]; equal values can round to -1e-17.
    return min((n - 1) / n, max(0.0, value))


# --- The report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FairnessReport:
    """How fair one run (or one committed history) was; see the module docstring."""

    customers: int
    placed: int
    css: int
    css_rate: float
    jain: float
    gini: float
    max_utilisation: float
    mean_utilisation: float
    #: Available partners at or over capacity after the run: unlike the busiest partner's
    #: utilisation, which one full partner holds at 100% for any cohort, it moves with it.
    at_capacity: int
    per_partner: pl.DataFrame
    per_pool: pl.DataFrame
    pool_members: pl.DataFrame
    css_by: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    #: Per partner, how it answered its referrals (``acceptance``) when ``report`` was given
    #: the responses (committed referrals); None otherwise (a simulation has no answers).
    acceptance: pl.DataFrame | None = None

    @property
    def css_after_declines(self) -> int:
        """Customers in CSS because partners declined them or let them expire
        (``declined_by_partners``), apart from those a run sent there at once."""
        reasons = self.css_by.get("reason")
        if reasons is None:
            return 0
        hit = reasons.filter(pl.col("key") == Reason.DECLINED_BY_PARTNERS.value)["css"]
        return int(hit.sum())

    def headline(self) -> dict[str, int | float]:
        """The single numbers, in the order reports show them."""
        return {
            "customers": self.customers,
            "placed": self.placed,
            "css": self.css,
            "css_rate": self.css_rate,
            "jain": self.jain,
            "gini": self.gini,
            "max_utilisation": self.max_utilisation,
            "mean_utilisation": self.mean_utilisation,
            "at_capacity": self.at_capacity,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (``frp fairness --json``); floats rounded to 4 places."""
        out = {
            **{k: _plain(v) for k, v in self.headline().items()},
            "css_after_declines": self.css_after_declines,
            "per_partner": _rows(self.per_partner),
            "per_pool": _rows(self.per_pool),
            "pool_members": _rows(self.pool_members),
            "css_by": {k: _rows(v) for k, v in self.css_by.items()},
        }
        if self.acceptance is not None:
            out["acceptance"] = _rows(self.acceptance)
        return out

    def to_text(self, top: int = 10, pools: int = 5) -> str:
        """A plain-text report for a terminal (``frp fairness``), well under 60 lines."""
        lines = [
            "Fairness report",
            f"  customers {self.customers}   placed with partners {self.placed}   "
            f"CSS {self.css} ({self.css_rate:.1%})",
            f"  Jain index {self.jain:.4f} (1 = perfectly even utilisation)   "
            f"Gini {self.gini:.4f} (0 = equal)",
            f"  utilisation after: max {self.max_utilisation:.1%}   "
            f"mean {self.mean_utilisation:.1%}   "
            f"at capacity {self.at_capacity} of {self._counted()} "
            "(available partners with capacity)",
        ]
        lines += self._css_lines(top)
        if self.acceptance is not None and self.acceptance.height:
            lines += self._acceptance_lines(self.acceptance, pools)
        if self.per_partner.height:
            lines += self._partner_lines(top)
        if self.per_pool.height:
            lines += self._pool_lines(pools)
        return "\n".join(lines) + "\n"

    def _css_lines(self, top: int) -> list[str]:
        lines: list[str] = []
        by_reason = self.css_by.get("reason")
        if by_reason is not None and by_reason.height:
            lines += ["", "CSS by reason"]
            lines += _table(
                ["reason", "css", "share"],
                [
                    (w, str(c), f"{s:.1%}")
                    for w, c, s in by_reason.select("words", "css", "share").iter_rows()
                ],
            )
        by_region = self.css_by.get("region")
        if by_region is not None and by_region.height:
            lines += ["", "CSS rate by region"]
            lines += _table(
                ["region", "customers", "css", "rate"],
                [(k, str(n), str(c), f"{r:.1%}") for k, n, c, r in by_region.head(top).iter_rows()],
            )
        return lines

    def _acceptance_lines(self, frame: pl.DataFrame, shown: int) -> list[str]:
        totals = {k: int(frame[k].sum()) for k in ("accepted", "answered", "expired")}
        rate = totals["accepted"] / totals["answered"] if totals["answered"] else 0.0
        lowest = frame.filter(pl.col("answered") > 0).sort(
            ["acceptance_rate", "answered", "partner_id"], descending=[False, True, False]
        )
        cols = ["made", "waiting", "accepted", "declined", "expired"]
        return [
            "",
            f"Partner responses: acceptance rate {rate:.1%} of {totals['answered']} answered "
            f"(expired {totals['expired']}; CSS after declines and expiries "
            f"{self.css_after_declines})",
            f"Lowest {min(shown, lowest.height)} acceptance rates",
            *_table(
                ["partner", *cols, "rate"],
                [
                    (
                        row["partner_id"],
                        *(str(row[c]) for c in cols),
                        f"{row['acceptance_rate']:.1%}",
                    )
                    for row in lowest.head(shown).iter_rows(named=True)
                ],
            ),
        ]

    def _partner_lines(self, top: int) -> list[str]:
        busiest = self.per_partner.filter(pl.col("utilisation_after").is_not_null()).sort(
            ["utilisation_after", "partner_id"], descending=[True, False]
        )
        return [
            "",
            f"Top {min(top, busiest.height)} partners by utilisation after the run",
            *_table(
                ["partner", "capacity", "before", "assigned", "after", "utilisation"],
                [
                    (p, str(cap), str(b), str(a), str(aft), f"{u:.1%}" + ("" if ok else " (off)"))
                    for p, cap, b, a, aft, u, ok in busiest.head(top)
                    .select(
                        "partner_id",
                        "capacity",
                        "active_before",
                        "assigned",
                        "active_after",
                        "utilisation_after",
                        "available",
                    )
                    .iter_rows()
                ],
            ),
        ]

    def _pool_lines(self, pools: int) -> list[str]:
        widest = self.per_pool.sort(
            ["spread", "customers", "pool_key"], descending=[True, True, False]
        ).head(pools)
        names = dict(
            self.pool_members.group_by("pool_key").agg(pl.col("partner_id").sort()).iter_rows()
        )
        header = ["pool", "size", "customers", "placed", "given min-max", "ideal", "max dev"]
        return [
            "",
            f"Pools with the largest spread (of {self.per_pool.height})",
            *_table(
                [*header, "members"],
                [
                    (
                        k,
                        str(s),
                        str(c),
                        str(p),
                        f"{lo}-{hi}",
                        f"{ideal:.2f}",
                        f"{dev:.2f}",
                        _short(names.get(k, [])),
                    )
                    for k, s, c, p, lo, hi, _, ideal, dev in widest.iter_rows()
                ],
                left=1,
            ),
        ]

    def _counted(self) -> int:
        return self.per_partner.filter(
            pl.col("available") & pl.col("utilisation_after").is_not_null()
        ).height


def report(
    outcomes: pl.DataFrame,
    partners: pl.DataFrame,
    pools: pl.DataFrame | None = None,
    responses: pl.DataFrame | None = None,
) -> FairnessReport:
    """The fairness report for one set of outcomes against the partners' load (and pools,
    and for committed referrals the partners' responses)."""
    out = _outcomes(outcomes)
    per_partner = _per_partner(_conform(partners, PARTNER_COLUMNS, "partners"))
    counted = per_partner.filter(pl.col("available") & pl.col("utilisation_after").is_not_null())
    util = counted["utilisation_after"].to_numpy().astype(np.float64)

    weight = out[WEIGHT]
    customers = int(weight.sum())
    placed = int(weight.filter(out["outcome"] == Outcome.FRP.value).sum())
    css = int(weight.filter(out["outcome"] == Outcome.CSS.value).sum())
    if pools is None:
        per_pool = pl.DataFrame(schema=PER_POOL_SCHEMA)
        members = pl.DataFrame(schema=POOL_MEMBER_SCHEMA)
    else:
        per_pool, members = _per_pool(out, _conform(pools, POOL_COLUMNS, "pools"))
    return FairnessReport(
        customers=customers,
        placed=placed,
        css=css,
        css_rate=css / customers if customers else 0.0,
        jain=jain_index(util),
        gini=gini(util),
        max_utilisation=float(util.max()) if util.size else 0.0,
        mean_utilisation=float(util.mean()) if util.size else 0.0,
        at_capacity=int((util >= 1 - 1e-9).sum()),
        per_partner=per_partner,
        per_pool=per_pool,
        pool_members=members,
        css_by=_css_by(out),
        acceptance=acceptance(responses) if responses is not None else None,
    )


def acceptance(responses: pl.DataFrame) -> pl.DataFrame:
    """Per partner (``ACCEPTANCE_SCHEMA``): referrals made, how many got each of
    ``RESPONSES``, and the acceptance rate, accepted / (accepted + declined + expired)
    among the answered ones (an expiry counts as a decline: docs/domain.md, "Time: the
    referral clock"); null while none is answered. ``responses`` is counted
    (``RESPONSE_COLUMNS``); a response not in ``RESPONSES`` counts in ``made`` only."""
    c = pl.col
    rows = _conform(responses, RESPONSE_COLUMNS, "responses")
    answered = c("accepted") + c("declined") + c("expired")
    return (
        rows.group_by("partner_id")
        .agg(
            c("referrals").sum().alias("made"),
            *(c("referrals").filter(c("response") == r).sum().alias(r) for r in RESPONSES),
        )
        .with_columns(answered.alias("answered"))
        .with_columns(
            pl.when(c("answered") > 0).then(c("accepted") / c("answered")).alias("acceptance_rate")
        )
        .select(list(ACCEPTANCE_SCHEMA))
        .cast(ACCEPTANCE_SCHEMA)
        .sort("partner_id")
    )


#: How far (in customers, "turns") a partner may be from its pool's fair share and still
#: count as having had its turns: round robin over a pool whose placed customers do not
#: divide evenly gives some members one more than others (docs/domain.md, "Fairness").
FAIR_TURNS = 1.0


@dataclass(frozen=True)
class Verdict:
    """The one-sentence answer to "Is it fair?": how many pools gave every member its
    turns (within ``threshold`` of the fair share), and which did not, furthest first."""

    pools: int
    within: int
    off: tuple[tuple[str, float], ...]  # (pool_key, furthest member's gap), furthest first
    threshold: float = FAIR_TURNS

    @property
    def fair(self) -> bool:
        return not self.off

    def sentence(self, label: Mapping[str, str] | None = None, shown: int = 5) -> str:
        """The verdict in words; ``label`` names pools (pool_key -> words)."""
        if self.pools == 0:
            return "No customer was placed in a pool, so there are no turns to judge."
        turns = _turns(self.threshold)
        if not self.fair:
            head = f"{self.within:,} of {self.pools:,} pools are within {turns} of their fair share"
        elif self.pools == 1:
            head = f"The only pool is within {turns} of its fair share"
        else:
            head = f"All {self.pools:,} pools are within {turns} of their fair share"
        if self.fair:
            return head + ": every partner got its turns."
        names = label or {}
        listed = [f"{names.get(k, k)} ({gap:.1f} turns)" for k, gap in self.off[:shown]]
        more = len(self.off) - len(listed)
        tail = "; ".join(listed) + (f"; and {more:,} more" if more else "")
        pools = "pool is" if len(self.off) == 1 else "pools are"
        return f"{head}; {len(self.off):,} {pools} off by more than {turns}: {tail}."


def _turns(n: float) -> str:
    words = {1.0: "one turn", 2.0: "two turns"}
    return words.get(n, f"{n:g} turns")


def verdict(per_pool: pl.DataFrame, threshold: float = FAIR_TURNS) -> Verdict:
    """Judge a report's pools (``FairnessReport.per_pool``): a pool is fair when none of
    its members is more than ``threshold`` customers from the fair share (placed / members)."""
    pools = per_pool.filter(pl.col("placed") > 0)
    off = pools.filter(pl.col("max_deviation") > threshold + 1e-9).sort(
        ["max_deviation", "pool_key"], descending=[True, False]
    )
    gaps = tuple(zip(off["pool_key"].to_list(), off["max_deviation"].to_list(), strict=True))
    return Verdict(pools.height, pools.height - off.height, gaps, threshold)


def report_for(sim: Simulation) -> FairnessReport:
    """The fairness report of a fresh simulation (its assignments joined with their detail).

    Turns are counted per part (each part of a customer split by workload took a seat and
    a turn), but the headline counts customers: a split customer is one customer placed,
    however many parts it has (docs/domain.md, "Split by workload")."""
    outcomes = sim.with_detail(
        "region", "country", "language", "eligible_workloads", "pool_key"
    ).select(
        "tenant_id",
        "outcome",
        "partner_id",
        "reason",
        "region",
        "country",
        "language",
        "eligible_workloads",
        "pool_key",
    )
    rep = report(outcomes, sim.partners, sim.pools)
    customers, placed = sim.rows.height, sim.placed
    css = customers - placed
    return replace(
        rep,
        customers=customers,
        placed=placed,
        css=css,
        css_rate=css / customers if customers else 0.0,
    )


# --- Pieces ----------------------------------------------------------------------------------


def _conform(frame: pl.DataFrame, schema: pl.Schema, what: str) -> pl.DataFrame:
    """Exactly ``schema``'s columns and dtypes, or an error naming what is missing."""
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(schema)} (extra columns are ignored)"
        )
    return frame.select(pl.col(c).cast(t) for c, t in schema.items())


def _outcomes(frame: pl.DataFrame) -> pl.DataFrame:
    """The outcome columns plus ``WEIGHT``: 1 per row for one row per customer, else the
    given counts (which must be whole numbers >= 0)."""
    if WEIGHT not in frame.columns:
        return _conform(frame, OUTCOME_COLUMNS, "outcomes").with_columns(
            pl.lit(1, dtype=pl.Int64).alias(WEIGHT)
        )
    counted = pl.Schema({k: v for k, v in OUTCOME_COLUMNS.items() if k != "tenant_id"})
    weight = frame[WEIGHT].cast(pl.Int64)
    if weight.null_count() or (weight < 0).any():
        raise ValueError(f"outcomes: {WEIGHT} must be whole numbers >= 0 (customers per row)")
    return _conform(frame, counted, "outcomes").with_columns(weight.alias(WEIGHT))


def _per_partner(partners: pl.DataFrame) -> pl.DataFrame:
    c = pl.col
    has_room = c("capacity") > 0
    return (
        partners.with_columns(
            c("capacity").fill_null(0),
            c("active_before").fill_null(0),
            c("assigned").fill_null(0),
            c("available").fill_null(False),
        )
        .with_columns((c("active_before") + c("assigned")).alias("active_after"))
        .with_columns(
            # Utilisation of a zero-capacity partner is undefined, not 0% or infinite.
            pl.when(has_room).then(c("active_before") / c("capacity")).alias("utilisation_before"),
            pl.when(has_room).then(c("active_after") / c("capacity")).alias("utilisation_after"),
        )
        .select(list(PER_PARTNER_SCHEMA))
        .cast(PER_PARTNER_SCHEMA)
        .sort("partner_id")
    )


def _per_pool(outcomes: pl.DataFrame, pools: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per pool and per pool member: customers given in this run against an equal share.

    A partner in several pools is counted separately in each: only customers routed to
    a pool count as that pool's turns.
    """
    c = pl.col
    members = (
        pools.explode("partner_ids")
        .rename({"partner_ids": "partner_id"})
        .filter(c("pool_key").is_not_null() & c("partner_id").is_not_null())
        .unique(maintain_order=True)
    )
    keys = pools.select("pool_key").filter(c("pool_key").is_not_null()).unique()
    sizes = members.group_by("pool_key").agg(pl.len().cast(pl.Int64).alias("size"))
    routed = outcomes.filter(c("pool_key").is_not_null())
    is_frp = c("outcome") == Outcome.FRP.value
    weight = c(WEIGHT)
    counts = routed.group_by("pool_key").agg(
        weight.sum().cast(pl.Int64).alias("customers"),
        weight.filter(is_frp).sum().cast(pl.Int64).alias("placed"),
    )
    given = (
        routed.filter(is_frp & c("partner_id").is_not_null())
        .group_by("pool_key", "partner_id")
        .agg(weight.sum().cast(pl.Int64).alias("given"))
    )
    pool_base = (
        keys.join(sizes, on="pool_key", how="left")
        .join(counts, on="pool_key", how="left")
        .with_columns(c("size", "customers", "placed").fill_null(0))
        .with_columns(
            pl.when(c("size") > 0)
            .then(c("placed") / c("size"))
            .otherwise(0.0)
            .cast(pl.Float64)
            .alias("ideal_share")
        )
    )
    member_rows = (
        members.join(given, on=["pool_key", "partner_id"], how="left")
        .with_columns(c("given").fill_null(0))
        .join(pool_base.select("pool_key", "ideal_share"), on="pool_key", how="left")
        .with_columns((c("given") - c("ideal_share")).alias("deviation"))
        .select(list(POOL_MEMBER_SCHEMA))
        .cast(POOL_MEMBER_SCHEMA)
        .sort("pool_key", "partner_id")
    )
    spread = member_rows.group_by("pool_key").agg(
        c("given").min().alias("min_given"),
        c("given").max().alias("max_given"),
        c("deviation").abs().max().alias("max_deviation"),
    )
    per_pool = (
        pool_base.join(spread, on="pool_key", how="left")
        .with_columns(c("min_given", "max_given").fill_null(0), c("max_deviation").fill_null(0.0))
        .with_columns((c("max_given") - c("min_given")).alias("spread"))
        .select(list(PER_POOL_SCHEMA))
        .cast(PER_POOL_SCHEMA)
        .sort(["customers", "pool_key"], descending=[True, False])
    )
    return per_pool, member_rows


def _css_by(outcomes: pl.DataFrame) -> dict[str, pl.DataFrame]:
    c = pl.col
    is_css = (c("outcome") == Outcome.CSS.value).cast(pl.Int64)
    tagged = outcomes.with_columns(is_css.alias("is_css"))
    keys = {
        "region": c("region").fill_null(UNKNOWN),
        "language": c("language").fill_null(UNKNOWN),
        # One customer counts once under each of its eligible workloads.
        "workload": pl.when(c("eligible_workloads").list.len().fill_null(0) == 0)
        .then(pl.lit([NO_WORKLOAD], dtype=pl.List(pl.String)))
        .otherwise(c("eligible_workloads")),
    }
    by: dict[str, pl.DataFrame] = {}
    for dim in CSS_RATE_DIMENSIONS:
        keyed = tagged.with_columns(keys[dim].alias("key"))
        by[dim] = _rates(keyed.explode("key") if dim == "workload" else keyed)
    css_rows = tagged.filter(c("is_css") == 1)
    total = int(css_rows[WEIGHT].sum())
    reasons = (
        css_rows.group_by(c("reason").fill_null(UNKNOWN).alias("key"))
        .agg(c(WEIGHT).sum().cast(pl.Int64).alias("css"))
        .with_columns(
            (c("css") / total if total else pl.lit(0.0)).alias("share"),
            # A code this version does not know (old store rows) is shown as itself.
            c("key")
            .replace_strict(_REASON_WORDS, default=c("key"), return_dtype=pl.String)
            .alias("words"),
        )
        .select(list(CSS_REASON_SCHEMA))
        .cast(CSS_REASON_SCHEMA)
        .sort(["css", "key"], descending=[True, False])
    )
    by["reason"] = reasons
    return by


def _rates(keyed: pl.DataFrame) -> pl.DataFrame:
    c = pl.col
    return (
        keyed.group_by("key")
        .agg(
            c(WEIGHT).sum().cast(pl.Int64).alias("customers"),
            (c("is_css") * c(WEIGHT)).sum().alias("css"),
        )
        .with_columns((c("css") / c("customers")).alias("css_rate"))
        .select(list(CSS_RATE_SCHEMA))
        .cast(CSS_RATE_SCHEMA)
        .sort(["css_rate", "key"], descending=[True, False])
    )


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, DECIMALS)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def _short(ids: Sequence[str], shown: int = 3) -> str:
    more = len(ids) - min(len(ids), shown)
    return ", ".join(ids[:shown]) + (f" +{more} more" if more else "")


def _table(header: list[str], rows: list[tuple[str, ...]], left: int = 0) -> list[str]:
    """Text columns left-aligned (the first, and the last ``left``), numbers right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    n = len(header)

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(w) if i == 0 or i >= n - left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return ("  " + "  ".join(padded)).rstrip()

    return [line(header), *(line(r) for r in rows)]
