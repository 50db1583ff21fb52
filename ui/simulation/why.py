"""Where each customer went and why: the per-customer table and one customer's decision,
step by step, drawn from the engine's explanation (``engine.explain``): which rule removed
which partners, who was full, who was chosen and why, as evidence rather than the stored
trace alone."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from engine.explain import Capacity, Eligibility, Explanation, Matching, Part, why_chosen
from engine.explain import explain as explain_decision
from engine.reasons import Reason
from engine.simulation import Simulation
from ui.labels import partner_label as named
from ui.simulation import SimulationRun, reason_words

#: Partner ids listed per matching rule and of the full partners in the "why" panel.
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
    # With a split in the rules, a row per part: which part, and its own workloads.
    parts = [pl.col("part"), pl.col("workloads").list.join(", ")] if "part" in frame.columns else []
    return frame.select(
        "tenant_id",
        "name",
        *parts[:1],
        "outcome",
        "partner_id",
        "queue",
        pl.col("reason").replace_strict({r.value: r.words for r in Reason}).alias("reason"),
        *parts[1:],
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
    """One customer's decision, a step per part of the process (docs/domain.md, "The
    process"); a step the process never reached is left out."""
    sim = run.simulations[policy]
    e = explain_decision(sim, tenant_id, keep_ids=WHY_IDS)
    steps = [_eligibility(e.eligibility)]
    if e.matching is None:
        text = f"{reason_words(e.reason)}: sent to **{e.queue}**."
        return [*steps, WhyStep("Outcome", False, text)]
    names = dict(run.prepared.partners.select("partner_id", "name").iter_rows())
    steps.append(_matching(e, e.matching, names))
    if e.capacity is not None:
        steps.append(_capacity(sim, e, e.matching, e.capacity, names))
    if e.split:
        return [*steps, _parts(e, names)]
    if e.capacity is None:
        return [*steps, WhyStep("Outcome", False, f"No partner matches: sent to **{e.queue}**.")]
    if e.selection is None:
        text = f"No matching partner had room: sent to **{e.queue}**."
        return [*steps, WhyStep("Outcome", False, text)]
    chosen = e.selection
    text = (
        f"Chose **{named(chosen.partner_id, names)}** under {policy}: "
        f"{why_chosen(e.policy, chosen)}. "
        f"PSM {chosen.psm_email} is named on the referral."
    )
    steps.append(WhyStep("Selection", True, text))
    return [*steps, _parts(e, names)] if e.parts else steps


def _parts(e: Explanation, names: dict[str, str]) -> WhyStep:
    """A customer served in parts: each part's partner (or CSS queue), its workloads and
    why it went there, from the explanation's recorded parts."""
    rows = [
        {
            "part": p.part,
            "partner": named(p.partner_id, names) if p.partner_id else p.queue,
            "workloads": ", ".join(p.workloads),
            "why": part_why(e, p),
        }
        for p in e.parts
    ]
    partners = [p for p in e.parts if p.partner_id is not None]
    css = [p for p in e.parts if p.partner_id is None]
    if e.split:
        text = (
            f"No single partner with room covers every workload: split by workload across "
            f"{len(partners)} partners, each taken by the greedy cover (the most uncovered "
            "workloads first)."
        )
    else:
        text = "One partner takes the workloads partners deliver."
    if css:
        text += f" CSS always delivers {', '.join(css[0].workloads)}: a part in **{css[0].queue}**."
    return WhyStep("Parts", True, text, pl.DataFrame(rows))


def part_why(e: Explanation, part: Part) -> str:
    """Why one part went where it went, in words."""
    if part.partner_id is None:
        return f"{reason_words(Reason.CSS_WORKLOAD.value)} (CSS workloads in the rules)"
    if part.gain is None or part.uncovered is None:
        return f"chosen under {e.policy.value} (see Selection)"
    turn = (
        "never assigned before"
        if part.previous_turn is None
        else f"last assigned at turn {part.previous_turn}"
    )
    return (
        f"covers {part.gain} of {part.uncovered} uncovered workloads, the most of the "
        f"partners with room; {turn}"
    )


