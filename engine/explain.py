"""Why each customer got its outcome: the one home of a decision's explanation and its words.

A run records its decisions as codes (``engine.simulation``). For one customer,
:func:`explain` turns them into an :class:`Explanation`: every step of the process as
data (the eligibility checks and what they compared, each matching rule and whom it
removed, which matching partners were full and in what order, the partner chosen and
why, the outcome), and :func:`render` gives its sentence, the trace kept with the
referral. For a whole run, :func:`trace_texts` writes the same sentences column-wise,
each distinct one once, so a million customers never cost a Python object each. Both
read the sentence templates below; tests/test_explain.py holds them to the same words
on every row. The match half of a sentence is matching's own
(``engine.matching.describe_steps``), since a run's matching writes it per signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from engine.matching import (
    TRACE_IDS,
    MatchStep,
    describe_steps,
    eligibility_failures,
    mask_names,
    match_signature,
    signature_of,
)
from engine.policies import Choices
from engine.reasons import FRP_QUEUE, Outcome, Policy, Reason
from engine.rules import Rules
from engine.simulation import REASON_CODE, REASONS, Simulation, gather

#: Distinct traces whose sentences are built at a time (see :func:`trace_texts`). At 1M
#: with room (134k texts), 16,384 instead of 32,768 took about 10 MiB off the run's peak
#: (411-414 against 420-426 MiB in process), in the same time.
TRACE_SLICE = 16_384

# The sentence templates, shared by `render` (str.format) and the column-wise texts
# (pl.format): both fill "{}" in order.
_NOT_ELIGIBLE = "not FRP-eligible: "
_SEATS = "seats {} < minimum {}"
_NO_WORKLOAD = "no eligible workload among [{}] (eligible: {})"
_DECLINED = "declined by {} partners ({}), the most allowed is {}"
_NO_CONSENT = "no consent to share contact details with a partner"
_TO_QUEUE = " -> {}"
_NO_MATCH = "; no partner matches"
_FULL = "{} of {} full ({})"
_NONE_FULL = "none of {} full"
_MORE = "{} +{} more"
_EXHAUSTED = ": capacity exhausted"
# Under `optimal` a customer can miss out while a matching partner still has room: the
# plan gave that seat to another customer (any maximum plan must). Say so, not "full".
_PLAN_KEPT = " (the optimal plan used their free seats for other customers of the cohort)"
_CHOSE = "; chose {}: {}"
_BECAUSE = "{} ({})"
_TURN = "last assigned at turn {}"
_NEVER = "never assigned before"
_LOAD = "{} of its seats taken after this"
_WHY = {
    Policy.ROUND_ROBIN: "least recently assigned of those with room",
    Policy.WEIGHTED: "highest smooth weight (by capacity) of those with room",
    Policy.LEAST_LOADED: "lowest utilisation after assignment of those with room",
    Policy.OPTIMAL: "allotted by the optimal plan, least recently assigned of those allotted",
}
_LISTED = ", "
_CSS_ONLY = "every eligible workload ({}) is one CSS delivers"
# A split (docs/domain.md, "Split by workload"): the parts in the order the cover took them.
_NO_SINGLE = "; no single partner covers them all"
_SPLIT_FULL = "; no split: the partners that together cover them have no room"
_SPLIT = "; split by workload: {}"
_PART = "part {} {} takes {} (covers {} of {} uncovered, the most; {})"
_CSS_PART = "; part {} {}: {} (CSS workloads)"
_JOINED = "+"


# --- One customer, as data ---------------------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    """The checks before matching and what each compared (docs/domain.md, "The process")."""

    seats: int
    min_seats: int
    workloads: tuple[str, ...]  # as the customer asked
    eligible: tuple[str, ...]  # those the rules accept, sorted
    eligible_workloads: tuple[str, ...]  # the rules' list
    consent: bool | None  # None: not stated
    consent_default: bool
    declined_by: tuple[str, ...]  # partners that declined this customer before
    max_declines: int
    failed: tuple[Reason, ...]  # every check that fails, in the order they are applied

    def passed(self, check: Reason) -> bool:
        return check not in self.failed


@dataclass(frozen=True)
class Matching:
    """Each matching rule in order, with how many partners it kept and whom it removed."""

    steps: tuple[MatchStep, ...]  # removed ids: the first ``keep_ids`` of :func:`explain`
    partners: tuple[str, ...]  # those that pass every rule, in id order
    #: The first partners not Referral Ready, switched off or paused: the Referral Ready
    #: rule removes them, and a trace only counts them (and names the paused ones).
    unavailable: tuple[str, ...]


@dataclass(frozen=True)
class Capacity:
    """The matching partners with no room when the customer's turn came."""

    n_matching: int
    n_full: int
    full: tuple[str, ...]  # the first of them, in the order they ran out of room
    #: `optimal` only: the customer missed out while a matching partner had room, because
    #: the plan kept those seats for other customers.
    plan_kept_seats: bool


