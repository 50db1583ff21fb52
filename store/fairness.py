"""Reads behind the Fairness page, and the frames ``engine.fairness.report`` needs.

Inputs of the report, for a result file (``result_inputs``) or for committed referrals:
for those, utilisation is the partners' current load (open referrals plus the load held
elsewhere) against capacity, while turn counts per pool come from the referrals in the
chosen period. ``committed_inputs`` gives one row per referral; ``committed_counts``
groups them in DuckDB first (one row per distinct outcome, partner, reason, place,
language, workloads and pool, with how many customers it stands for), so a million
referrals reach Polars as tens of thousands of rows; the report is the same.

How partners answered their referrals (``partner_responses``) is counted in DuckDB too:
one row per partner and response, which ``engine.fairness.acceptance`` turns into
acceptance rates and expiries per partner.

The page's reads (``committed_fairness``, ``committed_customers``, ``monthly_fairness``,
``referral_dates``) take a connection (or cursor); ``monthly_fairness`` is one row per
month: ``month, customers, placed, css, css_rate, partners, jain, gini``. Nothing here
imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from engine.fairness import WEIGHT, FairnessReport, gini, jain_index, report
from engine.matching import index_partners, pool_key, pool_members
from engine.reasons import Outcome, Reason
from engine.rules import Rules, load_rules
from engine.schema import InputError, Problem
from engine.sizes import SIZE_BUCKETS, SIZE_FLOORS
from store import state
from store.capacity import with_labels
from store.db import open_db, resolve_path
from store.errors import StoreError
from store.files import read_partners, read_raw
from store.state import Con

#: (outcomes, partners, pools): what ``engine.fairness.report`` takes.
Frames = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]

#: Pool membership: the ``pools`` frame of the report's inputs.
_POOLS = pl.Schema({"pool_key": pl.String(), "partner_ids": pl.List(pl.String)})

OUTCOME_COLUMNS = ("tenant_id", "outcome", "partner_id", "reason")
_OPTIONAL = pl.Schema(
    {
        "region": pl.String(),
        "country": pl.String(),
        "language": pl.String(),
        "pool_key": pl.String(),
        "eligible_workloads": pl.List(pl.String),
    }
)


def result_inputs(
    result: str | Path, partners_file: str | None, db: str | None, rules: Rules | None = None
) -> Frames:
    """(outcomes, partners, pools) for a result file written by `frp simulate --out`."""
    rules = rules or load_rules()
    raw, _, _ = read_raw(result)
    missing = [c for c in OUTCOME_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(
            str(result),
            [
                Problem(None, c, None, "this column (a result file from `frp simulate --out`)")
                for c in missing
            ],
        )
    outcomes = raw.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in _OPTIONAL.items() if c not in raw.columns]
    )
    if outcomes.schema["eligible_workloads"] == pl.String:
        outcomes = outcomes.with_columns(pl.col("eligible_workloads").str.split(";"))
    if partners_file:
        partners = read_partners(partners_file)
    else:
        with _reading(db, "give --partners FILE for a result file") as con:
            partners = state.partners(con)
    given = outcomes.filter(pl.col("outcome") == "frp").group_by("partner_id").len("assigned")
    load = (
        partners.select(
            "partner_id",
            pl.col("referral_ready").alias("available"),
            (pl.col("capacity") * rules.capacity_scale).floor().cast(pl.Int64).alias("capacity"),
            pl.col("active_referrals").alias("active_before"),
        )
        .join(given, on="partner_id", how="left")
        .with_columns(pl.col("assigned").fill_null(0).cast(pl.Int64))
    )
    return outcomes, load, _pools_of(outcomes, partners, rules)


def _pools_of(outcomes: pl.DataFrame, partners: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Pool membership, recomputed by matching each pool's signature against the partners."""
    sigs = (
        outcomes.filter(pl.col("pool_key").is_not_null())
        .unique("pool_key", keep="first", maintain_order=True)
        .select("pool_key", "country", "language", "eligible_workloads")
    )
    match = _matcher(partners, rules)
    keys, members = [], []
    for key, country, language, elig in sigs.iter_rows():
        keys.append(key)
        members.append(match(country, language, elig))
    return pl.DataFrame({"pool_key": keys, "partner_ids": members}, schema=_POOLS)


def _matcher(
    partners: pl.DataFrame, rules: Rules
) -> Callable[[str, str, Sequence[str] | None], list[str]]:
    """The ids of the partners matching a signature (country, language, eligible workloads),
    as matching a customer of that signature would find them; the partners are indexed once."""
    index = index_partners(partners, rules)
    return lambda country, language, workloads: pool_members(
        index, rules, country, language, workloads
    )


