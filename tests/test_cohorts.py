"""Synthetic cohorts (engine/cohorts.py): seeded, the requested size, valid, believable."""

from __future__ import annotations

import polars as pl
import pytest

from engine.cohorts import CohortMix, market, synthetic_cohort
from engine.columns import CUSTOMER_SCHEMA, LIST_SEPARATOR
from engine.demo import generate_world
from engine.schema import validate_customers


@pytest.fixture(scope="module")
def partners() -> pl.DataFrame:
    return generate_world().partners


def as_csv_text(frame: pl.DataFrame) -> pl.DataFrame:
    """The cohort as a CSV file would carry it (lists joined, everything text)."""
    return frame.with_columns(pl.col("workloads").list.join(LIST_SEPARATOR)).cast(pl.String)


@pytest.mark.parametrize("size", [0, 1, 200, 5_000])
def test_the_cohort_has_the_requested_size_and_schema(partners: pl.DataFrame, size: int) -> None:
    cohort = synthetic_cohort(size, 11, partners=partners)
    assert cohort.height == size
    assert cohort.schema == pl.Schema(CUSTOMER_SCHEMA)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_the_same_seed_gives_the_same_cohort(partners: pl.DataFrame, seed: int) -> None:
    first = synthetic_cohort(500, seed, CohortMix(small_share=0.3), partners)
    again = synthetic_cohort(500, seed, CohortMix(small_share=0.3), partners)
    assert first.equals(again)


def test_another_seed_gives_another_cohort(partners: pl.DataFrame) -> None:
    a = synthetic_cohort(300, 1, partners=partners)
    b = synthetic_cohort(300, 2, partners=partners)
    assert not a.drop("tenant_id").equals(b.drop("tenant_id"))
    assert set(a["tenant_id"]).isdisjoint(b["tenant_id"])


@pytest.mark.parametrize("partners_given", [True, False])
def test_the_cohort_passes_the_cli_validation(partners: pl.DataFrame, partners_given: bool) -> None:
    cohort = synthetic_cohort(2_000, 5, partners=partners if partners_given else None)
    validated = validate_customers(as_csv_text(cohort), "synthetic")
    assert validated.equals(cohort)
    assert cohort["tenant_id"].n_unique() == cohort.height


def test_customers_come_from_where_partners_serve(partners: pl.DataFrame) -> None:
    cohort = synthetic_cohort(3_000, 3, partners=partners)
    served = partners.explode("countries")
    pairs = set(served.explode("languages").select("countries", "languages").unique().iter_rows())
    assert set(cohort["country"]) <= set(served["countries"])
    assert set(cohort.select("country", "language").unique().iter_rows()) <= pairs
    # The big markets lead, as they do in the demo world (US is the largest).
    top = cohort["country"].value_counts(sort=True)["country"][0]
    assert top == "US"


@pytest.mark.parametrize(
    ("mix", "column", "expected"),
    [
        (CohortMix(small_share=0.5), "small", 0.5),
        (CohortMix(gateway_share=0.8), "gateway", 0.8),
        (CohortMix(no_consent_share=0.3, small_share=0), "no_consent", 0.3),
        (CohortMix(small_share=0.0), "small", 0.0),
    ],
)
def test_the_mix_controls_the_shares(
    partners: pl.DataFrame, mix: CohortMix, column: str, expected: float
) -> None:
    cohort = synthetic_cohort(4_000, 9, mix, partners)
    measures = {
        "small": (cohort["seats"] < mix.min_seats).mean(),
        "gateway": cohort["gateway"].mean(),
        "no_consent": cohort["referral_consent"].eq_missing(False).mean(),
    }
    assert measures[column] == pytest.approx(expected, abs=0.03)


def test_customers_that_are_not_small_fall_in_the_seat_buckets(partners: pl.DataFrame) -> None:
    seats = synthetic_cohort(5_000, 4, CohortMix(small_share=0), partners)["seats"]
    assert seats.min() >= 150
    buckets = {
        "XS": ((seats >= 150) & (seats < 500)).sum(),
        "S": ((seats >= 500) & (seats < 5_000)).sum(),
        "M": ((seats >= 5_000) & (seats < 10_000)).sum(),
        "L": (seats >= 10_000).sum(),
    }
    assert all(n > 0 for n in buckets.values())
    assert buckets["XS"] > buckets["S"] > buckets["M"] > buckets["L"]


def test_non_eligible_customers_ask_only_for_uncovered_workloads(partners: pl.DataFrame) -> None:
    mix = CohortMix(small_share=0, no_consent_share=0, non_eligible_share=1.0)
    cohort = synthetic_cohort(200, 8, mix, partners)
    eligible = {"exchange", "teams", "sharepoint", "onedrive", "intune", "m365-apps"}
    assert all(not (set(w) & eligible) for w in cohort["workloads"].to_list())


def test_countries_can_be_restricted(partners: pl.DataFrame) -> None:
    cohort = synthetic_cohort(400, 2, CohortMix(countries=("JP", "IS")), partners)
    assert set(cohort["country"]) == {"JP", "IS"}  # IS has no partner: its customers go to CSS


def test_country_weights_replace_the_partner_weights(partners: pl.DataFrame) -> None:
    m = market(partners, CohortMix(country_weights={"DE": 1.0, "FR": 0.0}))
    assert list(m) == ["DE"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"small_share": 1.5},
        {"gateway_share": -0.1},
        {"small_share": 0.6, "no_consent_share": 0.6},
        {"countries": ("XX",)},
        {"country_weights": {"US": -1.0}},
    ],
)
def test_a_bad_mix_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="cohort mix"):
        CohortMix(**kwargs)


@pytest.mark.parametrize("size", [-1, 10**9])
def test_a_bad_size_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="size"):
        synthetic_cohort(size, 1)
