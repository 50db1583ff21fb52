"""The seeded demo world: partners, the customers of 26 weekly cohorts, and an FTCQ backlog.

This module owns the believable sample data that the dashboard, the docs and the tests
share (like datasette's fixtures): one call, :func:`generate_world`, builds Polars frames
in the documented schemas from a seed, so the same seed always gives the same world.
It only builds frames. It invents no referral: ``store.demo`` makes the history by
running the product over the weekly cohorts (commits, answers, expiries, hand-offs), and
``store.bootstrap`` writes the database.

What makes the world believable, and why each piece is there:

* Coverage and capacity are uneven: a few big partners (capacity up to ~300) serve their
  home country and its neighbours in many languages, many small ones (5-40) serve one
  country. Countries, languages and neighbours come from ``data/demo/countries.csv``.
* Workloads are popular (Exchange, Teams, SharePoint, OneDrive) or rare (Purview, Viva,
  Windows), both in what customers ask for and in what partners are endorsed for, so
  rare asks in small countries find no partner.
* The weekly cohorts come from the same FTCQ population as the backlog and grow week by
  week (``WEEKLY_CUSTOMERS``). Partners hold no referral from outside this tool, except in
  two countries (South Korea and Israel, ``FULL_POOL_COUNTRIES``) whose partners hold
  most of their seats elsewhere (``OUTSIDE_LOAD``) and whose demand surges over the last
  weeks (``FULL_POOL_WEEKLY``): their pools are nearly full when the backlog arrives.
* The backlog, committed with round robin on the built store under the default rules,
  hits every CSS reason: small tenants, non-eligible workloads, withheld consent, Iceland
  (which no partner serves) and the two nearly full pools, which it overflows
  (tests/test_demo_history.py checks it on the store, as it depends on the history).
* Every name is composed from the invented word lists in ``data/demo/names.toml``;
  every e-mail address is on the reserved ``.example`` domain.

What customers ask for, the seat buckets and how a name becomes a domain are
``engine.vocabulary``'s, shared with synthetic cohorts and the benchmark world.
"""

from __future__ import annotations

import csv
import math
import random
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA, TEXT_LIST
from engine.reasons import Reason
from engine.vocabulary import NON_ELIGIBLE_WORKLOADS, SEAT_BUCKETS, WORKLOAD_DEMAND, slug

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"

#: "Now" in the demo world. Fixed, so that a seed alone decides every timestamp.
DEMO_AS_OF = datetime(2026, 11, 23, 18, 0)
#: The history: a cohort a week for half a year, ``WEEKLY_CUSTOMERS`` (first week, last
#: week) customers each, plus ``FULL_POOL_WEEKLY`` (before, during the last
#: ``SURGE_WEEKS``) from the designed full countries.
WEEKS = 26
WEEKLY_CUSTOMERS = (20, 40)
FULL_POOL_WEEKLY = (1, 10)
SURGE_WEEKS = 6

PARTNER_COUNT = 330
BIG_PARTNERS = 12
MEDIUM_PARTNERS = 40
PSMS_PER_REGION = 16

#: The default CSS queues (docs/domain.md, "Default regions and CSS queues"); a test checks
#: they agree with data/rules.toml.
QUEUE_OF_REGION = {"Americas": "CSS Americas", "EMEA": "CSS EMEA", "APAC": "CSS APAC"}

#: Customers ask for workloads as engine.vocabulary's WORKLOAD_DEMAND says, the same as
#: synthetic cohorts, so the demo and what-if cohorts look alike. The share of ordinary
#: partners endorsed for each eligible workload is the demo's own:
PARTNER_ENDORSEMENT: dict[str, float] = {
    "exchange": 0.92,
    "teams": 0.92,
    "sharepoint": 0.88,
    "onedrive": 0.88,
    "m365-apps": 0.6,
    "intune": 0.45,
    "entra-id": 0.4,
    "defender": 0.35,
    "windows": 0.15,
    "purview": 0.12,
    "viva": 0.08,
}
RARE_WORKLOADS = ("windows", "purview", "viva")

