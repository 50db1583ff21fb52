"""The seeded demo world (engine/demo.py): big enough, believable, consistent, repeatable.

The history the store makes from it, by running the product week by week, is tested in
tests/test_demo_history.py."""

from __future__ import annotations

import re

import polars as pl
import pytest

from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA
from engine.demo import (
    FULL_POOL_COUNTRIES,
    OUTSIDE_LOAD,
    QUEUE_OF_REGION,
    WEEKLY_CUSTOMERS,
    WEEKS,
    DemoWorld,
    generate_world,
    load_tables,
    week_start,
)
from engine.iso import COUNTRIES, LANGUAGES
from engine.rules import Rules, load_rules

EMAIL = re.compile(r"^[a-z0-9.-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.example$")


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return generate_world()


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


# --- size and shape -------------------------------------------------------------------


def test_the_world_is_big_enough(world: DemoWorld) -> None:
    partners = world.partners
    assert partners.height >= 300
    assert partners["countries"].explode().n_unique() >= 25
    assert partners["languages"].explode().n_unique() >= 12
    assert len(world.weeks) == WEEKS
    assert sum(week.height for week in world.weeks) >= WEEKS * WEEKLY_CUSTOMERS[0]
    assert world.customers.height >= 1000


def test_schemas_are_the_documented_ones(world: DemoWorld) -> None:
    assert world.partners.schema == pl.Schema(PARTNER_SCHEMA)
    assert world.customers.schema == pl.Schema(CUSTOMER_SCHEMA)
    assert all(week.schema == pl.Schema(CUSTOMER_SCHEMA) for week in world.weeks)


def test_same_seed_same_world_other_seed_other_world(world: DemoWorld) -> None:
    again = generate_world(7)
    assert again.partners.equals(world.partners)
    assert again.customers.equals(world.customers)
    assert all(a.equals(b) for a, b in zip(again.weeks, world.weeks, strict=True))
    other = generate_world(8)
    assert not other.partners.equals(world.partners)
    assert not other.customers.equals(world.customers)
    assert not other.weeks[0].equals(world.weeks[0])


def test_backlog_size_is_honoured() -> None:
    assert generate_world(3, backlog_size=40).customers.height == 40


def test_generation_runs_for_any_seed() -> None:
    """How fast is measured by ``make bench`` (bench/unit.py), not asserted here."""
    a, b = generate_world(5), generate_world(6)
    assert a.partners.height == b.partners.height > 0
    assert not a.customers.equals(b.customers)


# --- identities and codes -------------------------------------------------------------


def test_ids_are_unique_and_well_formed(world: DemoWorld) -> None:
    partner_ids = world.partners["partner_id"]
    assert partner_ids.is_unique().all()
    assert partner_ids.str.contains(r"^P\d{4}$").all()
    tenants = pl.concat(
        [*(week["tenant_id"] for week in world.weeks), world.customers["tenant_id"]]
    )
    assert tenants.is_unique().all()
    assert tenants.str.contains(r"^T\d{6}$").all()
    # Numbered as they reached the FTCQ: week by week, the backlog last.
    assert tenants.is_sorted()


def test_names_are_unique_and_emails_are_on_example_domains(world: DemoWorld) -> None:
    assert world.partners["name"].is_unique().all()
    customer_names = pl.concat([*(week["name"] for week in world.weeks), world.customers["name"]])
    assert customer_names.is_unique().all()
    emails = pl.concat(
        [
            world.partners["psm_email"],
            world.partners["contact_email"],
            world.customers["contact_email"],
            *(week["contact_email"] for week in world.weeks),
        ]
    )
    bad = [e for e in emails.to_list() if not EMAIL.match(e)]
    assert bad == []


def test_countries_and_languages_are_iso_codes(world: DemoWorld) -> None:
    used_countries = set(world.partners["countries"].explode()) | set(world.customers["country"])
    used_languages = set(world.partners["languages"].explode()) | set(world.customers["language"])
    assert used_countries <= set(COUNTRIES)
    assert used_languages <= set(LANGUAGES)


