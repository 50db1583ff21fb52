"""Where a split would close a coverage gap (engine.coverage), on a hand-checked world."""

from __future__ import annotations

import polars as pl

from engine.coverage import NO_COVER, ONE_PARTNER, split_cover

WORKLOADS = ["exchange", "teams", "intune", "defender"]


def test_each_set_is_covered_by_one_partner_a_split_or_nobody() -> None:
    partners = pl.DataFrame(
        {
            "countries": [["DE"], ["DE", "FR"], ["FR"]],
            "workloads": [["exchange", "teams"], ["intune"], ["exchange", "teams", "intune"]],
        }
    )
    demand = pl.DataFrame(
        {
            "country": ["DE", "DE", "DE", "DE", "FR", "IT", "DE"],
            "workloads": [
                ["exchange"],
                ["exchange", "intune"],  # DE: P1 + P2, no single partner
                ["intune", "exchange"],  # the same set, asked in another order
                ["exchange", "teams", "intune", "defender"],  # nobody covers defender
                ["teams", "intune"],  # FR: P3 alone
                ["teams"],  # no partner in IT
                ["dynamics-365"],  # not matched on: dropped
            ],
            "customers": [3, 2, 1, 4, 5, 6, 7],
        }
    )
    got = split_cover(partners, demand, WORKLOADS, limit=2)
    assert got.rows() == [
        ("DE", "exchange", 3, 1, ONE_PARTNER),
        ("DE", "exchange+intune", 3, 0, "split of 2"),
        ("DE", "exchange+teams+intune+defender", 4, 0, NO_COVER),
        ("FR", "teams+intune", 5, 1, ONE_PARTNER),
        ("IT", "teams", 6, 0, NO_COVER),
    ]
    # With the limit at 1 a split never covers; CSS workloads are not matched on.
    one = split_cover(partners, demand, WORKLOADS, limit=1)
    assert one.filter(pl.col("workload_set") == "exchange+intune")["cover"].to_list() == [NO_COVER]
    no_defender = split_cover(partners, demand, WORKLOADS[:3], limit=2)
    assert ("DE", "exchange+teams+intune", 4, 0, "split of 2") in no_defender.rows()