def _eligibility(el: Eligibility) -> WhyStep:
    consent_ok = el.consent_default if el.consent is None else el.consent
    declined = f"declined by {len(el.declined_by)} partner(s)" + (
        f" ({', '.join(el.declined_by)})" if el.declined_by else ""
    )
    checks = [
        (
            "seats",
            Reason.BELOW_SEAT_THRESHOLD,
            f"{el.seats:,} seats; minimum {el.min_seats:,}",
        ),
        (
            "eligible workload",
            Reason.NO_ELIGIBLE_WORKLOAD,
            f"asks for {', '.join(el.workloads) or 'nothing'}; "
            f"eligible: {', '.join(el.eligible) or 'none'}",
        ),
        (
            "referral consent",
            Reason.NO_REFERRAL_CONSENT,
            "not stated (rules default: " + ("yes" if consent_ok else "no") + ")"
            if el.consent is None
            else ("agreed" if el.consent else "withheld"),
        ),
        (
            "declines",
            Reason.DECLINED_BY_PARTNERS,
            f"{declined}; to CSS after {el.max_declines}",
        ),
    ]
    table = pl.DataFrame(
        [{"check": k, "passed": el.passed(r), "detail": d} for k, r, d in checks],
        schema={"check": pl.String, "passed": pl.Boolean, "detail": pl.String},
    )
    text = (
        f"Not FRP-eligible: {reason_words(el.failed[0]).lower()} (the first check that fails)."
        if el.failed
        else "FRP-eligible: every check passes."
    )
    return WhyStep("Eligibility", not el.failed, text, table)


def _matching(e: Explanation, matching: Matching, names: dict[str, str]) -> WhyStep:
    rule_rows = []
    for step in matching.steps:
        removed = list(step.removed) or (
            list(matching.unavailable) if step.rule == "Referral Ready" else []
        )
        paused = set(step.paused)
        shown = ", ".join(named(p, names) + (" (paused)" if p in paused else "") for p in removed)
        if step.n_removed > len(removed):
            more = step.n_removed - len(removed)
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
    matched = matching.partners
    text = (
        f"{len(matched)} partner(s) are Referral Ready, serve {e.country}, speak "
        f"{e.language} and cover {', '.join(e.eligibility.eligible)}."
        if matched
        else "No partner passes every rule."
    )
    return WhyStep("Matching partners", bool(matched), text, pl.DataFrame(rule_rows))


def _capacity(
    sim: Simulation, e: Explanation, matching: Matching, cap: Capacity, names: dict[str, str]
) -> WhyStep:
    chosen = e.selection.partner_id if e.selection is not None else ""
    load = (
        sim.partners.filter(pl.col("partner_id").is_in(list(matching.partners)))
        .select(
            "partner_id",
            pl.col("partner_id").replace_strict(names, default=None).alias("name"),
            pl.col("capacity").alias("capacity (after scaling)"),
            pl.col("active_before").alias("active before run"),
            pl.col("assigned").alias("given in this run"),
            # Seats and, when it has one, the monthly quota's room: the smaller counts.
            (pl.col("seat_limit") - pl.col("active_after"))
            .clip(lower_bound=0)
            .alias("room left after"),
            (pl.col("partner_id") == chosen).alias("chosen"),
        )
        .sort(["chosen", "partner_id"], descending=[True, False])
    )
    turn = "when this customer's turn came"
    if cap.n_full:
        more = cap.n_full - len(cap.full)
        full = ", ".join(cap.full) + (f" +{more} more" if more else "")
        text = f"{cap.n_full} of {cap.n_matching} matching partners were full {turn}: {full}."
    else:
        text = f"None of the {cap.n_matching} matching partners was full {turn}."
    if cap.plan_kept_seats:
        text += (
            " The optimal plan kept the remaining seats for customers that only they could take, "
            "to place the most customers overall."
        )
    return WhyStep("Capacity", e.selection is not None, text, load)