@dataclass(frozen=True)
class Selection:
    """The partner chosen and the numbers the policy chose it by."""

    partner_id: str
    psm_email: str | None
    previous_turn: int | None  # its last_assigned before this customer (None: never)
    load_after: int  # its referrals with this one
    capacity: int  # after the rules' capacity scale


@dataclass(frozen=True)
class Part:
    """One part of a customer served by more than one: a partner's (split by workload)
    or the CSS part of its CSS workloads (``partner_id`` None)."""

    part: int
    partner_id: str | None
    workloads: tuple[str, ...]
    queue: str  # FRP, or the CSS queue of the CSS part
    #: Split parts: uncovered workloads it covered when the cover took it (the most of
    #: any candidate with room), and how many were uncovered then; None otherwise.
    gain: int | None = None
    uncovered: int | None = None
    previous_turn: int | None = None  # its last_assigned before this part (None: never)

    @property
    def split(self) -> bool:
        return self.gain is not None


@dataclass(frozen=True)
class Explanation:
    """One customer's decision, step by step; a step the process never reached is None."""

    tenant_id: str
    country: str
    language: str
    policy: Policy
    eligibility: Eligibility
    matching: Matching | None  # None: a check before matching failed
    capacity: Capacity | None  # None: no partner matches
    selection: Selection | None  # None: not placed
    reason: Reason
    queue: str
    #: Every part when the customer has more than one (a split's parts, then a CSS part);
    #: a split customer has no ``selection``: its parts say who was chosen and why.
    parts: tuple[Part, ...] = ()

    @property
    def outcome(self) -> Outcome:
        return self.reason.outcome

    @property
    def split(self) -> bool:
        return any(p.split for p in self.parts)


def explain(sim: Simulation, which: int | str, keep_ids: int = TRACE_IDS) -> Explanation:
    """The explanation of one customer of ``sim``: its row number or its tenant id.

    ``keep_ids`` partner ids are kept per matching rule and of the full partners (at
    least :data:`TRACE_IDS`, what a trace names). Matching is done again for this one
    customer against the partners as the run saw them; the rest is what the run recorded.
    """
    if keep_ids < TRACE_IDS:
        raise ValueError(f"keep_ids: at least {TRACE_IDS}, what a trace names")
    row = _row(sim, which)
    reason = Reason(REASONS[row["reason"]])
    eligibility = _eligibility(sim, row)
    matching: Matching | None = None
    capacity: Capacity | None = None
    if reason not in eligibility_failures(sim.rules):
        matching, members = _matching(sim, row, eligibility, keep_ids)
        if members.size:
            capacity = _capacity(sim, row, members, keep_ids)
    parts = _parts(sim, row)
    split = any(p.split for p in parts)
    placed = row["chosen"] is not None and not split
    return Explanation(
        tenant_id=row["tenant_id"],
        country=row["country"],
        language=row["language"],
        policy=sim.policy,
        eligibility=eligibility,
        matching=matching,
        capacity=capacity,
        selection=_selection(sim, row) if placed else None,
        reason=reason,
        queue=FRP_QUEUE if placed or split else sim.lookup.queue_of_country[row["country"]],
        parts=parts,
    )


def _parts(sim: Simulation, row: dict[str, Any]) -> tuple[Part, ...]:
    """The customer's parts as the run recorded them (none with one part)."""
    if sim.parts is None:
        return ()
    mine = sim.parts.filter(pl.col("row") == row["_row"])
    return tuple(_part(sim, r, row["country"]) for r in mine.iter_rows(named=True))


def _part(sim: Simulation, r: dict[str, Any], country: str) -> Part:
    """One recorded part (a row of ``Simulation.parts``) as an explanation states it."""
    lk = sim.lookup
    css = r["chosen"] is None
    return Part(
        part=r["part"],
        partner_id=None if css else lk.index.ids[r["chosen"]],
        workloads=mask_names(r["mask"], sim.rules.eligible_workloads),
        queue=lk.queue_of_country[country] if css else FRP_QUEUE,
        gain=r["gain"],
        uncovered=r["uncovered"],
        previous_turn=r["prev"],
    )


def _row(sim: Simulation, which: int | str) -> dict[str, Any]:
    if isinstance(which, str):
        at = sim.rows.get_column("tenant_id").index_of(which)
        if at is None:
            raise KeyError(which)
        which = at
    return {**sim.rows.row(which, named=True), "_row": which}


