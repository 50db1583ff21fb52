"""Reads behind the Partner capacity page: partner load, free seats, coverage, headroom.

Every read takes a connection (or cursor) and returns a small Polars frame or a dict:
grouping, filtering and capping happen in DuckDB, so a chart never receives raw rows.
The frame helpers (``utilisation_bins``, ``top_free``, ``fills_up``, ``with_labels``)
shape frames already read. Nothing here imports Streamlit; ``ui.reads`` caches the calls.

Frames and their columns (the domain's words):

- ``partner_capacity``: one row per partner: ``partner_id, name, countries, languages,
  workloads, referral_ready, paused`` (Referral Ready but before its ``paused_until``, on
  the clock's date), ``paused_until, capacity, active, free`` (the seats a run could give
  now: capacity minus active, or less when the monthly quota leaves fewer),
  ``utilisation`` (null for capacity 0), ``monthly_quota, this_month`` (FRP referrals
  made to it this calendar month), ``quota_used`` ("7 / 10", null without a quota),
  ``last_assigned, rr_position`` (place in the round-robin order among the partners
  taking referrals, 1 = next; null for the others), ``psm_name, psm_email``.
- ``coverage``: one row per (key, workload): ``key, label, workload, partners, free_seats,
  backlog, status`` (``no partner`` | ``full`` | ``room``), over the partners taking
  referrals (Referral Ready and not paused).
- ``country_seats``: one row per country for the map: ``key, label, partners,
  free_seats, backlog, status`` (``no partner`` | ``all full`` | ``room``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import polars as pl

from engine.columns import MONTH_REFERRALS
from engine.iso import COUNTRIES, LANGUAGES
from engine.sizes import SIZE_BUCKETS, SIZE_FLOORS
from store import state
from store.db import OPEN_SQL
from store.privacy import customers_sql
from store.state import INTAKE_SQL, Con, intake_params

#: Utilisation bins of the histograms: 0-10 %, ..., 90-100 %, then "full" (>= 100 %).
BIN_WIDTH = 0.1
FULL_LABEL = "100%+ (full)"
#: A country's status on the map (``country_seats``) when no partner taking referrals
#: serves it, and when those that do have no free seat.
NO_PARTNER = "no partner"
ALL_FULL = "all full"

# The seats a run could give a partner now (docs/domain.md, "Partner availability and
# intake"): capacity minus load, or fewer when its monthly quota leaves fewer (least()
# skips a NULL quota). Over INTAKE_SQL's rows.
_FREE = f"greatest(least(capacity - active_total, monthly_quota - {MONTH_REFERRALS}), 0)"
# Partners with load, free seats, intake and their place in the round-robin order. The
# order is the engine's (engine.policies.Ledger.rr_key): least recently assigned first,
# never assigned before all, ties by partner_id; only partners taking referrals (Referral
# Ready and not paused) take turns. Parameters: state.intake_params().
_PARTNERS = f"""
WITH ranked AS (
    SELECT
        partner_id, name, countries, languages, workloads, referral_ready, paused,
        paused_until, capacity,
        active_total AS active,
        {_FREE} AS free,
        CASE WHEN capacity > 0 THEN active_total / capacity END AS utilisation,
        monthly_quota, {MONTH_REFERRALS} AS this_month,
        CASE WHEN monthly_quota IS NOT NULL
             THEN format('{{}} / {{}}', {MONTH_REFERRALS}, monthly_quota) END AS quota_used,
        last_assigned,
        CASE WHEN referral_ready AND NOT paused THEN row_number() OVER (
            PARTITION BY referral_ready AND NOT paused
            ORDER BY last_assigned ASC NULLS FIRST, partner_id
        ) END AS rr_position,
        count(*) FILTER (WHERE referral_ready AND NOT paused) OVER () AS ready_partners,
        psm_name, psm_email, contact_email,
        open_referrals
    FROM ({INTAKE_SQL})
)
SELECT * FROM ranked
"""
_PARTNER_COLUMNS = (
    "partner_id, name, countries, languages, workloads, referral_ready, paused, paused_until, "
    "capacity, active, free, utilisation, monthly_quota, this_month, quota_used, "
    "last_assigned, rr_position, psm_name, psm_email"
)


@dataclass(frozen=True)
class PartnerFilter:
    """The capacity page's filters; empty means "any". Hashable, so pages can cache on it.

    Countries and languages match a partner serving *any* of them; workloads match a
    partner covering *all* of them (as matching a customer does). ``country`` (picked on
    the map) narrows further: partners serving it, customers in it.
    """

    countries: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    ready: bool | None = None
    paused: bool | None = None
    min_free: int = 0
    search: str = ""
    country: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The condition on partners (the columns of ``_PARTNERS``) and its parameters."""
        term = f"%{self.search.strip()}%"
        return _all_of(
            "TRUE",
            (self.countries, "list_has_any(countries, ?::VARCHAR[])", [list(self.countries)]),
            (self.country, "list_contains(countries, ?)", [self.country]),
            (self.languages, "list_has_any(languages, ?::VARCHAR[])", [list(self.languages)]),
            (self.workloads, "list_has_all(workloads, ?::VARCHAR[])", [list(self.workloads)]),
            (self.ready is not None, "referral_ready = ?", [self.ready]),
            (self.paused is not None, "paused = ?", [self.paused]),
            (self.min_free > 0, "free >= ?", [int(self.min_free)]),
            (
                self.search.strip(),
                "(partner_id ILIKE ? OR name ILIKE ? OR psm_name ILIKE ?)",
                [term] * 3,
            ),
        )

    def backlog_where(self) -> tuple[str, list[Any]]:
        """The condition on customers: in the FTCQ, in the filtered countries and languages."""
        return _all_of(
            "in_ftcq",
            (self.countries, "list_contains(?::VARCHAR[], country)", [list(self.countries)]),
            (self.country, "country = ?", [self.country]),
            (self.languages, "list_contains(?::VARCHAR[], language)", [list(self.languages)]),
        )


