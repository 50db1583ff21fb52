"""One set of words for what the pages show: reason codes, column names, counts, terms.

The store, the engine and the downloads speak in stable machine names (``partner_id``,
``below_seat_threshold``): files round-trip and scripts rely on them. People read the
pages, so every page labels its tables and reasons from here, with the same words
everywhere (the engine's own :attr:`engine.reasons.Reason.words` for reasons), numbers
rounded for reading, and the glossary in the sidebar explains the terms a new manager
meets. Downloads (CSV, Parquet, Excel) keep the machine names.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from engine.reasons import DECLINE_REASONS, FTOP_TASK_ID, FTOP_TASK_NAME, Reason
from engine.sizes import SIZE_BOUNDS

#: The decline reason an expiry records (``store.lifecycle.NO_RESPONSE``).
NO_RESPONSE = "no_response"


def size_words(size: str) -> str:
    """One bucket's seats in words ("500–4,999 seats")."""
    lo, hi = SIZE_BOUNDS[size]
    return f"{lo:,}–{hi:,} seats" if hi is not None else f"{lo:,} seats and more"


#: The size buckets and their seats, in words ("XS 150–499 seats, S 500–4,999 seats, ...").
SIZE_WORDS = ", ".join(f"{b} {size_words(b)}" for b in SIZE_BOUNDS)


#: Reason codes, and decline reasons, in words.
REASONS: dict[str, str] = {
    **{r.value: r.words for r in Reason},
    **DECLINE_REASONS,
    NO_RESPONSE: "No answer within the acceptance window",
}

#: Statuses in words: a referral's (docs/domain.md, "Referral life cycle"), an FTOP
#: task's, a notification's. Each word is distinct, so one table serves them all.
STATUSES: dict[str, str] = {
    "active": "Active",
    "accepted": "Accepted",
    "declined": "Declined",
    "expired": "Expired",
    "completed": "Completed",
    "queued": "Waiting for CSS hand-off",
    "handed_off": "Handed off to delivery",
    "open": "Open",
    "closed": "Closed",
    "pending": "Pending",
    "sent": "Sent",
    "failed": "Failed",
    "cancelled": "Cancelled",
}

#: Columns holding codes that :func:`for_people` turns into words, and their words.
_CODED = {"reason": REASONS, "decline_reason": REASONS, "status": STATUSES}
#: Columns sized to their longest word: the grid sizes a column to its first rows, so a
#: "declined" below a page of "active" was cut to "decline".
_WHOLE = {"status": STATUSES}
#: Pixels a word of ``n`` characters needs in the grid (14 px font, padding, sort arrow).
CHAR_PX, PAD_PX = 8, 24