def _eligibility(sim: Simulation, row: dict[str, Any]) -> Eligibility:
    """Every check, evaluated by the run's own expressions on this one customer."""
    rules = sim.rules
    workloads = sim.lookup.workloads.row(row["wid"], named=True)
    one = pl.DataFrame(
        {
            "seats": [row["seats"]],
            "mask": [workloads["mask"]],
            "referral_consent": [row["referral_consent"]],
            "excluded": [row["excluded"]],
        },
        schema={
            "seats": pl.Int64,
            "mask": pl.Int64,
            "referral_consent": pl.Boolean,
            "excluded": pl.String,
        },
    )
    checks = eligibility_failures(rules)
    fails = one.select(e.alias(r.value) for r, e in checks.items()).row(0)
    excluded = str(row["excluded"])
    return Eligibility(
        seats=row["seats"],
        min_seats=rules.min_seats,
        workloads=tuple(workloads["workloads"] or ()),
        eligible=tuple(workloads["eligible"] or ()),
        eligible_workloads=tuple(rules.eligible_workloads),
        consent=row["referral_consent"],
        consent_default=rules.referral_consent_default,
        declined_by=tuple(excluded.split(";")) if excluded else (),
        max_declines=rules.max_declines,
        failed=tuple(r for r, failed in zip(checks, fails, strict=True) if failed),
    )


def _matching(
    sim: Simulation, row: dict[str, Any], eligibility: Eligibility, keep_ids: int
) -> tuple[Matching, np.ndarray]:
    """The customer's matching steps, and the matching partners' indexes."""
    index = sim.lookup.index
    sig = signature_of(
        sim.rules,
        row["country"],
        row["language"],
        eligibility.eligible,
        eligibility.declined_by,
        row["seats"] if index.sizes_listed else None,
    )
    match = match_signature(index, sig, keep_ids)
    off = np.flatnonzero(~index.available)[:keep_ids]
    matching = Matching(
        steps=match.steps,
        partners=tuple(index.ids[i] for i in match.partners.tolist()),
        unavailable=tuple(index.ids[i] for i in off.tolist()),
    )
    return matching, match.partners


def _capacity(sim: Simulation, row: dict[str, Any], members: np.ndarray, keep_ids: int) -> Capacity:
    n_full = int(row["n_full"])
    full, _ = _full_in_order(_fill_rank(sim.partners), [members], np.zeros(1, np.int64))
    missed = row["chosen"] is None
    return Capacity(
        n_matching=members.size,
        n_full=n_full,
        full=tuple(sim.lookup.index.ids[i] for i in full[: min(n_full, keep_ids)].tolist()),
        plan_kept_seats=sim.policy is Policy.OPTIMAL and missed and n_full < members.size,
    )


def _selection(sim: Simulation, row: dict[str, Any]) -> Selection:
    index = sim.lookup.index
    chosen = int(row["chosen"])
    return Selection(
        partner_id=index.ids[chosen],
        psm_email=index.psm_email[chosen],
        previous_turn=row["prev"],
        load_after=int(row["load_after"]),
        capacity=int(index.capacity[chosen]),
    )


# --- One customer, in words --------------------------------------------------------------


def render(e: Explanation) -> str:
    """The sentence of an explanation: the trace the run keeps for that customer."""
    if e.matching is None:
        prefix = "" if e.reason in _NOT_A_CHECK else _NOT_ELIGIBLE
        return prefix + _failed_check(e.eligibility, e.reason) + _TO_QUEUE.format(e.queue)
    shown = tuple(
        replace(s, removed=s.removed[:TRACE_IDS], paused=s.paused[:TRACE_IDS])
        for s in e.matching.steps
    )
    text = describe_steps(shown)
    split, css = split_words(e.parts), css_words(e.parts)
    if e.capacity is None:
        if e.split:
            return text + _NO_SINGLE + split + css
        if e.reason is Reason.CAPACITY_EXHAUSTED:  # a cover within the limit, all full
            return text + _NO_SINGLE + _SPLIT_FULL + _EXHAUSTED + _TO_QUEUE.format(e.queue)
        return text + _NO_MATCH + _TO_QUEUE.format(e.queue)
    text += "; " + _full(e.capacity)
    if e.split:
        return text + split + css
    if e.selection is None:
        kept = _PLAN_KEPT if e.capacity.plan_kept_seats else ""
        return text + _EXHAUSTED + kept + _TO_QUEUE.format(e.queue)
    chose = _CHOSE.format(e.selection.partner_id, why_chosen(e.policy, e.selection))
    return text + chose + css


