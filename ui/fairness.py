"""Sections of the Fairness page: one function per tab, each drawing a FairnessReport.

Every chart comes with the numbers behind it (a table in an expander). The report is
either of committed referrals (``ui.reads.committed_fairness``) or of a simulation kept
in the session by the Simulate page (``simulated``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

import polars as pl
import streamlit as st

from engine.fairness import CSS_RATE_DIMENSIONS, FairnessReport, report_for, verdict
from engine.reasons import Outcome, Reason
from engine.simulation import REASONS, Simulation
from engine.sizes import SIZE_BUCKETS
from store.capacity import utilisation_bins, with_labels
from store.fairness import (
    committed_css_by_country,
    css_by_country,
    deviation_extremes,
    partner_deviation,
    pool_labels,
)
from ui import charts, maps
from ui import labels as human
from ui.reads import view

_MEMO = "_fairness_of_simulation"


def simulated(policy: str, sim: Any) -> tuple[FairnessReport, pl.DataFrame]:
    """The report (and pool labels) of a session's simulation, computed once per simulation."""
    memo = st.session_state.setdefault(_MEMO, {})
    key = (policy, id(sim))
    if key not in memo:
        memo.clear()  # only the simulation being looked at is worth keeping
        memo[key] = (report_for(sim), pool_labels(sim.detail))
    return memo[key]


def period(picked: Any) -> tuple[datetime | None, datetime | None]:
    """[since, until) from a date range widget; a half-picked range means that one day."""
    days = [d for d in (picked if isinstance(picked, list | tuple) else [picked]) if d]
    if not days:
        return None, None
    first: date = days[0]
    last: date = days[-1]
    return datetime.combine(first, time()), datetime.combine(last + timedelta(days=1), time())


_OTHERS = re.compile(r" \(\+(\d+)\)$")


def pool_words(labels: pl.DataFrame) -> dict[str, str]:
    """pool_key -> the pool in words: its most common customers ("US · en · teams,
    exchange") and, when it serves others too, how many other kinds (what "+1" meant)."""

    def words(label: str) -> str:
        label = label.replace("+", ", ")
        found = _OTHERS.search(label.replace(" (, ", " (+"))
        if not found:
            return label
        n = int(found.group(1))
        kinds = "kind" if n == 1 else "kinds"
        return label[: found.start()] + f" and {n} other {kinds} of customer"

    return {k: words(v) for k, v in labels.select("pool_key", "label").iter_rows()}


def verdict_line(fair: FairnessReport, labels: pl.DataFrame) -> None:
    """The page's answer first: are the pools' turns fair (``engine.fairness.verdict``)."""
    v = verdict(fair.per_pool)
    text = v.sentence(pool_words(labels))
    how = f" {TURN_WORDS} Round robin keeps every partner within one turn of its fair share."
    if v.fair:
        st.success(f"**{text}**{how}", icon=":material/balance:")
    else:
        st.warning(f"**{text}**{how}", icon=":material/balance:")


#: What a turn is, wherever the page compares turns with a fair share.
TURN_WORDS = (
    "A turn is a referral to a partner: a part of a split customer is one, and so is each "
    "re-assignment after a decline or an expiry. A pool's fair share is its turns divided "
    "by its partners."
)


def headline(
    fair: FairnessReport, labels: pl.DataFrame | None = None, customers: int | None = None
) -> None:
    """The verdict, then the single numbers, each explained where it is shown.

    ``customers``: for committed history, whose report counts referrals (partners' turns),
    how many customers they were made for, shown beside them; a simulation's report
    counts customers already (``engine.fairness.report_for``).
    """
    if labels is not None:
        verdict_line(fair, labels)
    unit = "customers" if customers is None else "referrals"
    with st.container(horizontal=True):
        if customers is None:
            st.metric("Customers", f"{fair.customers:,}", border=True)
            st.metric("With partners", f"{fair.placed:,}", border=True)
        else:
            st.metric(
                "Referrals",
                f"{fair.customers:,}",
                border=True,
                help="Referrals made in the period, to partners and to CSS: a customer "
                "re-assigned after a decline or an expiry has one for each partner, and a "
                "split customer one per part.",
            )
            st.metric(
                "Customers",
                f"{customers:,}",
                border=True,
                help="The customers those referrals were made for, each counted once",
            )
            st.metric(
                "To partners",
                f"{fair.placed:,}",
                border=True,
                help="Referrals to partners: each one a partner's turn",
            )
        st.metric(
            "CSS fallback",
            f"{fair.css_rate:.1%}",
            border=True,
            help=f"Share of {unit} sent to a CSS queue ({fair.css:,})",
        )
        st.metric(
            "Jain's index of utilisation now",
            f"{fair.jain:.2f}",
            border=True,
            help="How evenly partners are used now (open referrals / capacity): 1 = all "
            "equally, 1/n = one partner carries everything. Not the monthly index under "
            "Over time, which is of each month's new referrals.",
        )
        st.metric(
            "Gini of utilisation",
            f"{fair.gini:.2f}",
            border=True,
            help="Inequality of utilisation now: 0 = all partners equally used, 1 = one has all",
        )
        st.metric(
            "Mean utilisation",
            f"{fair.mean_utilisation:.0%}",
            border=True,
            help="Average open referrals / capacity of Referral Ready partners",
        )


