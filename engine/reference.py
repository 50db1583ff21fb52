"""The naive reference implementation of one assignment run (docs/domain.md, "The process").

This module owns the *meaning* of a run, written so that it can be checked by reading:
every customer is handled on its own, in cohort order, by scanning every partner.
It is deliberately slow (customers x partners) and does not share code with the fast
engine, so that property tests comparing the two catch a mistake in either, and so the
benchmarks have an honest naive baseline. Pure Python and Polars only.

The semantics fixed here, and implemented identically by the fast engine:

* Eligible workloads are the customer's workloads (lowercased, stripped) that are in
  ``rules.eligible_workloads``. Eligibility fails on the first of: seats below
  ``rules.min_seats``, no eligible workload, no referral consent (null consent means
  ``rules.referral_consent_default``).
* Effective capacity is ``floor(capacity * rules.capacity_scale)``; remaining capacity
  subtracts active referrals and the referrals given earlier in this run. With a
  ``monthly_quota``, remaining is at most the quota minus the referrals made to the
  partner this month (``referrals_this_month``, 0 when absent) and those given in this run.
* A partner matches when it is Referral Ready, not in ``rules.disabled_partners``, not
  paused (the run's date before its ``paused_until``), serves the customer's country,
  speaks its language and covers every eligible workload.
* The round-robin key ``(never assigned first, last_assigned, partner_id)`` orders
  partners "least recently assigned first"; every assignment, under any policy, moves the
  chosen partner to the end by giving it the next value of a run-wide counter.
* Size: a partner with ``sizes`` listed matches only customers of those buckets
  (``engine.sizes``, the one definition of the bounds).
* ``rules.css_workloads`` are taken out of matching: a placed customer with some has a
  CSS part for them (reason ``css_workload``); one with only those goes to CSS with that
  reason, after the eligibility checks.
* Split (``max_partners_per_customer`` above 1): when no matching partner has room, the
  greedy cover over every partner that is ready, serves the country, speaks the language,
  takes the size and has room: the one covering the most uncovered workloads, ties by the
  round-robin key, until all are covered; more parts than the limit is no split, with
  reason ``capacity_exhausted`` when some at most ``limit`` of those partners (room or
  not) cover the workloads, else ``no_partner_match``. Each part is an assignment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from itertools import combinations
from typing import Any

import polars as pl

from engine.columns import ASSIGNMENT_COLUMNS, MONTH_REFERRALS
from engine.reasons import FRP_QUEUE, Outcome, Policy, Reason
from engine.rules import Rules
from engine.sizes import size_bucket

#: A partner's place in the round-robin order; smaller is chosen first.
RoundRobinKey = tuple[int, int, str]

SUPPORTED_POLICIES = (Policy.ROUND_ROBIN, Policy.WEIGHTED, Policy.LEAST_LOADED)


@dataclass
class _Partner:
    """One partner's standing during a run: fixed facts plus what the run has changed."""

    partner_id: str
    psm_email: str | None
    countries: frozenset[str]
    languages: frozenset[str]
    workloads: frozenset[str]
    sizes: frozenset[str]  # empty: every size
    ready: bool
    effective_capacity: int
    active_referrals: int
    last_assigned: int | None
    quota_left: int | None  # monthly quota minus the referrals made this month; None: no quota
    given_in_run: int = 0

    @property
    def remaining(self) -> int:
        seats = self.effective_capacity - self.active_referrals - self.given_in_run
        if self.quota_left is None:
            return seats
        return min(seats, self.quota_left - self.given_in_run)

    @property
    def round_robin_key(self) -> RoundRobinKey:
        """Never-assigned partners first, then least recently assigned, ties by id."""
        if self.last_assigned is None:
            return (0, 0, self.partner_id)
        return (1, self.last_assigned, self.partner_id)


def _texts(values: Iterable[str | None] | None) -> list[str]:
    """The non-null entries of a list cell (a null cell is an empty list)."""
    return [v for v in (values or []) if v is not None]


def _workload_ids(values: Iterable[str | None] | None) -> frozenset[str]:
    """Workload ids are compared case-insensitively and without surrounding spaces."""
    return frozenset(v.strip().lower() for v in _texts(values))


def _paused(row: dict[str, Any], today: date | None) -> bool:
    """Whether the partner is paused on ``today``: before its ``paused_until``."""
    until = row.get("paused_until")
    return today is not None and until is not None and today < until


def _quota_left(row: dict[str, Any]) -> int | None:
    quota = row.get("monthly_quota")
    if quota is None:
        return None
    return quota - (row.get(MONTH_REFERRALS) or 0)


