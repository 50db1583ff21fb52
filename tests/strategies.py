"""Hypothesis strategies shared by the engine's property tests: small random worlds.

A world is partners, a cohort of customers and the rules, small enough to reason about
(2-12 partners, 0-40 customers) but drawn from a narrow vocabulary (five countries, five
languages, four eligible workloads plus ``dynamics-365``) so that customers often match
some partners, pools overlap and partners fill up. Rows are built as raw text, the way a
CSV arrives, and go through ``engine.schema`` so every world is a valid, typed input.
A world drawn with ``intake`` also has pauses around its date and monthly quotas, with
the referrals each partner was given this month (docs/domain.md, "Partner availability
and intake"). A split world (:func:`split_worlds`) has partners that take some sizes,
customers that ask for several workloads, CSS workloads and a limit of 1 to 3 partners
per customer (docs/domain.md, "Customer size" and "Split by workload").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl
from hypothesis import strategies as st

from engine.columns import MONTH_REFERRALS
from engine.rules import Rules, load_rules
from engine.schema import validate_customers, validate_partners

BASE_RULES = load_rules()
#: The date of a world drawn with pauses: they end before it, on it, the day after, later.
TODAY = date(2025, 6, 10)
PAUSES = st.sampled_from([None, None, None, "2025-06-01", "2025-06-10", "2025-06-11", "2025-07-01"])
QUOTAS = st.sampled_from([None, None, "0", "1", "2", "4"])

COUNTRIES = ("SE", "NO", "DE", "US", "JP")
LANGUAGES = ("sv", "no", "de", "en", "ja")
#: Where customers are and what they speak: the local language or English.
PLACES = tuple(
    (c, lang) for c, local in zip(COUNTRIES, LANGUAGES, strict=True) for lang in (local, "en")
)
#: Four of the default eligible workloads; enough for overlapping, partial coverage.
WORKLOADS = ("exchange", "teams", "intune", "sharepoint")
#: Accepted in input, never eligible: ignored for eligibility and matching.
UNKNOWN_WORKLOAD = "dynamics-365"

Raw = dict[str, str | None]


@dataclass(frozen=True)
class World:
    partners: pl.DataFrame
    customers: pl.DataFrame
    rules: Rules
    #: How the world was drawn, for a readable failing example (the Rules repr is huge).
    partner_rows: list[Raw] = field(default_factory=list, compare=False)
    customer_rows: list[Raw] = field(default_factory=list, compare=False)
    tweaks: dict[str, Any] = field(default_factory=dict, compare=False)
    #: The run's date (pauses are read against it); None for a world without pauses.
    today: date | None = None

    def __repr__(self) -> str:
        lines = ["World(", "  partners=["]
        lines += [f"    {_short(r)}," for r in self.partner_rows]
        lines += ["  ],", "  customers=["]
        lines += [f"    {_short(r)}," for r in self.customer_rows]
        lines += ["  ],", f"  rules=shipped rules with {self.tweaks!r},"]
        lines += [f"  today={self.today},", ")"] if self.today else [")"]
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints failing examples with this hook rather than __repr__.
        printer.text(repr(self))


def _short(row: Raw) -> dict[str, str | None]:
    """A raw row without the columns that only repeat its id."""
    return {k: v for k, v in row.items() if k not in _REPEATS}


_REPEATS = ("name", "psm_name", "psm_email", "contact_email")


def partner_id(k: int) -> str:
    return f"P{k:02d}"


def tenant_id(k: int) -> str:
    return f"T{k:03d}"


def _joined(values: list[str]) -> str:
    return ";".join(values)


def _subset(draw: st.DrawFn, values: tuple[str, ...], min_size: int = 0) -> list[str]:
    """A subset of ``values`` in their order, drawn as one bit mask (fewer draws, faster)."""
    mask = draw(st.integers(1 if min_size else 0, 2 ** len(values) - 1))
    return [v for j, v in enumerate(values) if mask >> j & 1]


@st.composite
def partner_rows(
    draw: st.DrawFn, min_size: int = 2, max_size: int = 12, intake: bool = False
) -> list[Raw]:
    """Raw partner rows P01.. with small, overlapping coverage and tight capacity; with
    ``intake``, pauses, quotas and the referrals made this month too."""
    n = draw(st.integers(min_size, max_size))
    # Distinct round-robin stamps for the partners that were assigned before.
    stamps = draw(st.permutations(range(1, n + 1)))
    rows: list[Raw] = []
    for k in range(1, n + 1):
        capacity = draw(st.integers(0, 6))
        workloads = _subset(draw, WORKLOADS, 1)
        if draw(st.integers(0, 3)) == 0:
            workloads.append(UNKNOWN_WORKLOAD)
        pid = partner_id(k)
        rows.append(
            {
                "partner_id": pid,
                "name": f"Partner {pid}",
                "countries": _joined(_subset(draw, COUNTRIES, 1)),
                "languages": _joined(_subset(draw, LANGUAGES, 1)),
                "workloads": _joined(workloads),
                "capacity": str(capacity),
                "active_referrals": str(draw(st.sampled_from([0, 0, 1, capacity, capacity + 1]))),
                "referral_ready": "false" if draw(st.integers(0, 5)) == 0 else "true",
                "psm_name": f"PSM {pid}",
                "psm_email": f"psm.{pid.lower()}@psm.example",
                "contact_email": f"referrals@{pid.lower()}.example",
                "last_assigned": str(stamps[k - 1]) if draw(st.booleans()) else None,
            }
        )
        if intake:
            rows[-1]["paused_until"] = draw(PAUSES)
            rows[-1]["monthly_quota"] = draw(QUOTAS)
            rows[-1][MONTH_REFERRALS] = str(draw(st.integers(0, 3)))
    return rows


#: Seats sit on either side of the thresholds (150 by default, 100 or 200 when tweaked),
#: but mostly well above, so that most customers go on to matching.
SEATS = st.sampled_from([500, 1_000, 25_000, 201, 0, 99, 100, 149, 150, 151, 199, 200, 3_000])
#: What customers ask for: mostly one or two eligible workloads, sometimes with
#: dynamics-365, rarely nothing eligible at all.
CUSTOMER_WORKLOADS = st.sampled_from(
    [
        *([w] for w in WORKLOADS),
        *([w, UNKNOWN_WORKLOAD] for w in WORKLOADS),
        ["exchange", "teams"],
        ["intune", "sharepoint"],
        ["teams", "intune"],
        ["exchange", "teams", "sharepoint"],
        [],
        [UNKNOWN_WORKLOAD],
    ]
)


#: A split world's customers ask for more at once, and come in every size bucket.
SPLIT_WORKLOADS = st.sampled_from(
    [
        ["exchange"],
        ["exchange", "teams"],
        ["teams", "intune"],
        ["exchange", "teams", "intune"],
        ["exchange", "intune", "sharepoint"],
        ["exchange", "teams", "intune", "sharepoint"],
        ["intune", UNKNOWN_WORKLOAD],
    ]
)
SPLIT_SEATS = st.sampled_from([100, 150, 499, 500, 4_999, 5_000, 9_999, 10_000, 40_000])
#: Partners' ``sizes`` cells: mostly every size, sometimes a few buckets.
PARTNER_SIZES = st.sampled_from([None, None, "", "XS;S", "M;L", "S", "L", "XS;S;M;L"])


@st.composite
def customer_rows(
    draw: st.DrawFn,
    min_size: int = 0,
    max_size: int = 40,
    workloads_from: st.SearchStrategy[list[str]] = CUSTOMER_WORKLOADS,
    seats_from: st.SearchStrategy[int] = SEATS,
) -> list[Raw]:
    """Raw customer rows T001.. in cohort order."""
    n = draw(st.integers(min_size, max_size))
    rows: list[Raw] = []
    for k in range(1, n + 1):
        workloads = draw(workloads_from)
        country, language = draw(st.sampled_from(PLACES))
        tid = tenant_id(k)
        rows.append(
            {
                "tenant_id": tid,
                "name": f"Customer {tid}",
                "country": country,
                "language": language,
                "seats": str(draw(seats_from)),
                "workloads": _joined(workloads),
                "gateway": draw(st.sampled_from(["true", "false"])),
                "contact_email": f"it@{tid.lower()}.example",
                "referral_consent": draw(st.sampled_from(["true", "true", "true", "false", None])),
            }
        )
    return rows


def partners_frame(rows: list[Raw]) -> pl.DataFrame:
    """Validated partners; a world with intake keeps the month's referrals beside them."""
    extra = (*_INTAKE_COLUMNS, "sizes")
    columns = [*_PARTNER_COLUMNS, *(c for c in extra if rows and c in rows[0])]
    raw = pl.DataFrame(rows, schema={c: pl.String for c in columns})
    typed = validate_partners(raw)
    if MONTH_REFERRALS in raw.columns:
        typed = typed.with_columns(raw.get_column(MONTH_REFERRALS).cast(pl.Int64))
    return typed


