"""Altair chart builders for the dashboard: titled, labelled, with tooltips.

Every builder takes an already aggregated Polars frame (from the ``store`` read modules or a
``FairnessReport``), never raw rows: ``st.altair_chart`` ships every row to the browser.
Colours are colour-blind-safe (Tableau 10 / ColorBrewer sequential) and gaps are drawn
in a colour of their own with words in the cell, not left as blank space.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

BLUE = "#4c78a8"
ORANGE = "#f58518"
GREEN = "#54a24b"
RED = "#e45756"
GREY = "#bab0ac"
LIGHT_GREY = "#e8e8e8"
GAP = "#f7c6c5"  # "no partner": light red, with dark red words on it
GAP_TEXT = "#8b1a1a"
BEFORE = "#9aa5b1"  # a partner's load before a simulated run (slate grey) ...
AFTER = "#1f77b4"  # ... and after it (blue)
ROW = 22  # pixels per row of a horizontal bar chart or heatmap
#: Height of charts with one row per item: a fixed step per row, so labels never overlap
#: however many rows there are (Vega-Lite then pads instead of Streamlit's "fit").
ROWS = alt.Step(ROW)
LEGEND_BELOW = alt.Legend(orient="bottom")


def utilisation_histogram(bins: pl.DataFrame, title: str, subtitle: str = "") -> alt.Chart:
    """Partners per utilisation band (``band, order, partners``); the full band in red."""
    full = alt.datum.order == bins["order"].max() if bins.height else alt.datum.order < 0
    return (
        alt.Chart(bins, title=alt.Title(title, subtitle=subtitle or alt.Undefined))
        .mark_bar()
        .encode(
            x=alt.X("band:N", sort=alt.SortField("order"), title="Utilisation (active / capacity)"),
            y=alt.Y("partners:Q", title="Partners"),
            color=alt.condition(full, alt.value(RED), alt.value(BLUE)),
            tooltip=[
                alt.Tooltip("band:N", title="Utilisation"),
                alt.Tooltip("partners:Q", title="Partners"),
            ],
        )
        .properties(height=280)
    )


def _row_axis(label: str, field: str, order: str, label_limit: int = 260) -> alt.Y:
    """One row per ``label`` (a partner, a reason) down the side, sorted by ``field``; long
    labels kept readable."""
    return alt.Y(
        f"{label}:N",
        sort=alt.SortField(field, order=order),
        title=None,
        axis=alt.Axis(labelLimit=label_limit),
    )


def _row_bars(frame: pl.DataFrame, title: str | alt.Title, y: alt.Y, **mark: Any) -> alt.Chart:
    """Horizontal bars down ``y`` (:func:`_row_axis`), a fixed step per row; the caller
    encodes the rest."""
    return alt.Chart(frame, title=title).mark_bar(**mark).encode(y=y).properties(height=ROWS)


def free_seats_bars(rows: pl.DataFrame, title: str) -> alt.Chart:
    """Stacked active / free seats per partner (``rank, partner, part, seats, capacity``)."""
    return _row_bars(rows, title, _row_axis("partner", "rank", "ascending")).encode(
        x=alt.X("seats:Q", stack="zero", title="Seats of capacity"),
        color=alt.Color(
            "part:N",
            title="Seats",
            scale=alt.Scale(domain=["active", "free"], range=[GREY, GREEN]),
            legend=alt.Legend(
                orient="bottom",
                labelExpr="datum.label == 'active' ? 'active referrals' : 'free'",
            ),
        ),
        order=alt.Order("part:N", sort="ascending"),
        tooltip=[
            alt.Tooltip("partner:N", title="Partner"),
            alt.Tooltip("part:N", title="Seats"),
            alt.Tooltip("seats:Q", title="Count"),
            alt.Tooltip("capacity:Q", title="Capacity"),
            alt.Tooltip("utilisation:Q", title="Utilisation", format=".0%"),
        ],
    )


def coverage_heatmap(cells: pl.DataFrame, key_title: str, title: str) -> alt.LayerChart:
    """Free seats per (key, workload); 'no partner' and 'full' cells in colours of their own.

    ``cells``: ``label, workload, partners, free_seats, backlog, status`` (store.capacity.coverage).
    """
    tooltip = [
        alt.Tooltip("label:N", title=key_title),
        alt.Tooltip("workload:N", title="Workload"),
        alt.Tooltip("status:N", title="Coverage"),
        alt.Tooltip("partners:Q", title="Referral Ready partners"),
        alt.Tooltip("free_seats:Q", title="Free seats"),
        alt.Tooltip("backlog:Q", title="Backlog asking for it"),
    ]
    top = float(cells["free_seats"].max() or 0) if cells.height else 0.0
    labelled = cells.with_columns(
        pl.when(pl.col("status") == "room")
        .then(pl.col("free_seats").cast(pl.String))
        .otherwise(pl.col("status"))
        .alias("cell_text"),
        # Dark red words on gaps; white words on the darker half of the square-root scale.
        pl.when(pl.col("status") == "no partner")
        .then(pl.lit(GAP_TEXT))
        .when((pl.col("status") == "room") & (pl.col("free_seats").sqrt() > 0.55 * top**0.5))
        .then(pl.lit("white"))
        .otherwise(pl.lit("#333333"))
        .alias("text_colour"),
    )
    base = alt.Chart().encode(
        x=alt.X(
            "workload:N",
            title="Workload",
            axis=alt.Axis(orient="top", labelAngle=0, labelOverlap=False),
        ),
        y=alt.Y(
            "label:N",
            title=key_title,
            sort="ascending",
            axis=alt.Axis(labelOverlap=False, labelLimit=220),
        ),
        tooltip=tooltip,
    )
    room = (
        base.transform_filter(alt.datum.status == "room")
        .mark_rect(stroke="white")
        .encode(
            color=alt.Color(
                "free_seats:Q",
                title="Free seats",
                scale=alt.Scale(scheme="blues", type="sqrt", domainMin=0),
                # Legends above the map leave its full width to the workload columns.
                legend=alt.Legend(orient="top", gradientLength=220),
            )
        )
    )
    gaps = (
        base.transform_filter(alt.datum.status != "room")
        .mark_rect(stroke="white")
        .encode(
            color=alt.Color(
                "status:N",
                title="Gap",
                scale=alt.Scale(domain=["no partner", "full"], range=[GAP, LIGHT_GREY]),
                legend=alt.Legend(orient="top", symbolType="square", symbolSize=200),
            )
        )
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("cell_text:N"),
        color=alt.Color("text_colour:N", scale=None, legend=None),
    )
    return (
        alt.layer(room, gaps, text, data=labelled, title=title)
        .resolve_scale(color="independent")
        .properties(height=ROWS)
    )


def pool_ledger(members: pl.DataFrame, title: str) -> alt.LayerChart:
    """Turns (referrals) given to each member of one pool against the pool's ideal (equal) share:
    a split customer's part, or a re-assignment, is a turn of its own.

    ``members``: ``partner, given, ideal_share, deviation``.
    """
    tooltip = [
        alt.Tooltip("partner:N", title="Partner"),
        alt.Tooltip("given:Q", title="Given"),
        alt.Tooltip("ideal_share:Q", title="Fair share", format=".1f"),
        alt.Tooltip("deviation:Q", title="Deviation", format="+.2f"),
    ]
    base = alt.Chart().encode(
        y=_row_axis("partner", "given", "descending"),
        tooltip=tooltip,
    )
    bars = base.mark_bar().encode(
        x=alt.X("given:Q", title="Turns given (line: fair share)"),
        color=alt.condition(alt.datum.deviation >= 0, alt.value(ORANGE), alt.value(BLUE)),
    )
    ideal = base.mark_tick(color="black", thickness=2, size=ROW - 4).encode(x="ideal_share:Q")
    return alt.layer(bars, ideal, data=members, title=title).properties(height=ROWS)


def deviation_bars(rows: pl.DataFrame, title: str) -> alt.Chart:
    """Partners' deviation from their ideal share (``partner, given, ideal, deviation``)."""
    return _row_bars(rows, title, _row_axis("partner", "deviation", "descending")).encode(
        x=alt.X("deviation:Q", title="Turns given minus fair share"),
        color=alt.condition(alt.datum.deviation >= 0, alt.value(ORANGE), alt.value(BLUE)),
        tooltip=[
            alt.Tooltip("partner:N", title="Partner"),
            alt.Tooltip("pools:Q", title="Pools"),
            alt.Tooltip("given:Q", title="Given"),
            alt.Tooltip("ideal:Q", title="Fair share", format=".1f"),
            alt.Tooltip("deviation:Q", title="Deviation", format="+.1f"),
        ],
    )


