"""The clock's part of the referral life cycle: the acceptance window (expiry counted as a
decline, the customer re-assigned at once), reminders, and `frp expire`.

Every time here is set with ``store.clock.frozen``: nothing sleeps, nothing reads the real
date. The rules: docs/domain.md, "Referral life cycle".
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cohorts import synthetic_cohort
from engine.reasons import Policy
from engine.rules import DEFAULT_RULES_PATH, Rules, RulesError, load_rules
from store import clock, state
from store.commits import commit
from store.db import connect
from store.imports import import_customers, import_partners
from store.lifecycle import accept, decline, due, expire
from store.notify import message_id
from tests.db_helpers import inconsistencies
from tests.test_lifecycle import customers, partners

FRP = str(Path(sys.executable).parent / "frp")
T0 = datetime(2026, 3, 2, 9, 0)
DAY = timedelta(days=1)
#: Quotas and pauses are set on the demo in its last month: check the referrals made since.
SINCE = {"quotas_since": "2026-11-01", "pauses_since": "2026-11-24 09:00"}
TABLES = ("referrals", "runs", "customers", "ftop_tasks", "outbox", "audit_log", "rr_order")


def world(path: Path | str, caps: tuple[int, ...] = (2, 2, 2), tenants: int = 3):
    """Partners P1.. (capacities ``caps``) and Gateway customers T1.., all matching, with the
    customers committed at T0 (round robin: T1 -> P1, T2 -> P2, ...)."""
    con = connect(path)
    import_partners(con, partners(*((f"P{i + 1}", c) for i, c in enumerate(caps))))
    import_customers(con, customers(*(f"T{i + 1}" for i in range(tenants))))
    with clock.frozen(T0):
        commit(con, load_rules())
    return con


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = world(tmp_path / "expiry.duckdb")
    yield c
    c.close()


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Every row of the tables a life-cycle change may touch."""
    return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall())) for t in TABLES}


def referrals_of(con: duckdb.DuckDBPyConnection, tenant: str) -> list[tuple]:
    return con.execute(
        "SELECT partner_id, status, decline_reason, outcome, reason FROM referrals "
        "WHERE tenant_id = ? ORDER BY referral_id",
        [tenant],
    ).fetchall()


def run_expire(con: duckdb.DuckDBPyConnection, at: datetime, rules: Rules | None = None):
    with clock.frozen(at):
        return expire(con, rules or load_rules(), actor="scheduler")


# --- expiry ------------------------------------------------------------------------------


def test_a_referral_expires_when_its_window_closes_and_is_reassigned(con) -> None:
    just_before = run_expire(con, T0 + 7 * DAY - timedelta(seconds=1))
    assert (just_before.expired, just_before.reminded) == (0, 3)
    summary = run_expire(con, T0 + 7 * DAY)
    assert (summary.expired, summary.to_partners, summary.to_css) == (3, 3, 0)
    for tenant, first in (("T1", "P1"), ("T2", "P2"), ("T3", "P3")):
        old, new = referrals_of(con, tenant)
        assert old == (first, "expired", "no_response", "frp", "assigned")
        assert new[0] != first and new[1] == "active"
    # One audit entry per expired referral, as for a decline, and one for the run.
    rows = con.execute(
        "SELECT action, actor, details FROM audit_log WHERE action LIKE '%expire' ORDER BY id"
    ).fetchall()
    assert [r[0] for r in rows] == ["expire"] + ["referral_expire"] * 3 + ["expire"]
    assert {r[1] for r in rows} == {"scheduler"}
    first = json.loads(rows[1][2])
    assert first["before"] == {"status": "active"}
    assert first["after"] == {"status": "expired", "decline_reason": "no_response"}
    assert json.loads(rows[-1][2])["expired"] == 3


def test_an_expiry_ends_the_partners_access(con) -> None:
    run_expire(con, T0 + 8 * DAY)
    (old,) = con.execute(
        "SELECT referral_id FROM referrals WHERE tenant_id = 'T1' AND status = 'expired'"
    ).fetchall()[0]
    assert con.execute(
        "SELECT status, closed_at FROM ftop_tasks WHERE referral_id = ?", [old]
    ).fetchall() == [("cancelled", T0 + 8 * DAY)]
    statuses = con.execute(
        "SELECT DISTINCT status FROM outbox WHERE referral_id = ?", [old]
    ).fetchall()
    assert statuses == [("cancelled",)]
    # The new referral has its own open task; nothing later to P1 names T1's customer.
    assert con.execute(
        "SELECT count(*) FROM ftop_tasks WHERE tenant_id = 'T1' AND status = 'open'"
    ).fetchall() == [(1,)]
    later = con.execute(
        "SELECT body FROM outbox WHERE to_email = 'p1@example.com' AND status <> 'cancelled'"
    ).fetchall()
    assert not any("Customer T1" in body for (body,) in later)


