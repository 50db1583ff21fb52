"""Aggregate reads behind the dashboard's capacity, fairness and referrals pages.

Every function takes a connection (or cursor) and returns a small Polars frame or a
dict: grouping, filtering and capping happen in DuckDB, so a chart never receives raw
rows and a table never more than it shows. Nothing here imports Streamlit; the pages
cache these calls and draw them.

Frames and their columns (the domain's words):

- ``partner_capacity``: one row per partner: ``partner_id, name, countries, languages,
  workloads, referral_ready, capacity, active, free, utilisation`` (null for capacity 0),
  ``last_assigned, rr_position`` (place in the round-robin order among Referral Ready
  partners, 1 = next; null when not Referral Ready), ``psm_name, psm_email``.
- ``coverage``: one row per (key, workload): ``key, label, workload, partners, free_seats,
  backlog, status`` (``no partner`` | ``full`` | ``room``), over Referral Ready partners.
- ``monthly_fairness``: one row per month: ``month, customers, placed, css, css_rate,
  partners, jain, gini``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import duckdb
import numpy as np
import polars as pl

from engine.fairness import WEIGHT, FairnessReport, gini, jain_index, report
from engine.iso import COUNTRIES, LANGUAGES
from engine.matching import Signature, index_partners, match_signature
from engine.reasons import Outcome, Reason
from engine.rules import Rules
from store import state
from store.db import OPEN_STATUSES
from store.fairness_inputs import committed_counts

Con = duckdb.DuckDBPyConnection

#: The referrals page never ships more rows than this to a table.
ROW_CAP = 1_000
#: Utilisation bins of the histograms: 0-10 %, ..., 90-100 %, then "full" (>= 100 %).
BIN_WIDTH = 0.1
FULL_LABEL = "100%+ (full)"

_OPEN = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"

# Partners with load, free seats and their place in the round-robin order. The order is
# the engine's (engine.policies.Ledger.rr_key): least recently assigned first, never
# assigned before all, ties by partner_id; only Referral Ready partners take turns.
_PARTNERS = """
WITH ranked AS (
    SELECT
        partner_id, name, countries, languages, workloads, referral_ready, capacity,
        active_total AS active,
        greatest(capacity - active_total, 0) AS free,
        CASE WHEN capacity > 0 THEN active_total / capacity END AS utilisation,
        last_assigned,
        CASE WHEN referral_ready THEN row_number() OVER (
            PARTITION BY referral_ready ORDER BY last_assigned ASC NULLS FIRST, partner_id
        ) END AS rr_position,
        psm_name, psm_email, contact_email,
        open_referrals
    FROM partner_state
)
SELECT * FROM ranked
"""
_PARTNER_COLUMNS = (
    "partner_id, name, countries, languages, workloads, referral_ready, capacity, active, "
    "free, utilisation, last_assigned, rr_position, psm_name, psm_email"
)
_OPEN_CHECK = f"status IN {_OPEN}"


@dataclass(frozen=True)
class PartnerFilter:
    """The capacity page's filters; empty means "any". Hashable, so pages can cache on it.

    Countries and languages match a partner serving *any* of them; workloads match a
    partner covering *all* of them (as matching a customer does).
    """

    countries: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    ready: bool | None = None
    min_free: int = 0
    search: str = ""

    def where(self) -> tuple[str, list[Any]]:
        sql, params = ["TRUE"], []
        if self.countries:
            sql.append("list_has_any(countries, ?::VARCHAR[])")
            params.append(list(self.countries))
        if self.languages:
            sql.append("list_has_any(languages, ?::VARCHAR[])")
            params.append(list(self.languages))
        if self.workloads:
            sql.append("list_has_all(workloads, ?::VARCHAR[])")
            params.append(list(self.workloads))
        if self.ready is not None:
            sql.append("referral_ready = ?")
            params.append(self.ready)
        if self.min_free > 0:
            sql.append("free >= ?")
            params.append(int(self.min_free))
        if self.search.strip():
            sql.append("(partner_id ILIKE ? OR name ILIKE ? OR psm_name ILIKE ?)")
            params += [f"%{self.search.strip()}%"] * 3
        return " AND ".join(sql), params


# --- Partner capacity ------------------------------------------------------------------------


def counts(con: Con) -> dict[str, int]:
    """Headline sizes of the store (partners, backlog, referrals, ...): empty-state checks."""
    return state.counts(con)


def partner_options(con: Con) -> dict[str, list[str]]:
    """Countries, languages and workloads some partner lists (the filters' choices)."""
    row = state.query(
        con,
        """
        SELECT
          coalesce(list_sort(list_distinct(flatten(list(countries)))), []) AS countries,
          coalesce(list_sort(list_distinct(flatten(list(languages)))), []) AS languages,
          coalesce(list_sort(list_distinct(flatten(list(workloads)))), []) AS workloads
        FROM partners
        """,
    ).row(0, named=True)
    return {k: list(v or []) for k, v in row.items()}


def partner_capacity(con: Con, where: PartnerFilter = PartnerFilter()) -> pl.DataFrame:
    """Partners matching the filter, busiest first (highest utilisation, then id)."""
    sql, params = where.where()
    return state.query(
        con,
        f"SELECT {_PARTNER_COLUMNS} FROM ({_PARTNERS}) WHERE {sql} "
        "ORDER BY utilisation DESC NULLS LAST, partner_id",
        params,
    )


def capacity_headline(con: Con, where: PartnerFilter = PartnerFilter()) -> dict[str, int]:
    """The page's headline numbers for the filtered partners.

    ``free_seats`` counts only Referral Ready partners (the others take no referrals);
    ``backlog`` is the FTCQ backlog in the filtered countries and languages.
    """
    sql, params = where.where()
    backlog_sql, backlog_params = ["in_ftcq"], []
    if where.countries:
        backlog_sql.append("list_contains(?::VARCHAR[], country)")
        backlog_params.append(list(where.countries))
    if where.languages:
        backlog_sql.append("list_contains(?::VARCHAR[], language)")
        backlog_params.append(list(where.languages))
    row = state.query(
        con,
        f"""
        SELECT
          count(*) AS partners,
          count(*) FILTER (WHERE referral_ready) AS referral_ready,
          coalesce(sum(free) FILTER (WHERE referral_ready), 0) AS free_seats,
          coalesce(sum(capacity) FILTER (WHERE referral_ready), 0) AS capacity
        FROM ({_PARTNERS}) WHERE {sql}
        """,
        params,
    ).row(0, named=True)
    backlog = state.scalar(
        con, f"SELECT count(*) FROM customers WHERE {' AND '.join(backlog_sql)}", backlog_params
    )
    return {**{k: int(v or 0) for k, v in row.items()}, "backlog": int(backlog or 0)}


def utilisation_bins(
    frame: pl.DataFrame, column: str = "utilisation", only: str | None = None
) -> pl.DataFrame:
    """Partners per utilisation band (every band present, zero when empty); for histograms.

    Partners whose utilisation is null (capacity 0) are left out. ``only`` names a boolean
    column that must be true (for example ``available``).
    """
    labels = [f"{i * 10}-{i * 10 + 10}%" for i in range(10)] + [FULL_LABEL]
    base = pl.DataFrame({"band": labels, "order": list(range(len(labels)))})
    if frame.height == 0:
        return base.with_columns(pl.lit(0, dtype=pl.Int64).alias("partners"))
    rows = frame.filter(pl.col(column).is_not_null())
    if only is not None:
        rows = rows.filter(pl.col(only))
    idx = (
        pl.when(pl.col(column) >= 1.0)
        .then(10)
        .otherwise((pl.col(column) / BIN_WIDTH + 1e-9).floor().cast(pl.Int64).clip(0, 9))
    )
    counts = rows.group_by(idx.alias("order")).agg(pl.len().cast(pl.Int64).alias("partners"))
    return (
        base.join(counts, on="order", how="left")
        .with_columns(pl.col("partners").fill_null(0))
        .sort("order")
    )


def top_free(frame: pl.DataFrame, n: int = 15) -> pl.DataFrame:
    """The ``n`` Referral Ready partners with the most free seats, as (partner, part, seats)
    rows ready for a stacked bar (part is ``active`` or ``free``; ``rank`` 1 = most free)."""
    top = (
        frame.filter(pl.col("referral_ready"))
        .sort(["free", "partner_id"], descending=[True, False])
        .head(n)
        .with_row_index("rank", offset=1)
        .with_columns(
            pl.col("rank").cast(pl.Int64),
            pl.format("{} {}", pl.col("partner_id"), pl.col("name")).alias("partner"),
        )
    )
    return top.select("rank", "partner", "capacity", "free", "active", "utilisation").unpivot(
        index=["rank", "partner", "capacity", "utilisation"],
        on=["active", "free"],
        variable_name="part",
        value_name="seats",
    )


def coverage(
    con: Con, by: Literal["country", "language"], workloads: Sequence[str]
) -> pl.DataFrame:
    """Free seats of Referral Ready partners per (country or language) x workload.

    Keys are every country (or language) a partner serves or a customer has, so places
    with demand but no partner show as gaps. A partner serving several keys counts under
    each. ``backlog`` is the FTCQ customers of that key asking for that workload.
    """
    if by not in ("country", "language"):
        raise ValueError(f"coverage by {by!r}: expected 'country' or 'language'")
    plural = "countries" if by == "country" else "languages"
    frame = state.query(
        con,
        f"""
        WITH p AS (
            SELECT partner_id, unnest({plural}) AS key, workloads,
                   greatest(capacity - active_total, 0) AS free
            FROM partner_state WHERE referral_ready
        ),
        pw AS (SELECT key, unnest(workloads) AS workload, partner_id, free FROM p),
        agg AS (
            SELECT key, workload, count(DISTINCT partner_id) AS partners, sum(free) AS free_seats
            FROM pw GROUP BY ALL
        ),
        keys AS (
            SELECT DISTINCT unnest({plural}) AS key FROM partners
            UNION SELECT DISTINCT {by} FROM customers
        ),
        wl AS (SELECT unnest(?::VARCHAR[]) AS workload),
        demand AS (
            SELECT key, workload, count(*) AS backlog FROM (
                SELECT {by} AS key, unnest(list_distinct(workloads)) AS workload
                FROM customers WHERE in_ftcq
            ) GROUP BY ALL
        )
        SELECT k.key, w.workload,
               coalesce(a.partners, 0)::BIGINT AS partners,
               coalesce(a.free_seats, 0)::BIGINT AS free_seats,
               coalesce(d.backlog, 0)::BIGINT AS backlog
        FROM keys k CROSS JOIN wl w
        LEFT JOIN agg a ON a.key = k.key AND a.workload = w.workload
        LEFT JOIN demand d ON d.key = k.key AND d.workload = w.workload
        ORDER BY k.key, w.workload
        """,
        [list(workloads)],
    )
    return (
        with_labels(frame, by)
        .with_columns(
            pl.when(pl.col("partners") == 0)
            .then(pl.lit("no partner"))
            .when(pl.col("free_seats") == 0)
            .then(pl.lit("full"))
            .otherwise(pl.lit("room"))
            .alias("status"),
        )
        .select("key", "label", "workload", "partners", "free_seats", "backlog", "status")
    )


def partner_detail(con: Con, partner_id: str) -> dict[str, Any] | None:
    """One partner with its PSM, load and round-robin position (None if unknown)."""
    frame = state.query(
        con,
        f"SELECT *, (SELECT count(*) FROM partners WHERE referral_ready) AS ready_partners "
        f"FROM ({_PARTNERS}) WHERE partner_id = ?",
        [partner_id],
    )
    return frame.row(0, named=True) if frame.height else None


def partner_referrals(con: Con, partner_id: str, limit: int = 200) -> pl.DataFrame:
    """A partner's referrals, newest first (at most ``limit``)."""
    return state.query(
        con,
        """
        SELECT r.referral_id, r.run_id, r.tenant_id, c.name AS customer, r.status,
               r.country, r.language, r.eligible_workloads AS workloads, r.created_at
        FROM referrals r LEFT JOIN customers c USING (tenant_id)
        WHERE r.partner_id = ? AND r.outcome = 'frp'
        ORDER BY r.created_at DESC, r.referral_id DESC
        LIMIT ?
        """,
        [partner_id, limit],
    )


def partner_referral_counts(con: Con, partner_id: str) -> dict[str, int]:
    """How many referrals a partner holds: total, open (holding a seat) and completed."""
    row = state.query(
        con,
        f"""
        SELECT count(*) AS total,
               count(*) FILTER (WHERE {_OPEN_CHECK}) AS open,
               count(*) FILTER (WHERE status = 'completed') AS completed
        FROM referrals WHERE partner_id = ? AND outcome = 'frp'
        """,
        [partner_id],
    ).row(0, named=True)
    return {k: int(v or 0) for k, v in row.items()}


def fills_up(sim_partners: pl.DataFrame, names: pl.DataFrame) -> pl.DataFrame:
    """Partners that a simulated run takes to 100 % utilisation (from below 100 %).

    ``sim_partners`` is ``Simulation.partners``; ``names`` has ``partner_id, name``.
    """
    return (
        sim_partners.filter(
            pl.col("available")
            & (pl.col("assigned") > 0)
            & (pl.col("utilisation_after") >= 1.0)
            & (pl.col("utilisation_before") < 1.0)
        )
        .join(names.select("partner_id", "name"), on="partner_id", how="left")
        .select(
            "partner_id",
            "name",
            "capacity",
            "active_before",
            "assigned",
            "active_after",
            "utilisation_before",
            "utilisation_after",
        )
        .sort(["assigned", "partner_id"], descending=[True, False])
    )


# --- Fairness --------------------------------------------------------------------------------


def referral_dates(con: Con) -> tuple[date | None, date | None]:
    """First and last day with a referral (None, None when there are none)."""
    row = state.query(
        con, "SELECT min(created_at)::DATE AS first, max(created_at)::DATE AS last FROM referrals"
    ).row(0)
    return row[0], row[1]


def committed_fairness(
    con: Con, since: datetime | None, until: datetime | None, rules: Rules
) -> tuple[FairnessReport, pl.DataFrame]:
    """The fairness report of referrals committed in [since, until), and its pools' labels.

    Referrals imported without a pool (the demo's history) get the pool their customer's
    signature matches among today's Referral Ready partners, the same way the command
    line does for result files, so that every period has a turn ledger.

    The referrals are counted in DuckDB (``committed_counts``): over a million of them the
    page gets tens of thousands of rows, not a million, and the same report.
    """
    outcomes, partners, pools = committed_counts(con, since, until)
    outcomes, pools = _fill_pools(con, outcomes, pools, rules)
    used = outcomes["pool_key"].drop_nulls().unique()
    fair = report(outcomes, partners, pools.filter(pl.col("pool_key").is_in(used.implode())))
    return fair, pool_labels(outcomes)


def pool_labels(outcomes: pl.DataFrame) -> pl.DataFrame:
    """A readable name per pool: its most common signature, e.g. 'CH · de · exchange (+2)'.

    ``outcomes`` (or ``Simulation.detail``) has ``pool_key, country, language,
    eligible_workloads``, and, when counted (``committed_counts``), ``customers``: how
    many customers a row stands for. The count in brackets is how many other signatures
    share the pool.
    """
    schema = {"pool_key": pl.String, "label": pl.String}
    routed = outcomes.filter(pl.col("pool_key").is_not_null())
    if routed.height == 0:
        return pl.DataFrame(schema=schema)
    weight = pl.col(WEIGHT) if WEIGHT in routed.columns else pl.lit(1, dtype=pl.Int64)
    sig = routed.select(
        "pool_key",
        pl.format(
            "{} · {} · {}",
            pl.col("country"),
            pl.col("language"),
            pl.col("eligible_workloads").list.sort().list.join("+"),
        ).alias("sig"),
        weight.alias("n"),
    )
    counted = (
        sig.group_by("pool_key", "sig")
        .agg(pl.col("n").sum().alias("len"))
        .sort(["pool_key", "len", "sig"], descending=[False, True, False])
    )
    return (
        counted.group_by("pool_key", maintain_order=True)
        .agg(pl.col("sig").first(), pl.len().alias("n"))
        .select(
            "pool_key",
            pl.when(pl.col("n") > 1)
            .then(pl.format("{} (+{})", pl.col("sig"), pl.col("n") - 1))
            .otherwise(pl.col("sig"))
            .alias("label"),
        )
        .cast(schema)  # type: ignore[arg-type]
    )


def with_labels(frame: pl.DataFrame, dimension: str) -> pl.DataFrame:
    """Add ``label``: the key with its language or country name where it has one."""
    names: dict[str, str] = {}
    if dimension == "language":
        names = dict(LANGUAGES.items())
    elif dimension == "country":
        names = {k: c.name for k, c in COUNTRIES.items()}
    return frame.with_columns(
        pl.format(
            "{} {}",
            pl.col("key"),
            pl.col("key").replace_strict(names, default="", return_dtype=pl.String),
        )
        .str.strip_chars()
        .alias("label")
    )


#: Joins a signature's workload ids into one key (ids never contain it).
_SEP = "\x1f"


def _fill_pools(
    con: Con, outcomes: pl.DataFrame, pools: pl.DataFrame, rules: Rules
) -> tuple[pl.DataFrame, pl.DataFrame]:
    from engine.assign import pool_key  # engine.assign pulls in OR-Tools: load it lazily

    matched = (pl.col("reason") == Reason.ASSIGNED.value) | (
        pl.col("reason") == Reason.CAPACITY_EXHAUSTED.value
    )
    missing = outcomes.filter(pl.col("pool_key").is_null() & matched)
    if missing.height == 0:
        return outcomes, pools
    # Signatures are joined on their workloads as one string: joining on a list column
    # is slow (most of this function's time over a million referrals).
    by_workloads = pl.col("eligible_workloads").list.sort()
    sigs = missing.select(
        "country",
        "language",
        by_workloads.alias("elig"),
        by_workloads.list.join(_SEP).alias("elig_key"),
    ).unique(["country", "language", "elig_key"])
    index = index_partners(state.partners(con), rules)
    bit = {w: 1 << j for j, w in enumerate(rules.eligible_workloads)}
    keys: list[str | None] = []
    new: dict[str, list[str]] = {}
    for country, language, elig, _ in sigs.iter_rows():
        elig = tuple(elig or ())
        mask = sum(bit.get(w, 0) for w in set(elig))
        ids = [
            index.ids[i]
            for i in match_signature(index, Signature(country, language, mask, elig)).partners
        ]
        key = pool_key(ids) if ids else None
        keys.append(key)
        if key is not None:
            new[key] = ids
    sigs = sigs.drop("elig").with_columns(pl.Series("derived", keys, dtype=pl.String))
    filled = (
        outcomes.with_columns(by_workloads.list.join(_SEP).alias("elig_key"))
        .join(sigs, on=["country", "language", "elig_key"], how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("pool_key").is_null() & matched)
            .then(pl.col("derived"))
            .otherwise(pl.col("pool_key"))
            .alias("pool_key")
        )
        .drop("elig_key", "derived")
    )
    known = set(pools["pool_key"].to_list())
    extra = pl.DataFrame(
        {
            "pool_key": [k for k in new if k not in known],
            "partner_ids": [v for k, v in new.items() if k not in known],
        },
        schema={"pool_key": pl.String, "partner_ids": pl.List(pl.String)},
    )
    return filled, pl.concat([pools.cast(extra.schema), extra])