def test_customers_speak_a_language_of_their_country_or_english(world: DemoWorld) -> None:
    countries = load_tables().countries
    for frame in (world.customers, *world.weeks):
        for code, lang in frame.select("country", "language").unique().iter_rows():
            assert lang in countries[code].languages or lang == "en", (code, lang)


def test_demo_regions_agree_with_the_default_rules(rules: Rules) -> None:
    for country in load_tables().countries.values():
        assert rules.queue_for(country.code) == QUEUE_OF_REGION[country.region], country.code


# --- believable partners --------------------------------------------------------------


def test_capacity_and_coverage_are_uneven(world: DemoWorld) -> None:
    capacity = world.partners["capacity"]
    assert capacity.min() >= 5
    assert 200 <= capacity.max() <= 300
    assert 3 <= (capacity >= 120).sum() <= 30  # a few big partners
    assert (capacity <= 40).mean() >= 0.6  # many small ones
    served = world.partners["countries"].list.len()
    assert served.min() == 1 and served.max() >= 3


def test_about_a_tenth_of_partners_are_not_referral_ready(world: DemoWorld) -> None:
    assert 0.05 <= (~world.partners["referral_ready"]).mean() <= 0.16


def test_popular_workloads_are_covered_more_than_rare_ones(world: DemoWorld) -> None:
    covered = world.partners["workloads"].explode().value_counts()
    share = dict(covered.iter_rows())
    for popular in ("exchange", "teams", "sharepoint", "onedrive"):
        for rare in ("purview", "viva", "windows"):
            assert share[popular] > 2 * share[rare]


# --- the weeks before the backlog ---------------------------------------------------------


def test_the_store_holds_the_partners_load_only_the_full_countries_hold_seats_elsewhere(
    world: DemoWorld,
) -> None:
    """The history's referrals are made by the store (store/demo.py); only partners in the
    designed full countries hold seats for referrals from outside this tool."""
    partners = world.partners
    full = partners["countries"].list.eval(pl.element().is_in(list(FULL_POOL_COUNTRIES)))
    in_full = partners.filter(full.list.any())
    assert in_full.height > 0
    assert (in_full["active_referrals"] == (in_full["capacity"] * OUTSIDE_LOAD).round()).all()
    assert (partners.filter(~full.list.any())["active_referrals"] == 0).all()
    assert partners["last_assigned"].null_count() == partners.height


def test_weeks_grow_and_demand_in_the_full_countries_surges_at_the_end(world: DemoWorld) -> None:
    sizes = [week.height for week in world.weeks]
    assert sizes[-1] > sizes[0]
    share = [week["country"].is_in(FULL_POOL_COUNTRIES).mean() for week in world.weeks]
    assert min(share[-3:]) > max(share[:3])
    assert week_start(WEEKS, world.as_of).date() == world.as_of.date()
    assert week_start(0, world.as_of).weekday() == 0


# --- the backlog ----------------------------------------------------------------------


def test_backlog_seats_follow_the_size_buckets(world: DemoWorld) -> None:
    seats = world.customers["seats"]
    buckets = {
        "below": seats < 150,
        "XS": seats.is_between(150, 499),
        "S": seats.is_between(500, 4999),
        "M": seats.is_between(5000, 9999),
        "L": seats >= 10_000,
    }
    shares = {name: mask.mean() for name, mask in buckets.items()}
    assert all(share > 0.02 for share in shares.values()), shares
    assert shares["XS"] + shares["S"] > 0.6


def test_about_a_fifth_of_the_backlog_is_gateway(world: DemoWorld) -> None:
    assert 0.12 <= world.customers["gateway"].mean() <= 0.28


def test_consent_is_sometimes_missing_and_sometimes_withheld(world: DemoWorld) -> None:
    consent = world.customers["referral_consent"]
    assert consent.null_count() > 0
    assert (consent == False).sum() > 0  # noqa: E712 - a Polars comparison, not Python's
