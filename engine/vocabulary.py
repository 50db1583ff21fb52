"""The vocabulary of invented worlds: what customers ask for, what companies are called,
how big tenants are, and how a name becomes an e-mail domain.

This module owns the tables that the three generators share: the demo world
(``engine.demo``), synthetic what-if cohorts (``engine.cohorts``) and the benchmark world
(``bench.world``). Each generator keeps only what is its own (how it draws, its shares and
caps), and names beside its use of these tables where it departs from them, so a change
here changes every world on purpose and a world's own quirk never hides in a copy.

Pure data and one helper: no I/O, no randomness.
"""

from __future__ import annotations

import re

import polars as pl

from engine.sizes import SIZE_BOUNDS

#: The eligible workloads (docs/domain.md, "Default eligible workloads") with how often
#: customers ask for each (relative weights); popular ones far more often than rare ones.
WORKLOAD_DEMAND: dict[str, float] = {
    "exchange": 10,
    "teams": 10,
    "sharepoint": 7,
    "onedrive": 6,
    "m365-apps": 4,
    "intune": 6,
    "entra-id": 5,
    "defender": 5,
    "windows": 1.8,
    "purview": 1.5,
    "viva": 1.2,
}
#: Workloads customers mention that FastTrack does not cover (ignored for matching).
NON_ELIGIBLE_WORKLOADS = ("dynamics-365", "power-bi", "power-platform")

#: Seat buckets (docs/domain.md, "Customer size"): name -> (fewest, most seats); the
#: largest bucket has no upper bound, so each generator picks its own cap. The bounds
#: are engine.sizes', the one home of them.
SEAT_BUCKETS: dict[str, tuple[int, int | None]] = SIZE_BOUNDS

# Invented company names, "<prefix> <industry> ..." (no real company intended). The demo
# world has richer lists of its own in data/demo/names.toml, for a world people read.
COMPANY_PREFIXES = (
    "Alder",
    "Amberfield",
    "Ashgrove",
    "Bellcliff",
    "Birchmont",
    "Bramblewood",
    "Calderon",
    "Cloudberry",
    "Coppervale",
    "Dawnridge",
    "Elmwick",
    "Fernhollow",
    "Flintmoor",
    "Galewater",
    "Glassbrook",
    "Hazelport",
    "Hillcrest",
    "Juniperfield",
    "Kestrelmoor",
    "Lanternhill",
    "Marshfield",
    "Mistral",
    "Northwind",
    "Oakenshaw",
    "Pebblecourt",
    "Quarrystone",
    "Redwater",
    "Rushmere",
    "Saltmarsh",
    "Sparrowdale",
    "Stillbrook",
    "Thornbury",
    "Umberlea",
    "Valewood",
    "Westerly",
    "Whinfell",
    "Wrenfield",
    "Yewbank",
)
INDUSTRIES = (
    "Analytics",
    "Bakeries",
    "Biotech",
    "Builders",
    "Clinics",
    "Freight",
    "Foods",
    "Insurance",
    "Logistics",
    "Manufacturing",
    "Media",
    "Mining",
    "Pharma",
    "Retail",
    "Robotics",
    "Shipping",
    "Textiles",
    "Travel",
    "Utilities",
    "Vineyards",
)


_NOT_SLUG = r"[^a-z0-9]+"


def slug(text: str) -> str:
    """Lower-case words joined by hyphens, so a company or person's name can be a domain."""
    return re.sub(_NOT_SLUG, "-", text.lower()).strip("-")


def slug_expr(text: pl.Expr) -> pl.Expr:
    """:func:`slug`, column-wise (a cohort's names)."""
    return text.str.to_lowercase().str.replace_all(_NOT_SLUG, "-").str.strip_chars("-")