def _load_partners(partners: pl.DataFrame, rules: Rules, today: date | None) -> list[_Partner]:
    loaded = []
    for row in partners.iter_rows(named=True):
        loaded.append(
            _Partner(
                partner_id=row["partner_id"],
                psm_email=row["psm_email"],
                countries=frozenset(_texts(row["countries"])),
                languages=frozenset(_texts(row["languages"])),
                workloads=_workload_ids(row["workloads"]),
                sizes=frozenset(_texts(row.get("sizes"))),
                ready=bool(row["referral_ready"])
                and row["partner_id"] not in rules.disabled_partners
                and not _paused(row, today),
                effective_capacity=math.floor(row["capacity"] * rules.capacity_scale),
                active_referrals=row["active_referrals"],
                last_assigned=row["last_assigned"],
                quota_left=_quota_left(row),
            )
        )
    return loaded


def _ineligibility(customer: dict[str, Any], rules: Rules) -> tuple[Reason | None, frozenset[str]]:
    """The first failing eligibility check (or None) and the customer's eligible workloads."""
    eligible = _workload_ids(customer["workloads"]) & frozenset(rules.eligible_workloads)
    consent = customer["referral_consent"]
    if consent is None:
        consent = rules.referral_consent_default
    if customer["seats"] < rules.min_seats:
        return Reason.BELOW_SEAT_THRESHOLD, eligible
    if not eligible:
        return Reason.NO_ELIGIBLE_WORKLOAD, eligible
    if not consent:
        return Reason.NO_REFERRAL_CONSENT, eligible
    if not eligible - set(rules.css_workloads):
        return Reason.CSS_WORKLOAD, eligible
    return None, eligible


def _serves(partner: _Partner, customer: dict[str, Any]) -> bool:
    """Ready, in the customer's country and language, and taking its size."""
    return (
        partner.ready
        and customer["country"] in partner.countries
        and customer["language"] in partner.languages
        and (not partner.sizes or size_bucket(customer["seats"]) in partner.sizes)
    )


def _matches(partner: _Partner, customer: dict[str, Any], eligible: frozenset[str]) -> bool:
    return _serves(partner, customer) and eligible <= partner.workloads


def _greedy_cover(
    candidates: list[_Partner], wanted: frozenset[str], limit: int
) -> list[tuple[_Partner, frozenset[str]]] | None:
    """The split's parts, or None when the cover fails or needs more than ``limit``."""
    parts: list[tuple[_Partner, frozenset[str]]] = []
    uncovered = set(wanted)
    while uncovered:
        useful = [p for p in candidates if p.workloads & uncovered]
        if not useful or len(parts) == limit:
            return None
        best = min(useful, key=lambda p: (-len(p.workloads & uncovered), p.round_robin_key))
        parts.append((best, frozenset(best.workloads & uncovered)))
        uncovered -= best.workloads
    return parts


def _some_cover(partners: list[_Partner], wanted: frozenset[str], limit: int) -> bool:
    """Whether at most ``limit`` of ``partners`` together cover ``wanted``."""
    return any(
        wanted <= frozenset().union(*(p.workloads for p in combo))
        for n in range(1, limit + 1)
        for combo in combinations(partners, n)
    )


def _pick_round_robin(candidates: list[_Partner]) -> _Partner:
    return min(candidates, key=lambda p: p.round_robin_key)


def _pick_least_loaded(candidates: list[_Partner]) -> _Partner:
    # Fractions, not floats: 2/6 and 1/3 must tie so the round-robin key decides.
    def load_after(p: _Partner) -> tuple[Fraction, RoundRobinKey]:
        used = p.active_referrals + p.given_in_run + 1
        return Fraction(used, p.effective_capacity), p.round_robin_key

    return min(candidates, key=load_after)


def _pick_weighted(candidates: list[_Partner], current: dict[str, int]) -> _Partner:
    """Smooth weighted round robin (nginx): each pick raises everyone by its weight,
    takes the highest, and lowers the winner by the total, so a partner with weight 3
    next to one with weight 1 is picked A, A, B, A rather than A, A, A, B."""
    total = sum(p.effective_capacity for p in candidates)
    for p in candidates:
        current[p.partner_id] = current.get(p.partner_id, 0) + p.effective_capacity
    chosen = min(candidates, key=lambda p: (-current[p.partner_id], p.round_robin_key))
    current[chosen.partner_id] -= total
    return chosen


