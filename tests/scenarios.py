"""Rows for the hand-built scenarios of tests/test_engine.py and tests/test_reference.py.

A partner or a customer is a dict with every column of the documented schema
(``engine.columns``); a scenario names only what it changes. The defaults are German
(``DE``, ``de``), as test_reference.py's worked examples read them; test_engine.py sets
its Swedish ones on top.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA


def partner(partner_id: str, **overrides: Any) -> dict[str, Any]:
    """A ready German partner for Exchange and Teams, 100 seats, none taken."""
    row: dict[str, Any] = {
        "partner_id": partner_id,
        "name": f"Partner {partner_id}",
        "countries": ["DE"],
        "languages": ["de"],
        "workloads": ["exchange", "teams"],
        "capacity": 100,
        "active_referrals": 0,
        "referral_ready": True,
        "psm_name": "Pat Example",
        "psm_email": f"psm.{partner_id.lower()}@psm.example",
        "contact_email": f"referrals@{partner_id.lower()}.example",
        "last_assigned": None,
    }
    row.update(overrides)
    return row


def customer(tenant_id: str, **overrides: Any) -> dict[str, Any]:
    """An FRP-eligible German customer wanting Exchange."""
    row: dict[str, Any] = {
        "tenant_id": tenant_id,
        "name": f"Customer {tenant_id}",
        "country": "DE",
        "language": "de",
        "seats": 500,
        "workloads": ["exchange"],
        "gateway": False,
        "contact_email": f"it@{tenant_id.lower()}.example",
        "referral_consent": True,
    }
    row.update(overrides)
    return row


def partners_frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=PARTNER_SCHEMA)


def customers_frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=CUSTOMER_SCHEMA)


#: The result file's columns of few values, which ``output_lazy(coded=True)`` gives as Enum.
CODED = (
    "outcome", "partner_id", "psm_email", "queue", "reason", "region", "country",
    "eligible_workloads",
)  # fmt: skip


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its Enum columns (and lists of Enum) cast to text."""
    text = {
        name: pl.List(pl.String) if isinstance(dtype, pl.List) else pl.String
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Enum) or isinstance(getattr(dtype, "inner", None), pl.Enum)
    }
    return frame.cast(text)