def turns(fair: FairnessReport, labels: pl.DataFrame, names: pl.DataFrame, key: str) -> None:
    """The round-robin turn ledger of one pool (given vs ideal share), and every pool.

    ``key`` names the pool picker; give each source its own, so switching between
    committed referrals and a simulation never carries a stale pick across.
    """
    pools = fair.per_pool.join(labels, on="pool_key", how="left").with_columns(
        pl.col("label").fill_null(pl.col("pool_key"))
    )
    if pools.height == 0:
        st.info("No customer was routed to a pool in this selection (none matched a partner).")
        return
    st.caption(
        "A pool is the set of partners matching the same customers; round robin takes turns "
        f"inside it. {TURN_WORDS}"
    )
    label_of = pool_words(pools)
    pools = pools.with_columns(pl.col("pool_key").replace_strict(label_of).alias("label"))
    ordered = pools.sort(["customers", "pool_key"], descending=[True, False])
    chosen = st.selectbox(
        f"Pool ({pools.height:,}, busiest first)",
        ordered["pool_key"].to_list(),
        format_func=lambda k: label_of[k],
        key=key,
    )
    row = pools.filter(pl.col("pool_key") == chosen).row(0, named=True)
    members = (
        fair.pool_members.filter(pl.col("pool_key") == chosen)
        .join(names, on="partner_id", how="left")
        .with_columns(pl.format("{} {}", "partner_id", "name").alias("partner"))
    )
    title = (
        f"{row['label']}: {human.plural(row['placed'], 'referral')} placed among "
        f"{human.plural(row['size'], 'partner')}"
    )
    st.altair_chart(charts.pool_ledger(members, title), width="stretch")
    st.caption(
        f"Fair share {row['ideal_share']:.1f} each (placed / partners). Spread "
        f"{row['spread']}: the most a partner got minus the fewest; round robin keeps it at "
        "1 or less unless a partner was full or joined late."
    )
    with st.expander("Turn ledger of this pool"):
        human.table(members.select("partner_id", "name", "given", "ideal_share", "deviation"))
    with st.expander(f"All {pools.height:,} pools (furthest from fair share first)"):
        human.table(
            pools.sort(["max_deviation", "customers"], descending=True).select(
                "label",
                "size",
                "customers",
                "placed",
                "min_given",
                "max_given",
                "spread",
                "ideal_share",
                "max_deviation",
            )
        )


def deviation(fair: FairnessReport, names: pl.DataFrame) -> None:
    """Each partner's customers given minus its ideal share, summed over its pools."""
    dev = partner_deviation(fair.pool_members, names).with_columns(
        pl.format("{} {}", "partner_id", "name").alias("partner")
    )
    if dev.height == 0:
        st.info("No pool turns to compare in this selection.")
        return
    st.altair_chart(
        charts.deviation_bars(
            deviation_extremes(dev, 10),
            "Partners furthest above and below their fair share (summed over their pools)",
        ),
        width="stretch",
    )
    st.caption(
        "Above fair share: customers a partner got minus its fair share in each of its "
        "pools, summed; negative means it got fewer turns than an equal share."
    )
    with st.expander(f"Deviation of all {dev.height:,} partners"):
        human.table(dev.drop("partner"))


def utilisation(fair: FairnessReport, names: pl.DataFrame, when: str) -> None:
    bins = utilisation_bins(fair.per_partner, "utilisation_after", only="available")
    st.altair_chart(
        charts.utilisation_histogram(
            bins,
            f"Utilisation of Referral Ready partners {when}",
            f"max {fair.max_utilisation:.0%}, mean {fair.mean_utilisation:.0%}",
        ),
        width="stretch",
    )
    with st.expander("Numbers behind the chart"):
        human.table(bins.drop("order"))
        human.table(
            fair.per_partner.join(names, on="partner_id", how="left"),
            column_config={
                "utilisation_after": st.column_config.ProgressColumn(
                    "utilisation", **human.PERCENT_BAR
                )
            },
        )


