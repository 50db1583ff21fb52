"""The frames `engine.fairness.report` needs, for a result file or for committed referrals.

For committed referrals, utilisation is the partners' current load (open referrals plus
the load held elsewhere) against capacity, while turn counts per pool come from the
referrals in the chosen period. ``committed_inputs`` gives one row per referral;
``committed_counts`` groups them in DuckDB first (one row per distinct outcome, partner,
reason, place, language, workloads and pool, with how many customers it stands for), so
a million referrals reach Polars as tens of thousands of rows; the report is the same.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from engine.fairness import WEIGHT
from engine.matching import Signature, index_partners, match_signature
from engine.rules import Rules, load_rules
from engine.schema import InputError, Problem
from store import state
from store.db import connect, resolve_path
from store.errors import StoreError
from store.files import read_partners, read_raw

OUTCOME_COLUMNS = ("tenant_id", "outcome", "partner_id", "reason")
_OPTIONAL = {
    "region": pl.String,
    "country": pl.String,
    "language": pl.String,
    "pool_key": pl.String,
    "eligible_workloads": pl.List(pl.String),
}


def result_inputs(
    result: str | Path, partners_file: str | None, db: str | None, rules: Rules | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
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
        path = resolve_path(db)
        if not path.exists():
            raise StoreError(f"{path}: no such database; give --partners FILE for a result file")
        con = connect(path, read_only=True)
        try:
            partners = state.partners(con)
        finally:
            con.close()
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
    index = index_partners(partners, rules)
    bit = {w: 1 << j for j, w in enumerate(rules.eligible_workloads)}
    keys, members = [], []
    for key, country, language, elig in sigs.iter_rows():
        elig = tuple(elig or ())
        mask = sum(bit.get(w, 0) for w in set(elig))
        m = match_signature(index, Signature(country, language, mask, elig))
        keys.append(key)
        members.append([index.ids[i] for i in m.partners])
    return pl.DataFrame(
        {"pool_key": keys, "partner_ids": members},
        schema={"pool_key": pl.String, "partner_ids": pl.List(pl.String)},
    )


def committed_inputs(
    db: str | None | duckdb.DuckDBPyConnection,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(outcomes, partners, pools) for referrals committed to the store in [since, until)."""
    if isinstance(db, duckdb.DuckDBPyConnection):
        return _committed(db, since, until)
    path = resolve_path(db)
    if not path.exists():
        raise StoreError(f"{path}: no such database; build it with `frp demo`")
    con = connect(path, read_only=True)
    try:
        return _committed(con, since, until)
    finally:
        con.close()


def committed_counts(
    db: str | None | duckdb.DuckDBPyConnection,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """As ``committed_inputs``, but the outcomes counted: ``engine.fairness.WEIGHT`` says
    how many referrals of [since, until) each row stands for."""
    if isinstance(db, duckdb.DuckDBPyConnection):
        return _committed(db, since, until, counted=True)
    path = resolve_path(db)
    if not path.exists():
        raise StoreError(f"{path}: no such database; build it with `frp demo`")
    con = connect(path, read_only=True)
    try:
        return _committed(con, since, until, counted=True)
    finally:
        con.close()


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
    con: duckdb.DuckDBPyConnection,
    since: datetime | None,
    until: datetime | None,
    counted: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    cond, params = state.period(since, until)
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
