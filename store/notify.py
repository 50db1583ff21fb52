"""Referral notifications: three messages per FRP referral (customer, partner, PSM).

Messages are built column-wise for a whole run at once and queued in the outbox by the
commit's transaction; sending them is a separate step. Each message id is derived from
the referral and the recipient role, so it is stable across retries and resends.
"""

from __future__ import annotations

import polars as pl

SUBJECT = "Your request for a FastTrack Specialist has been assigned - {company}"
ROLES = ("customer", "partner", "psm")
MESSAGE_DOMAIN = "frp-assign.invalid"


def message_id(referral_id: int, role: str) -> str:
    return f"<referral-{referral_id}-{role}@{MESSAGE_DOMAIN}>"


def referral_messages(referred: pl.DataFrame) -> pl.DataFrame:
    """Outbox rows for FRP referrals.

    ``referred`` has one row per FRP referral with: referral_id, tenant_id, customer_name,
    customer_email, eligible_workloads (list), partner_id, partner_name, partner_email,
    psm_name, psm_email. Only what the referral needs is shared with the partner: no seat
    counts or internal notes.
    """
    c = pl.col
    workloads = c("eligible_workloads").list.join(", ")
    subject = pl.format(SUBJECT.replace("{company}", "{}"), c("customer_name"))
    intro = pl.format(
        "{} ({}) has been referred to FastTrack Ready Partner {} ({}) for: {}.",
        c("customer_name"),
        c("tenant_id"),
        c("partner_name"),
        c("partner_id"),
        workloads,
    )
    contacts = pl.format(
        "Partner contact: {}\nPartner Success Manager: {} <{}>\nCustomer contact: {}",
        c("partner_email"),
        c("psm_name"),
        c("psm_email"),
        c("customer_email"),
    )
    next_step = (
        "Next step: the partner contacts the customer to begin FastTrack Ready Partner onboarding."
    )
    bodies = {
        "customer": pl.concat_str(
            pl.format("Hello {},\n\n", c("customer_name")),
            intro,
            pl.lit("\n\n"),
            contacts,
            pl.lit("\n\n" + next_step + "\n"),
        ),
        "partner": pl.concat_str(
            pl.format("Hello {},\n\n", c("partner_name")),
            intro,
            pl.lit("\n\n"),
            contacts,
            pl.lit("\n\n" + next_step + "\n"),
        ),
        "psm": pl.concat_str(
            pl.format("Hello {},\n\n", c("psm_name")),
            intro,
            pl.lit("\n\n"),
            contacts,
            pl.lit("\n\n" + next_step + "\n"),
        ),
    }
    to = {"customer": c("customer_email"), "partner": c("partner_email"), "psm": c("psm_email")}
    frames = []
    for role in ROLES:
        frames.append(
            referred.select(
                pl.format(
                    "<referral-{}-" + role + "@" + MESSAGE_DOMAIN + ">", c("referral_id")
                ).alias("message_id"),
                c("referral_id"),
                c("tenant_id"),
                pl.lit(role).alias("recipient_role"),
                to[role].alias("to_email"),
                subject.alias("subject"),
                bodies[role].alias("body"),
            )
        )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).sort("referral_id", "recipient_role")