def test_expiries_count_as_declines_towards_max_declines(con) -> None:
    rules = load_rules()
    with clock.frozen(T0 + DAY):
        decline(con, "T1", "at_capacity", rules)  # P1 said no; now with P2
    run_expire(con, T0 + 9 * DAY)  # P2 let it expire: two refusals, the most allowed
    *_, last = referrals_of(con, "T1")
    assert last[3:] == ("css", "declined_by_partners")
    trace = con.execute(
        "SELECT trace FROM referrals WHERE tenant_id = 'T1' ORDER BY referral_id DESC LIMIT 1"
    ).fetchall()[0][0]
    assert "declined by 2 partners" in trace


def test_a_customer_is_never_reassigned_to_a_partner_that_let_it_expire(tmp_path: Path) -> None:
    con = world(tmp_path / "two.duckdb", caps=(1, 1, 1), tenants=1)
    rules = load_rules().replace(max_declines=3)
    run_expire(con, T0 + 7 * DAY, rules)
    run_expire(con, T0 + 14 * DAY, rules)
    partners_of = [r[0] for r in referrals_of(con, "T1")]
    assert partners_of[:3] == ["P1", "P2", "P3"]
    run_expire(con, T0 + 21 * DAY, rules)
    assert referrals_of(con, "T1")[-1][3:] == ("css", "declined_by_partners")
    con.close()


def test_expiring_twice_at_the_same_now_changes_nothing(con) -> None:
    at = T0 + 10 * DAY
    assert run_expire(con, at).expired == 3
    before = snapshot(con)
    again = run_expire(con, at)
    assert (again.expired, again.reminded, again.changed) == (0, 0, False)
    assert "nothing to do" in again.describe()
    assert snapshot(con) == before


def test_accepted_referrals_and_css_referrals_never_expire(tmp_path: Path) -> None:
    con = world(tmp_path / "mixed.duckdb", caps=(1,), tenants=2)  # T2 goes to CSS: full
    with clock.frozen(T0 + DAY):
        accept(con, "T1")
    assert run_expire(con, T0 + 30 * DAY).expired == 0
    assert [r[1] for r in referrals_of(con, "T1")] == ["accepted"]
    assert [r[1] for r in referrals_of(con, "T2")] == ["queued"]
    con.close()


def test_without_a_window_nothing_expires(con) -> None:
    rules = load_rules().replace(accept_within_days=0)
    assert run_expire(con, T0 + 365 * DAY, rules).expired == 0
    body = con.execute("SELECT body FROM outbox WHERE recipient_role = 'partner'").fetchall()[0]
    assert "UTC" in body[0]  # committed under the default window: it is stated


def test_held_after_an_expiry_when_matching_partners_are_full(tmp_path: Path) -> None:
    # P1 and P2 have one seat each; T1 and T2 take them, T3 is held. When T1's referral
    # expires, its only other match (P2) is full: T1 is held, and P1's freed seat goes to
    # the oldest held customer, T3.
    con = connect(tmp_path / "hold.duckdb")
    import_partners(con, partners(("P1", 1), ("P2", 1)))
    import_customers(con, customers("T1", "T2", "T3"))
    rules = load_rules().replace(when_full="hold")
    with clock.frozen(T0):
        commit(con, rules)
    with clock.frozen(T0 + 6 * DAY):
        accept(con, "T2")
    summary = run_expire(con, T0 + 7 * DAY, rules)
    assert (summary.expired, summary.held) == (1, 1)
    assert summary.drained is not None and summary.drained.placed == 1
    assert referrals_of(con, "T3")[-1][:2] == ("P1", "active")
    held = con.execute("SELECT held_since IS NOT NULL FROM customers WHERE tenant_id = 'T1'")
    assert held.fetchall() == [(True,)]
    con.close()


def test_due_counts_without_writing(con) -> None:
    before = snapshot(con)
    with clock.frozen(T0 + 5 * DAY):
        early = due(con, load_rules())
    with clock.frozen(T0 + 7 * DAY):
        late = due(con, load_rules())
    assert (early.expiring, early.reminders) == (0, 6)  # partner and PSM of 3 referrals
    assert (late.expiring, late.reminders) == (3, 0)  # expired, not reminded
    assert early.describe() == "0 referrals past their window, 6 reminders due"
    assert snapshot(con) == before


