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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

import polars as pl

from engine.columns import ASSIGNMENT_COLUMNS, MONTH_REFERRALS
from engine.reasons import FRP_QUEUE, Outcome, Policy, Reason
from engine.rules import Rules

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
    return None, eligible


def _matches(partner: _Partner, customer: dict[str, Any], eligible: frozenset[str]) -> bool:
    return (
        partner.ready
        and customer["country"] in partner.countries
        and customer["language"] in partner.languages
        and eligible <= partner.workloads
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

    rows: list[dict[str, str | None]] = []
    for customer in customers.iter_rows(named=True):
        reason, eligible = _ineligibility(customer, rules)
        chosen: _Partner | None = None
        if reason is None:
            matching = [p for p in book if _matches(p, customer, eligible)]
            candidates = [p for p in matching if p.remaining > 0]
            if not matching:
                reason = Reason.NO_PARTNER_MATCH
            elif not candidates:
                reason = Reason.CAPACITY_EXHAUSTED
            elif policy is Policy.ROUND_ROBIN:
                chosen = _pick_round_robin(candidates)
            elif policy is Policy.LEAST_LOADED:
                chosen = _pick_least_loaded(candidates)
            else:
                pool = frozenset(p.partner_id for p in matching)
                chosen = _pick_weighted(candidates, pools.setdefault(pool, {}))

        if chosen is not None:
            chosen.given_in_run += 1
            chosen.last_assigned = counter
            counter += 1
            rows.append(
                {
                    "tenant_id": customer["tenant_id"],
                    "outcome": Outcome.FRP.value,
                    "partner_id": chosen.partner_id,
                    "psm_email": chosen.psm_email,
                    "queue": FRP_QUEUE,
                    "reason": Reason.ASSIGNED.value,
                }
            )
        else:
            assert reason is not None
            rows.append(
                {
                    "tenant_id": customer["tenant_id"],
                    "outcome": Outcome.CSS.value,
                    "partner_id": None,
                    "psm_email": None,
                    "queue": rules.queue_for(customer["country"]),
                    "reason": reason.value,
                }
            )

    frame = pl.DataFrame(rows, schema={c: pl.String() for c in ASSIGNMENT_COLUMNS})
    return frame, {p.partner_id: p.last_assigned for p in book}


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