#: The demo's weight of each seat bucket (engine.vocabulary.SEAT_BUCKETS) and its cap on the
#: open-ended largest one; synthetic cohorts have their own (engine.cohorts.SEAT_SHARES).
SEAT_WEIGHTS: dict[str, int] = {"XS": 46, "S": 38, "M": 10, "L": 6}
MOST_SEATS = 150_000

#: Countries whose partners are nearly full, so the backlog overflows them: their partners
#: hold this share of their seats for referrals from outside this tool (``active_referrals``)
#: and their demand grows over the last weeks of the history.
FULL_POOL_COUNTRIES = ("KR", "IL")
OUTSIDE_LOAD = 0.75

#: Traits of FTCQ customers (None: an ordinary one) and how often each comes, in the
#: backlog and in every week's cohort.
_KINDS = (
    None,
    Reason.BELOW_SEAT_THRESHOLD,
    Reason.NO_ELIGIBLE_WORKLOAD,
    Reason.NO_REFERRAL_CONSENT,
)
_KIND_WEIGHTS = (81, 7, 5, 7)


@dataclass(frozen=True, eq=False)
class DemoWorld:
    """Partners, the FTCQ backlog (oldest first) at ``as_of``, and the customers who came
    through the FTCQ each week before it (``weeks``, oldest first; week ``k`` starts at
    :func:`week_start`), whose referrals the store makes by running the product."""

    partners: pl.DataFrame
    customers: pl.DataFrame
    weeks: tuple[pl.DataFrame, ...]
    as_of: datetime = DEMO_AS_OF
    seed: int = 7


@dataclass(frozen=True)
class Market:
    """A country as the demo world sees it (its ISO entry, name included, is engine.iso's)."""

    code: str
    region: str
    customer_weight: float
    partner_weight: float
    languages: tuple[str, ...]  # the main language first
    neighbours: tuple[str, ...]


@dataclass(frozen=True)
class _Tables:
    countries: dict[str, Market]
    names: dict[str, Any]


@dataclass
class _Partner:
    """A partner while the world is built; becomes one row of PARTNER_SCHEMA."""

    partner_id: str
    name: str
    home: Market
    countries: list[str]
    languages: list[str]
    workloads: list[str]
    capacity: int
    referral_ready: bool
    psm_name: str
    psm_email: str
    contact_email: str


@lru_cache(maxsize=1)
def load_tables(directory: Path = DEMO_DIR) -> _Tables:
    """The country table and the name parts (read once; they are static files).

    The table's ``name`` column is for people reading the file; it repeats engine.iso's.
    """
    countries: dict[str, Market] = {}
    with (directory / "countries.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            countries[row["code"]] = Market(
                code=row["code"],
                region=row["region"],
                customer_weight=float(row["customer_weight"]),
                partner_weight=float(row["partner_weight"]),
                languages=tuple(_split(row["languages"])),
                neighbours=tuple(_split(row["neighbours"])),
            )
    names = tomllib.loads((directory / "names.toml").read_text(encoding="utf-8"))
    return _Tables(countries=countries, names=names)


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(";") if part.strip()]


def _unique(make: Callable[[], str], used: set[str]) -> str:
    """A name from ``make`` not used before; numbered once the word lists run thin."""
    for _ in range(30):
        name = make()
        if name not in used:
            used.add(name)
            return name
    base, n = make(), 2
    while f"{base} {n}" in used:
        n += 1
    used.add(f"{base} {n}")
    return f"{base} {n}"


def _sample_weighted(rng: random.Random, weights: dict[str, float], k: int) -> list[str]:
    """``k`` distinct keys drawn by weight, returned in the dictionary's order."""
    pool = dict(weights)
    picked: set[str] = set()
    while pool and len(picked) < k:
        key = rng.choices(list(pool), weights=list(pool.values()))[0]
        picked.add(key)
        del pool[key]
    return [key for key in weights if key in picked]


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# --- people and companies --------------------------------------------------------------


def _person(rng: random.Random, names: dict[str, Any]) -> tuple[str, str]:
    first, last = rng.choice(names["first_names"]), rng.choice(names["last_names"])
    return f"{first} {last}", f"{first}.{last}".lower()