# --- reminders ---------------------------------------------------------------------------


def reminders(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "SELECT message_id, recipient_role, to_email, status, created_at FROM outbox "
        "WHERE message_id LIKE '%-reminder@%' ORDER BY message_id"
    ).fetchall()


def test_one_reminder_to_partner_and_psm_never_twice(con) -> None:
    assert run_expire(con, T0 + 5 * DAY - timedelta(minutes=1)).reminded == 0
    summary = run_expire(con, T0 + 5 * DAY)
    assert (summary.reminded, summary.reminders, summary.expired) == (3, 6, 0)
    sent = reminders(con)
    rid = con.execute("SELECT referral_id FROM referrals WHERE tenant_id = 'T1'").fetchall()[0][0]
    assert (message_id(rid, "partner", "reminder"), "partner", "p1@example.com") in [
        r[:3] for r in sent
    ]
    assert (message_id(rid, "psm", "reminder"), "psm", "psm.p1@example.com") in [
        r[:3] for r in sent
    ]
    assert con.execute("SELECT count(*) FROM referrals WHERE reminded_at IS NOT NULL").fetchall()[
        0
    ] == (3,)
    body = con.execute("SELECT body FROM outbox WHERE message_id = ?", [sent[0][0]]).fetchall()
    assert "2026-03-09 09:00 UTC" in body[0][0]  # T0 + 7 days: the accept-by time
    assert run_expire(con, T0 + 6 * DAY).reminded == 0
    assert len(reminders(con)) == 6
    # At expiry the reminders not sent yet are cancelled with the referral's other messages.
    run_expire(con, T0 + 7 * DAY)
    assert {r[3] for r in reminders(con)} == {"cancelled"}


def test_an_accepted_referral_is_not_reminded(con) -> None:
    with clock.frozen(T0 + DAY):
        accept(con, "T1")
    assert run_expire(con, T0 + 5 * DAY).reminded == 2


def test_no_reminder_when_set_to_zero(con) -> None:
    rules = load_rules().replace(remind_after_days=0)
    assert run_expire(con, T0 + 6 * DAY, rules).reminded == 0
    assert reminders(con) == []


# --- the accept-by date in the notification ---------------------------------------------


def test_the_partner_and_psm_are_told_the_accept_by_time(con, tmp_path: Path) -> None:
    bodies = dict(
        con.execute(
            "SELECT recipient_role, body FROM outbox WHERE tenant_id = 'T1' ORDER BY 1"
        ).fetchall()
    )
    assert "2026-03-09 09:00 UTC" in bodies["partner"]
    assert "2026-03-09 09:00 UTC" in bodies["psm"]
    assert "UTC" not in bodies["customer"]
    other = connect(tmp_path / "nowindow.duckdb")
    import_partners(other, partners(("P1", 1)))
    import_customers(other, customers("T1"))
    with clock.frozen(T0):
        commit(other, load_rules().replace(accept_within_days=0))
    texts = other.execute("SELECT body || body_html FROM outbox").fetchall()
    assert texts and not any("UTC" in t for (t,) in texts)
    other.close()


# --- rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"remind_after_days": 7}, "remind_after_days"),
        ({"accept_within_days": 3}, "remind_after_days"),  # the default 5 is not below 3
        ({"accept_within_days": -1}, "accept_within_days"),
        ({"remind_after_days": -2}, "remind_after_days"),
        ({"accept_within_days": 1.5}, "accept_within_days"),
    ],
)
def test_bad_windows_name_the_key(changes: dict, key: str) -> None:
    with pytest.raises(RulesError, match=f"overrides: {key}: "):
        load_rules().replace(**changes)


def test_a_zero_turns_either_off() -> None:
    shipped = load_rules()
    assert (shipped.accept_within_days, shipped.remind_after_days) == (7, 5)
    assert shipped.replace(accept_within_days=0).remind_after_days == 5
    assert shipped.replace(remind_after_days=0, accept_within_days=1).accept_within_days == 1
    assert shipped.accept_by(T0) == T0 + 7 * DAY
    assert shipped.replace(accept_within_days=0).accept_by(T0) is None


# --- the command -------------------------------------------------------------------------