_EXHAUSTED_CODE = REASON_CODE[Reason.CAPACITY_EXHAUSTED]
#: Reasons decided before matching that are not a failed eligibility check.
_NOT_A_CHECK = (Reason.DECLINED_BY_PARTNERS, Reason.CSS_WORKLOAD)


def split_words(parts: Sequence[Part]) -> str:
    """The split half of a trace: each partner part, whom the cover took and why."""
    taken = [
        _PART.format(
            p.part,
            p.partner_id,
            _JOINED.join(p.workloads),
            p.gain,
            p.uncovered,
            _NEVER if p.previous_turn is None else _TURN.format(p.previous_turn),
        )
        for p in parts
        if p.split
    ]
    return _SPLIT.format(_LISTED.join(taken)) if taken else ""


def css_words(parts: Sequence[Part]) -> str:
    """The CSS part of a trace, when the customer has one."""
    return "".join(
        _CSS_PART.format(p.part, p.queue, _JOINED.join(p.workloads))
        for p in parts
        if p.partner_id is None
    )


def why_chosen(policy: Policy, selection: Selection) -> str:
    """Why ``policy`` chose the partner, with the number it went by."""
    if policy is Policy.LEAST_LOADED:
        detail = _LOAD.format(selection.load_after)
    elif selection.previous_turn is None:
        detail = _NEVER
    else:
        detail = _TURN.format(selection.previous_turn)
    return _BECAUSE.format(_WHY[policy], detail)


def _failed_check(el: Eligibility, reason: Reason) -> str:
    if reason is Reason.BELOW_SEAT_THRESHOLD:
        return _SEATS.format(el.seats, el.min_seats)
    if reason is Reason.NO_ELIGIBLE_WORKLOAD:
        return _NO_WORKLOAD.format(_LISTED.join(el.workloads), _LISTED.join(el.eligible_workloads))
    if reason is Reason.DECLINED_BY_PARTNERS:
        return _DECLINED.format(len(el.declined_by), _LISTED.join(el.declined_by), el.max_declines)
    if reason is Reason.CSS_WORKLOAD:
        return _CSS_ONLY.format(_LISTED.join(el.eligible))
    return _NO_CONSENT


def _full(c: Capacity) -> str:
    if not c.n_full:
        return _NONE_FULL.format(c.n_matching)
    shown = _LISTED.join(c.full[:TRACE_IDS])
    more = c.n_full - min(c.n_full, TRACE_IDS)
    return _FULL.format(c.n_full, c.n_matching, _MORE.format(shown, more) if more else shown)


# --- Who was full, in what order ---------------------------------------------------------


def _fill_rank(partners: pl.DataFrame) -> np.ndarray:
    """Per partner (in index order, as ``Simulation.partners``), its place in the order
    partners ran out of room: those full before the run first (by index), then by the
    turn that filled them (a full partner is never given another); -1 for never full.

    A pool's members full at a customer's turn are the first ``n_full`` of its members
    in this order, so a run need not keep them.
    """
    limit = partners.get_column("seat_limit").to_numpy()
    before = partners.get_column("active_before").to_numpy()
    after = partners.get_column("active_after").to_numpy()
    stamp = partners.get_column("last_assigned_after").fill_null(-1).to_numpy()
    n = limit.size
    rank = np.full(n, -1, dtype=np.int64)
    full_before = before >= limit
    rank[full_before] = np.flatnonzero(full_before)
    filled = ~full_before & (after >= limit)
    rank[filled] = n + stamp[filled]
    return rank