def _all_of(first: str, *clauses: tuple[object, str, list[Any]]) -> tuple[str, list[Any]]:
    """``first`` AND each clause whose test is truthy, with their parameters in order."""
    used = [(sql, params) for test, sql, params in clauses if test]
    return " AND ".join([first, *(sql for sql, _ in used)]), [p for _, ps in used for p in ps]


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
    return _partners(con, where, _PARTNER_COLUMNS, "utilisation DESC NULLS LAST, partner_id")


def paused_partners(con: Con, where: PartnerFilter = PartnerFilter()) -> pl.DataFrame:
    """The filtered partners paused on the clock's date, back soonest first:
    ``partner_id, name, paused_until``."""
    paused = replace(where, paused=True)
    return _partners(con, paused, "partner_id, name, paused_until", "paused_until, partner_id")


def _partners(con: Con, where: PartnerFilter, columns: str, order: str) -> pl.DataFrame:
    """``columns`` of the partners matching ``where``, sorted by ``order`` (SQL over the
    columns of ``_PARTNERS``)."""
    sql, params = where.where()
    return state.query(
        con,
        f"SELECT {columns} FROM ({_PARTNERS}) WHERE {sql} ORDER BY {order}",
        intake_params() + params,
    )


def capacity_headline(con: Con, where: PartnerFilter = PartnerFilter()) -> dict[str, int]:
    """The page's headline numbers for the filtered partners.

    ``free_seats`` and ``capacity`` count only the partners taking referrals: Referral
    Ready and not paused (:func:`paused_partners` lists those away); ``backlog`` is the
    FTCQ backlog in the filtered countries and languages.
    """
    sql, params = where.where()
    backlog_sql, backlog_params = where.backlog_where()
    row = state.query(
        con,
        f"""
        SELECT
          count(*) AS partners,
          count(*) FILTER (WHERE referral_ready) AS referral_ready,
          coalesce(sum(free) FILTER (WHERE rr_position IS NOT NULL), 0) AS free_seats,
          coalesce(sum(capacity) FILTER (WHERE rr_position IS NOT NULL), 0) AS capacity
        FROM ({_PARTNERS}) WHERE {sql}
        """,
        intake_params() + params,
    ).row(0, named=True)
    backlog = state.scalar(
        con, f"SELECT count(*) FROM customers WHERE {backlog_sql}", backlog_params
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
    """The ``n`` partners taking referrals (Referral Ready, not paused) with the most free
    seats, as (partner, part, seats) rows ready for a stacked bar (part is ``active`` or
    ``free``; ``rank`` 1 = most free)."""
    top = (
        frame.filter(pl.col("referral_ready") & ~pl.col("paused"))
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


def size_sql(size: str | None) -> tuple[str, list[Any]]:
    """A condition on ``seats`` for customers of size bucket ``size`` (docs/domain.md,
    "Customer size"; None: every size), and its parameters. Below the first floor counts
    as the smallest bucket, as in the engine."""
    if size is None:
        return "TRUE", []
    if size not in SIZE_BUCKETS:
        raise ValueError(f"size {size!r}: expected one of {', '.join(SIZE_BUCKETS)}")
    code = SIZE_BUCKETS.index(size)
    low = SIZE_FLOORS[code] if code else None
    high = SIZE_FLOORS[code + 1] if code + 1 < len(SIZE_FLOORS) else None
    return (
        "coalesce(seats >= ?, TRUE) AND coalesce(seats < ?, TRUE)",
        [low, high],
    )


def coverage(
    con: Con,
    by: Literal["country", "language"],
    workloads: Sequence[str],
    size: str | None = None,
) -> pl.DataFrame:
    """Free seats of the partners taking referrals (Referral Ready, not paused) per
    (country or language) x workload.

    Keys are every country (or language) a partner serves or a customer has, so places
    with demand but no partner show as gaps. A partner serving several keys counts under
    each. ``backlog`` is the FTCQ customers of that key asking for that workload, of size
    bucket ``size`` when given (the store keeps no partner sizes: every partner takes
    every size).
    """
    if by not in ("country", "language"):
        raise ValueError(f"coverage by {by!r}: expected 'country' or 'language'")
    plural = "countries" if by == "country" else "languages"
    sized, size_params = size_sql(size)
    frame = state.query(
        con,
        f"""
        WITH p AS (
            SELECT partner_id, unnest({plural}) AS key, workloads, {_FREE} AS free
            FROM ({INTAKE_SQL}) WHERE referral_ready AND NOT paused
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
                FROM customers WHERE in_ftcq AND {sized}
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
        [*intake_params(), list(workloads), *size_params],
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


def split_cover_inputs(con: Con, size: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What ``engine.coverage.split_cover`` reads: the partners taking referrals
    (``countries, workloads``) and the FTCQ backlog (of size bucket ``size`` when given)
    grouped by ``country`` and the set of ``workloads`` asked together (``customers``)."""
    partners = state.query(
        con,
        f"SELECT countries, workloads FROM ({INTAKE_SQL}) "
        "WHERE referral_ready AND NOT paused ORDER BY partner_id",
        intake_params(),
    )
    sized, params = size_sql(size)
    demand = state.query(
        con,
        f"""
        SELECT country, list_sort(list_distinct(workloads)) AS workloads, count(*) AS customers
        FROM customers WHERE in_ftcq AND {sized}
        GROUP BY ALL ORDER BY ALL
        """,
        params,
    )
    return partners, demand


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


def partner_detail(con: Con, partner_id: str) -> dict[str, Any] | None:
    """One partner with its PSM, load, intake and round-robin position (None if unknown);
    ``ready_partners`` is how many take turns."""
    frame = state.query(
        con, f"SELECT * FROM ({_PARTNERS}) WHERE partner_id = ?", [*intake_params(), partner_id]
    )
    return frame.row(0, named=True) if frame.height else None


def partner_referrals(
    con: Con, partner_id: str, limit: int = 200, *, personal: bool = False
) -> pl.DataFrame:
    """A partner's referrals, newest first (at most ``limit``); customers' personal fields
    masked unless ``personal`` (``store.privacy.customers_sql``)."""
    return state.query(
        con,
        f"""
        SELECT r.referral_id, r.run_id, r.tenant_id, c.name AS customer, r.status,
               r.country, r.language, r.eligible_workloads AS workloads, r.created_at
        FROM referrals r LEFT JOIN {customers_sql(personal)} c USING (tenant_id)
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
               count(*) FILTER (WHERE status IN {OPEN_SQL}) AS open,
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


def country_seats(con: Con, where: PartnerFilter = PartnerFilter()) -> pl.DataFrame:
    """Free seats per country of the partners taking referrals (Referral Ready, not paused)
    that speak one of ``where``'s languages and cover all its workloads (its other filters
    are ignored: the map shows every country, and picking one on it filters the page).

    One row per country a partner serves or a customer has: ``key, label, partners,
    free_seats, backlog`` (FTCQ customers there, in those languages) and ``status``:
    ``no partner`` (none matches), ``all full`` (some match, none has a free seat) or
    ``room``. A partner serving several countries counts in each.
    """
    taking = PartnerFilter(
        languages=where.languages, workloads=where.workloads, ready=True, paused=False
    )
    sql, params = taking.where()
    backlog_sql, backlog_params = PartnerFilter(languages=where.languages).backlog_where()
    frame = state.query(
        con,
        f"""
        WITH p AS (
            SELECT unnest(countries) AS key, partner_id, free FROM ({_PARTNERS}) WHERE {sql}
        ),
        agg AS (
            SELECT key, count(DISTINCT partner_id) AS partners, sum(free) AS free_seats
            FROM p GROUP BY ALL
        ),
        keys AS (
            SELECT DISTINCT unnest(countries) AS key FROM partners
            UNION SELECT DISTINCT country FROM customers
        ),
        demand AS (
            SELECT country AS key, count(*) AS backlog FROM customers
            WHERE {backlog_sql} GROUP BY ALL
        )
        SELECT k.key,
               coalesce(a.partners, 0)::BIGINT AS partners,
               coalesce(a.free_seats, 0)::BIGINT AS free_seats,
               coalesce(d.backlog, 0)::BIGINT AS backlog
        FROM keys k LEFT JOIN agg a USING (key) LEFT JOIN demand d USING (key)
        WHERE k.key IS NOT NULL
        ORDER BY k.key
        """,
        [*intake_params(), *params, *backlog_params],
    )
    return (
        with_labels(frame, "country")
        .with_columns(
            pl.when(pl.col("partners") == 0)
            .then(pl.lit(NO_PARTNER))
            .when(pl.col("free_seats") == 0)
            .then(pl.lit(ALL_FULL))
            .otherwise(pl.lit("room"))
            .alias("status")
        )
        .select("key", "label", "partners", "free_seats", "backlog", "status")
    )
