"""Reason codes, outcomes and policies: the small vocabularies every layer shares.

They are string enums so that they round-trip through CSV, Parquet and DuckDB
unchanged, while code compares members rather than bare strings.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    FRP = "frp"
    CSS = "css"


class Reason(StrEnum):
    """Why a customer got its outcome, in the order eligibility checks them."""

    BELOW_SEAT_THRESHOLD = "below_seat_threshold"
    NO_ELIGIBLE_WORKLOAD = "no_eligible_workload"
    NO_REFERRAL_CONSENT = "no_referral_consent"
    DECLINED_BY_PARTNERS = "declined_by_partners"
    NO_PARTNER_MATCH = "no_partner_match"
    CAPACITY_EXHAUSTED = "capacity_exhausted"
    ASSIGNED = "assigned"
    #: The CSS part of a customer split by workload: workloads CSS always delivers (last,
    #: so the codes of the others stay as runs and stores have kept them).
    CSS_WORKLOAD = "css_workload"

    @property
    def words(self) -> str:
        """How the reason reads to a person (the code stays the stable identifier)."""
        return _WORDS[self]

    @property
    def outcome(self) -> Outcome:
        return Outcome.FRP if self is Reason.ASSIGNED else Outcome.CSS


_WORDS = {
    Reason.BELOW_SEAT_THRESHOLD: "Below the seat threshold",
    Reason.NO_ELIGIBLE_WORKLOAD: "No eligible workload",
    Reason.NO_REFERRAL_CONSENT: "No consent to share contact details",
    Reason.DECLINED_BY_PARTNERS: "Declined by partners too often",
    Reason.NO_PARTNER_MATCH: "No partner matches",
    Reason.CAPACITY_EXHAUSTED: "Matching partners are all full",
    Reason.ASSIGNED: "Assigned to a partner",
    Reason.CSS_WORKLOAD: "Workloads CSS always delivers",
}

#: Reasons a run over a new cohort can give under the default rules; `declined_by_partners`
#: only arises when the referral life cycle re-assigns a customer that partners declined,
#: and `css_workload` only when the rules name CSS workloads.
COHORT_REASONS: tuple[Reason, ...] = tuple(
    r for r in Reason if r not in (Reason.DECLINED_BY_PARTNERS, Reason.CSS_WORKLOAD)
)
#: Reasons of a new cohort that end in a CSS queue, in the order the process decides them.
CSS_REASONS: tuple[Reason, ...] = tuple(r for r in COHORT_REASONS if r is not Reason.ASSIGNED)


class Policy(StrEnum):
    """How one partner is chosen among those that match and have room."""

    ROUND_ROBIN = "round-robin"
    WEIGHTED = "weighted"
    LEAST_LOADED = "least-loaded"
    OPTIMAL = "optimal"

    @property
    def words(self) -> str:
        return _POLICY_WORDS[self]


_POLICY_WORDS = {
    Policy.ROUND_ROBIN: "Round robin (least recently assigned first)",
    Policy.WEIGHTED: "Weighted round robin (by capacity)",
    Policy.LEAST_LOADED: "Least loaded (lowest utilisation after assignment)",
    Policy.OPTIMAL: "Optimal (most customers placed, then balanced utilisation)",
}

#: The FTOP task opened for every Gateway customer referred to a partner.
FTOP_TASK_ID = 3186
FTOP_TASK_NAME = "(Gateway Only) Completion of Referral Process"
FTOP_TASK_ROLE = "FastTrack Manager"
FTOP_TASK_SERVICE = "Core Onboarding"
FRP_QUEUE = "FRP"


#: Why a partner declines a referral (the playbook's list); a decline must give one.
DECLINE_REASONS = {
    "at_capacity": "At capacity",
    "not_endorsed": "Not endorsed for the workload",
    "outside_service_area": "Outside the service area",
    "customer_unresponsive": "Customer unresponsive",
}
