"""Eligibility and matching, computed once per customer signature rather than per customer.

Customers that share (country, language, eligible-workload set) match exactly the same
partners, so the cohort is grouped by that signature and each signature is matched once
against small per-country and per-language indexes; no customer ever scans the partner
list. Signatures whose matching partners are the same set share a *pool*: the unit in
which round robin takes turns and in which fairness is judged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from engine.columns import MONTH_REFERRALS, PARTNER_SIZES
from engine.reasons import Reason
from engine.rules import Rules
from engine.sizes import ALL_SIZES, SIZE_BUCKETS, size_code, size_mask

#: How many partner ids a trace lists before it says "+N more".
TRACE_IDS = 5


@dataclass(frozen=True)
class PartnerIndex:
    """Partners as arrays indexed 0..n-1 in partner_id order (so index order breaks ties)."""

    ids: list[str]
    psm_email: list[str | None]
    capacity: np.ndarray  # effective capacity after rules.capacity_scale
    active: np.ndarray
    #: The load at which a partner is full: its capacity, or sooner its monthly quota.
    limit: np.ndarray
    available: np.ndarray  # Referral Ready, not switched off and not paused for this run
    paused: np.ndarray  # Referral Ready but paused on the run's date
    workload_mask: np.ndarray  # bit j set = covers rules.eligible_workloads[j]
    #: bit j set = takes customers of size bucket j (engine.sizes); every bit when unlisted
    size_mask: np.ndarray
    last_assigned: list[int | None]
    by_country: dict[str, np.ndarray]  # available partners serving a country
    by_language: dict[str, np.ndarray]
    n_unavailable: int
    #: Some partner takes only some sizes: only then is size a matching rule of its own
    #: (without it, size removes no one and the traces stay as they were).
    sizes_listed: bool = False

    @property
    def size(self) -> int:
        return len(self.ids)


def workload_mask(workloads: Iterable[str | None] | None, eligible_workloads: Sequence[str]) -> int:
    """Bit j set when ``workloads`` has ``eligible_workloads[j]``: the form in which
    matching compares what a customer needs with what a partner covers."""
    have = set(workloads or ())
    return sum(1 << j for j, w in enumerate(eligible_workloads) if w in have)


def index_partners(partners: pl.DataFrame, rules: Rules, today: date | None = None) -> PartnerIndex:
    """Arrays and inverted indexes over validated partners (PARTNER_SCHEMA, and
    MONTH_REFERRALS when the store gives it).

    ``today`` is the run's date: a partner is paused before its ``paused_until``
    (docs/domain.md, "Partner availability and intake"); None considers no pause.
    """
    p = partners.sort("partner_id")
    masks = np.array(
        [workload_mask(wl, rules.eligible_workloads) for wl in p["workloads"].to_list()],
        dtype=np.int64,
    )
    ids = p["partner_id"].to_list()
    disabled = rules.disabled_partners
    ready = np.array(
        [
            bool(r) and pid not in disabled
            for pid, r in zip(ids, p["referral_ready"].to_list(), strict=True)
        ],
        dtype=bool,
    )
    paused = ready & _paused_on(p, today)
    available = ready & ~paused
    capacity = np.floor(p["capacity"].to_numpy().astype(np.float64) * rules.capacity_scale).astype(
        np.int64
    )
    active = p["active_referrals"].to_numpy().astype(np.int64)
    by_country: dict[str, list[int]] = {}
    by_language: dict[str, list[int]] = {}
    for i, (countries, languages) in enumerate(
        zip(p["countries"].to_list(), p["languages"].to_list(), strict=True)
    ):
        if not available[i]:
            continue
        for c in countries or ():
            by_country.setdefault(c, []).append(i)
        for lang in languages or ():
            by_language.setdefault(lang, []).append(i)
    sizes = (
        np.array([size_mask(v) for v in p[PARTNER_SIZES].to_list()], dtype=np.int64)
        if PARTNER_SIZES in p.columns
        else np.full(p.height, ALL_SIZES, dtype=np.int64)
    )
    return PartnerIndex(
        ids=ids,
        psm_email=p["psm_email"].to_list(),
        capacity=capacity,
        active=active,
        limit=_seat_limit(p, capacity, active),
        available=available,
        paused=paused,
        workload_mask=masks,
        size_mask=sizes,
        last_assigned=p["last_assigned"].to_list(),
        by_country={k: np.array(v, dtype=np.int64) for k, v in by_country.items()},
        by_language={k: np.array(v, dtype=np.int64) for k, v in by_language.items()},
        n_unavailable=int((~available).sum()),
        sizes_listed=bool((sizes != ALL_SIZES).any()),
    )


def _paused_on(partners: pl.DataFrame, today: date | None) -> np.ndarray:
    """Per partner: paused on ``today``, which is before its ``paused_until``."""
    if today is None or "paused_until" not in partners.columns:
        return np.zeros(partners.height, dtype=bool)
    paused = (pl.col("paused_until") > today).fill_null(False)
    return partners.select(paused).to_series().to_numpy()


def _seat_limit(partners: pl.DataFrame, capacity: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Per partner, the load at which it is full. Remaining seats are the smaller of
    ``capacity - load`` and what its monthly quota leaves this month; as a limit on the
    load that is ``min(capacity, active + quota left)``, worked out once here so that the
    selection loop still tests one number per partner."""
    if "monthly_quota" not in partners.columns:
        return capacity
    made = (
        pl.col(MONTH_REFERRALS).fill_null(0)
        if MONTH_REFERRALS in partners.columns
        else pl.lit(0, dtype=pl.Int64)
    )
    left = partners.select((pl.col("monthly_quota") - made).alias("left")).to_series()
    has_quota = left.is_not_null().to_numpy()
    by_quota = active + left.fill_null(0).to_numpy().astype(np.int64)
    return np.where(has_quota, np.minimum(capacity, by_quota), capacity)