def frp(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FRP, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_expire(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    world(db).close()
    first = frp("expire", "--db", db, "--now", "2026-03-07T09:00:00Z", "--actor", "cron")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines() == [
        "at 2026-03-07 09:00: 0 referrals expired (no response): 0 re-assigned to partners, "
        "0 to CSS queues, 0 held; 6 reminders queued (3 referrals, to partner and PSM)"
    ]
    done = frp("--now", "2026-03-10", "expire", "--db", db)
    assert done.returncode == 0, done.stderr
    assert "3 referrals expired (no response): 3 re-assigned to partners" in done.stdout
    again = frp("expire", "--db", db, "--now", "2026-03-10")
    assert again.returncode == 0
    assert again.stdout.strip() == (
        "nothing to do at 2026-03-10 00:00: no referral past its window, no reminder due"
    )
    bad = frp("expire", "--db", db, "--now", "soon")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    missing = frp("expire", "--db", tmp_path / "none.duckdb")
    assert missing.returncode == 2 and "no such database" in missing.stderr
    rules = tmp_path / "bad.toml"
    rules.write_text(
        DEFAULT_RULES_PATH.read_text().replace("remind_after_days = 5", "remind_after_days = 9"),
        encoding="utf-8",
    )
    refused = frp("expire", "--db", db, "--rules", rules)
    assert refused.returncode == 2 and "remind_after_days" in refused.stderr


# --- properties --------------------------------------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(1, 96)),  # hours
        st.tuples(st.just("decline"), st.integers(0, 4)),
        st.tuples(st.just("accept"), st.integers(0, 4)),
        st.tuples(st.just("expire"), st.just(0)),
    ),
    min_size=1,
    max_size=14,
)
WINDOWS = st.sampled_from([(7, 5), (3, 1), (2, 0), (0, 2), (1, 0)])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=STEPS,
    caps=st.lists(st.integers(0, 2), min_size=2, max_size=4),
    tenants=st.integers(1, 5),
    windows=WINDOWS,
    max_declines=st.integers(1, 3),
    when_full=st.sampled_from(["css", "hold"]),
)
def test_clock_rules_hold_whatever_happens(
    steps: list[tuple[str, int]],
    caps: list[int],
    tenants: int,
    windows: tuple[int, int],
    max_declines: int,
    when_full: str,
) -> None:
    rules = load_rules().replace(
        accept_within_days=windows[0],
        remind_after_days=windows[1],
        max_declines=max_declines,
        when_full=when_full,
    )
    con = world(":memory:", tuple(caps), tenants)
    now = T0
    try:
        for action, n in steps:
            now += timedelta(hours=n) if action == "wait" else timedelta(minutes=1)
            with clock.frozen(now):
                _step(con, rules, action, f"T{n + 1}")
            if action == "expire":
                _after_expire(con, rules, now)
        _always(con, rules)
    finally:
        con.close()


def _step(con: duckdb.DuckDBPyConnection, rules: Rules, action: str, tenant: str) -> None:
    open_frp = con.execute(
        "SELECT status FROM referrals WHERE tenant_id = ? AND outcome = 'frp' "
        "AND status IN ('active', 'accepted')",
        [tenant],
    ).fetchall()
    if action == "decline" and open_frp:
        decline(con, tenant, "at_capacity", rules)
    elif action == "accept" and open_frp == [("active",)]:
        accept(con, tenant)
    elif action == "expire":
        expire(con, rules)


def _after_expire(con: duckdb.DuckDBPyConnection, rules: Rules, now: datetime) -> None:
    """Nothing past its window is left active, and a second run changes nothing."""
    if rules.accept_within_days:
        left = con.execute(
            "SELECT count(*) FROM referrals WHERE outcome = 'frp' AND status = 'active' "
            "AND created_at <= ?",
            [now - timedelta(days=rules.accept_within_days)],
        ).fetchall()[0][0]
        assert left == 0
    before = snapshot(con)
    with clock.frozen(now):
        assert not expire(con, rules).changed
    assert snapshot(con) == before


