"""Drawing a run on the Simulate page: the policies side by side, one policy in detail
(load, customers, the "why"), the referral emails it would send and the downloads.

A viewer's run is made from a cohort whose customers' names and contact emails were masked
before it was simulated (``ui.simulation.cohort.read_inputs``), so everything drawn here is.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from engine.reasons import Reason
from store.notify import referral_messages
from ui import charts, downloads
from ui import labels as human
from ui.simulation import SimulationRun, policy_words, reason_words, result_bytes
from ui.simulation.comparison import (
    before_after,
    comparison,
    comparison_config,
    css_by_reason,
    top_load,
    utilisation_bins,
)
from ui.simulation.why import customer_table, explain

#: Rows of the per-customer table drawn at a time (the downloads hold all of them): the
#: browser decodes and lays out every row it is sent, about a second per 5,000 rows.
PAGE_ROWS = 500
PAGE_KEY = "customers_page"


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
        sim.with_detail("eligible_workloads", "language", "country")
        .filter(pl.col("reason") == Reason.ASSIGNED.value)
        .head(limit)
        .with_row_index("referral_id", offset=1)
        .with_columns(pl.col("referral_id").cast(pl.Int64))
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


def stale_note(stale: list[str]) -> None:
    """Say that the results no longer match the inputs on the page, and what changed."""
    if stale:
        st.warning(
            f"**Out of date**: {_and(stale)} changed since these results were computed. "
            "Press **Run simulation** again; Commit is off until then.",
            icon=":material/update:",
        )


def show_results(
    run: SimulationRun, stale: list[str] | None = None, baseline: SimulationRun | None = None
) -> None:
    """Everything the page shows about a run, top to bottom; ``stale``: the inputs that
    changed since (the results are marked out of date); ``baseline``: the run before."""
    n = run.prepared.cohort.height
    note = f"{human.plural(n, 'customer')} of the {run.source}"
    if run.prepared.skipped:
        note += f" ({len(run.prepared.skipped):,} left out: they already have an open referral)"
    if run.overrides.get("text"):
        note += f" · overrides: {run.overrides['text']}"
    st.header("Results" + (" (out of date)" if stale else ""), divider="gray")
    stale_note(stale or [])
    st.caption(note)
    show_comparison(run)
    show_before_after(run, baseline)

    st.header("One policy in detail", divider="gray")
    policy = st.selectbox(
        "Policy", list(run.simulations), format_func=policy_words, key="detail_policy"
    )
    show_load(run, policy)
    show_customers(run, policy)
    show_emails(run, policy)
    show_downloads(run, policy)


def show_comparison(run: SimulationRun) -> None:
    """The runs side by side (a policy under a split setting) in one table, a row each under
    the names used everywhere on the page and the measures each does best first, then the
    CSS chart right under it. One table rather than a card per run: the cards' titles
    wrapped to different heights and their numbers no longer lined up."""
    table = comparison(run)
    st.dataframe(
        table.select("policy", "best", pl.exclude("policy", "best")),
        hide_index=True,
        column_config=comparison_config(),
        key="comparison",
    )
    if len(run.simulations) > 1:
        st.caption(
            "**Best at** marks each run's best measures: most placed, fewest to CSS, most "
            "even (Jain's index), fewest partners at capacity; a tie marks every run with it."
        )
    st.altair_chart(charts.css_reasons_by_policy(css_by_reason(run)), width="stretch")
    if any(sim.by_part for sim in run.simulations.values()):
        st.caption(
            "With a split, a placed customer counts once however many partners share it; "
            "**Partner parts** counts the referrals to partners. **CSS workloads** counts "
            "the customers with workloads CSS always delivers, as a CSS part or whole."
        )


def show_load(run: SimulationRun, policy: str) -> None:
    """Partner load under one policy: the busiest partners before and after, and every
    available partner by utilisation band."""
    sim = run.simulations[policy]
    left, right = st.columns(2)
    load = top_load(sim).with_columns(
        pl.col("partner_id").replace(partner_labels(run))  # "P0042 · Larkspur Couriers"
    )
    if load.height:
        left.altair_chart(charts.load_before_after(load, policy), width="stretch")
    else:
        left.info("No partner receives a customer under this policy.")
    right.altair_chart(
        charts.utilisation_before_after(utilisation_bins(sim), policy), width="stretch"
    )


def show_customers(run: SimulationRun, policy: str) -> None:
    """The customers of one policy, filtered by reason (names masked for viewers), and the
    "why" of one of them."""
    st.subheader("Customers")
    reasons = [r.value for r in Reason]
    counts = run.simulations[policy].counts()
    reason = st.selectbox(
        "Reason",
        [None, *reasons],
        key="detail_reason",
        format_func=lambda r: "All reasons" if r is None else f"{reason_words(r)} ({counts[r]:,})",
    )
    shown = page_of(customer_table(run, policy, reason))
    human.table(shown, key="customers_table")
    show_why(run, policy, shown.select("tenant_id", "name").unique(maintain_order=True))


def page_of(customers: pl.DataFrame) -> pl.DataFrame:
    """The rows of the page chosen (:data:`PAGE_ROWS` a page), with a page picker when
    there is more than one page; a page past the end (another reason chosen) is the first."""
    n = customers.height
    pages = max(1, -(-n // PAGE_ROWS))
    if pages == 1:
        return customers
    if st.session_state.get(PAGE_KEY, 1) > pages:
        st.session_state[PAGE_KEY] = 1
    left, right = st.columns([1, 4], vertical_alignment="bottom")
    page = int(left.number_input(f"Page (of {pages:,})", 1, pages, key=PAGE_KEY))
    start = (page - 1) * PAGE_ROWS
    right.caption(
        f"Customers {start + 1:,}–{min(start + PAGE_ROWS, n):,} of {n:,}, {PAGE_ROWS:,} a "
        "page; the downloads hold them all."
    )
    return customers.slice(start, PAGE_ROWS)


def show_downloads(run: SimulationRun, policy: str) -> None:
    """One policy's whole result as CSV, Parquet and Excel; each download goes into the
    audit log as an export of personal data. The file is made when it is asked for, not on
    every rerun of the page."""
    sim = run.simulations[policy]
    with st.container(horizontal=True):
        downloads.buttons(
            lambda suffix: result_bytes(sim.output(), suffix),
            f"simulation-{policy}",
            key="download",
            details=run.source,
        )


def show_emails(run: SimulationRun, policy: str) -> None:
    """The first referrals' messages, rendered from the run's cohort (masked for a
    viewer; the partner's and PSM's addresses are work contacts)."""
    st.subheader("Referral emails it would send")
    sim = run.simulations[policy]
    emails = email_preview(run, policy)
    if emails.height == 0:
        st.info("No customer would be referred to a partner, so no email would be sent.")
        return
    roles = {"customer": "Customer", "partner": "Partner", "psm": "PSM"}
    partner_of = dict(sim.assignments.select("tenant_id", "partner_id").iter_rows())
    for (referral, tenant), messages in emails.group_by(
        "referral_id", "tenant_id", maintain_order=True
    ):
        label = f"Referral {referral}: {tenant} → {partner_of[tenant]} · {messages['subject'][0]}"
        with st.expander(label, expanded=False):
            for col, row in zip(st.columns(3), messages.iter_rows(named=True), strict=False):
                col.markdown(f"**{roles[row['recipient_role']]}** · {row['to_email']}")
                col.text(row["body"])
    st.caption(
        f"The first {emails['referral_id'].n_unique()} of {sim.placed:,} referrals, three "
        "messages each (customer, partner, PSM). Nothing is sent before a commit."
    )


def show_why(run: SimulationRun, policy: str, customers: pl.DataFrame) -> None:
    """The "why" panel: pick one of ``customers`` (``tenant_id, name``: the table's page),
    see its decision step by step."""
    st.subheader("Why? One customer, step by step")
    if not customers.height:
        st.info("No customer with this reason.")
        return
    # "T013918 · Larkspur Couriers" (a viewer's cohort was masked when it was read).
    labels = {t: _named(t, name) for t, name in customers.iter_rows()}
    tenants = list(labels)
    tenant = st.selectbox(
        "Customer",
        tenants,
        format_func=labels.__getitem__,
        key="why_tenant",
        help="The customers of the table's page; type to search by tenant id or company name",
    )
    marks = {True: ":green[passed]", False: ":red[failed]", None: ""}
    for i, step in enumerate(explain(run, policy, tenant), start=1):
        st.markdown(f"**{i}. {step.title}** {marks[step.passed]}  \n{step.text}")
        if step.table is not None and step.table.height:
            human.table(step.table)
    trace = run.simulations[policy].assignments.filter(pl.col("tenant_id") == tenant)["trace"][0]
    with st.expander("Full trace (as stored with the referral)"):
        st.text(trace)  # plain text: a code block loads a syntax highlighter in the browser


def show_before_after(run: SimulationRun, baseline: SimulationRun | None) -> None:
    """The previous run beside this one, policy by policy, so a change of rules or cohort
    can be judged without copying numbers by hand."""
    if baseline is None:
        return
    table = before_after(baseline, run)
    if table.height == 0:
        return
    st.subheader("Before and after")
    st.caption(f"Before: the previous run ({_inputs(baseline)}). After: this run ({_inputs(run)}).")
    st.dataframe(table, hide_index=True, key="before_after")


def _inputs(run: SimulationRun) -> str:
    overrides = run.overrides.get("text")
    return run.source + (f"; {overrides}" if overrides else "")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _named(tenant: str, name: str | None) -> str:
    return f"{tenant} · {name}" if name else tenant


def partner_labels(run: SimulationRun) -> dict[str, str]:
    """partner_id -> "P0042 · Larkspur Couriers", for charts and lists."""
    return {
        pid: human.partner_label(pid, {pid: name})
        for pid, name in run.prepared.partners.select("partner_id", "name").iter_rows()
    }
