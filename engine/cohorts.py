"""Seeded synthetic cohorts: believable customers for what-if runs ("if 5,000 arrived tomorrow").

This module owns the generator behind the dashboard's "synthetic cohort" option. The
same (size, seed, mix, partners) always gives the same customers, so a manager can
rerun a scenario and a test can pin it. The cohort is shaped by the partners it will
meet: countries are drawn in proportion to the partner capacity that serves them and
each customer's language is one those partners speak there, so most customers *could*
be matched and the interesting CSS outcomes come from the mix (small tenants, workloads
FastTrack does not cover, withheld consent) and from capacity, not from nonsense input.

Workloads, company names and seat buckets come from ``engine.vocabulary``, shared with the
demo and benchmark worlds. Pure: polars and numpy in, a frame in ``CUSTOMER_SCHEMA`` out
(docs/domain.md, "Input tables").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from engine.columns import CUSTOMER_SCHEMA
from engine.iso import COUNTRIES, LANGUAGES
from engine.vocabulary import (
    COMPANY_PREFIXES,
    INDUSTRIES,
    NON_ELIGIBLE_WORKLOADS,
    SEAT_BUCKETS,
    WORKLOAD_DEMAND,
    slug_expr,
)

#: Largest cohort the generator makes (a guard against a typo of a few extra zeros).
MAX_SIZE = 1_000_000

#: The cohort's share of each seat bucket (engine.vocabulary.SEAT_BUCKETS), and its cap on
#: the open-ended largest bucket (the demo world's are its own: engine.demo.SEAT_WEIGHTS).
SEAT_SHARES: dict[str, float] = {"XS": 0.55, "S": 0.33, "M": 0.08, "L": 0.04}
MOST_SEATS = 120_000

#: Share of a partner's capacity that weighs for its home country (listed first).
HOME_SHARE = 0.75

#: Used when no partners are given: a few big markets with their main languages, weighted
#: as in the demo world's data/demo/countries.csv (where India and Spain have a second one).
DEFAULT_COUNTRIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "US": (22, ("en", "es")),
    "GB": (9, ("en",)),
    "DE": (8, ("de",)),
    "FR": (6, ("fr",)),
    "JP": (6, ("ja",)),
    "BR": (5, ("pt",)),
    "CA": (5, ("en", "fr")),
    "AU": (4, ("en",)),
    "IN": (4, ("en",)),
    "ES": (4, ("es",)),
}

# Legal forms that end invented company names, one per country ('Ltd' elsewhere).
_LEGAL_FORM = {
    "DE": "GmbH",
    "AT": "GmbH",
    "CH": "AG",
    "FR": "SAS",
    "BE": "SA",
    "IT": "S.p.A.",
    "ES": "S.L.",
    "PT": "Lda",
    "NL": "B.V.",
    "SE": "AB",
    "NO": "AS",
    "DK": "A/S",
    "FI": "Oy",
    "PL": "Sp. z o.o.",
    "JP": "K.K.",
    "BR": "Ltda",
    "US": "Inc",
    "CA": "Inc",
    "GB": "Ltd",
    "IE": "Ltd",
    "AU": "Pty Ltd",
    "ZA": "(Pty) Ltd",
    "IN": "Pvt Ltd",
    "KR": "Co., Ltd",
    "MX": "S.A. de C.V.",
}


@dataclass(frozen=True)
class CohortMix:
    """What a synthetic cohort is made of; shares are fractions of the cohort (0..1).

    The four kinds are exclusive: a customer is small, or asks only for workloads that
    FastTrack does not cover, or withholds consent, or is an ordinary eligible customer.
    ``gateway_share`` applies to everyone. ``country_weights`` (ISO code -> weight)
    replaces the weights derived from the partners; ``countries`` restricts to a subset.
    """

    small_share: float = 0.10
    gateway_share: float = 0.20
    no_consent_share: float = 0.05
    non_eligible_share: float = 0.05
    #: Seats below this make a "small" tenant (docs/domain.md, "The process").
    min_seats: int = 150
    countries: tuple[str, ...] = ()
    country_weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shares = {
            "small_share": self.small_share,
            "gateway_share": self.gateway_share,
            "no_consent_share": self.no_consent_share,
            "non_eligible_share": self.non_eligible_share,
        }
        for name, value in shares.items():
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                raise ValueError(f"cohort mix: {name}: got {value!r}; expected a share 0..1")
        exclusive = self.small_share + self.no_consent_share + self.non_eligible_share
        if exclusive > 1 + 1e-9:
            raise ValueError(
                "cohort mix: small, no-consent and non-eligible shares add up to "
                f"{exclusive:.0%}; expected at most 100%"
            )
        if not isinstance(self.min_seats, int) or self.min_seats < 2:
            raise ValueError(f"cohort mix: min_seats: got {self.min_seats!r}; expected >= 2")
        for code in (*self.countries, *self.country_weights):
            if code not in COUNTRIES:
                raise ValueError(f"cohort mix: {code!r} is not an ISO 3166-1 alpha-2 country code")
        for code, weight in self.country_weights.items():
            if not (isinstance(weight, int | float) and weight >= 0 and math.isfinite(weight)):
                raise ValueError(f"cohort mix: weight of {code}: got {weight!r}; expected >= 0")


def market(
    partners: pl.DataFrame | None, mix: CohortMix | None = None
) -> dict[str, tuple[float, tuple[str, ...], tuple[float, ...]]]:
    """country -> (weight, languages, language weights) the cohort is drawn from.

    From partners: a country weighs the capacity of the partners serving it, mostly of
    those based there (a partner's first country is taken as its home); its languages
    are those these partners speak, the local partners' main languages drawn most often.
    """
    mix = mix or CohortMix()
    table: dict[str, dict[str, float]] = {}
    weights: dict[str, float] = {}
    if partners is not None and partners.height:
        rows = partners.select(
            pl.col("countries"),
            pl.col("languages"),
            pl.col("capacity").cast(pl.Float64).clip(lower_bound=1.0),
        ).iter_rows()
        for countries, languages, capacity in rows:
            served = [c for c in countries or () if c in COUNTRIES]
            spoken = [lang for lang in languages or () if lang in LANGUAGES]
            for pos, c in enumerate(served):
                # Files list a partner's home country and main language first. Most of
                # its capacity (and its main language) counts for home, so a big partner
                # that also covers its neighbours does not make them big markets.
                home = pos == 0
                share = HOME_SHARE if len(served) == 1 or home else 1 - HOME_SHARE
                weights[c] = weights.get(c, 0.0) + capacity * (
                    share if home else share / (len(served) - 1)
                )
                langs = table.setdefault(c, {})
                for j, lang in enumerate(spoken):
                    vote = (3.0 if j == 0 else 1.0) if home else 0.2
                    langs[lang] = langs.get(lang, 0.0) + vote
    else:
        for c, (weight, spoken_here) in DEFAULT_COUNTRIES.items():
            weights[c] = weight
            table[c] = {lang: 1.0 for lang in spoken_here}
    out: dict[str, tuple[float, tuple[str, ...], tuple[float, ...]]] = {}
    for code in sorted(table):
        langs = table[code]
        if code not in COUNTRIES or not langs:
            continue
        names = tuple(sorted(langs))
        out[code] = (weights[code], names, tuple(langs[n] for n in names))
    if mix.country_weights:
        out = {
            code: (float(w), *out.get(code, (0.0, ("en",), (1.0,)))[1:])
            for code, w in sorted(mix.country_weights.items())
            if w > 0
        }
    if mix.countries:
        wanted = set(mix.countries)
        out = {c: v for c, v in out.items() if c in wanted}
        # A chosen country no partner serves still gets customers (they go to CSS).
        for code in sorted(wanted - set(out)):
            out[code] = (1.0, ("en",), (1.0,))
    return out


def synthetic_cohort(
    size: int,
    seed: int,
    mix: CohortMix | None = None,
    partners: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """``size`` invented customers in ``CUSTOMER_SCHEMA``, the same for the same arguments.

    ``partners`` (PARTNER_SCHEMA) decides where the customers come from (see ``market``);
    without them a small built-in set of big markets is used. Tenant ids are
    ``SYN<seed>-<n>``, so they never collide with real tenants or another seed's cohort.
    """
    if not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise ValueError(f"synthetic cohort: size: got {size!r}; expected 0..{MAX_SIZE:,}")
    mix = mix or CohortMix()
    rng = np.random.default_rng(seed)
    places = market(partners, mix)
    if not places:
        raise ValueError("synthetic cohort: no country to draw customers from")

    codes = list(places)
    weights = np.array([places[c][0] for c in codes], dtype=np.float64)
    if weights.sum() <= 0:
        weights = np.ones(len(codes))
    country_idx = rng.choice(len(codes), size=size, p=weights / weights.sum())

    u = rng.random(size)
    small = u < mix.small_share
    other_only = (u >= mix.small_share) & (u < mix.small_share + mix.non_eligible_share)
    no_consent = (u >= mix.small_share + mix.non_eligible_share) & (
        u < mix.small_share + mix.non_eligible_share + mix.no_consent_share
    )
    gateway = rng.random(size) < mix.gateway_share
    seats = _seats(rng, size, small, mix.min_seats)

    workloads = _workloads(rng, size, other_only)
    names_idx = rng.integers(0, [len(COMPANY_PREFIXES), len(INDUSTRIES)], size=(size, 2))
    consent_pick = rng.integers(0, 3, size=size)  # True, True, unknown (the default applies)

    # A language per customer, drawn within its country by the partners' weights there.
    lang_u = rng.random(size)
    language_idx = np.zeros(size, dtype=np.int64)
    language_names: list[str] = []
    for i, code in enumerate(codes):
        at = np.flatnonzero(country_idx == i)
        langs, cum = places[code][1], np.cumsum(places[code][2])
        pos = np.searchsorted(cum, lang_u[at] * cum[-1], side="right")
        language_idx[at] = len(language_names) + np.minimum(pos, len(langs) - 1)
        language_names.extend(langs)
    # Columns built by polars from small tables and numpy codes: a Python object per
    # customer and cell cost more than the simulation of the cohort at 100,000.
    country = pl.Series(codes, dtype=pl.String).gather(country_idx)
    legal = pl.Series([_LEGAL_FORM.get(code, "Ltd") for code in codes]).gather(country_idx)
    names = pl.format(
        "{} {} {}",
        pl.lit(pl.Series(COMPANY_PREFIXES)).gather(pl.lit(names_idx[:, 0])),
        pl.lit(pl.Series(INDUSTRIES)).gather(pl.lit(names_idx[:, 1])),
        pl.lit(legal),
    )
    number = pl.int_range(1, size + 1, dtype=pl.Int64)
    consent = np.where(no_consent, False, True)
    return pl.select(
        pl.format("SYN{}-{}", pl.lit(seed), number.cast(pl.String).str.zfill(6)).alias("tenant_id"),
        names.alias("name"),
        pl.lit(country).alias("country"),
        pl.lit(pl.Series(language_names, dtype=pl.String))
        .gather(pl.lit(language_idx))
        .alias("language"),
        pl.lit(seats).alias("seats"),
        pl.lit(workloads).alias("workloads"),
        pl.lit(gateway).alias("gateway"),
        pl.format("it-admin@{}-{}.example", slug_expr(names), number).alias("contact_email"),
        pl.when(pl.lit(~no_consent & (consent_pick == 2)))
        .then(None)
        .otherwise(pl.lit(consent))
        .alias("referral_consent"),
    ).cast(CUSTOMER_SCHEMA)


def _workloads(rng: np.random.Generator, size: int, other_only: np.ndarray) -> pl.Series:
    """1-3 eligible workloads by demand (sometimes plus one FastTrack does not cover), or
    only uncovered ones for ``other_only`` customers; sampled without replacement."""
    demand = pl.Series(list(WORKLOAD_DEMAND), dtype=pl.String)
    other = pl.Series(NON_ELIGIBLE_WORKLOADS, dtype=pl.String)
    log_p = np.log(np.array(list(WORKLOAD_DEMAND.values())))
    # Gumbel top-k: the k largest of log(weight) + Gumbel noise are a weighted sample of k.
    order = np.argsort(-(log_p + rng.gumbel(size=(size, len(demand)))), axis=1)
    other_order = np.argsort(rng.random((size, len(NON_ELIGIBLE_WORKLOADS))), axis=1)
    count = rng.choice([1, 2, 3], size=size, p=[0.45, 0.38, 0.17])
    extra = rng.random(size) < 0.10
    # Four slots, null where unused: the picks by demand (or the uncovered ones), then
    # the extra uncovered one.
    first_other = other.gather(other_order[:, 0])
    slots = [
        pl.when(pl.lit(other_only))
        .then(pl.lit(first_other))
        .otherwise(pl.lit(demand.gather(order[:, 0]))),
        pl.when(pl.lit(other_only & (count > 1)))
        .then(pl.lit(other.gather(other_order[:, 1])))
        .when(pl.lit(~other_only & (count > 1)))
        .then(pl.lit(demand.gather(order[:, 1]))),
        pl.when(pl.lit(~other_only & (count > 2))).then(pl.lit(demand.gather(order[:, 2]))),
        pl.when(pl.lit(~other_only & extra)).then(pl.lit(first_other)),
    ]
    return pl.select(pl.concat_list(slots).list.drop_nulls().alias("workloads")).to_series()


def _seats(rng: np.random.Generator, size: int, small: np.ndarray, min_seats: int) -> np.ndarray:
    """Seat counts: small tenants below ``min_seats``; others log-uniform within a size bucket."""
    bounds = [(lo, MOST_SEATS if hi is None else hi) for lo, hi in SEAT_BUCKETS.values()]
    lows = np.array([max(lo, min_seats) for lo, _ in bounds], dtype=np.float64)
    highs = np.array([max(hi, min_seats) for _, hi in bounds], dtype=np.float64)
    p = np.array([SEAT_SHARES[name] for name in SEAT_BUCKETS])
    bucket = rng.choice(len(SEAT_BUCKETS), size=size, p=p / p.sum())
    lo, hi = lows[bucket], highs[bucket]
    big = np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1)))).astype(np.int64)
    tiny = rng.integers(max(1, min_seats // 20), min_seats, size=size)
    return np.where(small, tiny, big)
