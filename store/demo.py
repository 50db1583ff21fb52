"""The demo's history, made by running the product week by week (issue #16 part 4).

An invented history (referrals without runs, a stale pile of active ones) taught a manager
the wrong things: that round robin is unfair, that partners never answer. So the demo's
past is produced the way a team's would be. For each of ``engine.demo.WEEKS`` weeks, with
the clock (``store.clock``) set to that week:

* Monday: ``frp expire`` (last week's silent referrals expire and are re-assigned), the
  changes of the week (rules, pauses that end or start, monthly quotas), the week's
  customers imported into the FTCQ and committed with round robin through
  ``store.commits.commit``, exactly as ``frp commit`` does;
* Wednesday: partners answer their waiting referrals through ``store.lifecycle``: most
  accept, some decline with a reason (the customer is re-assigned at once), some stay
  silent and expire the following Monday;
* Thursday: partners complete the referrals they took once their onboarding is done;
* Friday: each CSS queue's open referrals of earlier weeks are handed off to delivery;
* Saturday: ``frp expire`` again, which queues the reminders then due.

Every random choice comes from one ``random.Random(seed)`` taken in a fixed order over
rows read in a fixed order, so the same seed gives the same database.

Messages: the demo sends nothing. What the outbox holds after each step is recorded as
sent at that time, as a scheduled ``frp outbox send`` would have found it, with an audit
entry saying that nothing left the machine; messages cancelled by a decline or an expiry
before that are cancelled as they would be.

Rules: the versions of :data:`RULES_CHANGES` are saved as the team's rules by
:func:`_use_rules` only, so the runs of the history record the versions they used.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from engine.demo import FULL_POOL_COUNTRIES, WEEKS, DemoWorld, week_start
from engine.reasons import Policy
from engine.rules import DEFAULT_RULES_PATH, Rules, load_rules, to_toml
from store import clock, handoff, lifecycle
from store import rules as team_rules
from store.commits import commit
from store.db import QUEUED, audit, transaction
from store.imports import import_customers, import_partners

#: The team's rules over the weeks: (week, note, what differs from the shipped defaults).
#: The last version is the shipped defaults, which the backlog is read with.
RULES_CHANGES: tuple[tuple[int, str, dict[str, Any]], ...] = (
    (0, "Viva not offered through partners yet", {"drop_workloads": ("viva",)}),
    (
        9,
        "minimum seats raised to 250 while partners catch up",
        {"drop_workloads": ("viva",), "min_seats": 250},
    ),
    (13, "Viva added to the eligible workloads", {"min_seats": 250}),
    (18, "minimum seats back to 150", {}),
)

#: Pauses: (week, partners paused, days). Partners are drawn from the Referral Ready ones;
#: each pause ends within the history (a pause is cleared the Monday it is over).
PAUSES: tuple[tuple[int, int, int], ...] = ((4, 3, 14), (11, 4, 21), (17, 3, 10), (21, 5, 14))

#: Monthly quotas: (week set, week lifted, partners): the partners most referred in the four
#: weeks before agree to a monthly intake (the most they took in a month so far), from the
#: first Monday of a month until it is lifted.
QUOTAS: tuple[tuple[int, int, int], ...] = ((19, 23, 6),)

#: How partners answer a referral: accept, decline (with one of DECLINE_REASONS), or
#: say nothing until it expires.
ANSWERS = {"accept": 0.74, "decline": 0.06, "silent": 0.2}
DECLINES = {
    "at_capacity": 4.0,
    "not_endorsed": 3.0,
    "outside_service_area": 1.0,
    "customer_unresponsive": 2.0,
}
#: Weeks from acceptance to completion; in the designed full countries onboarding is slow,
#: which is why their partners are full by the end.
ONBOARDING_WEEKS = (3, 12)
SLOW_ONBOARDING_WEEKS = (12, 40)
#: CSS referrals of the last weeks still wait for the hand-off.
HANDOFF_LAG_WEEKS = 1

ACTOR = "demo"
SENDER = "demo (recorded as sent: nothing left the machine)"


@dataclass
class _Run:
    """The history as it is being made: the connection, the rules in force, the partners
    as last imported, and which referrals partners have answered or will complete when."""

    con: duckdb.DuckDBPyConnection
    rng: random.Random
    world: DemoWorld
    rules: Rules
    partners: pl.DataFrame
    slow: frozenset[str]
    answered: set[int] = field(default_factory=set)
    completes: dict[int, tuple[int, str, str]] = field(default_factory=dict)

    def at(self, week: int, day: int, hour: int, step: Callable[[int], None]) -> None:
        """``step(week)`` with the clock at ``day`` days and ``hour`` hours after 00:00 of
        the week's Monday; then the outbox as the sender would leave it."""
        monday = week_start(week, self.world.as_of).replace(hour=0)
        with clock.frozen(monday + timedelta(days=day, hours=hour)):
            step(week)
            _record_sent(self.con)