def mask_names(mask: int, eligible_workloads: Sequence[str]) -> tuple[str, ...]:
    """The workloads of a mask, sorted (as a customer's eligible workloads are listed)."""
    return tuple(sorted(w for j, w in enumerate(eligible_workloads) if mask >> j & 1))


def workload_table(workloads: pl.Series, rules: Rules) -> tuple[pl.Series, pl.DataFrame]:
    """Each distinct workloads list once: its eligible workloads (sorted) and their mask.

    Returns the row -> table index (``wid``, UInt32) and the table (``workloads``,
    ``eligible``, ``mask``). A cohort has few distinct lists, so this replaces per-row
    list work with one grouping of the list column.
    """
    # One group per distinct list, numbered by first appearance; rows scattered back
    # with numpy (about half the cost of a join on a list column).
    groups = (
        workloads.to_frame("workloads")
        .with_row_index("row")
        .group_by("workloads", maintain_order=True)
        .agg("row")
    )
    uniq = groups.get_column("workloads")
    known = set(rules.eligible_workloads)
    eligible = [None if wl is None else sorted(known.intersection(wl)) for wl in uniq.to_list()]
    masks = [workload_mask(e, rules.eligible_workloads) for e in eligible]
    table = pl.DataFrame(
        {"workloads": uniq, "eligible": eligible, "mask": masks},
        schema={"workloads": workloads.dtype, "eligible": pl.List(pl.String), "mask": pl.Int64},
    )
    rows = groups.get_column("row")
    ids = np.empty(workloads.len(), dtype=np.uint32)
    ids[rows.explode().to_numpy()] = np.repeat(
        np.arange(groups.height, dtype=np.uint32), rows.list.len().to_numpy()
    )
    wid = pl.Series("wid", ids, dtype=pl.UInt32)
    return wid, table


def eligibility_failures(rules: Rules) -> dict[Reason, pl.Expr]:
    """Each check before matching, in the order the process applies them (docs/domain.md,
    "The process"), as an expression true for the customers that fail it; needs
    ``seats``, ``mask``, ``referral_consent`` and ``excluded``.

    The run keeps the first failure (:func:`pre_reason_code_expr`); an explanation shows
    every check (``engine.explain``): both read these.
    """
    n_declined = (
        pl.when(pl.col("excluded") == "")
        .then(0)
        .otherwise(pl.col("excluded").str.count_matches(";") + 1)
    )
    consent = pl.col("referral_consent").fill_null(rules.referral_consent_default)
    checks = {
        Reason.BELOW_SEAT_THRESHOLD: pl.col("seats") < rules.min_seats,
        Reason.NO_ELIGIBLE_WORKLOAD: pl.col("mask") == 0,
        Reason.NO_REFERRAL_CONSENT: ~consent,
        Reason.DECLINED_BY_PARTNERS: n_declined >= rules.max_declines,
    }
    if rules.css_workloads:  # every eligible workload is one CSS always delivers
        checks[Reason.CSS_WORKLOAD] = (pl.col("mask") & match_mask_of(rules)) == 0
    return checks