def _full_in_order(
    rank: np.ndarray, pools: Sequence[np.ndarray], wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The members of each pool of ``wanted`` that ran out of room, by ``rank`` (one sort
    for all): partner indexes, and where each pool's start (one more at the end)."""
    qs = wanted.tolist()
    if not qs:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    members = np.concatenate([pools[q] for q in qs]).astype(np.int64)
    sizes = np.fromiter((pools[q].size for q in qs), dtype=np.int64, count=len(qs))
    owner = np.repeat(np.arange(len(qs), dtype=np.int64), sizes)
    r = rank[members]
    full = r >= 0
    members, owner, r = members[full], owner[full], r[full]
    span = int(r.max()) + 1 if r.size else 1
    if len(qs) * span < 2**62:  # one key, one sort: half the time of lexsort's two
        order = np.argsort(owner * span + r, kind="stable")
    else:
        order = np.lexsort((r, owner))
    return members[order], np.searchsorted(owner[order], np.arange(len(qs) + 1))


# --- A whole run, column-wise ------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """What the process decided, as it leaves it for :func:`trace_texts` (numpy, one entry
    per customer unless said)."""

    sig_of: np.ndarray  # signature, -1 when a check before matching failed
    sig_pool: np.ndarray  # per signature: its pool, -1 when no partner matches
    sig_trace: list[str]  # per signature: the match half of its trace
    pool: np.ndarray  # pool, -1 when none
    pools: list[np.ndarray]  # per pool: its members (partner indexes, ascending)
    choices: Choices
    #: The customers split across partners (their rows carry their first part)
    split_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def trace_texts(sim: Simulation, run: RunRecord) -> tuple[np.ndarray, pl.Series, pl.Series]:
    """Each customer's trace code, the text of each code, and whether that text is only
    the head of a placed customer's trace (``sim`` before its traces).

    Customers whose traces read the same values (signature, full partners, the failing
    check and what it names) share one text, so a million rows cost one pass of grouping
    plus the few distinct texts. A placed customer's trace ends with its own choice (the
    partner and the turn or load it went by), different for every customer: that end is
    not kept but spelled out from the row when the trace is read (:func:`traces_expr`),
    so the texts a run keeps do not grow with its placements.
    """
    code, first, kinds = _trace_codes(sim.rows, run, _parted_rows(sim))
    reps = _Representatives(sim, run)
    exprs = _trace_exprs(sim.policy, sim.rules)
    # A slice of rows at a time, from the representatives' columns on: the sentences are
    # built from several columns of text, and a run can have a few hundred thousand
    # distinct ones (`optimal` at 1M: 220k).
    parts, start = [], 0
    for kind, size in kinds:
        for at in range(start, start + size, TRACE_SLICE):
            piece = reps.frame(first[at : min(at + TRACE_SLICE, start + size)])
            parts.append(piece.select(exprs[kind].alias("trace")).to_series())
        start += size
    # One chunk: gathering from a table of several chunks costs some 30 times more,
    # and the result file gathers from it once per slice.
    texts = pl.concat(parts, rechunk=True) if parts else pl.Series("trace", [], dtype=pl.String)
    head = np.repeat([kind == "placed" for kind, _ in kinds], [size for _, size in kinds])
    return code, texts, pl.Series("trace_head", head, dtype=pl.Boolean)


def _chose_expr(policy: Policy, partner: pl.Expr) -> pl.Expr:
    """The end of a placed customer's trace (the partner chosen and why), column-wise
    from a run's row (its ``prev`` turn or ``load_after``), for the traces spelled whole
    in :func:`trace_texts` (a customer with parts); the rest get theirs from
    :func:`traces_expr`."""
    return pl.format(_CHOSE, partner, _why_chosen_expr(policy))


def traces_expr(
    policy: Policy, texts: pl.Series, head: pl.Series, partner_ids: pl.Series
) -> pl.Expr:
    """Each row's whole trace from a run's codes: its code's text (``texts``, by the
    column ``trace``) and, where that text is a head (``head``), the row's choice after
    it, as :func:`_chose_expr` spells it.

    One concat_str of pieces, each null where it does not apply, rather than the choice
    formatted (three formats nested) and then appended: the result file spells out a
    million traces, and each byte is now written once. The partner with the policy's
    words up to its number is one text per partner, gathered rather than formatted per
    row. At 1M with room the file's traces took 0.27 -> 0.18 s, on the write's critical
    path (docs/scaling.md).
    """
    c = pl.col
    text = gather(texts, "trace")
    if not head.any():
        return text.alias("trace")
    at_head = gather(head, "trace")
    # The words around the number, from the same templates as _chose_expr's.
    opening, closing = _CHOSE.format("{}", _BECAUSE.format(_WHY[policy], "\0")).split("\0")
    if policy is Policy.LEAST_LOADED:
        number, words = c("load_after"), _LOAD
    else:
        number, words = c("prev"), _TURN
    before, after = words.split("{}")
    by_partner = pl.Series([opening.format(p) for p in partner_ids.to_list()], dtype=pl.String)
    no_number = pl.Series([before, _NEVER + closing], dtype=pl.String)
    return pl.concat_str(
        text,
        gather(by_partner, pl.when(at_head).then(c("chosen"))),
        gather(no_number, pl.when(at_head).then(number.is_null().cast(pl.UInt32))),
        pl.when(at_head).then(number).cast(pl.String),
        gather(
            pl.Series([after + closing]),
            pl.when(at_head & number.is_not_null()).then(pl.lit(0, dtype=pl.UInt32)),
        ),
        ignore_nulls=True,
    ).alias("trace")


def _parted_rows(sim: Simulation) -> np.ndarray:
    """The customers with parts (split, or with a CSS part): their traces are whole."""
    if sim.parts is None or sim.parts.height == 0:
        return np.zeros(0, dtype=np.int64)
    return sim.parts.get_column("row").unique().to_numpy().astype(np.int64)


def _trace_codes(
    rows: pl.DataFrame, run: RunRecord, parted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """Per customer its trace code; the first row of each code; and the kinds of trace
    (see :func:`_trace_exprs`) with how many codes each, in code order. ``parted``: the
    customers with parts."""
    n = rows.height
    placed = run.choices.chosen >= 0
    has_sig = run.sig_of >= 0
    code = np.empty(n, dtype=np.int32)
    firsts: list[np.ndarray] = []
    kinds: list[tuple[str, int]] = []
    pool_sizes = np.array([p.size for p in run.pools] + [0], dtype=np.int64)
    whole = np.zeros(n, dtype=bool)
    whole[parted] = True
    split = np.zeros(n, dtype=bool)
    split[run.split_rows] = True
    offset = 0
    # a. Placed customers without parts: the head of the text (up to the choice) depends
    # on the signature and n_full only; b. matched but not placed: so does the whole text.
    # c. Placed customers with parts (their words) and split customers: one text each.
    for kind, at in (
        ("placed", np.flatnonzero(placed & ~whole)),
        ("whole", np.flatnonzero(placed & whole & ~split)),
        ("split", run.split_rows),
        ("missed", np.flatnonzero(has_sig & ~placed)),
    ):
        if not at.size:
            continue
        if kind in ("placed", "missed"):
            first, pair = _distinct_pairs(
                at, run.sig_of, run.choices.n_full, run.sig_pool, pool_sizes
            )
            code[at] = offset + pair
            at = at[first]
        else:
            code[at] = offset + np.arange(at.size)
        firsts.append(at)
        kinds.append((kind, at.size))
        offset += at.size
    del at
    # c. Not FRP-eligible: the failing check, what it names, and the CSS queue (country).
    if not has_sig.all():
        pre = pl.col("reason")
        groups = (
            rows.select("reason", "seats", "wid", "excluded", "country")
            .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))
            .filter(pl.Series(~has_sig))
            .select(
                pre,
                pl.when(pre == REASON_CODE[Reason.BELOW_SEAT_THRESHOLD]).then(pl.col("seats")),
                pl.when(
                    (pre == REASON_CODE[Reason.NO_ELIGIBLE_WORKLOAD])
                    | (pre == REASON_CODE[Reason.CSS_WORKLOAD])
                ).then(pl.col("wid")),
                pl.when(pre == REASON_CODE[Reason.DECLINED_BY_PARTNERS]).then(pl.col("excluded")),
                "country",
                "_row",
            )
            .group_by("reason", "seats", "wid", "excluded", "country")
            .agg(pl.col("_row"))
            .get_column("_row")
        )
        code[groups.explode().to_numpy()] = offset + np.repeat(
            np.arange(groups.len(), dtype=np.int64), groups.list.len().to_numpy()
        )
        firsts.append(groups.list.first().to_numpy().astype(np.int64))
        kinds.append(("css", groups.len()))
    return code, np.concatenate(firsts or [np.zeros(0, dtype=np.int64)]), kinds


def _distinct_pairs(
    rows: np.ndarray,
    sig_of: np.ndarray,
    n_full: np.ndarray,
    sig_pool: np.ndarray,
    pool_sizes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (signature, partners full) pairs of ``rows``: each pair's first row
    (as positions in ``rows``), and each row's pair number.

    n_full of a signature's customer is in 0..pool size: a dense key, when small
    enough, finds the distinct pairs without sorting. A function of its own so that its
    million-row temporaries are gone before the trace texts are built.
    """
    span = pool_sizes[sig_pool] + 1  # pool -1 picks the trailing 0
    start = np.concatenate(([0], np.cumsum(span)[:-1]))
    key = start[sig_of[rows]] + n_full[rows]
    if int(span.sum()) <= 4 * rows.size:
        first_row = np.full(int(span.sum()), rows.size, dtype=np.int64)
        np.minimum.at(first_row, key, np.arange(rows.size, dtype=np.int64))
        present = first_row < rows.size
        inverse = (np.cumsum(present) - 1)[key]
        first = first_row[present]
    else:
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


