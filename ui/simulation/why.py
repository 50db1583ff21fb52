"""Where each customer went and why: the per-customer table and one customer's decision,
step by step, rebuilt from the engine's matching so the page shows evidence (which rule
removed which partners, who was full), not just the stored trace."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from engine.assign import Simulation
from engine.matching import Signature, index_partners, match_signature, prepare_customers
from engine.reasons import Policy, Reason
from engine.rules import Rules
from ui.simulation import SimulationRun, reason_words

#: Partner ids listed per matching rule in the "why" panel.
WHY_IDS = 30


def customer_table(run: SimulationRun, policy: str, reason: str | None = None) -> pl.DataFrame:
    """Per customer, in cohort order: who they are, where they went and why (in words)."""
    sim = run.simulations[policy]
    frame = sim.with_detail("country", "language", "eligible_workloads").join(
        run.prepared.cohort.select("tenant_id", "name", "seats", "gateway"),
        on="tenant_id",
        how="left",
        maintain_order="left",
    )
    if reason:
        frame = frame.filter(pl.col("reason") == reason)
    return frame.select(
        "tenant_id",
        "name",
        "outcome",
        "partner_id",
        "queue",
        pl.col("reason").replace_strict({r.value: r.words for r in Reason}).alias("reason"),
        "country",
        "language",
        "seats",
        pl.col("eligible_workloads").list.join(", ").alias("eligible_workloads"),
        "gateway",
    )


@dataclass(frozen=True)
class WhyStep:
    """One step of a customer's decision: its title, whether it passed, and the evidence."""

    title: str
    passed: bool | None  # None: not reached
    text: str
    table: pl.DataFrame | None = None


def explain(run: SimulationRun, policy: str, tenant_id: str) -> list[WhyStep]:
    """The full trace of one customer, split into the process's steps (DOMAIN.md)."""
    sim = run.simulations[policy]
    rules = sim.rules
    row = sim.assignments.filter(pl.col("tenant_id") == tenant_id)
    if row.height == 0:
        raise KeyError(tenant_id)
    a = row.row(0, named=True)
    customer = prepare_customers(
        run.prepared.cohort.filter(pl.col("tenant_id") == tenant_id), rules
    ).row(0, named=True)
    steps = [_eligibility(customer, rules)]
    if customer["pre_reason"] is not None:
        steps.append(
            WhyStep("Outcome", False, f"{reason_words(a['reason'])}: sent to **{a['queue']}**.")
        )
        return steps

    index = index_partners(run.prepared.partners, rules)
    sig = Signature(
        customer["country"], customer["language"], customer["mask"], tuple(customer["eligible"])
    )
    match = match_signature(index, sig, keep_ids=WHY_IDS)
    unavailable = [pid for pid, ok in zip(index.ids, index.available, strict=True) if not ok]
    rule_rows = []
    for step in match.steps:
        removed = list(step.removed) or (unavailable if step.rule == "Referral Ready" else [])
        shown = ", ".join(removed[:WHY_IDS])
        if step.n_removed > len(removed[:WHY_IDS]):
            more = step.n_removed - len(removed[:WHY_IDS])
            what = step.rule.replace("country", "serve").replace("language", "speak")
            shown = f"{shown} +{more} more" if shown else f"{more} partners that do not {what}"
        rule_rows.append(
            {
                "rule": step.rule,
                "partners left": step.kept,
                "removed": step.n_removed,
                "partners removed": shown,
            }
        )
    matched = [index.ids[i] for i in match.partners]
    steps.append(
        WhyStep(
            "Matching partners",
            bool(matched),
            f"{len(matched)} partner(s) are Referral Ready, serve {customer['country']}, speak "
            f"{customer['language']} and cover {', '.join(customer['eligible'])}."
            if matched
            else "No partner passes every rule.",
            pl.DataFrame(rule_rows),
        )
    )
    if not matched:
        steps.append(WhyStep("Outcome", False, f"No partner matches: sent to **{a['queue']}**."))
        return steps

    steps.append(_capacity(sim, a, matched, policy))
    if a["reason"] == Reason.ASSIGNED.value:
        chose = a["trace"].rsplit("; chose ", 1)[-1]
        steps.append(
            WhyStep(
                "Selection",
                True,
                f"Chose **{a['partner_id']}** under {policy}: {chose.split(': ', 1)[-1]}. "
                f"PSM {a['psm_email']} is named on the referral.",
            )
        )
    else:
        steps.append(
            WhyStep("Outcome", False, f"No matching partner had room: sent to **{a['queue']}**.")
        )
    return steps


def _eligibility(c: dict[str, Any], rules: Rules) -> WhyStep:
    consent = c["referral_consent"]
    consent_ok = rules.referral_consent_default if consent is None else consent
    checks = [
        (
            "seats",
            c["seats"] >= rules.min_seats,
            f"{c['seats']:,} seats; minimum {rules.min_seats:,}",
        ),
        (
            "eligible workload",
            bool(c["eligible"]),
            f"asks for {', '.join(c['workloads']) or 'nothing'}; "
            f"eligible: {', '.join(c['eligible']) or 'none'}",
        ),
        (
            "referral consent",
            bool(consent_ok),
            "not stated (rules default: " + ("yes" if consent_ok else "no") + ")"
            if consent is None
            else ("agreed" if consent else "withheld"),
        ),
    ]
    table = pl.DataFrame(
        [{"check": k, "passed": ok, "detail": d} for k, ok, d in checks],
        schema={"check": pl.String, "passed": pl.Boolean, "detail": pl.String},
    )
    pre = c["pre_reason"]
    text = (
        "FRP-eligible: every check passes."
        if pre is None
        else f"Not FRP-eligible: {reason_words(pre).lower()} (the first check that fails)."
    )
    return WhyStep("Eligibility", pre is None, text, table)


_FULL = re.compile(r"(\d+) of (\d+) full \(([^)]*)\)")


def _capacity(sim: Simulation, a: dict[str, Any], matched: list[str], policy: str) -> WhyStep:
    load = (
        sim.partners.filter(pl.col("partner_id").is_in(matched))
        .select(
            "partner_id",
            pl.col("capacity").alias("capacity (after scaling)"),
            pl.col("active_before").alias("active before run"),
            pl.col("assigned").alias("given in this run"),
            (pl.col("capacity") - pl.col("active_after"))
            .clip(lower_bound=0)
            .alias("room left after"),
            (pl.col("partner_id") == (a["partner_id"] or "")).alias("chosen"),
        )
        .sort(["chosen", "partner_id"], descending=[True, False])
    )
    found = _FULL.search(a["trace"] or "")
    if found:
        text = (
            f"{found.group(1)} of {found.group(2)} matching partners were full when this "
            f"customer's turn came: {found.group(3)}."
        )
    else:
        text = (
            f"None of the {len(matched)} matching partners was full when this customer's turn came."
        )
    passed = a["reason"] == Reason.ASSIGNED.value
    if not passed and policy == Policy.OPTIMAL.value and not found:
        text += (
            " The optimal plan kept the remaining seats for customers that only they could take, "
            "to place the most customers overall."
        )
    return WhyStep("Capacity", passed, text, load)