def monthly_fairness(con: Con, since: datetime | None, until: datetime | None) -> pl.DataFrame:
    """Per calendar month: customers, CSS rate, and Jain's index and Gini of partner intake.

    Intake is a partner's FRP referrals that month per seat of its capacity, over today's
    Referral Ready partners with capacity (a partner given nothing counts as 0), so 1.0 /
    0.0 means every partner got work in proportion to its capacity. Counted in DuckDB,
    then engine.fairness's measures per month.
    """
    cond, params = state.period(since, until)
    months = state.query(
        con,
        f"""
        SELECT date_trunc('month', created_at)::DATE AS month, count(*) AS customers,
               count(*) FILTER (WHERE outcome = '{Outcome.FRP.value}') AS placed,
               count(*) FILTER (WHERE outcome = '{Outcome.CSS.value}') AS css
        FROM referrals WHERE {cond} GROUP BY ALL ORDER BY month
        """,
        params,
    )
    intake = state.query(
        con,
        f"""
        SELECT date_trunc('month', r.created_at)::DATE AS month, r.partner_id, count(*) AS given
        FROM referrals r WHERE outcome = '{Outcome.FRP.value}' AND {cond} GROUP BY ALL
        """,
        params,
    )
    ready = state.query(
        con,
        "SELECT partner_id, capacity FROM partners WHERE referral_ready AND capacity > 0 "
        "ORDER BY partner_id",
    )
    schema = {
        "month": pl.Date,
        "customers": pl.Int64,
        "placed": pl.Int64,
        "css": pl.Int64,
        "css_rate": pl.Float64,
        "partners": pl.Int64,
        "jain": pl.Float64,
        "gini": pl.Float64,
    }
    if months.height == 0:
        return pl.DataFrame(schema=schema)
    pos = {p: i for i, p in enumerate(ready["partner_id"].to_list())}
    capacity = ready["capacity"].to_numpy().astype(np.float64)
    given = {m: np.zeros(len(pos)) for m in months["month"].to_list()}
    for month, pid, n in intake.iter_rows():
        if pid in pos:
            given[month][pos[pid]] = n
    jain, gin = [], []
    for month in months["month"].to_list():
        x = given[month] / capacity if len(pos) else np.zeros(0)
        jain.append(jain_index(x))
        gin.append(gini(x))
    return months.with_columns(
        (pl.col("css") / pl.col("customers")).alias("css_rate"),
        pl.lit(len(pos)).alias("partners"),
        pl.Series("jain", jain, dtype=pl.Float64),
        pl.Series("gini", gin, dtype=pl.Float64),
    ).cast(schema)  # type: ignore[arg-type]


