"""The Simulate page's work: running policies side by side, and what it shows of the runs.

The page (``pages/simulate.py``) reads widgets and draws; this module turns a cohort and
rule overrides into a :class:`SimulationRun` (every policy simulated on the same stored
state, nothing written) and turns a run into small frames and Altair charts: the
per-policy comparison, CSS by reason, partner load before and after, the per-customer
table, the step-by-step "why" of one customer and a preview of the referral emails.
Frames are aggregated here before any chart sees them (a few hundred rows at most).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import duckdb
import polars as pl
import streamlit as st

from cli.main import result_frame
from engine.assign import Simulation
from engine.fairness import FairnessReport, report_for
from engine.matching import Signature, index_partners, match_signature, prepare_customers
from engine.reasons import CSS_REASONS, Policy, Reason
from engine.rules import Rules
from store.commits import Prepared, commit, simulate_stored
from store.db import StoreError
from store.files import write_table
from store.notify import referral_messages
from ui import auth, db

#: Session keys. The Fairness page reads LATEST_KEY (policy name -> Simulation).
LATEST_KEY = "latest_simulations"
RUN_KEY = "simulate_run"
COMMIT_KEY = "simulate_commit"

POLICIES = [p.value for p in Policy]
#: Customers listed in the per-customer table (the downloads hold all of them).
TABLE_ROWS = 5_000
#: Partners shown in the before/after load chart.
TOP_PARTNERS = 20
#: Partner ids listed per matching rule in the "why" panel.
WHY_IDS = 30

PolicyProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class SimulationRun:
    """One press of "Run simulation": the cohort, the rules used and a result per policy."""

    cohort: pl.DataFrame  # as chosen, before customers with an open referral were left out
    source: str
    committable: bool
    rules: Rules
    overrides: Mapping[str, Any]
    prepared: Prepared  # stored partners, the cohort simulated, who was skipped
    simulations: dict[str, Simulation] = field(default_factory=dict)
    reports: dict[str, FairnessReport] = field(default_factory=dict)


def policy_words(policy: str) -> str:
    return Policy(policy).words


def reason_words(reason: str) -> str:
    return Reason(reason).words


def run_policies(
    con: duckdb.DuckDBPyConnection,
    rules: Rules,
    policies: list[str],
    cohort: pl.DataFrame,
    *,
    source: str,
    committable: bool,
    overrides: Mapping[str, Any] | None = None,
    progress: PolicyProgress | None = None,
) -> SimulationRun:
    """Simulate ``cohort`` under each policy against the stored state; writes nothing."""
    sims: dict[str, Simulation] = {}
    reports: dict[str, FairnessReport] = {}
    prep: Prepared | None = None
    total = len(policies)
    for i, policy in enumerate(policies):

        def report(done: int, n: int, i: int = i, policy: str = policy) -> None:
            if progress is not None:
                share = (i + (done / n if n else 1.0)) / total
                progress(min(share, 1.0), f"{policy}: {done:,} of {n:,} customers")

        sim, prep = simulate_stored(con, rules, policy, cohort, progress=report)
        sims[policy] = sim
        reports[policy] = report_for(sim)
    assert prep is not None, "at least one policy"
    return SimulationRun(
        cohort=cohort,
        source=source,
        committable=committable,
        rules=rules,
        overrides=dict(overrides or {}),
        prepared=prep,
        simulations=sims,
        reports=reports,
    )


# --- Comparison ------------------------------------------------------------------------


def comparison(run: SimulationRun) -> pl.DataFrame:
    """One row per policy: placed, CSS by reason, Jain's index and utilisation."""
    rows = []
    for policy, sim in run.simulations.items():
        rep = run.reports[policy]
        counts = sim.counts()
        rows.append(
            {
                "policy": policy,
                "customers": rep.customers,
                "placed": rep.placed,
                "css": rep.css,
                **{r.value: counts[r.value] for r in CSS_REASONS},
                "jain": rep.jain,
                "max_utilisation": rep.max_utilisation,
                "mean_utilisation": rep.mean_utilisation,
            }
        )
    return pl.DataFrame(rows)


