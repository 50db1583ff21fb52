"""Splitting a customer across partners by workload (docs/domain.md, "Split by workload").

A policy places a customer with one partner when it can. When the customer misses (its
pool is full, or no single partner covers all its workloads) and the rules allow more
than one partner per customer, the selection loop calls a :class:`Splitter` once for
that customer, in cohort order. The splitter runs the greedy cover over the customer's
*split candidates*: the available partners that serve its country, speak its language,
take its size, did not decline it and cover at least one of its workloads. They are
found once per signature (on its first miss) from matching's per (country, language)
candidates, so no customer scans the partner list. Each part is given exactly as a
placement is (seat, round-robin stamp, full counts and dead pools): through the
:class:`~engine.policies.Ledger` in the Python loop, which then refreshes its own copies
of the turns, or through the compiled loop's ``give`` (``engine.jit.SplitAtMiss``).

Capacity never grows within a run, so when the candidates with room can no longer form a
cover within the limit, no later customer of that signature can be split: the signature
is marked spent and its later misses cost one lookup.

Under ``optimal`` a part takes only seats the plan did not allot (``spare``), so every
customer the plan places still gets its seat: the split never places fewer customers
than ``optimal`` without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from engine.matching import Matcher, SignatureColumns
from engine.policies import Give, Ledger


@dataclass
class Parts:
    """The parts the splitter gave, one entry per part, in the order given.

    ``gain`` is how many still-uncovered workloads the part covered when it was chosen
    and ``uncovered`` how many were uncovered then (what an explanation says).
    """

    row: list[int] = field(default_factory=list)  # the customer's row in the cohort
    part: list[int] = field(default_factory=list)  # 1, 2, ... within the customer
    partner: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)  # the part's workloads
    prev: list[int] = field(default_factory=list)  # the partner's stamp before; -1 = never
    load: list[int] = field(default_factory=list)  # the partner's load after
    gain: list[int] = field(default_factory=list)
    uncovered: list[int] = field(default_factory=list)
    #: Customers the split could not serve but a cover within the limit exists for among
    #: the candidates ignoring room: their reason is capacity_exhausted.
    cover_exists: list[int] = field(default_factory=list)


def greedy_cover(
    wanted: int, masks: Sequence[int], turn: Sequence[int], limit: int
) -> list[tuple[int, int, int, int]] | None:
    """The greedy cover of ``wanted``: positions into ``masks`` chosen one by one, each the
    one covering the most still-uncovered workloads (ties: smallest ``turn``, the
    round-robin key, which orders least recently assigned then partner_id).

    Returns (position, workloads given, gain, uncovered before) per part, or None when
    the candidates cannot cover ``wanted`` or it takes more than ``limit`` parts.
    """
    uncovered = wanted
    parts: list[tuple[int, int, int, int]] = []
    while uncovered:
        if len(parts) == limit:
            return None
        best, best_gain, best_turn = -1, 0, 0
        for at, m in enumerate(masks):
            gain = (m & uncovered).bit_count()
            if gain > best_gain or (gain == best_gain and gain and turn[at] < best_turn):
                best, best_gain, best_turn = at, gain, turn[at]
        if best < 0:
            return None
        give = masks[best] & uncovered
        parts.append((best, give, best_gain, uncovered.bit_count()))
        uncovered &= ~give
    return parts


def cover_exists(wanted: int, masks: Sequence[int] | np.ndarray, limit: int) -> bool:
    """Whether at most ``limit`` of ``masks`` together cover ``wanted``, exactly.

    Only the distinct useful masks count (at most 2**w for a customer of w workloads),
    and of those only the ones no other contains; pairs and triples of what is left are
    tested as arrays.
    """
    got = np.asarray(masks, dtype=np.int64) & wanted
    if (got == wanted).any():
        return True
    useful = np.unique(got[got != 0])
    within = (useful[:, None] & useful[None, :]) == useful[:, None]  # i inside j
    np.fill_diagonal(within, False)
    useful = useful[~within.any(axis=1)]
    if limit < 2 or useful.size < 2:
        return False
    pairs = (useful[:, None] | useful[None, :]).reshape(-1)
    if (pairs == wanted).any():
        return True
    return limit >= 3 and bool(((pairs[:, None] | useful[None, :]) == wanted).any())


@dataclass
class _Serving:
    """The partners serving one (country, language, size): all of them, and those still
    with room (pruned as they fill; capacity never grows within a run)."""

    every: np.ndarray  # partner indexes, ascending
    every_masks: np.ndarray
    distinct: np.ndarray  # the distinct workload masks among them, room or not
    members: list[int]  # those with room when last looked at
    masks: list[int]
    union: int  # the workloads those with room cover together


class Splitter:
    """The hook a policy's loop calls at a miss: ``splitter(k)`` tries to split customer
    ``k`` and returns the partners it gave a part to (empty: no split).

    Its candidates come per (country, language, size) from matching's own candidates,
    kept as the list of those with room and pruned as partners fill, so that late in a
    run, when most partners are full, a miss costs a few comparisons. A signature whose
    candidates with room can no longer cover it within the limit is *spent*.
    """

    def __init__(
        self,
        ledger: Ledger,
        matcher: Matcher,
        sigs: SignatureColumns,
        sig_of: np.ndarray,
        limit: int,
        spare: list[int] | None = None,
    ) -> None:
        self.ledger = ledger
        self.matcher = matcher
        self.sigs = sigs
        self.sig_of = sig_of
        self.limit = limit
        self.spare = spare
        self.parts = Parts()
        n_sigs = len(sigs.countries)
        self._spent = np.zeros(n_sigs, dtype=bool)
        self._exists = np.full(n_sigs, -1, dtype=np.int8)  # -1: not known yet
        self._serving: dict[tuple[str, str, int], _Serving] = {}

    def serving(self, j: int) -> _Serving:
        """Signature ``j``'s serving partners, pruned to those with room."""
        sigs, index = self.sigs, self.matcher.index
        key = (sigs.countries[j], sigs.languages[j], int(sigs.sizes[j]))
        got = self._serving.get(key)
        if got is None:
            members, masks = self.matcher.candidates(key[0], key[1])
            if index.sizes_listed:
                takes = ((index.size_mask[members] >> key[2]) & 1) == 1
                members, masks = members[takes], masks[takes]
            distinct = np.unique(masks)
            union = int(np.bitwise_or.reduce(distinct)) if distinct.size else 0
            got = _Serving(members, masks, distinct, members.tolist(), masks.tolist(), union)
            self._serving[key] = got
        self._prune(got)
        return got

    def _prune(self, s: _Serving) -> None:
        load, lim, spare = self.ledger.load, self.ledger.limit, self.spare
        keep = [
            t
            for t, i in enumerate(s.members)
            if load[i] < lim[i] and (spare is None or spare[i] > 0)
        ]
        if len(keep) < len(s.members):
            s.members = [s.members[t] for t in keep]
            s.masks = [s.masks[t] for t in keep]
            union = 0
            for m in s.masks:
                union |= m
            s.union = union

    def __call__(self, k: int, give: Give | None = None) -> list[int]:
        j = int(self.sig_of[k])
        if self._spent[j]:
            return self._fail(k, j)
        wanted = int(self.sigs.masks[j])
        s = self.serving(j)
        if s.union & wanted != wanted:  # those with room cannot cover it, now or later
            self._spent[j] = True
            return self._fail(k, j)
        declined = self.sigs.excluded[j]
        gone = set(declined.split(";")) if declined else ()
        ids = self.matcher.index.ids
        room = [
            (i, m & wanted)
            for i, m in zip(s.members, s.masks, strict=True)
            if m & wanted and (not gone or ids[i] not in gone)
        ]
        masks = [m for _, m in room]
        turns = [self.ledger.rr_key(i) for i, _ in room]
        cover = greedy_cover(wanted, masks, turns, self.limit)
        if cover is None:
            if not cover_exists(wanted, masks, self.limit):
                self._spent[j] = True  # room only shrinks: no later customer of j splits
            return self._fail(k, j)
        given = []
        for part, (at, mask, gain, uncovered) in enumerate(cover, start=1):
            i = room[at][0]
            self._give(k, part, i, (mask, gain, uncovered), give or self._ledger_give)
            given.append(i)
        return given

    def _ledger_give(self, i: int) -> tuple[int, int]:
        prev = self.ledger.give(i)  # its seat, its turn, its pools' full counts
        return prev, int(self.ledger.load[i])

    def _give(self, k: int, part: int, i: int, what: tuple[int, int, int], give: Give) -> None:
        """One part to partner i (``what``: its workloads, gain and uncovered before),
        given like a placement."""
        out = self.parts
        prev, load = give(i)
        if self.spare is not None:
            self.spare[i] -= 1
        out.prev.append(prev)
        out.row.append(k)
        out.part.append(part)
        out.partner.append(i)
        out.mask.append(what[0])
        out.load.append(load)
        out.gain.append(what[1])
        out.uncovered.append(what[2])

    def settled(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` (customers of pools with no room) are known not to split:
        those of spent signatures. The loop settles them in bulk, as without a split."""
        sig = self.sig_of[rows]
        spent = self._spent[sig]
        if spent.any():
            self.parts.cover_exists.extend(rows[spent & (self._exists[sig] == 1)].tolist())
        return spent

    def _fail(self, k: int, j: int) -> list[int]:
        """No split: remember whether a cover within the limit exists ignoring room."""
        exists = self._exists[j]
        if exists < 0:
            exists = self._exists[j] = self._cover_ignoring_room(j)
        if exists:
            self.parts.cover_exists.append(k)
        return []

    def _cover_ignoring_room(self, j: int) -> bool:
        """Whether at most ``limit`` serving partners that did not decline the customer
        cover its workloads, room or not."""
        s = self.serving(j)
        wanted = int(self.sigs.masks[j])
        declined = self.sigs.excluded[j]
        if not declined:
            return cover_exists(wanted, s.distinct, self.limit)
        gone = set(declined.split(";"))
        ids = self.matcher.index.ids
        masks = [
            m
            for i, m in zip(s.every.tolist(), s.every_masks.tolist(), strict=True)
            if ids[i] not in gone
        ]
        return cover_exists(wanted, masks, self.limit)


#: The columns of a run's parts (``Simulation.parts``).
PARTS_SCHEMA = {
    "row": pl.Int64,  # the customer's row in the cohort
    "part": pl.Int32,
    "chosen": pl.Int32,  # partner index; null = the CSS part
    "mask": pl.Int64,  # the part's workloads
    "prev": pl.Int64,  # the partner's stamp before the part; null = never assigned
    "load_after": pl.Int32,
    "gain": pl.Int32,  # split parts: uncovered workloads it covered when chosen
    "uncovered": pl.Int32,  # split parts: uncovered workloads then
}


def parts_frame(parts: Parts, chosen: np.ndarray, mask: np.ndarray, css_mask: int) -> pl.DataFrame:
    """One row per part of every customer with more than one part (PARTS_SCHEMA), by row
    then part: the parts the splitter gave, and for a placed customer with CSS workloads
    its partner part (when not split) and its CSS part, numbered last.

    ``chosen`` (per customer, the partner of its part 1, -1 = not placed) and ``mask``
    (its eligible workloads) are the run's.
    """
    frames = [pl.DataFrame(_split_columns(parts), schema=PARTS_SCHEMA)]
    if css_mask:
        n = chosen.size
        n_parts = np.bincount(np.array(parts.row, dtype=np.int64), minlength=n)
        has_css = (chosen >= 0) & ((mask & css_mask) != 0)
        single = np.flatnonzero(has_css & (n_parts == 0))
        with_css = np.flatnonzero(has_css)
        frames.append(
            pl.DataFrame(
                {
                    "row": single,
                    "part": np.ones(single.size, dtype=np.int32),
                    "chosen": chosen[single],
                    "mask": mask[single] & ~css_mask,
                },
                schema={k: PARTS_SCHEMA[k] for k in ("row", "part", "chosen", "mask")},
            )
        )
        frames.append(
            pl.DataFrame(
                {
                    "row": with_css,
                    "part": np.maximum(n_parts[with_css], 1) + 1,
                    "chosen": None,
                    "mask": mask[with_css] & css_mask,
                },
                schema={k: PARTS_SCHEMA[k] for k in ("row", "part", "chosen", "mask")},
            )
        )
    return pl.concat(frames, how="diagonal").select(list(PARTS_SCHEMA)).sort("row", "part")


def _split_columns(parts: Parts) -> dict[str, list[int | None]]:
    return {
        "row": list(parts.row),
        "part": list(parts.part),
        "chosen": list(parts.partner),
        "mask": list(parts.mask),
        "prev": [p if p >= 0 else None for p in parts.prev],
        "load_after": list(parts.load),
        "gain": list(parts.gain),
        "uncovered": list(parts.uncovered),
    }