def customers_frame(rows: list[Raw]) -> pl.DataFrame:
    raw = pl.DataFrame(rows, schema={c: pl.String for c in _CUSTOMER_COLUMNS})
    return validate_customers(raw)


_PARTNER_COLUMNS = (
    "partner_id",
    "name",
    "countries",
    "languages",
    "workloads",
    "capacity",
    "active_referrals",
    "referral_ready",
    "psm_name",
    "psm_email",
    "contact_email",
    "last_assigned",
)
_INTAKE_COLUMNS = ("paused_until", "monthly_quota", MONTH_REFERRALS)
_CUSTOMER_COLUMNS = (
    "tenant_id",
    "name",
    "country",
    "language",
    "seats",
    "workloads",
    "gateway",
    "contact_email",
    "referral_consent",
)


@st.composite
def rules_tweaks(draw: st.DrawFn, partner_ids: list[str]) -> dict[str, Any]:
    """What-if changes to the shipped rules: seat threshold, capacity scale, partners off."""
    tweaks: dict[str, Any] = {}
    if draw(st.booleans()):
        tweaks["min_seats"] = draw(st.sampled_from([100, 150, 200]))
    if draw(st.booleans()):
        tweaks["capacity_scale"] = draw(st.sampled_from([0.5, 1.0, 2.0]))
    if partner_ids and draw(st.booleans()):
        tweaks["disabled_partners"] = draw(
            st.lists(st.sampled_from(partner_ids), max_size=3, unique=True)
        )
    return tweaks