def _make_psms(rng: random.Random, tables: _Tables) -> dict[str, list[tuple[str, str]]]:
    """Partner Success Managers by region: (name, email); each looks after several partners."""
    used: set[str] = set()
    by_region: dict[str, list[tuple[str, str]]] = {}
    for region in QUEUE_OF_REGION:
        people = []
        for _ in range(PSMS_PER_REGION):
            name = _unique(lambda: _person(rng, tables.names)[0], used)
            people.append((name, f"{slug(name).replace('-', '.')}@partner-success.example"))
        by_region[region] = people
    return by_region


def _company_name(rng: random.Random, tables: _Tables, country: str, used: set[str]) -> str:
    names = tables.names
    forms = names["legal_forms"].get(country, names["legal_forms"]["default"])
    return _unique(
        lambda: " ".join(
            (
                rng.choice(names["customer_prefix"]),
                rng.choice(names["customer_industry"]),
                rng.choice(forms),
            )
        ),
        used,
    )


def _contact_email(rng: random.Random, tables: _Tables, company: str) -> str:
    # The domain drops the legal form: "Amberline Logistics GmbH" -> amberline-logistics.
    domain = slug(" ".join(company.split()[:2]))
    return f"{_person(rng, tables.names)[1]}@{domain}.example"


# --- partners -------------------------------------------------------------------------


def _capacity(rng: random.Random, tier: str) -> int:
    if tier == "big":
        return rng.randint(120, 300)
    if tier == "medium":
        return rng.randint(41, 110)
    # Small partners cluster at the low end of 5-40.
    return 5 + int(35 * rng.random() ** 1.5)


def _make_partners(rng: random.Random, tables: _Tables) -> list[_Partner]:
    countries = tables.countries
    with_partners = [c for c in countries.values() if c.partner_weight > 0]
    # One partner in every country that has any, the rest by weight.
    homes = list(with_partners) + rng.choices(
        with_partners,
        weights=[c.partner_weight for c in with_partners],
        k=PARTNER_COUNT - len(with_partners),
    )
    rng.shuffle(homes)
    big_homes = [i for i, c in enumerate(homes) if c.partner_weight >= 4]
    big = set(rng.sample(big_homes, BIG_PARTNERS))
    medium = set(rng.sample([i for i in range(len(homes)) if i not in big], MEDIUM_PARTNERS))
    psms = _make_psms(rng, tables)
    names = tables.names
    used: set[str] = set()

    partners = []
    for i, home in enumerate(homes):
        tier = "big" if i in big else "medium" if i in medium else "small"
        neighbours = list(home.neighbours)
        if tier == "big":
            served = neighbours
        elif tier == "medium" and neighbours and rng.random() < 0.7:
            served = rng.sample(neighbours, rng.randint(1, len(neighbours)))
        elif neighbours and rng.random() < 0.3:
            served = rng.sample(neighbours, min(len(neighbours), rng.randint(1, 2)))
        else:
            served = []
        served = [c for c in neighbours if c in served]  # table order, not draw order

        languages = [home.languages[0]]
        languages += [lang for lang in home.languages[1:] if tier == "big" or rng.random() < 0.35]
        if tier == "big" or rng.random() < 0.8:
            languages.append("en")
        languages += [
            countries[c].languages[0] for c in served if tier == "big" or rng.random() < 0.6
        ]

        boost = {"big": 1.0, "medium": 0.1, "small": 0.0}[tier]
        workloads = [
            w
            for w, share in PARTNER_ENDORSEMENT.items()
            if rng.random() < (0.6 if tier == "big" and w in RARE_WORKLOADS else share + boost)
        ]
        if not any(w in workloads for w in ("exchange", "teams")):
            workloads.insert(0, "exchange")
        if rng.random() < 0.08:
            workloads.append(rng.choice(NON_ELIGIBLE_WORKLOADS))

        name = _unique(
            lambda: (
                rng.choice(names["partner_first"])
                + rng.choice(names["partner_second"])
                + " "
                + rng.choice(names["partner_kind"])
            ),
            used,
        )
        psm_name, psm_email = rng.choice(psms[home.region])
        partners.append(
            _Partner(
                partner_id=f"P{i + 1:04d}",
                name=name,
                home=home,
                countries=[home.code, *served],
                languages=_dedupe(languages),
                workloads=workloads,
                capacity=_capacity(rng, tier),
                referral_ready=rng.random() >= 0.1,
                psm_name=psm_name,
                psm_email=psm_email,
                contact_email=f"referrals@{slug(name)}.example",
            )
        )
    return partners