#: Short column headers for the comparison table, with the full words as help.
COMPARISON_COLUMNS: dict[str, tuple[str, str]] = {
    "policy": ("Policy", "Selection policy"),
    "customers": ("Customers", "Customers simulated"),
    "placed": ("Placed", "Customers referred to a partner"),
    "css": ("To CSS", "Customers sent to a CSS regional queue"),
    Reason.BELOW_SEAT_THRESHOLD.value: ("Small", Reason.BELOW_SEAT_THRESHOLD.words),
    Reason.NO_ELIGIBLE_WORKLOAD.value: ("No workload", Reason.NO_ELIGIBLE_WORKLOAD.words),
    Reason.NO_REFERRAL_CONSENT.value: ("No consent", Reason.NO_REFERRAL_CONSENT.words),
    Reason.NO_PARTNER_MATCH.value: ("No match", Reason.NO_PARTNER_MATCH.words),
    Reason.CAPACITY_EXHAUSTED.value: ("All full", Reason.CAPACITY_EXHAUSTED.words),
    "jain": ("Jain", "Jain's index of utilisation after the run (1 = perfectly even)"),
    "max_utilisation": ("Max util.", "Utilisation of the busiest available partner after"),
    "mean_utilisation": ("Mean util.", "Mean utilisation of available partners after"),
}


def comparison_config() -> dict[str, Any]:
    """st.dataframe column_config for :func:`comparison`."""
    config: dict[str, Any] = {}
    for key, (label, words) in COMPARISON_COLUMNS.items():
        if key == "jain":
            config[key] = st.column_config.NumberColumn(label, help=words, format="%.3f")
        elif key.endswith("utilisation"):
            config[key] = st.column_config.NumberColumn(label, help=words, format="percent")
        elif key == "policy":
            config[key] = st.column_config.TextColumn(label, help=words)
        else:
            config[key] = st.column_config.NumberColumn(label, help=words, format="localized")
    return config


def css_by_reason(run: SimulationRun) -> pl.DataFrame:
    """Long frame (policy, reason, customers) of CSS outcomes, for the grouped bar chart."""
    rows = [
        {"policy": policy, "reason": r.words, "customers": sim.counts()[r.value]}
        for policy, sim in run.simulations.items()
        for r in CSS_REASONS
    ]
    return pl.DataFrame(
        rows, schema={"policy": pl.String, "reason": pl.String, "customers": pl.Int64}
    )


def css_chart(frame: pl.DataFrame) -> alt.Chart:
    order = [r.words for r in CSS_REASONS]
    return (
        alt.Chart(frame, title="Customers sent to CSS queues, by reason")
        .mark_bar()
        .encode(
            x=alt.X("customers:Q", title="Customers"),
            y=alt.Y("reason:N", title=None, sort=order, axis=alt.Axis(labelLimit=320)),
            yOffset=alt.YOffset("policy:N"),
            color=alt.Color("policy:N", title="Policy"),
            tooltip=[
                alt.Tooltip("policy:N", title="Policy"),
                alt.Tooltip("reason:N", title="Reason"),
                alt.Tooltip("customers:Q", title="Customers", format=","),
            ],
        )
    )


# --- Partner load ----------------------------------------------------------------------


def top_load(sim: Simulation, top: int = TOP_PARTNERS) -> pl.DataFrame:
    """The ``top`` partners given most customers: utilisation before and after (long)."""
    busiest = (
        sim.partners.filter(pl.col("assigned") > 0)
        .sort(["assigned", "partner_id"], descending=[True, False])
        .head(top)
    )
    return busiest.select(
        "partner_id",
        "capacity",
        "assigned",
        "active_before",
        "active_after",
        "utilisation_before",
        "utilisation_after",
    )