def match_mask_of(rules: Rules) -> int:
    """The eligible workloads partners are matched on: all but the CSS workloads."""
    every = (1 << len(rules.eligible_workloads)) - 1
    return every & ~workload_mask(rules.css_workloads, rules.eligible_workloads)


def pre_reason_code_expr(rules: Rules) -> pl.Expr:
    """The failing eligibility check as its position in :class:`Reason` (UInt8), null when
    FRP-eligible; needs the columns :func:`eligibility_failures` reads.

    A code rather than the name: a million customers then cost a byte each, and the
    names are spelled out only where a person reads them.
    """
    code = {r: pl.lit(i, dtype=pl.UInt8) for i, r in enumerate(Reason)}
    chain: pl.Expr = pl.lit(None, dtype=pl.UInt8)
    for reason, fails in reversed(eligibility_failures(rules).items()):
        chain = pl.when(fails).then(code[reason]).otherwise(chain)
    return chain.alias("pre")


def pre_reason_expr(rules: Rules) -> pl.Expr:
    """The failing eligibility check's name (null when FRP-eligible); see the code version."""
    names = pl.Series([r.value for r in Reason], dtype=pl.String)
    return pl.lit(names).gather(pre_reason_code_expr(rules)).alias("pre_reason")


#: The customer columns a run keeps from its cohort, as given, and carries into its rows;
#: ``excluded`` lists the partners that declined each customer.
COHORT_COLUMNS = (
    "tenant_id",
    "country",
    "language",
    "seats",
    "gateway",
    "excluded",
    "referral_consent",
)


@dataclass(frozen=True)
class Cohort:
    """A validated cohort reduced to what a run reads (see :func:`prepare_cohort`).

    ``frame`` has one row per customer: the input's tenant_id, country, language, seats,
    gateway and consent columns (shared, not copied), the partners that declined each
    (``excluded``), and each customer's eligible-workload mask and workload-list id
    (``wid``); ``workloads`` holds each distinct workload list once.
    """

    frame: pl.DataFrame
    workloads: pl.DataFrame
    eligible_workloads: tuple[str, ...]


def prepare_cohort(
    customers: pl.DataFrame,
    rules: Rules,
    excluded: Mapping[str, Collection[str]] | None = None,
) -> Cohort:
    """The part of a cohort a run reads; see ``engine.assign.simulate`` for ``excluded``.

    A caller holding a large cohort can let the full frame go once this returns: a
    million customers' workload lists are the largest thing in it, and a run needs them
    only once per distinct list.
    """
    if excluded:
        keys = pl.DataFrame(
            {
                "tenant_id": list(excluded),
                "excluded": [";".join(sorted(set(v))) for v in excluded.values()],
            },
            schema={"tenant_id": pl.String, "excluded": pl.String},
        )
        customers = customers.join(keys, on="tenant_id", how="left", maintain_order="left")
        customers = customers.with_columns(pl.col("excluded").fill_null(""))
    if "excluded" not in customers.columns:
        customers = customers.with_columns(pl.lit("").alias("excluded"))
    wid, workloads = workload_table(customers["workloads"], rules)
    frame = customers.select(
        *COHORT_COLUMNS,
        workloads["mask"].gather(wid).alias("mask"),
        wid.alias("wid"),
    )
    return Cohort(frame, workloads, tuple(rules.eligible_workloads))


