"""The one clock: what "now" is for every command, page and stored timestamp.

Everything that depends on the date (when a referral was made, when its acceptance window
closes, whether a partner's pause is over, which month a quota counts) asks this module,
never the system clock or DuckDB's ``now()``: then a test, a scheduler's dry run or a
manager's what-if ("what expires by Friday?") moves every one of them at once.

"Now" is, in order: a time set for this process (:func:`set_now`, used by ``frp --now`` and
by tests), else the environment's ``FRP_NOW``, else the real time. Times are UTC and naive
(no ``tzinfo``), as DuckDB's ``TIMESTAMP`` stores them. The engine never reads the clock:
it is given the date it needs, so a run stays a pure function of its inputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

ENV = "FRP_NOW"

_fixed: datetime | None = None


class ClockError(ValueError):
    """A time given for the clock that is not an ISO date or date-time."""


def parse(text: str, source: str = ENV) -> datetime:
    """An ISO date (``2026-12-06``, midnight) or date-time (``2026-12-06T09:30``, with
    ``Z`` or an offset, converted to UTC) as the clock's naive UTC time."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time())
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise ClockError(
            f"{source}: {text!r} is not a date or date-time; expected ISO 8601 in UTC, "
            "e.g. 2026-12-06 or 2026-12-06T09:30:00Z"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def now() -> datetime:
    """The current time (naive UTC), whole microseconds as DuckDB keeps them."""
    if _fixed is not None:
        return _fixed
    text = os.environ.get(ENV, "").strip()
    if text:
        return parse(text)
    return wall()


def setting() -> str | None:
    """Who set "now": ``"--now"`` (set for this process), ``"FRP_NOW"`` (the environment), or
    None when the clock follows the real time. Pages say so, as ages depend on it."""
    if _fixed is not None:
        return "--now"
    return ENV if os.environ.get(ENV, "").strip() else None


def wall() -> datetime:
    """The real time (naive UTC), whatever the clock is set to.

    Only for leases between processes (an outbox sender's claim on a message): whether
    another sender has died is a matter of real seconds, and a claim stamped with a moved
    clock would look fresh, or stale, for ever.
    """
    return datetime.now(UTC).replace(tzinfo=None)


def today() -> date:
    """The clock's date: what pauses, quotas and acceptance windows count in."""
    return now().date()


def set_now(moment: datetime | str | None) -> None:
    """Fix "now" for this process (``None``: back to ``FRP_NOW`` or the real time)."""
    global _fixed
    _fixed = parse(moment, "--now") if isinstance(moment, str) else moment


@contextmanager
def frozen(moment: datetime | str) -> Iterator[datetime]:
    """ "Now" fixed at ``moment`` inside the block, as it was after it (for tests)."""
    before = _fixed
    set_now(moment)
    try:
        assert _fixed is not None
        yield _fixed
    finally:
        set_now(before)