def trend(monthly: pl.DataFrame | None) -> None:
    """Jain's index and Gini per month (committed referrals only)."""
    if monthly is None:
        st.info("Trends over time are shown for committed referrals.")
        return
    if monthly.height == 0:
        st.info("No referrals in this period.")
        return
    st.altair_chart(
        charts.fairness_trend(
            monthly, "Monthly Jain's index and Gini of new referrals per seat of capacity"
        ),
        width="stretch",
    )
    st.caption(
        "Each month: FRP referrals given to each Referral Ready partner divided by its capacity "
        "(a partner given nothing counts as 0). This monthly Jain's index judges each "
        "month's intake; the headline Jain's index judges utilisation now. They are not "
        "comparable: a quiet month with few referrals is uneven by nature."
    )
    with st.expander("Numbers behind the chart"):
        human.table(monthly)


def css_fallback(fair: FairnessReport, by_country: pl.DataFrame | None = None) -> None:
    """CSS fallback rate by country (a map), region, language and workload, and CSS
    customers by reason: those that partners declined or let expire apart from those a
    run sent at once."""
    later = fair.css_after_declines
    with st.container(horizontal=True):
        st.metric(
            "CSS after declines and expiries",
            f"{later:,}",
            border=True,
            help="Partners declined the customer, or let its referral expire, `max_declines` "
            "times (declined_by_partners)",
        )
        st.metric("CSS at assignment", f"{fair.css - later:,}", border=True)
    if by_country is not None and by_country.height:
        css_map(by_country)
    left, right = st.columns(2)
    for i, dim in enumerate(CSS_RATE_DIMENSIONS):
        frame = with_labels(fair.css_by[dim], dim)
        with left if i % 2 == 0 else right:
            st.altair_chart(
                charts.css_rate_bars(frame, dim.capitalize(), f"CSS fallback rate by {dim}"),
                width="stretch",
            )
            with st.expander(f"Numbers by {dim}"):
                human.table(frame.drop("label"))
    with right:
        reasons = fair.css_by["reason"]
        st.altair_chart(
            charts.css_reason_bars(
                reasons,
                "Why customers went to CSS",
                apart=Reason.DECLINED_BY_PARTNERS.value,
                subtitle="Orange: after partners declined or let the referral expire",
            ),
            width="stretch",
        )
        with st.expander("Numbers by reason"):
            human.table(reasons.with_columns(pl.col("key").replace(human.REASONS)))


def css_map(by_country: pl.DataFrame) -> None:
    """The share of customers sent to CSS per country, on the world map (``ui.maps``)."""
    st.vega_lite_chart(
        spec=maps.css_map(
            by_country, "Share of the customers there sent to a CSS queue; grey: none"
        ),
        width="stretch",
    )
    hidden = maps.not_on_map(by_country)
    if hidden:
        st.caption(f"Too small for the map: {', '.join(hidden)}.")
    with st.expander("Numbers by country"):
        human.table(by_country.drop("label"))


def responses(frame: pl.DataFrame | None, names: pl.DataFrame, shown: int = 15) -> None:
    """How partners answered their referrals (``engine.fairness.acceptance``): acceptance
    rate and expiries per partner; None for a simulation, which has no answers yet."""
    if frame is None:
        st.info("Partners' answers are shown for committed referrals.")
        return
    answered = int(frame["answered"].sum())
    with st.container(horizontal=True):
        rate = int(frame["accepted"].sum()) / answered if answered else None
        st.metric(
            "Acceptance rate",
            f"{rate:.1%}" if rate is not None else "–",
            border=True,
            help="accepted / (accepted + declined + expired), over answered referrals",
        )
        st.metric("Answered", f"{answered:,}", border=True)
        st.metric("Expired", f"{int(frame['expired'].sum()):,}", border=True)
        st.metric("Waiting", f"{int(frame['waiting'].sum()):,}", border=True)
    table = frame.join(names, on="partner_id", how="left").select(
        "partner_id", "name", *[c for c in frame.columns if c != "partner_id"]
    )
    lowest = (
        table.filter(pl.col("answered") > 0)
        .sort(["acceptance_rate", "answered", "partner_id"], descending=[False, True, False])
        .head(shown)
        .with_columns(pl.format("{} {}", "partner_id", "name").alias("partner"))
    )
    if lowest.height:
        st.altair_chart(
            charts.response_bars(lowest, "Partners with the lowest acceptance rate"),
            width="stretch",
        )
    else:
        st.info("No referral of this period has been answered yet.")
    with st.expander(f"Answers of all {table.height:,} partners"):
        human.table(
            table.sort("partner_id"),
            column_config={
                "acceptance_rate": st.column_config.ProgressColumn(
                    "acceptance rate", **human.PERCENT_BAR
                )
            },
        )


# --- Customer size (docs/domain.md, "Customer size") -------------------------------------