def committed_inputs(
    db: str | None | Con, since: datetime | None = None, until: datetime | None = None
) -> Frames:
    """(outcomes, partners, pools) for referrals committed to the store in [since, until)."""
    with _reading(db, "build it with `frp demo`") as con:
        return _committed(con, since, until)


def committed_counts(
    db: str | None | Con,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
) -> Frames:
    """As ``committed_inputs``, but the outcomes counted: ``engine.fairness.WEIGHT`` says
    how many referrals of [since, until) each row stands for. ``version``: only the runs
    made with that version of the team's rules."""
    with _reading(db, "build it with `frp demo`") as con:
        return _committed(con, since, until, counted=True, version=version)


@contextmanager
def _reading(db: str | None | Con, missing: str) -> Iterator[Con]:
    """``db`` itself when it is a connection, else its file opened read-only for the block;
    ``missing`` says what to do when there is no such file."""
    if isinstance(db, duckdb.DuckDBPyConnection):
        yield db
        return
    path = resolve_path(db)
    if not path.exists():
        raise StoreError(f"{path}: no such database; {missing}")
    with open_db(path, read_only=True) as con:
        yield con


# Grouped in DuckDB on the columns the report reads. Workloads are grouped as stored (the
# engine writes them in one order; a set stored in two orders is two rows, and the same
# report, since nothing downstream depends on their order): sorting a million lists would
# cost more than the grouping saves. Ordered, so the frame is the same from run to run.
_COUNTED = f"""
SELECT outcome, partner_id, reason, region, country, language, eligible_workloads,
       pool_key, count(*) AS {WEIGHT}
FROM referrals WHERE {{cond}}
GROUP BY ALL
ORDER BY ALL
"""


def _committed(
    con: Con,
    since: datetime | None,
    until: datetime | None,
    counted: bool = False,
    version: int | None = None,
) -> Frames:
    cond, params = state.period(since, until, version=version)
    if counted:
        outcomes = state.query(con, _COUNTED.format(cond=cond), params)
    else:
        outcomes = state.query(
            con,
            "SELECT tenant_id, outcome, partner_id, reason, region, country, language, "
            f"eligible_workloads, pool_key FROM referrals WHERE {cond} "
            "ORDER BY referral_id",
            params,
        )
    partners = state.query(
        con,
        "SELECT partner_id, referral_ready AS available, capacity, "
        "active_total - open_referrals AS active_before, open_referrals AS assigned "
        "FROM partner_state ORDER BY partner_id",
    )
    pools = state.query(con, "SELECT pool_key, partner_ids FROM pools ORDER BY pool_key")
    return outcomes, partners, pools


# How a partner answered a referral, as ``engine.fairness.RESPONSES`` names it: an expiry
# (status `expired`, decline reason `no_response`) is told apart from a decline; a
# completed referral was taken, so it counts as accepted (docs/domain.md, "Time: the
# referral clock"). A status this version does not know keeps its own name.
_RESPONSE = """
CASE WHEN status = 'expired' OR decline_reason = 'no_response' THEN 'expired'
     WHEN status = 'active' THEN 'waiting'
     WHEN status IN ('accepted', 'completed') THEN 'accepted'
     ELSE status END
"""


def partner_responses(
    db: str | None | Con,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
) -> pl.DataFrame:
    """Partner referrals made in [since, until), counted per partner and response:
    ``partner_id, response, referrals`` (what ``engine.fairness.acceptance`` takes)."""
    cond, params = state.period(since, until, version=version)
    with _reading(db, "build it with `frp demo`") as con:
        return state.query(
            con,
            f"SELECT partner_id, {_RESPONSE} AS response, count(*) AS referrals "
            f"FROM referrals WHERE outcome = '{Outcome.FRP.value}' AND {cond} "
            "GROUP BY ALL ORDER BY ALL",
            params,
        )


def size_case(seats: str) -> str:
    """SQL naming the size bucket of ``seats`` (docs/domain.md, "Customer size"), from the
    engine's bounds; unknown seats (a purged customer) give ``unknown``."""
    whens = " ".join(
        f"WHEN {seats} >= {floor} THEN '{bucket}'"
        for bucket, floor in reversed(list(zip(SIZE_BUCKETS[1:], SIZE_FLOORS[1:], strict=True)))
    )
    return f"CASE WHEN {seats} IS NULL THEN 'unknown' {whens} ELSE '{SIZE_BUCKETS[0]}' END"