def fairness_trend(monthly: pl.DataFrame, title: str) -> alt.Chart:
    """Jain's index and Gini per month (``month, jain, gini, customers``), both on 0..1."""
    long = monthly.select("month", "customers", "jain", "gini").unpivot(
        index=["month", "customers"], on=["jain", "gini"], variable_name="measure"
    )
    words = {"jain": "Jain's index (1 = even)", "gini": "Gini (0 = equal)"}
    long = long.with_columns(pl.col("measure").replace_strict(words, return_dtype=pl.String))
    return (
        alt.Chart(long, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("month:T", title="Month", timeUnit="yearmonth"),
            y=alt.Y("value:Q", title="Index", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "measure:N",
                title=None,
                scale=alt.Scale(domain=list(words.values()), range=[GREEN, RED]),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("month:T", title="Month", timeUnit="yearmonth"),
                alt.Tooltip("measure:N", title="Measure"),
                alt.Tooltip("value:Q", title="Value", format=".3f"),
                alt.Tooltip("customers:Q", title="Customers that month"),
            ],
        )
        .properties(height=300)
    )


def css_rate_bars(rates: pl.DataFrame, key_title: str, title: str) -> alt.Chart:
    """CSS fallback rate per key (``label, customers, css, css_rate``), highest first."""
    return _row_bars(
        rates, title, _row_axis("label", "css_rate", "descending", label_limit=220), color=ORANGE
    ).encode(
        x=alt.X(
            "css_rate:Q",
            title="Share of customers sent to CSS",
            axis=alt.Axis(format="%"),
            scale=alt.Scale(domain=[0, 1]),
        ),
        tooltip=[
            alt.Tooltip("label:N", title=key_title),
            alt.Tooltip("customers:Q", title="Customers"),
            alt.Tooltip("css:Q", title="To CSS"),
            alt.Tooltip("css_rate:Q", title="CSS rate", format=".1%"),
        ],
    )