#: Machine column name -> (label, help). Columns not listed keep their name.
COLUMNS: dict[str, tuple[str, str]] = {
    "referral_id": ("Referral", "The referral's number"),
    "run_id": ("Run", "The run that made the referral (empty: imported history)"),
    "tenant_id": ("Tenant ID", "The customer's tenant id"),
    "customer": ("Customer", "The customer's company name"),
    "name": ("Name", ""),
    "partner_id": ("Partner ID", "The partner's id"),
    "partner": ("Partner", ""),
    "psm_name": ("PSM", "Partner Success Manager named on the referral"),
    "psm_email": ("PSM email", ""),
    "outcome": ("Outcome", "frp: referred to a partner; css: sent to a CSS regional queue"),
    "queue": ("Queue", "Where the customer went: FRP, or a CSS regional queue"),
    "reason": ("Reason", "Why the customer got its outcome"),
    "decline_reason": ("Decline reason", "Why the partner declined (or let it expire)"),
    "status": ("Status", "Active: waiting for the partner's answer"),
    "country": ("Country", ""),
    "language": ("Language", ""),
    "workloads": ("Workloads", "What the customer asked for"),
    "eligible_workloads": ("Eligible workloads", "Workloads the programme covers"),
    "seats": ("Seats", "Licensed seats"),
    "gateway": ("Gateway", "A Gateway customer: its referral opens FTOP task 3186"),
    "created_at": ("Created", ""),
    "capacity": ("Capacity", "Open referrals the partner can hold (after scaling)"),
    "active_before": ("Open before the run", "Open referrals before the run"),
    "active_after": ("Open after the run", "Open referrals after the run"),
    "assigned": ("Given in this run", ""),
    "utilisation_after": ("Utilisation", "Open referrals / capacity"),
    "available": ("Referral Ready", "Can receive customers now"),
    "pool_key": ("Pool code", "Internal key of the pool (same partners, same pool)"),
    "label": ("Pool", "The customers a pool serves: country · language · workloads"),
    "size": ("Partners", "Partners in the pool"),
    "customers": ("Customers", ""),
    "placed": ("Placed", "Customers referred to a partner"),
    "css": ("To CSS", "Customers sent to a CSS regional queue"),
    "css_rate": ("CSS rate", "Share of customers sent to CSS"),
    "given": ("Turns given", "Referrals the partner got in this pool: one turn each"),
    "ideal_share": ("Fair share", "Turns given in the pool / its partners: an equal turn each"),
    "deviation": ("Above fair share", "Turns given minus the fair share (negative: below)"),
    "min_given": ("Fewest given", "The fewest turns a partner of the pool got"),
    "max_given": ("Most given", "The most turns a partner of the pool got"),
    "spread": ("Spread", "Most given minus fewest given in the pool"),
    "max_deviation": ("Furthest from fair share", "The largest gap to the fair share, in turns"),
    "acceptance_rate": ("Acceptance rate", "accepted / (accepted + declined + expired)"),
    "jain": ("Jain's index", "Evenness of utilisation: 1 = all partners equally used"),
    "gini": ("Gini", "Inequality of utilisation: 0 = all partners equally used"),
    # Split by workload (docs/domain.md, "Split by workload") and customer size.
    "split": ("Split", "Up to how many partners may share one customer, by workload"),
    "split_customers": ("Split customers", "Customers served by two or three partners"),
    "partner_parts": ("Partner parts", "Referrals to partners: one per part of a customer"),
    "css_parts": ("CSS parts", "Placed customers' workloads that CSS always delivers"),
    "part": ("Part", "The part of the customer: 1, 2, ..."),
    "why": ("Why", "Why this part went where it went"),
    "size_bucket": ("Size", "Customer size from seats: " + SIZE_WORDS),
    "workload_set": ("Workloads asked", "The eligible workloads customers ask for together"),
    "cover": ("Coverage", "Whether one partner, a split or nobody covers the workloads"),
}

#: Fractions shown as whole percents, as people read them (99%, not 98.73%): Streamlit's
#: "percent" format keeps two decimals fewer than the column's step has.
PERCENT: dict[str, Any] = {"format": "percent", "step": 0.01}
#: The same, drawn as a bar from 0 to 100 % (``st.column_config.ProgressColumn``).
PERCENT_BAR: dict[str, Any] = {**PERCENT, "min_value": 0.0, "max_value": 1.0}

#: Columns shown as percentages; other decimals show one place.
_PERCENT = {"utilisation_after", "css_rate", "acceptance_rate", "utilisation"}


def for_people(frame: pl.DataFrame) -> pl.DataFrame:
    """Reason, decline reason and status codes in words (other codes stay as they are)."""
    return frame.with_columns(
        pl.col(c).replace(words) for c, words in _CODED.items() if c in frame.columns
    )


def columns(frame: pl.DataFrame, **extra: Any) -> dict[str, Any]:
    """``st.dataframe(frame, column_config=...)``: labels in words and numbers rounded;
    ``extra`` adds or replaces entries."""
    config: dict[str, Any] = {}
    for name, dtype in frame.schema.items():
        label, words = COLUMNS.get(name, (name.replace("_", " ").capitalize(), ""))
        help_ = words or None
        if name in _PERCENT or name.endswith("_rate"):
            config[name] = st.column_config.NumberColumn(label, help=help_, **PERCENT)
        elif dtype.is_float():
            config[name] = st.column_config.NumberColumn(label, help=help_, format="%.1f")
        elif dtype.is_integer():
            config[name] = st.column_config.NumberColumn(label, help=help_, format="localized")
        elif name in _WHOLE:
            longest = max(len(words) for words in _WHOLE[name].values())
            width = CHAR_PX * longest + PAD_PX
            config[name] = st.column_config.Column(label, help=help_, width=width)
        else:
            config[name] = st.column_config.Column(label, help=help_)
    return {**config, **extra}