def make_history(con: duckdb.DuckDBPyConnection, world: DemoWorld) -> None:
    """Run the product over the world's weeks on a store holding its partners (what came
    of it is read back from the store, like any store's)."""
    run = _Run(
        con,
        random.Random(world.seed),
        world,
        load_rules(),
        world.partners,
        frozenset(_slow_partners(world)),
    )
    for week in range(WEEKS):
        run.at(week, 0, 9, lambda w: _monday(run, w))
        run.at(week, 2, 11, lambda w: _answer(run))
        run.at(week, 3, 14, lambda w: _complete(run, w))
        run.at(week, 4, 16, lambda w: _hand_off(run, w))
        run.at(week, 5, 12, lambda w: _expire(run))


def _monday(run: _Run, week: int) -> None:
    """Expiries, the week's changes, then the week's customers into the FTCQ and the
    backlog committed with round robin, as ``frp import`` and ``frp commit`` do."""
    _expire(run)
    _changes(run, week)
    source = f"demo week {week + 1} intake"
    import_customers(run.con, run.world.weeks[week], actor=ACTOR, source=source)
    commit(run.con, run.rules, Policy.ROUND_ROBIN, actor=ACTOR, source="FTCQ backlog")


def _slow_partners(world: DemoWorld) -> list[str]:
    """Partners in the designed full countries: their onboardings take longest."""
    serves = pl.col("countries").list.eval(pl.element().is_in(list(FULL_POOL_COUNTRIES)))
    return world.partners.filter(serves.list.any())["partner_id"].to_list()


# --- the week's changes ----------------------------------------------------------------


def _rules_text(change: dict[str, Any]) -> str:
    """The rules TOML of one version: the shipped defaults with ``change`` applied; no
    change is the shipped file's own text, so that saving it again says "unchanged"."""
    if not change:
        return DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    base = load_rules()
    values = {k: v for k, v in change.items() if k != "drop_workloads"}
    dropped = change.get("drop_workloads", ())
    values["eligible_workloads"] = tuple(w for w in base.eligible_workloads if w not in dropped)
    return to_toml(replace(base, **values))


def _use_rules(con: duckdb.DuckDBPyConnection, text: str, note: str) -> Rules:
    """The one place the demo changes its rules: saved as the team's rules
    (``store.rules.save``) at the week's clock, so every later run of the history records
    that version, as a manager's change on the Data page would."""
    version = team_rules.save(con, text, actor=ACTOR, note=note)
    return team_rules.get(con, version).rules


def _changes(run: _Run, week: int) -> None:
    for at, note, change in RULES_CHANGES:
        if at == week:
            run.rules = _use_rules(run.con, _rules_text(change), note)
    today = clock.today()
    partners = run.partners
    over = pl.col("paused_until").is_not_null() & (pl.col("paused_until") <= today)
    changed = set(partners.filter(over)["partner_id"].to_list())
    partners = partners.with_columns(
        pl.when(over).then(None).otherwise(pl.col("paused_until")).alias("paused_until")
    )
    for at, n, days in PAUSES:
        if at == week:
            partners, paused = _pause(run, partners, n, today + timedelta(days=days))
            changed |= paused
    for start, end, n in QUOTAS:
        if start == week:
            quotas = _busiest(run.con, n, clock.now() - timedelta(days=28))
            quota = pl.col("partner_id").replace_strict(quotas, default=None)
            partners = partners.with_columns(
                pl.coalesce(quota, pl.col("monthly_quota")).alias("monthly_quota")
            )
            changed |= set(quotas)
        if end == week:
            limited = partners.filter(pl.col("monthly_quota").is_not_null())["partner_id"]
            partners = partners.with_columns(pl.lit(None, pl.Int64).alias("monthly_quota"))
            changed |= set(limited.to_list())
    if changed:
        run.partners = partners
        rows = partners.filter(pl.col("partner_id").is_in(sorted(changed)))
        import_partners(run.con, rows, actor=ACTOR, source=f"demo week {week + 1} partners")