def load_chart(frame: pl.DataFrame, policy: str) -> alt.LayerChart:
    """A dumbbell per partner: utilisation before the run (grey) to after (blue)."""
    order = frame["partner_id"].to_list()
    tooltip = [
        alt.Tooltip("partner_id:N", title="Partner"),
        alt.Tooltip("capacity:Q", title="Capacity"),
        alt.Tooltip("active_before:Q", title="Active before"),
        alt.Tooltip("assigned:Q", title="Given in this run"),
        alt.Tooltip("active_after:Q", title="Active after"),
        alt.Tooltip("utilisation_before:Q", title="Utilisation before", format=".0%"),
        alt.Tooltip("utilisation_after:Q", title="Utilisation after", format=".0%"),
    ]
    title = alt.TitleParams(
        "Partner load before → after the run",
        subtitle=f"Top {frame.height} by customers given ({policy}); grey before, blue after",
    )
    base = alt.Chart(frame, title=title).encode(
        y=alt.Y("partner_id:N", title="Partner", sort=order), tooltip=tooltip
    )
    rule = base.mark_rule(color="#9aa5b1", strokeWidth=3).encode(
        x=alt.X(
            "utilisation_before:Q",
            title="Utilisation (active referrals / capacity)",
            axis=alt.Axis(format="%"),
        ),
        x2="utilisation_after:Q",
    )
    before = base.mark_circle(size=80, color="#9aa5b1", opacity=1).encode(x="utilisation_before:Q")
    after = base.mark_circle(size=110, color="#1f77b4", opacity=1).encode(x="utilisation_after:Q")
    return alt.layer(rule, before, after)


_BIN_LABELS = [f"{i * 10}–{(i + 1) * 10}%" for i in range(10)] + ["over 100%"]


def utilisation_bins(sim: Simulation) -> pl.DataFrame:
    """Available partners per utilisation band, before the run and after it."""
    frames = []
    series = [
        ("before", sim.partners["utilisation_before"]),
        ("after", sim.partners["utilisation_after"]),
    ]
    available = sim.partners["available"] & (sim.partners["capacity"] > 0)
    for name, values in series:
        u = pl.col("u")
        # Tenths of capacity; exactly full counts in 90-100%, above full (capacity scaled
        # down below the active load) in its own band.
        step = pl.when(u > 1).then(10).otherwise((u * 10).floor().clip(0, 9)).cast(pl.Int64)
        counts = (
            pl.DataFrame({"u": values.filter(available)})
            .select(step.replace_strict(list(range(11)), _BIN_LABELS).alias("band"))
            .group_by("band")
            .len("partners")
        )
        frames.append(counts.with_columns(pl.lit(name).alias("series")))
    grid = pl.DataFrame(
        {
            "series": [n for n, _ in series for _ in _BIN_LABELS],
            "band": [b for _ in series for b in _BIN_LABELS],
        }
    )
    out = grid.join(pl.concat(frames), on=["series", "band"], how="left", maintain_order="left")
    return out.with_columns(pl.col("partners").fill_null(0).cast(pl.Int64))


def utilisation_chart(frame: pl.DataFrame, policy: str) -> alt.Chart:
    title = alt.TitleParams(
        "Available partners by utilisation",
        subtitle=f"Before the run (grey) and after it under {policy} (blue)",
    )
    colours = alt.Scale(domain=["before", "after"], range=["#9aa5b1", "#1f77b4"])
    return (
        alt.Chart(frame, title=title)
        .mark_bar()
        .encode(
            x=alt.X(
                "band:N",
                title="Utilisation (active referrals / capacity)",
                sort=_BIN_LABELS,
                axis=alt.Axis(labelAngle=-90, labelOverlap=False),
            ),
            xOffset=alt.XOffset("series:N", sort=["before", "after"]),
            y=alt.Y("partners:Q", title="Partners"),
            color=alt.Color("series:N", title=None, scale=colours, sort=["before", "after"]),
            tooltip=[
                alt.Tooltip("series:N", title="When"),
                alt.Tooltip("band:N", title="Utilisation"),
                alt.Tooltip("partners:Q", title="Partners"),
            ],
        )
    )