class _Representatives:
    """The columns :func:`_trace_exprs` reads, for one row per distinct trace: what all
    rows share is worked out once, and :meth:`frame` gives the rows of a slice."""

    def __init__(self, sim: Simulation, run: RunRecord) -> None:
        self.sim, self.run = sim, run
        self.sizes = np.array([p.size for p in run.pools] + [0], dtype=np.int64)
        # Every pool's full members in the order they ran out of room, sorted once for
        # all slices (each slice's pools overlap the others').
        every = np.arange(len(run.pools), dtype=np.int64)
        self.full = _full_in_order(_fill_rank(sim.partners), run.pools, every)
        self.sig_text = pl.Series([*run.sig_trace, None], dtype=pl.String)
        self.parts = _parts_of(sim)
        # Only the columns :meth:`frame` reads are gathered (the tenant ids are the
        # largest of those it does not).
        self.rows = sim.rows.select("reason", "seats", "wid", "excluded", "country", "chosen")

    def frame(self, first: np.ndarray) -> pl.DataFrame:
        run, lk = self.run, self.sim.lookup
        sig = run.sig_of[first]
        pool = run.pool[first]
        n_full = run.choices.n_full[first]
        return self.rows[first].select(
            pl.when(pl.Series(sig < 0)).then(gather(REASONS, "reason")).alias("pre_reason"),
            "seats",
            gather(lk.workloads.get_column("workloads"), "wid").alias("workloads"),
            gather(lk.workloads.get_column("eligible"), "wid").alias("eligible"),
            "excluded",
            "reason",
            pl.col("country")
            .replace_strict(lk.queue_of_country, return_dtype=pl.String)
            .alias("css_queue"),
            gather(lk.partner_ids, "chosen").alias("partner_id"),
            self.sig_text.gather(pl.Series(sig)).alias("match_trace"),
            pl.Series("pool", np.where(sig >= 0, pool, -1)).set(pl.Series(sig < 0), None),
            pl.Series("n_full", n_full),
            pl.Series("n_matching", self.sizes[pool]),  # pool -1 picks the trailing 0
            _full_ids(lk.partner_ids, self.full, pool, n_full),
            pl.Series("prev", run.choices.prev[first]),
            pl.Series("load_after", run.choices.load_after[first]),
            *_parts_words(self.parts, first),
        )