def prepare_customers(customers: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Customers with their eligible workloads, workload mask and eligibility reason.

    Adds ``eligible`` (sorted list), ``mask`` (int), ``excluded`` (text: the partners
    that declined the customer, ';'-joined, '' for none) and ``pre_reason`` (the failing
    check, null when FRP-eligible), in the documented order; a customer declined by
    ``rules.max_declines`` partners goes to CSS after the eligibility checks.
    """
    cohort = prepare_cohort(customers, rules)
    return customers.with_columns(
        cohort.frame.get_column("excluded"),
        cohort.workloads.get_column("eligible").gather(cohort.frame.get_column("wid")),
        cohort.frame.get_column("mask"),
    ).with_columns(pre_reason_expr(rules))


@dataclass(frozen=True)
class Signature:
    country: str
    language: str
    mask: int
    eligible: tuple[str, ...]
    #: Partners that declined this customer: never matched again.
    excluded: tuple[str, ...] = ()
    #: The customer's size bucket (its position in engine.sizes.SIZE_BUCKETS); -1: not
    #: tested (a caller that knows no seats).
    size: int = -1


@dataclass(frozen=True)
class SignatureColumns:
    """A cohort's signatures as columns (what :meth:`Matcher.match_cohort` reads).

    ``wid`` indexes ``eligible`` (each distinct eligible-workload tuple once);
    ``excluded`` is the ';'-joined partners that declined (empty for none).
    """

    countries: Sequence[str]
    languages: Sequence[str]
    masks: np.ndarray
    wid: np.ndarray
    eligible: Sequence[tuple[str, ...]]
    excluded: Sequence[str]
    sizes: np.ndarray  # size bucket code per signature

    def signature(self, j: int) -> Signature:
        declined = self.excluded[j]
        return Signature(
            self.countries[j],
            self.languages[j],
            int(self.masks[j]),
            self.eligible[int(self.wid[j])],
            tuple(declined.split(";")) if declined else (),
            int(self.sizes[j]),
        )


@dataclass(frozen=True)
class MatchStep:
    """One rule of matching: how many partners it kept and which it removed."""

    rule: str
    kept: int
    removed: tuple[str, ...]  # partner ids removed by this rule (may be truncated: see n_removed)
    n_removed: int
    #: Referral Ready only: the partners it removed because they are paused (truncated
    #: like ``removed``: see n_paused).
    paused: tuple[str, ...] = ()
    n_paused: int = 0


@dataclass(frozen=True)
class Match:
    partners: np.ndarray  # matching partner indexes, ascending
    steps: tuple[MatchStep, ...]


class Matcher:
    """Matches many signatures against one index, caching the per (country, language) work.

    Signatures of a cohort share few (country, language) pairs, so the candidates after
    those two rules (and the trace of who they removed) are computed once per pair; each
    signature then costs one vectorised mask test over a small array.
    """

    def __init__(self, index: PartnerIndex, keep_ids: int = TRACE_IDS) -> None:
        self.index = index
        self.keep_ids = keep_ids
        self.n_ready = index.size - index.n_unavailable
        paused = np.flatnonzero(index.paused)
        self._ready_step = MatchStep(
            "Referral Ready",
            self.n_ready,
            (),
            index.n_unavailable,
            tuple(index.ids[i] for i in paused[:keep_ids].tolist()),
            int(paused.size),
        )
        self._lang: dict[str, np.ndarray] = {}
        self._pair: dict[tuple[str, str], tuple] = {}
        self._head: dict[tuple[str, str], str] = {}  # describe_steps of the pair's steps

    def _speaks(self, language: str) -> np.ndarray:
        got = self._lang.get(language)
        if got is None:
            got = np.zeros(self.index.size, dtype=bool)
            members = self.index.by_language.get(language)
            if members is not None:
                got[members] = True
            self._lang[language] = got
        return got

    def candidates(self, country: str, language: str) -> tuple[np.ndarray, np.ndarray]:
        """The available partners serving ``country`` in ``language`` (ascending) and
        their workload masks: where a split looks for its parts (``engine.split``)."""
        after_lang, masks, _ = self._country_language(country, language)
        return after_lang, masks

    def _country_language(self, country: str, language: str) -> tuple:
        key = (country, language)
        got = self._pair.get(key)
        if got is None:
            index = self.index
            in_country = index.by_country.get(country, _EMPTY)
            speaks = self._speaks(language)[in_country]
            after_lang = in_country[speaks]
            gone = in_country[~speaks]
            n_ready = self.n_ready
            steps = (
                self._ready_step,
                MatchStep(
                    f"country {country}", int(in_country.size), (), n_ready - int(in_country.size)
                ),
                MatchStep(
                    f"language {language}",
                    int(after_lang.size),
                    tuple(index.ids[i] for i in gone[: self.keep_ids].tolist()),
                    int(gone.size),
                ),
            )
            got = (after_lang, index.workload_mask[after_lang], steps)
            self._pair[key] = got
        return got

    def describe(self, sig: Signature, match: Match) -> str:
        """``describe_steps(match.steps)``, with the country and language part cached."""
        return self._head_text(sig.country, sig.language) + "; " + describe_steps(match.steps[3:])

    def _head_text(self, country: str, language: str) -> str:
        key = (country, language)
        head = self._head.get(key)
        if head is None:
            head = self._head[key] = describe_steps(self._country_language(country, language)[2])
        return head

    def match_cohort(
        self, sigs: SignatureColumns
    ) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
        """:meth:`match_cohort_later` with the texts spelled at once."""
        sig_pool, pools, texts = self.match_cohort_later(sigs)
        return sig_pool, pools, texts()

    def match_cohort_later(
        self, sigs: SignatureColumns
    ) -> tuple[np.ndarray, list[np.ndarray], Callable[[], list[str]]]:
        """Every signature's pool and match text: ``(pool per signature, pools, texts)``,
        the texts as a function that spells them (engine.assign calls it on a thread
        while the selection runs: the pools are all the selection needs).

        The same result as :meth:`match` on each signature in turn, with the distinct
        partner sets numbered by first appearance (pool -1: no partner matches), but
        computed a (country, language) pair at a time (:meth:`_match_pair`): a large
        cohort has tens of thousands of signatures over a few dozen pairs.
        """
        n = len(sigs.countries)
        texts = [""] * n
        local = np.full(n, -1, dtype=np.int64)  # per signature: its distinct member set
        members: list[np.ndarray] = []
        by_pair: dict[tuple[str, str], list[int]] = {}
        for j, (country, language, declined) in enumerate(
            zip(sigs.countries, sigs.languages, sigs.excluded, strict=True)
        ):
            if declined:
                sig = sigs.signature(j)
                m = self.match(sig)
                texts[j] = self.describe(sig, m)
                local[j] = len(members)
                members.append(m.partners)
            else:
                by_pair.setdefault((country, language), []).append(j)
        later = []
        for (country, language), js in by_pair.items():
            at = np.array(js, dtype=np.int64)
            sets, inverse, pair_texts = self._match_pair(
                country, language, sigs.masks[at], sigs.wid[at], sigs.sizes[at]
            )
            local[at] = len(members) + inverse
            members.extend(sets)
            later.append((js, pair_texts))
        sig_pool, pools = _number_pools(members, local)

        def spelled() -> list[str]:
            rule_of_wid = ["workloads " + "+".join(e) for e in sigs.eligible]
            for js, pair_texts in later:
                for j, text in zip(js, pair_texts(rule_of_wid), strict=True):
                    texts[j] = text
            return texts

        return sig_pool, pools, spelled

    def _match_pair(
        self, country: str, language: str, masks: np.ndarray, wids: np.ndarray, sizes: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray, Callable[[list[str]], list[str]]]:
        """The signatures of one (country, language) pair, given by their workload masks,
        workload lists (``wids``) and size buckets: their distinct member sets, each
        signature's set, and a function that spells each one's match text (given the
        workload rule's name by ``wid``).

        The signatures are tested against the pair's candidates as one boolean matrix;
        each distinct row of it becomes a member array once, and the first removed
        partners of every row come from one ``nonzero``.
        """
        after_lang, cand_masks, _ = self._country_language(country, language)
        wanted = masks[:, None]
        by_wl = (cand_masks[None, :] & wanted) == wanted
        ok = by_wl
        if self.index.sizes_listed:
            takes = (
                self.index.size_mask[after_lang][None, :] >> sizes[:, None].astype(np.int64)
            ) & 1
            ok = by_wl & (takes == 1)

        def texts(rule_of_wid: list[str]) -> list[str]:
            head = self._head_text(country, language)
            rules = [rule_of_wid[w] for w in wids.tolist()]
            words = self._step_texts(rules, ~by_wl, after_lang, after_lang.size)
            if self.index.sizes_listed:
                size_rules = [f"size {SIZE_BUCKETS[z]}" for z in sizes.tolist()]
                n_wl = by_wl.sum(axis=1).tolist()
                sized = self._step_texts(size_rules, by_wl & ~ok, after_lang, n_wl)
                words = [f"{a}; {b}" for a, b in zip(words, sized, strict=True)]
            return [head + "; " + t for t in words]

        n_cand = after_lang.size
        if n_cand:
            first, inverse = _distinct_rows(np.packbits(ok, axis=1))
            sets = [after_lang[ok[r]] for r in first]
        else:  # nobody in this country speaks the language: no pool
            sets, inverse = [after_lang], np.zeros(len(wids), dtype=np.int64)
        return sets, inverse, texts

    def _step_texts(
        self, rules: list[str], removed: np.ndarray, after: np.ndarray, before: int | list[int]
    ) -> list[str]:
        """One matching rule's text per signature: ``removed`` (signatures x ``after``)
        marks whom it removed of the ``before`` partners each signature had left."""
        rank = np.cumsum(removed, axis=1)
        rows, cols = np.nonzero(removed & (rank <= self.keep_ids))
        ids = self.index.ids
        names = [ids[i] for i in after[cols].tolist()]
        starts = np.searchsorted(rows, np.arange(len(rules) + 1)).tolist()
        gone = removed.sum(axis=1).tolist()
        left = before if isinstance(before, list) else [before] * len(rules)
        return [
            step_text(rule, n - g, g, names[starts[t] : starts[t + 1]])
            for t, (rule, n, g) in enumerate(zip(rules, left, gone, strict=True))
        ]

    def match(self, sig: Signature) -> Match:
        """Partners that match one signature, with the trace of each rule's removals."""
        index = self.index
        keep = self.keep_ids
        after_lang, masks, steps = self._country_language(sig.country, sig.language)
        m = sig.mask
        ok = (masks & m) == m
        after_wl = after_lang[ok]
        n_wl = int(after_lang.size - after_wl.size)
        wl_gone = after_lang[~ok][:keep].tolist() if n_wl else []
        steps = (
            *steps,
            MatchStep(
                "workloads " + "+".join(sig.eligible),
                int(after_wl.size),
                tuple(index.ids[i] for i in wl_gone),
                n_wl,
            ),
        )
        if index.sizes_listed and sig.size >= 0:
            takes = ((index.size_mask[after_wl] >> sig.size) & 1) == 1
            gone_ids = after_wl[~takes]
            steps += (
                MatchStep(
                    f"size {SIZE_BUCKETS[sig.size]}",
                    int(takes.sum()),
                    tuple(index.ids[i] for i in gone_ids[:keep].tolist()),
                    int(gone_ids.size),
                ),
            )
            after_wl = after_wl[takes]
        if sig.excluded:
            gone = set(sig.excluded)
            ids = index.ids
            keep_mask = np.array([ids[i] not in gone for i in after_wl.tolist()], dtype=bool)
            kept = after_wl[keep_mask] if after_wl.size else after_wl
            declined = after_wl[~keep_mask][:keep].tolist() if after_wl.size else []
            steps += (
                MatchStep(
                    "declined earlier",
                    int(kept.size),
                    tuple(ids[i] for i in declined),
                    int(after_wl.size - kept.size),
                ),
            )
            after_wl = kept
        return Match(after_wl, steps)


_EMPTY = np.zeros(0, dtype=np.int64)


def _numbered(keys: Iterable[bytes]) -> tuple[list[int], np.ndarray]:
    """Each distinct key numbered by first appearance: where each number first appears,
    and each key's number. A dict of bytes, where ``np.unique(axis=0)`` sorted a pair's
    few hundred rows as structured values (86 pairs, about a million customers' shape:
    69 -> 9 ms)."""
    number: dict[bytes, int] = {}
    first: list[int] = []
    out: list[int] = []
    for at, key in enumerate(keys):
        k = number.get(key)
        if k is None:
            k = number[key] = len(first)
            first.append(at)
        out.append(k)
    return first, np.array(out, dtype=np.int64)


def _distinct_rows(packed: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The distinct rows of a 2-D uint8 array (:func:`_numbered` of their bytes)."""
    raw, width = packed.tobytes(), packed.shape[1]
    return _numbered(raw[at : at + width] for at in range(0, len(raw), width))


def _number_pools(
    members: list[np.ndarray], local: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each signature's pool (``local``: its index in ``members``) and the pools: the
    distinct non-empty member sets, numbered by first appearance in signature order."""
    first_set, set_of = _numbered(arr.tobytes() for arr in members)
    set_of[[arr.size == 0 for arr in members]] = -1  # no partner matches: no pool
    n = local.size
    provisional = set_of[local] if n else local
    # Renumbered by first appearance in signature order, column-wise.
    sig_pool = np.full(n, -1, dtype=np.int64)
    matched = np.flatnonzero(provisional != -1)
    keys, first, inverse = np.unique(provisional[matched], return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # the pools in order of first appearance
    number = np.empty(order.size, dtype=np.int64)
    number[order] = np.arange(order.size)
    sig_pool[matched] = number[inverse.reshape(-1)]
    pools = [members[first_set[q]] for q in keys[order].tolist()]
    return sig_pool, pools


def match_signature(index: PartnerIndex, sig: Signature, keep_ids: int = TRACE_IDS) -> Match:
    """Partners that match one signature, with the trace of each rule's removals."""
    return Matcher(index, keep_ids).match(sig)


def signature_of(
    rules: Rules,
    country: str,
    language: str,
    eligible: Iterable[str] | None,
    excluded: Iterable[str] = (),
    seats: int | None = None,
) -> Signature:
    """The signature of a customer known by its country, language and eligible workloads
    (as a run's detail and a committed referral keep them), under ``rules``: matched on
    those that are not CSS workloads, and on its size when ``seats`` are given."""
    matched = set(eligible or ()) - set(rules.css_workloads)
    elig = tuple(sorted(matched))
    mask = workload_mask(elig, rules.eligible_workloads)
    size = -1 if seats is None else size_code(seats)
    return Signature(country, language, mask, elig, tuple(excluded), size)


def pool_members(
    index: PartnerIndex, rules: Rules, country: str, language: str, eligible: Iterable[str] | None
) -> list[str]:
    """The ids of the partners such a customer matches, in id order: the members of its
    pool (none when no partner matches). Outside a run, this is how a signature finds
    its pool (result files, committed referrals); :func:`pool_key` names it."""
    match = match_signature(index, signature_of(rules, country, language, eligible))
    return [index.ids[i] for i in match.partners.tolist()]


def pool_key(partner_ids: Iterable[str]) -> str:
    """A short stable name for a pool (its sorted member ids), kept with committed referrals."""
    return hashlib.sha1(";".join(sorted(partner_ids)).encode()).hexdigest()[:12]


def pool_keys(member_ids: pl.Series) -> list[str]:
    """:func:`pool_key` of each list of ids, given in id order: joined column-wise, then
    hashed (a run at 1M names 22k pools)."""
    sha1 = hashlib.sha1
    return [sha1(text.encode()).hexdigest()[:12] for text in member_ids.list.join(";")]


def describe_steps(steps: Sequence[MatchStep]) -> str:
    """The match half of a trace, e.g. 'Referral Ready: 270 (30 removed); country SE: 12 ...'."""
    return "; ".join(
        step_text(s.rule, s.kept, s.n_removed, s.removed, s.paused, s.n_paused) for s in steps
    )


def step_text(
    rule: str,
    kept: int,
    n_removed: int,
    removed: Sequence[str],
    paused: Sequence[str] = (),
    n_paused: int = 0,
) -> str:
    """One rule of a trace's match half: who is left, how many it removed and the first of
    them (the rest as "+N more"); for Referral Ready, how many of them are paused."""
    text = f"{rule}: {kept} left"
    if n_removed:
        text += f", {n_removed} removed"
        if removed:
            text += f" ({_first_of(removed, n_removed)})"
        if n_paused:
            text += f" ({n_paused} paused: {_first_of(paused, n_paused)})"
    return text


def _first_of(ids: Sequence[str], n: int) -> str:
    """The first of ``n`` partner ids, and how many more: "P1, P2 +3 more"."""
    more = n - len(ids)
    return ", ".join(ids) + (f" +{more} more" if more > 0 else "")