# --- Customers and the "why" -----------------------------------------------------------


def customer_table(run: SimulationRun, policy: str, reason: str | None = None) -> pl.DataFrame:
    """Per customer, in cohort order: who they are, where they went and why (in words)."""
    sim = run.simulations[policy]
    frame = sim.assignments.join(
        run.prepared.cohort.select("tenant_id", "name", "seats", "gateway"),
        on="tenant_id",
        how="left",
        maintain_order="left",
    ).join(
        sim.detail.select("tenant_id", "country", "language", "eligible_workloads"),
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


# --- Emails and downloads --------------------------------------------------------------


def email_preview(run: SimulationRun, policy: str, limit: int = 3) -> pl.DataFrame:
    """The notifications the first ``limit`` FRP referrals would send (numbered 1..limit)."""
    sim = run.simulations[policy]
    partners = run.prepared.partners.select(
        "partner_id",
        pl.col("name").alias("partner_name"),
        pl.col("contact_email").alias("partner_email"),
        "psm_name",
    )
    referred = (
        sim.assignments.filter(pl.col("reason") == Reason.ASSIGNED.value)
        .head(limit)
        .with_row_index("referral_id", offset=1)
        .with_columns(pl.col("referral_id").cast(pl.Int64))
        .join(
            sim.detail.select("tenant_id", "eligible_workloads", "language", "country"),
            on="tenant_id",
            how="left",
        )
        .join(
            run.prepared.cohort.select(
                "tenant_id",
                pl.col("name").alias("customer_name"),
                pl.col("contact_email").alias("customer_email"),
            ),
            on="tenant_id",
            how="left",
        )
        .join(partners, on="partner_id", how="left")
    )
    if referred.height == 0:
        return pl.DataFrame()
    return referral_messages(referred)


def result_bytes(frame: pl.DataFrame, suffix: str) -> bytes:
    """A result as the CLI would write it (``store.files.write_table``), as bytes."""
    with tempfile.TemporaryDirectory(prefix="frp-download-") as folder:
        path = write_table(frame, Path(folder) / f"result{suffix}")
        return path.read_bytes()


def describe_overrides(rules: Rules, defaults: Rules) -> str:
    """The rule knobs that differ from the active rules, in words ('' when none)."""
    parts = []
    if rules.min_seats != defaults.min_seats:
        parts.append(f"minimum seats {rules.min_seats:,} (instead of {defaults.min_seats:,})")
    if rules.capacity_scale != defaults.capacity_scale:
        parts.append(f"capacity × {rules.capacity_scale:g}")
    if rules.disabled_partners != defaults.disabled_partners:
        parts.append(f"{len(rules.disabled_partners)} partner(s) switched off")
    return "; ".join(parts)


# --- Drawing ---------------------------------------------------------------------------


def show_results(run: SimulationRun) -> None:
    """Everything the page shows about a run, top to bottom."""
    n = run.prepared.cohort.height
    note = f"{n:,} customers of the {run.source}"
    if run.prepared.skipped:
        note += f" ({len(run.prepared.skipped):,} left out: they already have an open referral)"
    if run.overrides.get("text"):
        note += f" · overrides: {run.overrides['text']}"
    st.header("Results", divider="gray")
    st.caption(note)

    table = comparison(run)
    base = table.row(0, named=True)
    for col, row in zip(st.columns(len(run.simulations)), table.iter_rows(named=True), strict=True):
        with col.container(border=True):
            st.markdown(f"**{policy_words(row['policy'])}**")
            first = row["policy"] == base["policy"]
            st.metric(
                "Placed with partners",
                f"{row['placed']:,}",
                None if first else _delta(row["placed"] - base["placed"], "+,"),
            )
            st.metric(
                "To CSS",
                f"{row['css']:,}",
                None if first else _delta(row["css"] - base["css"], "+,"),
                delta_color="inverse",
            )
            st.metric(
                "Jain's index",
                f"{row['jain']:.3f}",
                None if first else _delta(row["jain"] - base["jain"], "+.3f"),
                help="1 = utilisation perfectly even across available partners",
            )
            st.metric(
                "Max utilisation",
                f"{row['max_utilisation']:.0%}",
                None if first else _delta(row["max_utilisation"] - base["max_utilisation"], "+.0%"),
                delta_color="inverse",
                help="The busiest available partner after the run (active referrals / capacity)",
            )
    if len(run.simulations) > 1:
        st.caption(f"Differences are against {base['policy']}.")
    st.dataframe(table, hide_index=True, column_config=comparison_config(), key="comparison")
    st.altair_chart(css_chart(css_by_reason(run)), width="stretch")

    st.header("One policy in detail", divider="gray")
    policy = st.selectbox(
        "Policy", list(run.simulations), format_func=policy_words, key="detail_policy"
    )
    sim = run.simulations[policy]
    left, right = st.columns(2)
    load = top_load(sim)
    if load.height:
        left.altair_chart(load_chart(load, policy), width="stretch")
    else:
        left.info("No partner receives a customer under this policy.")
    right.altair_chart(utilisation_chart(utilisation_bins(sim), policy), width="stretch")

    st.subheader("Customers")
    reasons = [r.value for r in Reason]
    counts = sim.counts()
    reason = st.selectbox(
        "Reason",
        [None, *reasons],
        key="detail_reason",
        format_func=lambda r: "All reasons" if r is None else f"{reason_words(r)} ({counts[r]:,})",
    )
    customers = customer_table(run, policy, reason)
    if customers.height > TABLE_ROWS:
        st.caption(f"First {TABLE_ROWS:,} of {customers.height:,}; the downloads hold them all.")
    st.dataframe(
        customers.head(TABLE_ROWS),
        hide_index=True,
        key="customers_table",
        column_config={"seats": st.column_config.NumberColumn("seats", format="localized")},
    )
    show_why(run, policy, customers["tenant_id"].head(TABLE_ROWS).to_list())

    st.subheader("Referral emails it would send")
    emails = email_preview(run, policy)
    if emails.height == 0:
        st.info("No customer would be referred to a partner, so no email would be sent.")
    roles = {"customer": "Customer", "partner": "Partner", "psm": "PSM"}
    partner_of = dict(sim.assignments.select("tenant_id", "partner_id").iter_rows())
    for i, ((referral, tenant), messages) in enumerate(
        emails.group_by("referral_id", "tenant_id", maintain_order=True)
    ):
        label = f"Referral {referral}: {tenant} → {partner_of[tenant]} · {messages['subject'][0]}"
        with st.expander(label, expanded=i == 0):
            for col, row in zip(st.columns(3), messages.iter_rows(named=True), strict=False):
                to = row["to_email"]
                to = auth.show_email(to) if row["recipient_role"] == "customer" else to
                col.markdown(f"**{roles[row['recipient_role']]}** · {to}")
                col.text(auth.show_text(row["body"]))
    if emails.height:
        st.caption(
            f"The first {emails['referral_id'].n_unique()} of {sim.placed:,} referrals, three "
            "messages each (customer, partner, PSM). Nothing is sent before a commit."
        )

    result = result_frame(sim)
    name = f"simulation-{policy}"
    with st.container(horizontal=True):
        st.download_button(
            "Download CSV",
            lambda: result_bytes(result, ".csv"),
            file_name=f"{name}.csv",
            mime="text/csv",
            key="download_csv",
            on_click=auth.export_callback(f"{name}.csv", run.source),
            icon=":material/download:",
        )
        st.download_button(
            "Download Parquet",
            lambda: result_bytes(result, ".parquet"),
            file_name=f"{name}.parquet",
            mime="application/vnd.apache.parquet",
            key="download_parquet",
            on_click=auth.export_callback(f"{name}.parquet", run.source),
            icon=":material/download:",
        )


def show_why(run: SimulationRun, policy: str, tenants: list[str]) -> None:
    """The "why" panel: pick a customer, see its decision step by step."""
    st.subheader("Why? One customer, step by step")
    if not tenants:
        st.info("No customer with this reason.")
        return
    tenant = st.selectbox("Customer", tenants, key="why_tenant", help="Type to search by tenant id")
    marks = {True: ":green[passed]", False: ":red[failed]", None: ""}
    for i, step in enumerate(explain(run, policy, tenant), start=1):
        st.markdown(f"**{i}. {step.title}** {marks[step.passed]}  \n{step.text}")
        if step.table is not None and step.table.height:
            st.dataframe(step.table, hide_index=True)
    trace = run.simulations[policy].assignments.filter(pl.col("tenant_id") == tenant)["trace"][0]
    with st.expander("Full trace (as stored with the referral)"):
        st.code(trace, language=None, wrap_lines=True)


def show_commit(run: SimulationRun) -> None:
    """Commit one policy's result, after an explicit confirmation; then link to its referrals."""
    st.header("Commit", divider="gray")
    if not run.committable:
        st.info(
            "A synthetic cohort is for what-if only: its invented customers cannot be "
            "committed. Simulate the FTCQ backlog or an uploaded file to commit."
        )
        return
    n = run.prepared.cohort.height
    policy = st.selectbox(
        "Policy to commit", list(run.simulations), format_func=policy_words, key="commit_policy"
    )
    confirmed = st.checkbox(
        f"I confirm: write referrals for the {n:,} customers of the {run.source} under "
        f"{policy}, open FTOP task 3186 for Gateway customers and queue the referral "
        "notifications.",
        key="commit_confirm",
    )
    if not auth.is_manager():
        st.caption("Only managers can commit; you can simulate and compare policies.")
    clicked = st.button("Commit", type="primary", disabled=not confirmed, key="commit_button")
    if clicked and auth.require(auth.MANAGER, "commit referrals"):
        try:
            with st.status("Committing…", expanded=True) as status:
                bar = st.progress(0.0, text="re-running on the current state")
                summary = db.write(  # re-run if another session committed meanwhile
                    lambda con: commit(
                        con,
                        run.rules,
                        policy,
                        run.cohort,
                        actor=auth.actor(),
                        source=run.source,
                        progress=lambda done, total: bar.progress(done / total if total else 1.0),
                    ),
                    what="the commit",
                )
                status.update(
                    label="Committed" if summary.run_id else "Nothing new to commit",
                    state="complete",
                    expanded=False,
                )
        except StoreError as exc:
            st.error(f"Nothing was written: {exc}")
        else:
            db.after_write()
            st.session_state[COMMIT_KEY] = summary
            if summary.run_id is not None:
                st.toast(
                    f"Run {summary.run_id} committed: {summary.placed:,} referrals to partners",
                    icon=":material/check_circle:",
                )

    summary = st.session_state.get(COMMIT_KEY)
    if summary is not None and summary.run_id is None:
        st.warning(_sentence(summary.describe()))
    elif summary is not None:
        st.success(_sentence(summary.describe()))
        st.caption(
            f"The results above were simulated before run {summary.run_id}; run the simulation "
            "again to see the state after it."
        )
        st.page_link(
            "pages/referrals.py",
            label=f"See the referrals of run {summary.run_id}",
            icon=":material/assignment:",
            query_params={"run": str(summary.run_id)},
        )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _delta(diff: float, fmt: str) -> str | None:
    """A metric's delta text, or None when it rounds to no change (no arrow for nothing)."""
    text = format(diff, fmt)
    return None if not re.search(r"[1-9]", text) else text
