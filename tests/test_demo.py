"""The seeded demo world (engine/demo.py): big enough, believable, consistent, repeatable."""

from __future__ import annotations

import re
from datetime import timedelta

import polars as pl
import pytest

from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA, REFERRAL_HISTORY_SCHEMA
from engine.demo import (
    FULL_POOL_COUNTRIES,
    HISTORY_DAYS,
    QUEUE_OF_REGION,
    REFERRAL_SCHEMA,
    DemoWorld,
    generate_world,
    load_tables,
)
from engine.iso import COUNTRIES, LANGUAGES
from engine.reasons import CSS_REASONS, Policy
from engine.reference import reference_simulate
from engine.rules import Rules, load_rules

EMAIL = re.compile(r"^[a-z0-9.-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.example$")


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return generate_world()


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


@pytest.fixture(scope="module")
def outcome(world: DemoWorld, rules: Rules) -> pl.DataFrame:
    """The default seed's backlog under the default rules and round robin."""
    return reference_simulate(world.partners, world.customers, rules, Policy.ROUND_ROBIN)


# --- size and shape -------------------------------------------------------------------


def test_the_world_is_big_enough(world: DemoWorld) -> None:
    partners = world.partners
    assert partners.height >= 300
    assert partners["countries"].explode().n_unique() >= 25
    assert partners["languages"].explode().n_unique() >= 12
    assert world.referrals.height >= 5000
    assert world.customers.height >= 1000


def test_schemas_are_the_documented_ones(world: DemoWorld) -> None:
    assert world.partners.schema == pl.Schema(PARTNER_SCHEMA)
    assert world.customers.schema == pl.Schema(CUSTOMER_SCHEMA)
    assert world.referrals.schema == pl.Schema(REFERRAL_SCHEMA)
    assert world.referrals.columns[: len(REFERRAL_HISTORY_SCHEMA)] == list(REFERRAL_HISTORY_SCHEMA)


def test_same_seed_same_world_other_seed_other_world(world: DemoWorld) -> None:
    again = generate_world(7)
    assert again.partners.equals(world.partners)
    assert again.customers.equals(world.customers)
    assert again.referrals.equals(world.referrals)
    other = generate_world(8)
    assert not other.partners.equals(world.partners)
    assert not other.customers.equals(world.customers)
    assert not other.referrals.equals(world.referrals)


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
    tenants = pl.concat([world.referrals["tenant_id"], world.customers["tenant_id"]])
    assert tenants.is_unique().all()
    assert tenants.str.contains(r"^T\d{6}$").all()
    # The backlog arrived after everything in the history.
    assert world.customers["tenant_id"].min() > world.referrals["tenant_id"].max()