def _pause(run: _Run, partners: pl.DataFrame, n: int, until: date) -> tuple[pl.DataFrame, set[str]]:
    ready = partners.filter(pl.col("referral_ready") & pl.col("paused_until").is_null())
    picked = set(run.rng.sample(sorted(ready["partner_id"].to_list()), n))
    return partners.with_columns(
        pl.when(pl.col("partner_id").is_in(sorted(picked)))
        .then(pl.lit(until))
        .otherwise(pl.col("paused_until"))
        .alias("paused_until")
    ), picked


def _busiest(con: duckdb.DuckDBPyConnection, n: int, since: datetime) -> dict[str, int]:
    """The ``n`` partners given the most referrals since ``since``, each with the most it was
    given in one calendar month so far: the intake it agrees to keep to."""
    rows = con.execute(
        """
        WITH busy AS (
            SELECT partner_id FROM referrals WHERE outcome = 'frp' AND created_at >= ?
            GROUP BY partner_id ORDER BY count(*) DESC, partner_id LIMIT ?)
        SELECT partner_id, max(made) FROM (
            SELECT partner_id, date_trunc('month', created_at), count(*) AS made
            FROM referrals WHERE outcome = 'frp' AND partner_id IN (SELECT * FROM busy)
            GROUP BY ALL)
        GROUP BY partner_id ORDER BY partner_id
        """,
        [since, n],
    ).fetchall()
    return {partner: int(made) for partner, made in rows}


# --- partners answer -------------------------------------------------------------------


def _answer(run: _Run) -> None:
    """Each waiting referral not answered yet gets its partner's answer, oldest first."""
    waiting = run.con.execute(
        "SELECT referral_id, tenant_id, partner_id FROM referrals "
        "WHERE outcome = 'frp' AND status = 'active' AND created_at <= ? ORDER BY referral_id",
        [clock.now()],
    ).fetchall()
    week = _week_of(run, clock.now())
    for referral_id, tenant_id, partner_id in waiting:
        if referral_id in run.answered:
            continue
        run.answered.add(referral_id)
        answer = _draw(run.rng, ANSWERS)
        if answer == "accept":
            lifecycle.accept(run.con, tenant_id, actor=ACTOR, partner_id=partner_id)
            low, high = SLOW_ONBOARDING_WEEKS if partner_id in run.slow else ONBOARDING_WEEKS
            due = week + run.rng.randint(low, high)
            run.completes[referral_id] = (due, tenant_id, partner_id)
        elif answer == "decline":
            reason = _draw(run.rng, DECLINES)
            lifecycle.decline(
                run.con, tenant_id, reason, run.rules, actor=ACTOR, partner_id=partner_id
            )


def _draw(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _week_of(run: _Run, moment: datetime) -> int:
    return (moment - week_start(0, run.world.as_of)).days // 7


def _complete(run: _Run, week: int) -> None:
    """Partners complete the onboardings due this week (those still accepted)."""
    due = sorted(r for r, (when, _, _) in run.completes.items() if when <= week)
    for referral_id in due:
        _, tenant_id, partner_id = run.completes.pop(referral_id)
        (status,) = run.con.execute(
            "SELECT status FROM referrals WHERE referral_id = ?", [referral_id]
        ).fetchall()[0]
        if status == "accepted":
            lifecycle.complete(run.con, tenant_id, run.rules, actor=ACTOR, partner_id=partner_id)


def _hand_off(run: _Run, week: int) -> None:
    """Delivery takes each CSS queue's open referrals made before the last weeks."""
    cutoff = week_start(week - HANDOFF_LAG_WEEKS + 1, run.world.as_of)
    rows = run.con.execute(
        "SELECT queue, max(referral_id) FROM referrals WHERE outcome = 'css' "
        "AND status = ? AND created_at < ? GROUP BY queue ORDER BY queue",
        [QUEUED, cutoff],
    ).fetchall()
    for queue, up_to in rows:
        handoff.hand_off(run.con, queue=queue, up_to=up_to, actor=ACTOR)


def _expire(run: _Run) -> None:
    lifecycle.expire(run.con, run.rules, actor="scheduler")


# --- the outbox ------------------------------------------------------------------------


def _record_sent(con: duckdb.DuckDBPyConnection) -> None:
    """What the sender would have sent by now, recorded as sent now (and nothing sent)."""
    with transaction(con):
        sent = con.execute(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ? "
            "WHERE status = 'pending' RETURNING message_id",
            [clock.now()],
        ).fetchall()
        if sent:
            counts = {"sent": len(sent), "failed": 0, "pending": 0, "cancelled": 0}
            audit(con, ACTOR, "send_outbox", SENDER, json.dumps(counts))