#: Ids that open their detail elsewhere: column -> (page path, query parameter).
LINKS = {"partner_id": ("capacity", "partner"), "tenant_id": ("referrals", "customer")}


def link(column: str, value: str) -> str:
    """The deep link of an id (relative: the pages sit side by side under the app)."""
    page, param = LINKS[column]
    return f"{page}?{param}={value}"


def with_links(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Partner and tenant ids as links to their detail (the id stays the link's text)."""
    config: dict[str, Any] = {}
    for column, (page, param) in LINKS.items():
        if column in frame.columns:
            frame = frame.with_columns(pl.format(f"{page}?{param}={{}}", pl.col(column)))
            label, words = COLUMNS[column]
            config[column] = st.column_config.LinkColumn(
                label, help=f"{words}; opens its detail", display_text=f"{param}=(.*)$"
            )
    return frame, config


def table(frame: pl.DataFrame, *, links: bool = False, **kwargs: Any) -> None:
    """A people's table: words for codes and columns, rounded numbers, no index, and no
    tall empty block under a table of a few rows; ``links``: ids open their detail."""
    extra = kwargs.pop("column_config", {})
    if frame.height < 10:
        kwargs.pop("height", None)  # "auto": as tall as its rows
    config = columns(frame, **extra)
    shown = for_people(frame)
    if links:
        shown, linked = with_links(shown)
        config.update(linked)
    st.dataframe(shown, hide_index=True, column_config=config, **kwargs)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 customer``, ``2 customers`` (``many`` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def partner_label(partner_id: str, names: dict[str, str]) -> str:
    """How people pick and read a partner: "P0042 · Larkspur Couriers"."""
    name = names.get(partner_id)
    return f"{partner_id} · {name}" if name else partner_id


#: The terms a new FastTrack Manager meets on these pages.
GLOSSARY: dict[str, str] = {
    "FRP": "FastTrack Ready Partner programme: customers referred to a partner for onboarding.",
    "CSS": "Customer Success Services: the regional queues customers go to when no partner "
    "takes them (too small, no consent, no match, all full, or declined too often).",
    "FTCQ": "FastTrack Customer Queue: new customers waiting to be assigned (the backlog).",
    f"FTOP {FTOP_TASK_ID}": f"The FastTrack task “{FTOP_TASK_NAME}”, opened for every "
    "Gateway customer referred to a partner; a FastTrack Manager closes it.",
    "Gateway": "Customers that come through the Gateway offer: their referral needs the "
    f"manager to complete it (FTOP task {FTOP_TASK_ID}).",
    "Referral Ready": "A partner that can receive customers now (not paused, not switched off).",
    "PSM": "Partner Success Manager: looks after a partner and is named on its referrals.",
    "Pool": "Partners that match the same customers (country, language, workloads). Round "
    "robin takes turns inside a pool.",
    "Fair share": "A pool's turns divided by its partners: what an equal turn each would "
    "give. A turn is a referral to a partner (a split customer's part is one, and so is a "
    "re-assignment after a decline or an expiry).",
    "Utilisation": "A partner's open referrals divided by its capacity.",
    "Jain's index": "How evenly something is spread across partners, from 1/n (one partner "
    "has it all) to 1 (perfectly even). The headline uses utilisation now; the monthly "
    "chart uses each month's new referrals per seat of capacity.",
    "Gini": "Inequality, from 0 (all equal) to 1 (one partner has it all).",
    "Split": "A customer no single partner with room can take is shared, by workload, by "
    "up to 2 or 3 partners (split 2, split 3); each part is a referral of its own.",
    "Size": f"A customer's size bucket, from its seats: {SIZE_WORDS}.",
    "frp import": "The command line's import (`frp import partners|customers FILE`); the "
    "Data page imports the same files and checks them the same way.",
}


def glossary() -> None:
    """The glossary as a sidebar expander (app.py draws it on every page)."""
    with st.sidebar.expander("Glossary", icon=":material/menu_book:"):
        st.markdown("\n".join(f"- **{term}**: {text}" for term, text in GLOSSARY.items()))