def rules_with(tweaks: dict[str, Any]) -> Rules:
    return BASE_RULES.replace(**tweaks) if tweaks else BASE_RULES


@st.composite
def worlds(
    draw: st.DrawFn, max_customers: int = 40, tweak_rules: bool = True, intake: bool = False
) -> World:
    """A random world; with ``intake``, partners pause and have quotas, and the world has
    a date (:data:`TODAY`) to run on."""
    prows = draw(partner_rows(intake=intake))
    crows = draw(customer_rows(max_size=max_customers))
    tweaks = draw(rules_tweaks([r["partner_id"] or "" for r in prows])) if tweak_rules else {}
    return World(
        partners_frame(prows),
        customers_frame(crows),
        rules_with(tweaks),
        prows,
        crows,
        tweaks,
        TODAY if intake else None,
    )


@st.composite
def split_worlds(draw: st.DrawFn, max_customers: int = 30) -> World:
    """A random world where customers may be split: partners take some sizes, customers
    ask for up to four workloads, the rules name CSS workloads and allow 1-3 partners."""
    prows = draw(partner_rows())
    for row in prows:
        row["sizes"] = draw(PARTNER_SIZES)
    crows = draw(
        customer_rows(
            max_size=max_customers, workloads_from=SPLIT_WORKLOADS, seats_from=SPLIT_SEATS
        )
    )
    tweaks: dict[str, Any] = {
        "max_partners_per_customer": draw(st.integers(1, 3)),
        "css_workloads": draw(st.sampled_from([[], [], ["intune"], ["teams", "sharepoint"]])),
    }
    return World(
        partners_frame(prows), customers_frame(crows), rules_with(tweaks), prows, crows, tweaks
    )


@st.composite
def single_pool_worlds(draw: st.DrawFn) -> World:
    """One pool with room to spare: identical partners, customers of one signature, and
    every partner able to take its equal share (rounded up) of the cohort."""
    n_partners = draw(st.integers(2, 6))
    n_customers = draw(st.integers(0, 30))
    share = -(-n_customers // n_partners)
    stamps = draw(st.permutations(range(1, n_partners + 1)))
    prows: list[Raw] = []
    for k in range(1, n_partners + 1):
        active = draw(st.integers(0, 3))
        pid = partner_id(k)
        prows.append(
            {
                "partner_id": pid,
                "name": f"Partner {pid}",
                "countries": "SE;NO",
                "languages": "sv;en",
                "workloads": "exchange;teams",
                "capacity": str(active + share + draw(st.integers(0, 3))),
                "active_referrals": str(active),
                "referral_ready": "true",
                "psm_name": f"PSM {pid}",
                "psm_email": f"psm.{pid.lower()}@psm.example",
                "contact_email": f"referrals@{pid.lower()}.example",
                "last_assigned": str(stamps[k - 1]) if draw(st.booleans()) else None,
            }
        )
    crows: list[Raw] = [
        {
            "tenant_id": tenant_id(k),
            "name": f"Customer {tenant_id(k)}",
            "country": "SE",
            "language": "sv",
            "seats": str(draw(st.integers(150, 5000))),
            "workloads": draw(st.sampled_from(["exchange", "exchange;dynamics-365"])),
            "gateway": "false",
            "contact_email": f"it@{tenant_id(k).lower()}.example",
            "referral_consent": "true",
        }
        for k in range(1, n_customers + 1)
    ]
    return World(partners_frame(prows), customers_frame(crows), BASE_RULES, prows, crows)