def partner_deviation(
    pool_members: pl.DataFrame, names: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Each partner's customers given against its ideal share, summed over its pools.

    ``deviation`` > 0: got more turns than an equal share of its pools; < 0: fewer.
    """
    out = (
        pool_members.group_by("partner_id")
        .agg(
            pl.len().cast(pl.Int64).alias("pools"),
            pl.col("given").sum().cast(pl.Int64),
            pl.col("ideal_share").sum().alias("ideal"),
        )
        .with_columns((pl.col("given") - pl.col("ideal")).alias("deviation"))
        .sort(["deviation", "partner_id"], descending=[True, False])
    )
    if names is not None:
        out = out.join(names.select("partner_id", "name"), on="partner_id", how="left")
        out = out.select("partner_id", "name", "pools", "given", "ideal", "deviation")
    return out


def deviation_extremes(deviation: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    """The ``n`` partners furthest above and the ``n`` furthest below their ideal share."""
    if deviation.height <= 2 * n:
        return deviation.sort("deviation", descending=True)
    top = deviation.sort("deviation", descending=True).head(n)
    bottom = deviation.sort("deviation").head(n)
    return pl.concat([top, bottom.sort("deviation", descending=True)])


def partner_names(con: Con) -> pl.DataFrame:
    return state.query(con, "SELECT partner_id, name FROM partners ORDER BY partner_id")


# --- Referrals, FTOP tasks, outbox -----------------------------------------------------------

#: The run filter's value for referrals imported with the history (no run).
HISTORY = "history"


@dataclass(frozen=True)
class ReferralFilter:
    """The referrals page's filters; empty means "any". ``run``: a run id, HISTORY or None."""

    outcomes: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    partner_id: str | None = None
    run: int | str | None = None
    tenant: str = ""

    def where(self) -> tuple[str, list[Any]]:
        sql, params = ["TRUE"], []
        for column, values in (
            ("outcome", self.outcomes),
            ("status", self.statuses),
            ("reason", self.reasons),
        ):
            if values:
                sql.append(f"list_contains(?::VARCHAR[], r.{column})")
                params.append(list(values))
        if self.partner_id:
            sql.append("r.partner_id = ?")
            params.append(self.partner_id)
        if self.run == HISTORY:
            sql.append("r.run_id IS NULL")
        elif self.run is not None:
            sql.append("r.run_id = ?")
            params.append(int(self.run))
        if self.tenant.strip():
            sql.append("(r.tenant_id ILIKE ? OR c.name ILIKE ?)")
            params += [f"%{self.tenant.strip()}%"] * 2
        return " AND ".join(sql), params


def referral_options(con: Con) -> dict[str, Any]:
    """Values the referral filters can take: outcomes, statuses, reasons, runs (newest
    first) and ``history``, the number of referrals imported without a run."""
    row = state.query(
        con,
        """
        SELECT
          coalesce(list_sort(list_distinct(list(outcome))), []) AS outcomes,
          coalesce(list_sort(list_distinct(list(status))), []) AS statuses,
          coalesce(list_sort(list_distinct(list(reason))), []) AS reasons,
          (SELECT coalesce(list_sort(list(run_id), 'DESC'), []) FROM runs) AS runs,
          count(*) FILTER (WHERE run_id IS NULL) AS history
        FROM referrals
        """,
    ).row(0, named=True)
    return {
        **{k: list(row[k] or []) for k in ("outcomes", "statuses", "reasons", "runs")},
        "history": int(row["history"] or 0),
    }


def runs(con: Con) -> pl.DataFrame:
    return state.query(
        con,
        "SELECT run_id, created_at, actor, policy, source, customers, placed, css, skipped "
        "FROM runs ORDER BY run_id DESC",
    )


_REFERRAL_FROM = "FROM referrals r LEFT JOIN customers c USING (tenant_id) "


def referral_count(con: Con, where: ReferralFilter = ReferralFilter()) -> int:
    sql, params = where.where()
    return int(state.scalar(con, f"SELECT count(*) {_REFERRAL_FROM} WHERE {sql}", params) or 0)


def referral_rows(
    con: Con, where: ReferralFilter = ReferralFilter(), limit: int = ROW_CAP
) -> pl.DataFrame:
    """Referrals matching the filter, newest first, at most ``limit`` rows."""
    sql, params = where.where()
    return state.query(
        con,
        f"""
        SELECT r.referral_id, r.run_id, r.tenant_id, c.name AS customer, r.outcome,
               r.partner_id, r.psm_name, r.queue, r.reason, r.status, r.country,
               r.language, r.eligible_workloads AS workloads, r.created_at
        {_REFERRAL_FROM} WHERE {sql}
        ORDER BY r.created_at DESC, r.referral_id DESC LIMIT ?
        """,
        [*params, limit],
    )


def referral_detail(con: Con, referral_id: int) -> dict[str, Any] | None:
    frame = state.query(
        con,
        """
        SELECT r.*, c.name AS customer, c.seats, c.gateway, p.name AS partner_name
        FROM referrals r LEFT JOIN customers c USING (tenant_id)
        LEFT JOIN partners p USING (partner_id)
        WHERE r.referral_id = ?
        """,
        [referral_id],
    )
    return frame.row(0, named=True) if frame.height else None


def trace_steps(trace: str | None) -> list[str]:
    """A trace split into its steps ('Referral Ready: ...; country SE: ...; chose ...')."""
    if not trace:
        return []
    return [s.strip() for s in trace.split("; ") if s.strip()]


def task_count(con: Con, run: int | str | None = None, status: str | None = None) -> int:
    sql, params = _task_where(run, status)
    return int(
        state.scalar(
            con,
            f"SELECT count(*) FROM ftop_tasks t JOIN referrals r USING (referral_id) WHERE {sql}",
            params,
        )
        or 0
    )


def ftop_tasks(
    con: Con, run: int | str | None = None, limit: int = ROW_CAP, status: str | None = None
) -> pl.DataFrame:
    """FTOP task 3186 rows (newest first), with the customer and partner names; ``status``
    (``open`` or ``closed``) filters."""
    sql, params = _task_where(run, status)
    return state.query(
        con,
        f"""
        SELECT t.task_id, t.task_number, t.name AS task, t.tenant_id, c.name AS customer,
               t.partner_id, p.name AS partner, t.role, t.service, t.mandatory, t.status,
               r.run_id, t.referral_id, t.created_at, t.closed_at
        FROM ftop_tasks t JOIN referrals r USING (referral_id)
        LEFT JOIN customers c ON c.tenant_id = t.tenant_id
        LEFT JOIN partners p ON p.partner_id = t.partner_id
        WHERE {sql}
        ORDER BY t.task_id DESC LIMIT ?
        """,
        [*params, limit],
    )


def _task_where(run: int | str | None, status: str | None) -> tuple[str, list[Any]]:
    sql, params = _run_clause(run)
    if status:
        sql += " AND t.status = ?"
        params = [*params, status]
    return sql, params


def _run_clause(run: int | str | None) -> tuple[str, list[Any]]:
    if run == HISTORY:
        return "r.run_id IS NULL", []
    if run is None:
        return "TRUE", []
    return "r.run_id = ?", [int(run)]


def outbox_count(con: Con, statuses: Sequence[str] = (), run: int | str | None = None) -> int:
    sql, params = _outbox_where(statuses, run)
    return int(
        state.scalar(
            con,
            f"SELECT count(*) FROM outbox o JOIN referrals r USING (referral_id) WHERE {sql}",
            params,
        )
        or 0
    )


def outbox(
    con: Con, statuses: Sequence[str] = (), run: int | str | None = None, limit: int = ROW_CAP
) -> pl.DataFrame:
    """Queued referral notifications (newest first), without their bodies."""
    sql, params = _outbox_where(statuses, run)
    return state.query(
        con,
        f"""
        SELECT o.message_id, o.referral_id, r.run_id, o.tenant_id, o.recipient_role,
               o.to_email, o.subject, o.status, o.attempts, o.created_at, o.sent_at, o.last_error
        FROM outbox o JOIN referrals r USING (referral_id)
        WHERE {sql}
        ORDER BY o.referral_id DESC, o.recipient_role LIMIT ?
        """,
        [*params, limit],
    )


def _outbox_where(statuses: Sequence[str], run: int | str | None) -> tuple[str, list[Any]]:
    sql, params = _run_clause(run)
    if statuses:
        sql += " AND list_contains(?::VARCHAR[], o.status)"
        params = [*params, list(statuses)]
    return sql, params


def outbox_statuses(con: Con) -> list[str]:
    return state.query(con, "SELECT DISTINCT status FROM outbox ORDER BY status")[
        "status"
    ].to_list()


def message(con: Con, message_id: str) -> dict[str, Any] | None:
    frame = state.query(con, "SELECT * FROM outbox WHERE message_id = ?", [message_id])
    return frame.row(0, named=True) if frame.height else None


# --- PSM load ----------------------------------------------------------------------------


def psm_load(con: Con) -> pl.DataFrame:
    """Open referrals per Partner Success Manager, most loaded first: ``psm_name,
    psm_email, partners`` (how many partners the PSM looks after now), ``open_referrals``
    (referrals committed here and still open, with those partners), ``partner_ids``.

    A PSM is known by email; referrals count for the partner's current PSM, who takes
    over a partner's open referrals when the partner file names a new one.
    """
    return state.query(
        con,
        """
        SELECT min(psm_name) AS psm_name, psm_email, count(*) AS partners,
               sum(open_referrals)::BIGINT AS open_referrals,
               list(partner_id ORDER BY partner_id) AS partner_ids
        FROM partner_state
        GROUP BY psm_email
        ORDER BY open_referrals DESC, psm_name, psm_email
        """,
    )
