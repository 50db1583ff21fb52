"""Where a split would close a coverage gap (docs/domain.md, "Split by workload").

The Partner capacity page's coverage maps count partners per country and *single*
workload, so they cannot show a customer asking for several workloads that no one
partner covers together. This module takes the sets of workloads the backlog asks for
together, per country, and says for each whether one partner covers the set, whether a
split across at most ``limit`` partners would, or whether nobody does. It is a map of
coverage, not of room: full partners count (the capacity map shows room).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from engine.matching import workload_mask
from engine.split import cover_exists

#: A cell's coverage, best first.
ONE_PARTNER = "one partner"
SPLIT = "split of {}"
NO_COVER = "no cover"

COVER_SCHEMA = pl.Schema(
    {
        "country": pl.String,
        "workload_set": pl.String,
        "customers": pl.Int64,
        "single_partners": pl.Int64,
        "cover": pl.String,
    }
)


def split_cover(
    partners: pl.DataFrame,
    demand: pl.DataFrame,
    matched_workloads: Sequence[str],
    limit: int = 2,
) -> pl.DataFrame:
    """Per (country, set of workloads asked together): customers, partners covering the
    whole set alone, and the coverage (:data:`ONE_PARTNER`, ``split of <limit>`` when at
    most ``limit`` partners together cover it, else :data:`NO_COVER`).

    ``partners``: ``countries, workloads`` (lists) of the partners taking referrals;
    ``demand``: ``country, workloads`` (list), ``customers``; ``matched_workloads``: the
    workloads partners are matched on (the eligible ones less those CSS always delivers).
    A demand row's workloads outside them are left out; a row left with none is dropped.
    """

    def masks(lists: pl.Series) -> pl.Series:
        return pl.Series(
            [workload_mask(w, matched_workloads) for w in lists.to_list()], dtype=pl.Int64
        )

    by_country: dict[str, np.ndarray] = {
        str(country): group.get_column("mask").to_numpy()
        for (country,), group in partners.select(
            "countries", masks(partners.get_column("workloads")).alias("mask")
        )
        .explode("countries")
        .group_by("countries")
    }
    wanted = (
        demand.with_columns(masks(demand.get_column("workloads")).alias("wanted"))
        .filter(pl.col("wanted") > 0)
        .group_by("country", "wanted")
        .agg(pl.col("customers").sum())
    )
    rows = []
    for country, want, customers in wanted.iter_rows():
        have = by_country.get(country, np.zeros(0, dtype=np.int64))
        single = int(((have & want) == want).sum())
        if single:
            cover = ONE_PARTNER
        elif limit > 1 and cover_exists(want, have, limit):
            cover = SPLIT.format(limit)
        else:
            cover = NO_COVER
        names = [w for j, w in enumerate(matched_workloads) if want >> j & 1]
        rows.append((country, "+".join(names), int(customers), single, cover))
    return pl.DataFrame(rows, schema=COVER_SCHEMA, orient="row").sort(["country", "workload_set"])