def _always(con: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    # Never back to a partner that declined or let it expire: one referral per pair.
    pairs = con.execute(
        "SELECT tenant_id, partner_id, count(*) FROM referrals WHERE outcome = 'frp' "
        "GROUP BY ALL HAVING count(*) > 1"
    ).fetchall()
    assert pairs == []
    # An expiry comes exactly at the end of the window, counted from created_at.
    for made, ended in con.execute(
        "SELECT created_at, updated_at FROM referrals WHERE status = 'expired'"
    ).fetchall():
        assert rules.accept_within_days and ended >= made + timedelta(days=rules.accept_within_days)
    # At most one reminder per referral and recipient, never before its day.
    reminded = con.execute(
        """
        SELECT o.referral_id, count(*), min(o.created_at), any_value(r.created_at),
               any_value(r.reminded_at)
        FROM outbox o JOIN referrals r USING (referral_id)
        WHERE o.message_id LIKE '%-reminder@%' GROUP BY o.referral_id
        """
    ).fetchall()
    for _, n, sent, made, stamped in reminded:
        assert n == 2 and sent == stamped
        assert sent >= made + timedelta(days=rules.remind_after_days)
    # Every customer holds at most one open referral.
    assert (
        con.execute(
            "SELECT count(*) FROM (SELECT tenant_id FROM referrals "
            "WHERE status IN ('active', 'accepted') GROUP BY ALL HAVING count(*) > 1)"
        ).fetchall()[0][0]
        == 0
    )


# --- a month on the demo -----------------------------------------------------------------


def test_a_month_of_days_on_the_demo_keeps_every_referral_consistent(demo_db: Path) -> None:
    """Each day: a commit (the backlog, then a small new cohort under a varying policy),
    some accepts and declines, then `frp expire`, with some partners on a monthly quota and
    some paused; after every day the store is consistent."""
    rng = random.Random(2026)
    rules = load_rules()
    start = datetime(2026, 11, 24, 9, 0)  # the morning after the demo's last referral
    con = connect(demo_db)
    expired = reminded = 0
    try:
        _limit_intake(con, rng, start)
        for day in range(30):
            at = start + day * DAY
            with clock.frozen(at):
                cohort = None if day == 0 else _new_customers(con, rng, day)
                commit(con, rules, rng.choice(list(Policy)), cohort, actor="month")
            _respond(con, rules, rng, at + timedelta(hours=2))
            summary = run_expire(con, at + timedelta(hours=12), rules)
            expired, reminded = expired + summary.expired, reminded + summary.reminded
            assert inconsistencies(con, **SINCE) == {}, f"day {day}"
        # The limits were met, not just never reached: quotas filled up, pauses ended.
        (at_quota,) = con.execute(
            """SELECT count(*) FROM (SELECT r.partner_id FROM referrals r
            JOIN partners p USING (partner_id) WHERE r.outcome = 'frp'
              AND r.created_at >= TIMESTAMP '2026-12-01' AND p.monthly_quota IS NOT NULL
            GROUP BY ALL HAVING count(*) = any_value(p.monthly_quota))"""
        ).fetchall()[0]
        (back,) = con.execute(
            """SELECT count(DISTINCT partner_id) FROM referrals r JOIN partners p
            USING (partner_id) WHERE r.outcome = 'frp' AND r.created_at::DATE >= p.paused_until
              AND r.created_at >= TIMESTAMP '2026-11-24 09:00'"""
        ).fetchall()[0]
    finally:
        con.close()
    assert expired > 1_000 and reminded > 100  # the month did expire and remind
    assert at_quota > 0 and back > 0


def _limit_intake(con: duckdb.DuckDBPyConnection, rng: random.Random, start: datetime) -> None:
    """Some partners agree to a monthly intake (a few more than they already have this
    month) and some pause for one to three weeks: the month crosses into December, so
    quotas are counted in two calendar months and every pause ends within it."""
    ids = [p for (p,) in con.execute("SELECT partner_id FROM partners ORDER BY 1").fetchall()]
    month = start.replace(day=1, hour=0, minute=0)
    for pid in rng.sample(ids, 60):
        (made,) = con.execute(
            "SELECT count(*) FROM referrals WHERE partner_id = ? AND outcome = 'frp' "
            "AND created_at >= ?",
            [pid, month],
        ).fetchall()[0]
        con.execute(
            "UPDATE partners SET monthly_quota = ? WHERE partner_id = ?",
            [made + rng.randint(0, 4), pid],
        )
    for pid in rng.sample(ids, 25):
        until = (start + timedelta(days=rng.randint(7, 21))).date()
        con.execute("UPDATE partners SET paused_until = ? WHERE partner_id = ?", [until, pid])


def _new_customers(con: duckdb.DuckDBPyConnection, rng: random.Random, day: int):
    return synthetic_cohort(rng.randint(10, 40), seed=1_000 + day, partners=state.partners(con))


def _respond(con: duckdb.DuckDBPyConnection, rules: Rules, rng: random.Random, at: datetime):
    """A few partners answer: some accept, fewer decline (each re-assigns its customer)."""
    waiting = [
        t
        for (t,) in con.execute(
            "SELECT tenant_id FROM referrals WHERE outcome = 'frp' AND status = 'active' "
            "ORDER BY referral_id"
        ).fetchall()
    ]
    picked = rng.sample(waiting, min(len(waiting), 15))
    with clock.frozen(at):
        for tenant in picked[:12]:
            accept(con, tenant, actor="partner")
        for tenant in picked[12:]:
            decline(con, tenant, rng.choice(["at_capacity", "not_endorsed"]), rules)