def _outcome(sim: Simulation) -> pl.Series:
    """Per customer of a simulation, ``frp`` when placed (whole or in parts), else ``css``."""
    placed = sim.rows.get_column("chosen").is_not_null()
    return placed.replace_strict(
        {True: Outcome.FRP.value, False: Outcome.CSS.value}, return_dtype=pl.String
    ).alias("outcome")


def simulated_by_size(sim: Simulation) -> pl.DataFrame:
    """A simulation's customers per size bucket, outcome and reason (``size_bucket,
    outcome, reason, customers``), as ``store.fairness.outcomes_by_size`` gives committed
    referrals: one customer once, however many parts it has."""
    return (
        pl.DataFrame(
            {
                "size_bucket": sim.detail.get_column("size"),
                "outcome": _outcome(sim),
                "reason": REASONS.gather(sim.rows.get_column("reason")),
            }
        )
        .group_by("size_bucket", "outcome", "reason")
        .agg(pl.len().cast(pl.Int64).alias("customers"))
        .sort("size_bucket", "outcome", "reason")
    )


def committed_by_country(
    since: datetime | None, until: datetime | None, version: int | None = None
) -> pl.DataFrame:
    """Referrals of [since, until) (of runs made with rules ``version``, when given) and
    those sent to CSS per country (cached)."""
    return view(committed_css_by_country, since, until, version)


def simulated_by_country(sim: Simulation) -> pl.DataFrame:
    """A simulation's customers and those sent to CSS per country, as
    ``store.fairness.committed_css_by_country`` gives committed referrals."""
    return css_by_country(
        pl.DataFrame({"country": sim.detail.get_column("country"), "outcome": _outcome(sim)})
    )


def size_rates(by_size: pl.DataFrame) -> pl.DataFrame:
    """Per size bucket, in bucket order: customers, placed, CSS and the CSS rate (``label``
    names the bucket with its seats, for the rate chart)."""
    order = {b: i for i, b in enumerate((*SIZE_BUCKETS, "unknown"))}
    css = pl.col("outcome") == Outcome.CSS.value
    return (
        by_size.group_by("size_bucket")
        .agg(
            pl.col("customers").sum().alias("customers"),
            pl.col("customers").filter(~css).sum().alias("placed"),
            pl.col("customers").filter(css).sum().alias("css"),
        )
        .with_columns(
            (pl.col("css") / pl.col("customers")).alias("css_rate"),
            pl.col("size_bucket")
            .map_elements(_bucket_label, return_dtype=pl.String)
            .alias("label"),
        )
        .sort(pl.col("size_bucket").replace_strict(order, default=len(order)))
        .select("size_bucket", "label", "customers", "placed", "css", "css_rate")
    )


def size_reasons(by_size: pl.DataFrame, size: str | None) -> pl.DataFrame:
    """CSS customers of one bucket (None: every bucket) per reason, as the reason chart
    takes them (``key, css, share, words``)."""
    rows = by_size.filter(pl.col("outcome") == Outcome.CSS.value)
    if size is not None:
        rows = rows.filter(pl.col("size_bucket") == size)
    total = int(rows.get_column("customers").sum())
    return (
        rows.group_by(pl.col("reason").alias("key"))
        .agg(pl.col("customers").sum().cast(pl.Int64).alias("css"))
        .with_columns(
            (pl.col("css") / total if total else pl.lit(0.0)).alias("share"),
            pl.col("key").replace_strict(human.REASONS, default=pl.col("key")).alias("words"),
        )
        .sort(["css", "key"], descending=[True, False])
    )


def by_size(frame: pl.DataFrame) -> None:
    """Placements and CSS fallback per customer size bucket, and why one bucket's
    customers went to CSS."""
    rates = size_rates(frame)
    if rates.height == 0:
        st.info("No customers in this period.")
        return
    left, right = st.columns(2)
    with left:
        st.altair_chart(
            charts.css_rate_bars(rates, "Size", "CSS fallback rate by customer size"),
            width="stretch",
        )
        human.table(rates.drop("label"))
    with right:
        size = st.selectbox(
            "Customer size",
            [None, *rates.get_column("size_bucket").to_list()],
            format_func=lambda s: "Every size" if s is None else _bucket_label(s),
            key="fair_size",
        )
        reasons = size_reasons(frame, size)
        if reasons.height == 0:
            st.success("No customer of this size went to CSS.")
        else:
            st.altair_chart(
                charts.css_reason_bars(
                    reasons,
                    "Why customers went to CSS" + ("" if size is None else f" (size {size})"),
                ),
                width="stretch",
            )
    st.caption(f"Size buckets by seats: {human.SIZE_WORDS}.")


def _bucket_label(size: str) -> str:
    return f"{size} ({human.size_words(size)})" if size in SIZE_BUCKETS else size