def reference_simulate_with_order(
    partners: pl.DataFrame,
    customers: pl.DataFrame,
    rules: Rules,
    policy: Policy = Policy.ROUND_ROBIN,
    *,
    today: date | None = None,
) -> tuple[pl.DataFrame, dict[str, int | None]]:
    """Run the cohort and also return each partner's ``last_assigned`` after the run.

    The second value is what a commit would store: the round-robin order carried into
    the next run (unchanged for partners that got nobody). ``today`` is the run's date
    (None: no partner is paused).
    """
    policy = Policy(policy)
    if policy not in SUPPORTED_POLICIES:
        raise ValueError(
            f"the reference implementation does not support policy {policy.value!r}; "
            f"use one of {', '.join(p.value for p in SUPPORTED_POLICIES)}"
        )
    book = _load_partners(partners, rules, today)
    known = [p.last_assigned for p in book if p.last_assigned is not None]
    counter = max(known) + 1 if known else 1
    # Weighted round robin keeps one "current weight" table per pool of matching partners.
    pools: dict[frozenset[str], dict[str, int]] = {}
    by_part = rules.max_partners_per_customer > 1 or bool(rules.css_workloads)

    rows: list[dict[str, Any]] = []
    for customer in customers.iter_rows(named=True):
        reason, eligible, parts = _decide(customer, book, rules, policy, pools)
        for partner, _ in parts:
            if partner is not None:
                partner.given_in_run += 1
                partner.last_assigned = counter
                counter += 1
        if not parts:
            assert reason is not None
            parts = [(None, eligible)]
        for number, (partner, workloads) in enumerate(parts, start=1):
            row = _row(customer, rules, partner, reason or Reason.CSS_WORKLOAD)
            if by_part:
                row["part"] = number
                row["workloads"] = sorted(workloads)
            rows.append(row)

    schema: dict[str, Any] = {c: pl.String() for c in ASSIGNMENT_COLUMNS}
    if by_part:
        schema |= {"part": pl.Int32(), "workloads": pl.List(pl.String())}
    frame = pl.DataFrame(rows, schema=schema)
    return frame, {p.partner_id: p.last_assigned for p in book}


Part = tuple[_Partner | None, frozenset[str]]


def _decide(
    customer: dict[str, Any],
    book: list[_Partner],
    rules: Rules,
    policy: Policy,
    pools: dict[frozenset[str], dict[str, int]],
) -> tuple[Reason | None, frozenset[str], list[Part]]:
    """One customer: its reason when it goes wholly to CSS (else None) and its parts
    (partner, workloads; partner None for the CSS part), none when wholly to CSS."""
    reason, eligible = _ineligibility(customer, rules)
    if reason is not None:
        return reason, eligible, []
    css = eligible & frozenset(rules.css_workloads)
    wanted = eligible - css
    css_part: list[Part] = [(None, css)] if css else []
    matching = [p for p in book if _matches(p, customer, wanted)]
    candidates = [p for p in matching if p.remaining > 0]
    if candidates:
        if policy is Policy.ROUND_ROBIN:
            chosen = _pick_round_robin(candidates)
        elif policy is Policy.LEAST_LOADED:
            chosen = _pick_least_loaded(candidates)
        else:
            pool = frozenset(p.partner_id for p in matching)
            chosen = _pick_weighted(candidates, pools.setdefault(pool, {}))
        return None, eligible, [(chosen, wanted), *css_part]
    limit = rules.max_partners_per_customer
    serving = [p for p in book if _serves(p, customer)]
    if limit > 1:
        split = _greedy_cover([p for p in serving if p.remaining > 0], wanted, limit)
        if split is not None:
            return None, eligible, [*split, *css_part]
    if matching or (limit > 1 and _some_cover(serving, wanted, limit)):
        return Reason.CAPACITY_EXHAUSTED, eligible, []
    return Reason.NO_PARTNER_MATCH, eligible, []


def _row(
    customer: dict[str, Any], rules: Rules, partner: _Partner | None, css_reason: Reason
) -> dict[str, Any]:
    """One output row: a partner's part (assigned), or CSS with ``css_reason``."""
    if partner is not None:
        return {
            "tenant_id": customer["tenant_id"],
            "outcome": Outcome.FRP.value,
            "partner_id": partner.partner_id,
            "psm_email": partner.psm_email,
            "queue": FRP_QUEUE,
            "reason": Reason.ASSIGNED.value,
        }
    return {
        "tenant_id": customer["tenant_id"],
        "outcome": Outcome.CSS.value,
        "partner_id": None,
        "psm_email": None,
        "queue": rules.queue_for(customer["country"]),
        "reason": css_reason.value,
    }


def reference_simulate(
    partners: pl.DataFrame,
    customers: pl.DataFrame,
    rules: Rules,
    policy: Policy = Policy.ROUND_ROBIN,
    *,
    today: date | None = None,
) -> pl.DataFrame:
    """One row per customer, in cohort order: ``tenant_id, outcome, partner_id, psm_email,
    queue, reason`` (all text; partner and PSM are null for CSS)."""
    frame, _ = reference_simulate_with_order(partners, customers, rules, policy, today=today)
    return frame