# --- customers ------------------------------------------------------------------------


def _seats(rng: random.Random) -> int:
    """Seats in a reporting bucket drawn by the demo's weights; log-uniform within the
    buckets that span tenfold or more (S, L), so smaller tenants stay the commoner ones."""
    bucket = rng.choices(tuple(SEAT_WEIGHTS), weights=tuple(SEAT_WEIGHTS.values()))[0]
    low, high = SEAT_BUCKETS[bucket]
    if high is None:
        return round(math.exp(rng.uniform(math.log(low), math.log(MOST_SEATS))))
    if bucket == "S":
        return min(high, round(math.exp(rng.uniform(math.log(low), math.log(high + 1)))))
    return rng.randint(low, high)


def _language(rng: random.Random, country: Market) -> str:
    """Mostly the country's main language, sometimes another of its languages or English."""
    if rng.random() < 0.78:
        return country.languages[0]
    return rng.choice(_dedupe([*country.languages[1:], "en"]))


def _ask(rng: random.Random, allowed: Sequence[str] | None = None) -> list[str]:
    """The eligible workloads a customer wants help with (popular ones far more often)."""
    demand = {w: d for w, d in WORKLOAD_DEMAND.items() if allowed is None or w in allowed}
    return _sample_weighted(rng, demand, rng.choice((1, 1, 2, 2, 2, 3, 3, 4)))


@dataclass
class _Customer:
    name: str
    country: str
    language: str
    seats: int
    workloads: list[str]
    gateway: bool
    contact_email: str
    referral_consent: bool | None


def _customer(
    rng: random.Random,
    tables: _Tables,
    used: set[str],
    kind: Reason | None = None,
) -> _Customer:
    """A customer from the FTCQ population; ``kind`` forces the trait behind a CSS reason."""
    countries = tables.countries
    if kind is Reason.CAPACITY_EXHAUSTED:
        country = countries[rng.choice(FULL_POOL_COUNTRIES)]
    elif kind is Reason.NO_PARTNER_MATCH and rng.random() < 0.5:
        country = countries["IS"]
    else:
        country = rng.choices(
            list(countries.values()), weights=[c.customer_weight for c in countries.values()]
        )[0]
    workloads = _ask(rng)
    if kind is Reason.NO_PARTNER_MATCH and country.code != "IS":
        workloads = _dedupe([*workloads, rng.choice(RARE_WORKLOADS)])
    if kind is Reason.NO_ELIGIBLE_WORKLOAD:
        workloads = rng.sample(NON_ELIGIBLE_WORKLOADS, rng.randint(1, 2))
    elif rng.random() < 0.12:
        workloads.append(rng.choice(NON_ELIGIBLE_WORKLOADS))
    seats = rng.randint(10, 149) if kind is Reason.BELOW_SEAT_THRESHOLD else _seats(rng)
    consent = False if kind is Reason.NO_REFERRAL_CONSENT else rng.choice((True, True, None))
    name = _company_name(rng, tables, country.code, used)
    return _Customer(
        name=name,
        country=country.code,
        language=_language(rng, country),
        seats=seats,
        workloads=workloads,
        gateway=rng.random() < 0.2,
        contact_email=_contact_email(rng, tables, name),
        referral_consent=consent,
    )


# --- the weekly intake -----------------------------------------------------------------