def css_reason_bars(
    reasons: pl.DataFrame, title: str, apart: str | None = None, subtitle: str = ""
) -> alt.Chart:
    """CSS referrals per reason (``key, words, css, share``); the reason ``apart`` (a key)
    in a colour of its own."""
    heading = alt.Title(title, subtitle=subtitle) if subtitle else title
    colour = (
        alt.condition(alt.datum.key == apart, alt.value(ORANGE), alt.value(RED))
        if apart
        else alt.value(RED)
    )
    return _row_bars(reasons, heading, _row_axis("words", "css", "descending")).encode(
        color=colour,
        x=alt.X("css:Q", title="Customers sent to CSS"),
        tooltip=[
            alt.Tooltip("words:N", title="Reason"),
            alt.Tooltip("css:Q", title="Customers"),
            alt.Tooltip("share:Q", title="Share of CSS", format=".1%"),
        ],
    )


def response_bars(partners: pl.DataFrame, title: str) -> alt.Chart:
    """How each partner answered its referrals, stacked (``partner, accepted, declined,
    expired, acceptance_rate``), partners in the frame's order."""
    order = partners["partner"].to_list()
    words = {"accepted": "accepted", "declined": "declined", "expired": "expired (no answer)"}
    long = partners.unpivot(
        index=["partner", "acceptance_rate"],
        on=list(words),
        variable_name="response",
        value_name="referrals",
    ).with_columns(pl.col("response").replace_strict(words, return_dtype=pl.String))
    tooltip = [
        alt.Tooltip("partner:N", title="Partner"),
        alt.Tooltip("response:N", title="Answer"),
        alt.Tooltip("referrals:Q", title="Referrals"),
        alt.Tooltip("acceptance_rate:Q", title="Acceptance rate", format=".0%"),
    ]
    colours = alt.Scale(domain=list(words.values()), range=[GREEN, BLUE, RED])
    return (
        alt.Chart(long, title=title)
        .mark_bar()
        .encode(
            y=alt.Y("partner:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("referrals:Q", stack="zero", title="Referrals answered"),
            color=alt.Color("response:N", title=None, scale=colours, legend=LEGEND_BELOW),
            tooltip=tooltip,
        )
        .properties(height=ROWS)
    )


def waiting_ages(ages: pl.DataFrame, window: int, title: str) -> alt.LayerChart:
    """Referrals waiting for the partner's answer per day of age (``age_days, referrals,
    past_window``), those past the acceptance window in red, the window a dashed line
    (none when ``window`` is 0: no window)."""
    bars = ages.with_columns(
        (pl.col("age_days") + 1).alias("age_end"),
        pl.when(pl.col("past_window"))
        .then(pl.lit("past the window"))
        .otherwise(pl.lit("within the window"))
        .alias("state"),
    )
    chart = (
        alt.Chart(bars)
        .mark_bar(stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X("age_days:Q", title="Days waiting for the partner's answer"),
            x2="age_end:Q",
            y=alt.Y("referrals:Q", title="Referrals"),
            y2=alt.datum(0),  # a bar from 0 up (x and x2 alone make it a range across)
            color=alt.Color(
                "state:N",
                title=None,
                scale=alt.Scale(domain=["within the window", "past the window"], range=[BLUE, RED]),
                legend=LEGEND_BELOW,
            ),
            tooltip=[
                alt.Tooltip("age_days:Q", title="Days waiting"),
                alt.Tooltip("referrals:Q", title="Referrals"),
                alt.Tooltip("state:N", title="Acceptance window"),
            ],
        )
    )
    layers: list[alt.Chart] = [chart]
    if window > 0:
        mark = alt.Chart(pl.DataFrame({"window": [window], "text": [f"{window}-day window"]}))
        layers.append(mark.mark_rule(color="black", strokeDash=[6, 4]).encode(x="window:Q"))
        layers.append(
            mark.mark_text(align="left", dx=4, dy=-4, baseline="top").encode(
                x="window:Q", y=alt.value(0), text="text:N"
            )
        )
    return alt.layer(*layers, title=title).properties(height=280)


# --- Comparing policies on the Simulate page (frames from ui.simulation.comparison) ----


def css_reasons_by_policy(frame: pl.DataFrame) -> alt.Chart:
    """Customers sent to CSS per reason, one bar per policy (``policy, reason, customers``);
    reasons and policies in the frame's order."""
    order = frame["reason"].unique(maintain_order=True).to_list()
    policies = frame["policy"].unique(maintain_order=True).to_list()
    return (
        alt.Chart(frame, title="Customers sent to CSS queues, by reason")
        .mark_bar()
        .encode(
            x=alt.X("customers:Q", title="Customers"),
            y=alt.Y("reason:N", title=None, sort=order, axis=alt.Axis(labelLimit=320)),
            yOffset=alt.YOffset("policy:N", sort=policies),  # top to bottom as the legend
            # Below the bars, a name a line and never cut: a policy's words with its split
            # setting run to some 70 characters, more than a legend beside them could hold.
            color=alt.Color(
                "policy:N",
                title="Policy",
                sort=policies,
                legend=alt.Legend(orient="bottom", columns=1, labelLimit=0),
            ),
            tooltip=[
                alt.Tooltip("policy:N", title="Policy"),
                alt.Tooltip("reason:N", title="Reason"),
                alt.Tooltip("customers:Q", title="Customers", format=","),
            ],
        )
    )


def load_before_after(frame: pl.DataFrame, policy: str) -> alt.LayerChart:
    """A dumbbell per partner, in the frame's order: utilisation before the run (grey) to
    after (blue). ``frame``: ``partner_id, capacity, assigned, active_before, active_after,
    utilisation_before, utilisation_after``."""
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
    # labelLimit 0: the whole "P0042 · Larkspur Couriers" (Vega-Lite cuts at 180 px).
    base = alt.Chart(frame, title=title).encode(
        y=alt.Y("partner_id:N", title="Partner", sort=order, axis=alt.Axis(labelLimit=0)),
        tooltip=tooltip,
    )
    rule = base.mark_rule(color=BEFORE, strokeWidth=3).encode(
        x=alt.X(
            "utilisation_before:Q",
            title="Utilisation (active referrals / capacity)",
            axis=alt.Axis(format="%"),
        ),
        x2="utilisation_after:Q",
    )
    before = base.mark_circle(size=80, color=BEFORE, opacity=1).encode(x="utilisation_before:Q")
    after = base.mark_circle(size=110, color=AFTER, opacity=1).encode(x="utilisation_after:Q")
    return alt.layer(rule, before, after)


def utilisation_before_after(frame: pl.DataFrame, policy: str) -> alt.Chart:
    """Available partners per utilisation band before the run and after it, side by side
    (``series, band, partners``; series ``before`` or ``after``); bands in the frame's order."""
    bands = frame["band"].unique(maintain_order=True).to_list()
    title = alt.TitleParams(
        "Available partners by utilisation",
        subtitle=f"Before the run (grey) and after it under {policy} (blue)",
    )
    colours = alt.Scale(domain=["before", "after"], range=[BEFORE, AFTER])
    return (
        alt.Chart(frame, title=title)
        .mark_bar()
        .encode(
            x=alt.X(
                "band:N",
                title="Utilisation (active referrals / capacity)",
                sort=bands,
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


def split_cover_map(cells: pl.DataFrame, title: str) -> alt.Chart:
    """Country x set of workloads asked together, for the sets no single partner covers:
    green where a split would, light red where nobody does (words in the cell).

    ``cells``: ``label, workload_set, customers, cover`` (engine.coverage.split_cover).
    """
    domain = sorted(cells["cover"].unique().to_list())
    colours = [GAP if c == "no cover" else GREEN for c in domain]
    base = alt.Chart(cells).encode(
        x=alt.X("workload_set:N", title="Workloads asked together", axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("label:N", title="Country", sort="ascending", axis=alt.Axis(labelLimit=220)),
        tooltip=[
            alt.Tooltip("label:N", title="Country"),
            alt.Tooltip("workload_set:N", title="Workloads asked together"),
            alt.Tooltip("cover:N", title="Coverage"),
            alt.Tooltip("customers:Q", title="Backlog customers", format=","),
        ],
    )
    rect = base.mark_rect(stroke="white").encode(
        color=alt.Color(
            "cover:N",
            title="Coverage",
            scale=alt.Scale(domain=domain, range=colours),
            legend=alt.Legend(orient="top", symbolType="square", symbolSize=200),
        )
    )
    text = base.mark_text(fontSize=11, color="#333333").encode(text=alt.Text("customers:Q"))
    return alt.layer(rect, text, title=title).properties(height=ROWS)
