"""Eligibility and matching, computed once per customer signature rather than per customer.

Customers that share (country, language, eligible-workload set) match exactly the same
partners, so the cohort is grouped by that signature and each signature is matched once
against small per-country and per-language indexes; no customer ever scans the partner
list. Signatures whose matching partners are the same set share a *pool*: the unit in
which round robin takes turns and in which fairness is judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.reasons import Reason
from engine.rules import Rules

#: How many partner ids a trace lists before it says "+N more".
TRACE_IDS = 5


@dataclass(frozen=True)
class PartnerIndex:
    """Partners as arrays indexed 0..n-1 in partner_id order (so index order breaks ties)."""

    ids: list[str]
    psm_email: list[str | None]
    capacity: np.ndarray  # effective capacity after rules.capacity_scale
    active: np.ndarray
    available: np.ndarray  # Referral Ready and not switched off for this run
    workload_mask: np.ndarray  # bit j set = covers rules.eligible_workloads[j]
    last_assigned: list[int | None]
    by_country: dict[str, np.ndarray]  # available partners serving a country
    by_language: dict[str, np.ndarray]
    n_unavailable: int

    @property
    def size(self) -> int:
        return len(self.ids)


def index_partners(partners: pl.DataFrame, rules: Rules) -> PartnerIndex:
    """Arrays and inverted indexes over validated partners (PARTNER_SCHEMA)."""
    p = partners.sort("partner_id")
    bit = {w: 1 << j for j, w in enumerate(rules.eligible_workloads)}
    masks = np.zeros(p.height, dtype=np.int64)
    for i, wl in enumerate(p["workloads"].to_list()):
        m = 0
        for w in wl or ():
            m |= bit.get(w, 0)
        masks[i] = m
    ids = p["partner_id"].to_list()
    disabled = rules.disabled_partners
    available = np.array(
        [
            bool(r) and pid not in disabled
            for pid, r in zip(ids, p["referral_ready"].to_list(), strict=True)
        ],
        dtype=bool,
    )
    capacity = np.floor(p["capacity"].to_numpy().astype(np.float64) * rules.capacity_scale).astype(
        np.int64
    )
    by_country: dict[str, list[int]] = {}
    by_language: dict[str, list[int]] = {}
    for i, (countries, languages) in enumerate(
        zip(p["countries"].to_list(), p["languages"].to_list(), strict=True)
    ):
        if not available[i]:
            continue
        for c in countries or ():
            by_country.setdefault(c, []).append(i)
        for lang in languages or ():
            by_language.setdefault(lang, []).append(i)
    return PartnerIndex(
        ids=ids,
        psm_email=p["psm_email"].to_list(),
        capacity=capacity,
        active=p["active_referrals"].to_numpy().astype(np.int64),
        available=available,
        workload_mask=masks,
        last_assigned=p["last_assigned"].to_list(),
        by_country={k: np.array(v, dtype=np.int64) for k, v in by_country.items()},
        by_language={k: np.array(v, dtype=np.int64) for k, v in by_language.items()},
        n_unavailable=int((~available).sum()),
    )


def prepare_customers(customers: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Customers with their eligible workloads, workload mask and eligibility reason.

    Adds ``eligible`` (sorted list), ``mask`` (int), ``excluded`` (text: the partners
    that declined the customer, ';'-joined, '' for none) and ``pre_reason`` (the failing
    check, null when FRP-eligible), in the documented order; a customer declined by
    ``rules.max_declines`` partners goes to CSS after the eligibility checks.
    """
    if "excluded" not in customers.columns:
        customers = customers.with_columns(pl.lit("").alias("excluded"))
    n_declined = (
        pl.when(pl.col("excluded") == "")
        .then(0)
        .otherwise(pl.col("excluded").str.count_matches(";") + 1)
    )
    eligible = list(rules.eligible_workloads)
    bit_of = {w: 1 << j for j, w in enumerate(eligible)}
    consent = pl.col("referral_consent").fill_null(rules.referral_consent_default)
    with_elig = customers.with_columns(
        pl.col("workloads")
        .list.eval(pl.element().filter(pl.element().is_in(eligible)))
        .list.unique()
        .list.sort()
        .alias("eligible")
    )
    mask = (
        with_elig.select(
            pl.col("eligible")
            .list.eval(pl.element().replace_strict(bit_of, return_dtype=pl.Int64))
            .list.sum()
            .fill_null(0)
        )
        .to_series()
        .alias("mask")
    )
    return with_elig.with_columns(mask).with_columns(
        pl.when(pl.col("seats") < rules.min_seats)
        .then(pl.lit(Reason.BELOW_SEAT_THRESHOLD.value))
        .when(pl.col("mask") == 0)
        .then(pl.lit(Reason.NO_ELIGIBLE_WORKLOAD.value))
        .when(~consent)
        .then(pl.lit(Reason.NO_REFERRAL_CONSENT.value))
        .when(n_declined >= rules.max_declines)
        .then(pl.lit(Reason.DECLINED_BY_PARTNERS.value))
        .otherwise(None)
        .alias("pre_reason")
    )