def week_start(week: int, as_of: datetime = DEMO_AS_OF) -> datetime:
    """Monday 09:00 of ``week`` (0 = the oldest of the ``WEEKS``): the morning its cohort is
    committed. The last week ends on the Monday ``as_of`` falls on."""
    monday = datetime.combine(as_of.date(), datetime.min.time()) + timedelta(hours=9)
    return monday - timedelta(days=7 * (WEEKS - week))


def _surge(week: int) -> int:
    """Customers of the week from the designed full countries: demand there grows faster
    than its partners' seats over the last weeks, so those pools are full by ``as_of``."""
    return FULL_POOL_WEEKLY[0] if week < WEEKS - SURGE_WEEKS else FULL_POOL_WEEKLY[1]


def _make_weeks(rng: random.Random, tables: _Tables, used: set[str]) -> list[list[_Customer]]:
    """The customers who reached the FTCQ each week, oldest week first: the FTCQ population
    (a few with each ineligibility trait, as in the backlog), growing week by week."""
    first, last = WEEKLY_CUSTOMERS
    weeks = []
    for week in range(WEEKS):
        size = first + round((last - first) * week / (WEEKS - 1))
        kinds = rng.choices(_KINDS, weights=_KIND_WEIGHTS, k=size)
        kinds += [Reason.CAPACITY_EXHAUSTED] * _surge(week)
        rng.shuffle(kinds)
        weeks.append([_customer(rng, tables, used, kind=kind) for kind in kinds])
    return weeks


# --- assembly -------------------------------------------------------------------------


def _frame(rows: Sequence[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    columns: dict[str, pl.Series] = {}
    for name, dtype in schema.items():
        values = [row[name] for row in rows]
        if dtype == TEXT_LIST:
            # Building thousands of small lists one by one is the slow path in Polars;
            # joining and splitting is ~10x faster. No generated list is empty or has ";".
            joined = pl.Series(name, [";".join(v) for v in values], dtype=pl.String())
            columns[name] = joined.str.split(";")
        else:
            columns[name] = pl.Series(name, values, dtype=dtype)
    return pl.DataFrame(columns)


def _in_full_pool(partner: _Partner) -> bool:
    return any(c in FULL_POOL_COUNTRIES for c in partner.countries)


def generate_world(
    seed: int = 7, backlog_size: int = 1200, as_of: datetime = DEMO_AS_OF
) -> DemoWorld:
    """Build the demo world for ``seed``: same seed, same frames, byte for byte."""
    rng = random.Random(seed)
    tables = load_tables()
    used_names: set[str] = set()
    partners = _make_partners(rng, tables)
    weeks = _make_weeks(rng, tables, used_names)

    # The FTCQ backlog, oldest first; a few customers carry each ineligibility trait.
    kinds = rng.choices(_KINDS, weights=_KIND_WEIGHTS, k=backlog_size)
    backlog = [_customer(rng, tables, used_names, kind=kind) for kind in kinds]
    # Tenants are numbered in the order they reached the FTCQ.
    numbered, n = [], 0
    for arrivals in [*weeks, backlog]:
        rows = []
        for customer in arrivals:
            n += 1
            rows.append({"tenant_id": f"T{n:06d}", **vars(customer)})
        numbered.append(_frame(rows, CUSTOMER_SCHEMA))

    partner_rows = [
        {
            "partner_id": p.partner_id,
            "name": p.name,
            "countries": p.countries,
            "languages": p.languages,
            "workloads": p.workloads,
            "capacity": p.capacity,
            # The store's referrals are the partners' load and round-robin order.
            "active_referrals": round(p.capacity * OUTSIDE_LOAD) if _in_full_pool(p) else 0,
            "referral_ready": p.referral_ready,
            "psm_name": p.psm_name,
            "psm_email": p.psm_email,
            "contact_email": p.contact_email,
            "last_assigned": None,
            "paused_until": None,  # pauses and quotas come with the history (store.demo)
            "monthly_quota": None,
        }
        for p in partners
    ]
    return DemoWorld(
        partners=_frame(partner_rows, PARTNER_SCHEMA),
        customers=numbered[-1],
        weeks=tuple(numbered[:-1]),
        as_of=as_of,
        seed=seed,
    )