def outcomes_by_size(
    con: Con, since: datetime | None, until: datetime | None, version: int | None = None
) -> pl.DataFrame:
    """Referrals created in [since, until) per customer size bucket, outcome and reason
    (``size_bucket, outcome, reason, customers``), counted in DuckDB."""
    cond, params = state.period(since, until, "r.created_at", version)
    return state.query(
        con,
        f"""
        SELECT {size_case("c.seats")} AS size_bucket, r.outcome, r.reason,
               count(*) AS customers
        FROM referrals r LEFT JOIN customers c USING (tenant_id)
        WHERE {cond}
        GROUP BY ALL ORDER BY ALL
        """,
        params,
    )


def css_by_country(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Customers and those sent to CSS per country, for the Fairness page's map: ``key,
    label, customers, css, css_rate``. ``outcomes`` has ``country, outcome`` and, when
    counted, ``engine.fairness.WEIGHT`` (else each row is one customer)."""
    if WEIGHT not in outcomes.columns:
        outcomes = outcomes.with_columns(pl.lit(1, dtype=pl.Int64).alias(WEIGHT))
    weight = pl.col(WEIGHT)
    css = pl.col("outcome") == Outcome.CSS.value
    frame = (
        outcomes.filter(pl.col("country").is_not_null())
        .group_by(pl.col("country").alias("key"))
        .agg(
            weight.sum().cast(pl.Int64).alias("customers"),
            weight.filter(css).sum().cast(pl.Int64).alias("css"),
        )
        .with_columns((pl.col("css") / pl.col("customers")).alias("css_rate"))
        .sort("key")
    )
    return with_labels(frame, "country").select("key", "label", "customers", "css", "css_rate")


def committed_css_by_country(
    con: Con, since: datetime | None, until: datetime | None, version: int | None = None
) -> pl.DataFrame:
    """``css_by_country`` of the referrals created in [since, until) (by runs made with
    rules ``version``, when given), counted in DuckDB (as the report counts them: one per
    referral)."""
    cond, params = state.period(since, until, version=version)
    counted = state.query(
        con,
        f"SELECT country, outcome, count(*) AS {WEIGHT} FROM referrals WHERE {cond} "
        "GROUP BY ALL ORDER BY ALL",
        params,
    )
    return css_by_country(counted)


def committed_customers(
    con: Con, since: datetime | None, until: datetime | None, version: int | None = None
) -> int:
    """How many customers the referrals of [since, until) were made for, each once.

    The report counts referrals, a partner's turns (docs/domain.md, "Fairness"): a customer
    re-assigned after a decline or expiry, or split by workload, has several.
    """
    cond, params = state.period(since, until, version=version)
    found = state.query(
        con, f"SELECT count(DISTINCT tenant_id) AS n FROM referrals WHERE {cond}", params
    )
    return int(found.item())


def referral_dates(con: Con) -> tuple[date | None, date | None]:
    """First and last day with a referral (None, None when there are none)."""
    row = state.query(
        con, "SELECT min(created_at)::DATE AS first, max(created_at)::DATE AS last FROM referrals"
    ).row(0)
    return row[0], row[1]


def committed_fairness(
    con: Con,
    since: datetime | None,
    until: datetime | None,
    rules: Rules,
    version: int | None = None,
) -> tuple[FairnessReport, pl.DataFrame]:
    """The fairness report of referrals committed in [since, until) (by runs made with
    rules ``version``, when given), and its pools' labels.

    Referrals without a pool (history kept from before runs stored theirs) get the pool
    their customer's signature matches among today's Referral Ready partners, the same way the
    command line does for result files, so that every period has a turn ledger.

    The referrals are counted in DuckDB (``committed_counts``): over a million of them the
    page gets tens of thousands of rows, not a million, and the same report.
    """
    outcomes, partners, pools = committed_counts(con, since, until, version)
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


#: Joins a signature's workload ids into one key (ids never contain it).
_SEP = "\x1f"


def _fill_pools(
    con: Con, outcomes: pl.DataFrame, pools: pl.DataFrame, rules: Rules
) -> tuple[pl.DataFrame, pl.DataFrame]:
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
    match = _matcher(state.partners(con), rules)
    keys: list[str | None] = []
    new: dict[str, list[str]] = {}
    for country, language, elig, _ in sigs.iter_rows():
        ids = match(country, language, elig)
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
        schema=_POOLS,
    )
    return filled, pl.concat([pools.cast(_POOLS), extra])


def monthly_fairness(
    con: Con, since: datetime | None, until: datetime | None, version: int | None = None
) -> pl.DataFrame:
    """Per calendar month: customers, CSS rate, and Jain's index and Gini of partner intake.

    Intake is a partner's FRP referrals that month per seat of its capacity, over today's
    Referral Ready partners with capacity (a partner given nothing counts as 0), so 1.0 /
    0.0 means every partner got work in proportion to its capacity. Counted in DuckDB,
    then engine.fairness's measures per month.
    """
    cond, params = state.period(since, until, version=version)
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
