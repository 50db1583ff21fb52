"""The documented shapes of every frame that crosses a boundary (docs/domain.md, "Input tables").

Column names are the domain's words. Validated inputs always have exactly these
columns and dtypes, so the rest of the engine never re-checks them.
"""

from __future__ import annotations

import polars as pl

TEXT_LIST = pl.List(pl.String)

PARTNER_SCHEMA = pl.Schema(
    {
        "partner_id": pl.String(),
        "name": pl.String(),
        "countries": TEXT_LIST,
        "languages": TEXT_LIST,
        "workloads": TEXT_LIST,
        "capacity": pl.Int64(),
        "active_referrals": pl.Int64(),
        "referral_ready": pl.Boolean(),
        "psm_name": pl.String(),
        "psm_email": pl.String(),
        "contact_email": pl.String(),
        # Round-robin order: larger = assigned more recently; null = never assigned.
        "last_assigned": pl.Int64(),
        # Not Referral Ready before this date; null = not paused.
        "paused_until": pl.Date(),
        # New referrals allowed in a calendar month; null = no quota.
        "monthly_quota": pl.Int64(),
    }
)
PARTNER_OPTIONAL = ("last_assigned", "paused_until", "monthly_quota")
#: What a run's partners may carry beyond PARTNER_SCHEMA: the referrals made to each in
#: the run's calendar month, which its ``monthly_quota`` counts (docs/domain.md, "Partner
#: availability and intake"). The store counts them; a partners file has none (0).
MONTH_REFERRALS = "referrals_this_month"

#: Optional partners column beyond PARTNER_SCHEMA, kept by validation only when a file has
#: it: the size buckets a partner takes (docs/domain.md, "Customer size"; null or empty =
#: every size). The store does not keep it yet.
PARTNER_SIZES = "sizes"

CUSTOMER_SCHEMA = pl.Schema(
    {
        "tenant_id": pl.String(),
        "name": pl.String(),
        "country": pl.String(),
        "language": pl.String(),
        "seats": pl.Int64(),
        "workloads": TEXT_LIST,
        "gateway": pl.Boolean(),
        "contact_email": pl.String(),
        "referral_consent": pl.Boolean(),
    }
)
CUSTOMER_OPTIONAL = ("referral_consent",)

#: The columns of a run's output, in docs/domain.md's order; `trace` follows them.
ASSIGNMENT_COLUMNS = ("tenant_id", "outcome", "partner_id", "psm_email", "queue", "reason")

ASSIGNMENT_SCHEMA = pl.Schema(
    {
        "tenant_id": pl.String(),
        "outcome": pl.String(),
        "partner_id": pl.String(),
        "psm_email": pl.String(),
        "queue": pl.String(),
        "reason": pl.String(),
        "trace": pl.String(),
    }
)

#: Past referrals (the store's history and the demo world's): one row per referral.
REFERRAL_HISTORY_SCHEMA = pl.Schema(
    {
        "tenant_id": pl.String(),
        "outcome": pl.String(),  # frp | css
        "partner_id": pl.String(),  # null for css
        "queue": pl.String(),
        "reason": pl.String(),
        "status": pl.String(),  # active | completed
        "created_at": pl.Datetime("us"),
    }
)

LIST_SEPARATOR = ";"