def _parts_of(sim: Simulation) -> dict[int, list[Part]]:
    """The parts of each customer with more than one, by row."""
    by_row: dict[int, list[Part]] = {}
    if sim.parts is None:
        return by_row
    country = sim.rows.get_column("country")
    for r in sim.parts.iter_rows(named=True):
        by_row.setdefault(r["row"], []).append(_part(sim, r, country[r["row"]]))
    return by_row


def _parts_words(by_row: dict[int, list[Part]], first: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """Per representative row, the split and CSS halves of its trace (empty without):
    the few customers with parts, worded one by one as :func:`render` words them."""
    split = pl.Series("split_words", [""] * first.size, dtype=pl.String)
    css = pl.Series("css_words", [""] * first.size, dtype=pl.String)
    if not by_row:
        return split, css
    at = {int(row): k for k, row in enumerate(first.tolist()) if row in by_row}
    if not at:
        return split, css
    where = np.array(list(at.values()), dtype=np.int64)
    rows = list(at)
    split = split.scatter(where, [split_words(by_row[r]) for r in rows])
    css = css.scatter(where, [css_words(by_row[r]) for r in rows])
    return split, css


def _full_ids(
    ids: pl.Series,
    full: tuple[np.ndarray, np.ndarray],
    pool: np.ndarray,
    n_full: np.ndarray,
) -> pl.Series:
    """Per representative row, the full partners a trace names: the first ``TRACE_IDS``
    of its pool in the order they ran out of room (``full``: every pool's, from
    :func:`_full_in_order`), then "+N more" (null if none).

    Each distinct (pool, shown) list is joined once, as TRACE_IDS columns of ids (the
    k-th member of each list, null past its end) concatenated: a third of the time of
    grouping the ids by list and joining each group. The rest is column arithmetic.
    """
    members, starts = full
    out = pl.Series("full_ids", [None] * pool.size, dtype=pl.String)
    valid = (pool >= 0) & (n_full > 0)
    if not valid.any():
        return out
    head = np.minimum(n_full, TRACE_IDS)
    key = (pool * (TRACE_IDS + 1) + head)[valid]
    distinct, inverse = np.unique(key, return_inverse=True)
    in_pool, shown = distinct // (TRACE_IDS + 1), distinct % (TRACE_IDS + 1)
    # The k-th member each distinct list names, from its pool's start (a list names
    # `shown` of them; a full pool has at least that many).
    nth = [
        ids.gather(pl.Series(members[np.where(shown > k, starts[in_pool] + k, 0)])).set(
            pl.Series(shown <= k), None
        )
        for k in range(TRACE_IDS)
    ]
    joined = (
        pl.select(pl.concat_str(nth, separator=_LISTED, ignore_nulls=True))
        .to_series()
        .gather(pl.Series(inverse.reshape(-1)))
    )
    more = pl.Series((n_full - head)[valid])
    text = pl.select(
        pl.when(more > 0).then(pl.format(_MORE, joined, more)).otherwise(joined)
    ).to_series()
    return out.scatter(np.flatnonzero(valid), text)


def _trace_exprs(policy: Policy, rules: Rules) -> dict[str, pl.Expr]:
    """The trace, column-wise, for each kind of customer :func:`_trace_codes` groups.

    One expression per kind (placed: the head only, up to the choice; placed with parts;
    split; matched but not placed; not FRP-eligible), each run on its own rows only:
    polars computes every branch of a when/then for every row, and a trace is a few
    hundred characters.
    """
    c = pl.col
    to_css = pl.format(_TO_QUEUE, c("css_queue"))
    full = (
        pl.when(c("n_full") > 0)
        .then(pl.format(_FULL, c("n_full"), c("n_matching"), c("full_ids")))
        .otherwise(pl.format(_NONE_FULL, c("n_matching")))
    )
    exhausted = pl.lit(_EXHAUSTED)
    if policy is Policy.OPTIMAL:
        exhausted = (
            pl.when(c("n_full") < c("n_matching"))
            .then(pl.lit(_EXHAUSTED + _PLAN_KEPT))
            .otherwise(exhausted)
        )
    css = pl.concat_str(
        pl.when(c("pre_reason").is_in([r.value for r in _NOT_A_CHECK]))
        .then(pl.lit(""))
        .otherwise(pl.lit(_NOT_ELIGIBLE)),
        _failed_check_expr(rules),
        to_css,
    )
    exhausted_split = pl.lit(_NO_SINGLE + _SPLIT_FULL + _EXHAUSTED)
    missed = (
        pl.when((c("pool").is_null() | (c("pool") < 0)) & (c("reason") == _EXHAUSTED_CODE))
        .then(pl.concat_str(c("match_trace"), exhausted_split, to_css))
        .when(c("pool").is_null() | (c("pool") < 0))
        .then(pl.concat_str(c("match_trace"), pl.lit(_NO_MATCH), to_css))
        .otherwise(pl.concat_str(c("match_trace"), pl.lit("; "), full, exhausted, to_css))
    )
    placed = pl.concat_str(c("match_trace"), pl.lit("; "), full)
    whole = pl.concat_str(placed, _chose_expr(policy, c("partner_id")), c("css_words"))
    split = pl.concat_str(
        c("match_trace"),
        pl.when(c("pool").is_null() | (c("pool") < 0))
        .then(pl.lit(_NO_SINGLE))
        .otherwise(pl.concat_str(pl.lit("; "), full)),
        c("split_words"),
        c("css_words"),
    )
    return {"placed": placed, "whole": whole, "split": split, "missed": missed, "css": css}


def _failed_check_expr(rules: Rules) -> pl.Expr:
    """:func:`_failed_check`, column-wise."""
    c = pl.col
    return (
        pl.when(c("pre_reason") == Reason.BELOW_SEAT_THRESHOLD.value)
        .then(pl.format(_SEATS, c("seats"), pl.lit(rules.min_seats)))
        .when(c("pre_reason") == Reason.NO_ELIGIBLE_WORKLOAD.value)
        .then(
            pl.format(
                _NO_WORKLOAD,
                c("workloads").list.join(_LISTED),
                pl.lit(_LISTED.join(rules.eligible_workloads)),
            )
        )
        .when(c("pre_reason") == Reason.CSS_WORKLOAD.value)
        .then(pl.format(_CSS_ONLY, c("eligible").list.join(_LISTED)))
        .when(c("pre_reason") == Reason.DECLINED_BY_PARTNERS.value)
        .then(
            pl.format(
                _DECLINED,
                c("excluded").str.count_matches(";") + 1,
                c("excluded").str.replace_all(";", _LISTED),
                pl.lit(rules.max_declines),
            )
        )
        .otherwise(pl.lit(_NO_CONSENT))
    )


def _why_chosen_expr(policy: Policy) -> pl.Expr:
    """:func:`why_chosen`, column-wise."""
    c = pl.col
    if policy is Policy.LEAST_LOADED:
        detail = pl.format(_LOAD, c("load_after"))
    else:
        detail = pl.when(c("prev") >= 0).then(pl.format(_TURN, c("prev"))).otherwise(pl.lit(_NEVER))
    return pl.format(_BECAUSE, pl.lit(_WHY[policy]), detail)
