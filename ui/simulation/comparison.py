"""Comparing runs (a policy under a split setting): the frames of one row per run, CSS by
reason, and partner load before and after.

Frames are aggregated here before any chart sees them (a few hundred rows at most), since
``st.altair_chart`` ships every row to the browser; the charts drawing them are in
:mod:`ui.charts`.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from engine.reasons import CSS_REASONS, Reason
from engine.simulation import Simulation
from ui import labels as human
from ui.simulation import SPLITS, SimulationRun, policy_words

#: The reasons the comparison counts: a new cohort's CSS reasons, then the CSS workloads
#: (customers with workloads CSS always delivers: a CSS part, or sent there whole).
COMPARED_REASONS: tuple[Reason, ...] = (*CSS_REASONS, Reason.CSS_WORKLOAD)

#: Partners shown in the before/after load chart.
TOP_PARTNERS = 20


def comparison(run: SimulationRun) -> pl.DataFrame:
    """One row per run, under its name in words (the same everywhere on the page): its split
    setting, placed, parts, CSS by reason, Jain's index, partners at capacity and mean
    utilisation, then which measures it does best (:func:`best_marks`). ``css_workload``
    counts the customers with workloads CSS always delivers."""
    rows = []
    for name, sim in run.simulations.items():
        rows.append(
            {
                "policy": policy_words(name),
                "split": SPLITS[sim.rules.max_partners_per_customer],
                # Customers, not rows: with a split a customer has a row per part.
                "customers": sim.rows.height,
                "placed": sim.placed,
                **sim.part_counts(),
                "css": sim.rows.height - sim.placed,
                **css_counts(sim),
                **run.balance[name],
            }
        )
    return best_marks(pl.DataFrame(rows))


#: The measures a run can do best at, which way is better, and the mark's words.
BEST: tuple[tuple[str, bool, str], ...] = (
    ("placed", True, "most placed"),
    ("css", False, "fewest to CSS"),
    ("jain", True, "most even"),
    ("at_capacity", False, "fewest at capacity"),
)


def best_marks(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``best``: the measures of :data:`BEST` where a run is the best of the table (a tie
    marks every run that has it), so the table is read across without comparing numbers by
    eye. One run alone has nothing to be best against: no marks."""
    # Jain's index as shown (3 decimals): runs that read the same tie, not a float's last bit.
    shown = {key: pl.col(key).round(3) if key == "jain" else pl.col(key) for key, _, _ in BEST}
    marks = [
        pl.when(shown[key] == (shown[key].max() if high else shown[key].min()))
        .then(pl.lit(words))
        .otherwise(None)
        for key, high, words in BEST
    ]
    if frame.height < 2:
        return frame.with_columns(pl.lit("").alias("best"))
    return frame.with_columns(pl.concat_str(marks, separator=", ", ignore_nulls=True).alias("best"))


def css_counts(sim: Simulation) -> dict[str, int]:
    """Customers per reason of :data:`COMPARED_REASONS`; ``css_workload`` adds the placed
    customers' CSS parts to the customers sent to CSS whole for it."""
    counts = sim.counts()
    counts[Reason.CSS_WORKLOAD.value] += sim.part_counts()["css_parts"]
    return {r.value: counts[r.value] for r in COMPARED_REASONS}