def test_names_are_unique_and_emails_are_on_example_domains(world: DemoWorld) -> None:
    assert world.partners["name"].is_unique().all()
    customer_names = pl.concat([world.referrals["customer_name"], world.customers["name"]])
    assert customer_names.is_unique().all()
    emails = pl.concat(
        [
            world.partners["psm_email"],
            world.partners["contact_email"],
            world.customers["contact_email"],
            world.referrals["customer_contact_email"],
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
    for frame, country, language in (
        (world.customers, "country", "language"),
        (world.referrals, "customer_country", "customer_language"),
    ):
        for code, lang in frame.select(country, language).unique().iter_rows():
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


# --- consistent history ---------------------------------------------------------------


def test_active_referrals_count_the_active_frp_history(world: DemoWorld) -> None:
    active = (
        world.referrals.filter(pl.col("outcome") == "frp", pl.col("status") == "active")
        .group_by("partner_id")
        .agg(pl.len().alias("counted"))
    )
    joined = world.partners.join(active, on="partner_id", how="left").with_columns(
        pl.col("counted").fill_null(0)
    )
    assert (joined["active_referrals"] == joined["counted"]).all()
    assert (joined["active_referrals"] <= joined["capacity"]).all()


def test_last_assigned_follows_the_most_recent_referral(world: DemoWorld) -> None:
    latest = (
        world.referrals.filter(pl.col("outcome") == "frp")
        .group_by("partner_id")
        .agg(pl.col("created_at").max().alias("latest"))
        .sort("latest", "partner_id")
        .with_row_index("expected", offset=1)
    )
    joined = world.partners.join(latest, on="partner_id", how="left")
    expected = joined["expected"].cast(pl.Int64)
    assert joined["last_assigned"].null_count() == expected.null_count() > 0
    assert (joined["last_assigned"].is_null() == expected.is_null()).all()
    assert (joined["last_assigned"].drop_nulls() == expected.drop_nulls()).all()


def test_history_spans_eighteen_months_mostly_completed(world: DemoWorld) -> None:
    history = world.referrals
    created = history["created_at"]
    assert created.max() <= world.as_of
    assert created.min() >= world.as_of - timedelta(days=HISTORY_DAYS)
    assert created.min() <= world.as_of - timedelta(days=HISTORY_DAYS - 30)
    assert history["created_at"].is_sorted()
    status = dict(history["status"].value_counts().iter_rows())
    assert status["completed"] > status["active"] > 0
    by_status = history.group_by("status").agg(pl.col("created_at").median())
    medians = dict(by_status.iter_rows())
    assert medians["active"] > medians["completed"]  # recent ones are the active ones


def test_history_outcomes_and_reasons(world: DemoWorld, rules: Rules) -> None:
    history = world.referrals
    frp = history.filter(pl.col("outcome") == "frp")
    css = history.filter(pl.col("outcome") == "css")
    assert frp.height > 2 * css.height > 0
    assert set(frp["reason"]) == {"assigned"} and set(frp["queue"]) == {"FRP"}
    assert set(css["reason"]) == {r.value for r in CSS_REASONS}
    assert css["partner_id"].null_count() == css["psm_email"].null_count() == css.height
    queues = [rules.queue_for(c) for c in css["customer_country"]]
    assert css["queue"].to_list() == queues
    psm = frp.join(world.partners.select("partner_id", "psm_email"), on="partner_id")
    assert psm.height == frp.height
    assert (psm["psm_email"] == psm["psm_email_right"]).all()


def test_every_past_frp_customer_matches_its_partner(world: DemoWorld, rules: Rules) -> None:
    eligible = set(rules.eligible_workloads)
    partners = {row["partner_id"]: row for row in world.partners.iter_rows(named=True)}
    frp = world.referrals.filter(pl.col("outcome") == "frp")
    for row in frp.iter_rows(named=True):
        partner = partners[row["partner_id"]]
        assert row["customer_country"] in partner["countries"]
        assert row["customer_language"] in partner["languages"]
        asks = set(row["customer_workloads"]) & eligible
        assert asks and asks <= set(partner["workloads"])
        assert row["customer_seats"] >= rules.min_seats


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


def test_every_css_reason_occurs_in_the_backlog(outcome: pl.DataFrame) -> None:
    counts = dict(outcome["reason"].value_counts().iter_rows())
    for reason in CSS_REASONS:
        assert counts.get(reason.value, 0) > 0, reason


@pytest.mark.parametrize("seed", [7, 11, 2026])
def test_most_of_the_backlog_is_assigned_and_a_pool_overflows(seed: int, rules: Rules) -> None:
    world = generate_world(seed)
    result = reference_simulate(world.partners, world.customers, rules)
    share = {r: (result["reason"] == r).mean() for r in set(result["reason"])}
    assert 0.55 <= share["assigned"] <= 0.75, share
    assert 0.01 <= share["capacity_exhausted"] <= 0.08, share
    assert set(share) == {"assigned", *(r.value for r in CSS_REASONS)}
    full = world.customers.join(result, on="tenant_id").filter(
        pl.col("reason") == "capacity_exhausted"
    )
    # Small pools elsewhere may fill up too, but the designed full pools are most of it.
    assert full["country"].is_in(FULL_POOL_COUNTRIES).mean() >= 0.5