@dataclass(frozen=True)
class Signature:
    country: str
    language: str
    mask: int
    eligible: tuple[str, ...]
    #: Partners that declined this customer: never matched again.
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatchStep:
    """One rule of matching: how many partners it kept and which it removed."""

    rule: str
    kept: int
    removed: tuple[str, ...]  # partner ids removed by this rule (may be truncated: see n_removed)
    n_removed: int


@dataclass(frozen=True)
class Match:
    partners: np.ndarray  # matching partner indexes, ascending
    steps: tuple[MatchStep, ...]


def match_signature(index: PartnerIndex, sig: Signature, keep_ids: int = TRACE_IDS) -> Match:
    """Partners that match one signature, with the trace of each rule's removals."""
    n_all = index.size
    n_ready = n_all - index.n_unavailable
    empty = np.zeros(0, dtype=np.int64)
    in_country = index.by_country.get(sig.country, empty)
    in_language = index.by_language.get(sig.language, empty)
    after_lang = np.intersect1d(in_country, in_language, assume_unique=True)
    masks = index.workload_mask[after_lang]
    after_wl = after_lang[(masks & sig.mask) == sig.mask]

    def removed(before: np.ndarray, after: np.ndarray) -> tuple[tuple[str, ...], int]:
        gone = np.setdiff1d(before, after, assume_unique=True)
        return tuple(index.ids[i] for i in gone[:keep_ids]), int(gone.size)

    lang_gone, n_lang = removed(in_country, after_lang)
    wl_gone, n_wl = removed(after_lang, after_wl)
    steps = (
        MatchStep("Referral Ready", n_ready, (), index.n_unavailable),
        MatchStep(
            f"country {sig.country}", int(in_country.size), (), n_ready - int(in_country.size)
        ),
        MatchStep(f"language {sig.language}", int(after_lang.size), lang_gone, n_lang),
        MatchStep("workloads " + "+".join(sig.eligible), int(after_wl.size), wl_gone, n_wl),
    )
    if sig.excluded:
        gone = set(sig.excluded)
        kept = np.array([i for i in after_wl if index.ids[i] not in gone], dtype=np.int64)
        declined, n_declined = removed(after_wl, kept)
        steps += (MatchStep("declined earlier", int(kept.size), declined, n_declined),)
        after_wl = kept
    return Match(after_wl, steps)


def describe_steps(steps: Sequence[MatchStep]) -> str:
    """The match half of a trace, e.g. 'Referral Ready: 270 (30 removed); country SE: 12 ...'."""
    parts = []
    for s in steps:
        text = f"{s.rule}: {s.kept} left"
        if s.n_removed:
            text += f", {s.n_removed} removed"
            if s.removed:
                more = s.n_removed - len(s.removed)
                text += " (" + ", ".join(s.removed) + (f" +{more} more" if more > 0 else "") + ")"
        parts.append(text)
    return "; ".join(parts)