#: Short column headers for the comparison table, with the full words as help.
COMPARISON_COLUMNS: dict[str, tuple[str, str]] = {
    "policy": ("Policy", "Selection policy (and split setting, when several were run)"),
    "split": human.COLUMNS["split"],
    "customers": ("Customers", "Customers simulated"),
    "placed": ("Placed", "Customers referred to a partner"),
    "split_customers": human.COLUMNS["split_customers"],
    "partner_parts": human.COLUMNS["partner_parts"],
    "css_parts": human.COLUMNS["css_parts"],
    "css": ("To CSS", "Customers sent to a CSS regional queue"),
    Reason.BELOW_SEAT_THRESHOLD.value: ("Small", Reason.BELOW_SEAT_THRESHOLD.words),
    Reason.NO_ELIGIBLE_WORKLOAD.value: ("No workload", Reason.NO_ELIGIBLE_WORKLOAD.words),
    Reason.NO_REFERRAL_CONSENT.value: ("No consent", Reason.NO_REFERRAL_CONSENT.words),
    Reason.NO_PARTNER_MATCH.value: ("No match", Reason.NO_PARTNER_MATCH.words),
    Reason.CAPACITY_EXHAUSTED.value: ("All full", Reason.CAPACITY_EXHAUSTED.words),
    Reason.CSS_WORKLOAD.value: (
        "CSS workloads",
        "Customers with workloads CSS always delivers (a CSS part, or all to CSS)",
    ),
    "jain": ("Jain", "Jain's index of utilisation after the run (1 = perfectly even)"),
    "at_capacity": (
        "Partners at capacity",
        "Available partners at or over their capacity after the run",
    ),
    "mean_utilisation": ("Mean util.", "Mean utilisation of available partners after"),
    "best": ("Best at", "The measures where this run does best of those compared (ties too)"),
}


def comparison_config() -> dict[str, Any]:
    """st.dataframe column_config for :func:`comparison`."""
    config: dict[str, Any] = {}
    for key, (label, words) in COMPARISON_COLUMNS.items():
        if key == "jain":
            config[key] = st.column_config.NumberColumn(label, help=words, format="%.3f")
        elif key.endswith("utilisation"):
            config[key] = st.column_config.NumberColumn(label, help=words, **human.PERCENT)
        elif key in ("policy", "split", "best"):
            config[key] = st.column_config.TextColumn(label, help=words)
        else:
            config[key] = st.column_config.NumberColumn(label, help=words, format="localized")
    return config


#: What the before/after table compares, and how a person reads each number.
_MEASURES = {
    "placed": ("Placed with partners", "{:,.0f}"),
    "partner_parts": ("Referrals to partners (one per part)", "{:,.0f}"),
    "css": ("Sent to CSS", "{:,.0f}"),
    "jain": ("Jain's index of utilisation (1 = even)", "{:.3f}"),
    "at_capacity": ("Partners at capacity", "{:,.0f}"),
}


def before_after(before: SimulationRun, after: SimulationRun) -> pl.DataFrame:
    """Per policy run both times and per measure: the previous run, this run, the change."""
    rows = []
    old = {r["policy"]: r for r in comparison(before).iter_rows(named=True)}
    for now in comparison(after).iter_rows(named=True):
        then = old.get(now["policy"])
        if then is None:
            continue
        for key, (words, fmt) in _MEASURES.items():
            diff = now[key] - then[key]
            rows.append(
                {
                    "Policy": now["policy"],
                    "Measure": words,
                    "Before": fmt.format(then[key]),
                    "After": fmt.format(now[key]),
                    "Change": "no change"
                    if abs(diff) < 1e-9
                    else fmt.replace("{:", "{:+").format(diff),
                }
            )
    schema = dict.fromkeys(("Policy", "Measure", "Before", "After", "Change"), pl.String)
    return pl.DataFrame(rows, schema=schema)


def css_by_reason(run: SimulationRun) -> pl.DataFrame:
    """Long frame (policy, reason, customers) of CSS outcomes, reasons in the order of
    :data:`COMPARED_REASONS`, for the grouped bar chart (``policy``: the run's name in words,
    as the comparison table says it).
    A reason no run has is left out: an empty row says nothing."""
    rows = [
        {"policy": policy_words(name), "reason": r.words, "customers": css_counts(sim)[r.value]}
        for name, sim in run.simulations.items()
        for r in COMPARED_REASONS
    ]
    frame = pl.DataFrame(
        rows, schema={"policy": pl.String, "reason": pl.String, "customers": pl.Int64}
    )
    return frame.filter(pl.col("customers").sum().over("reason") > 0)


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
