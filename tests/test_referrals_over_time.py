"""Referrals over time: waiting referrals aged at a frozen clock against the acceptance
window, the filters "waiting more than N days" and "expires within N days", and each
partner's answers (made, accepted, declined, expired, acceptance rate, median days to
accept) on a hand-made set of referrals. Nothing here reads the real date."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cli.main import main as frp_main
from engine.fairness import acceptance
from engine.rules import load_rules
from store import clock, lifecycle
from store.commits import commit
from store.db import connect
from store.fairness import partner_responses
from store.imports import import_customers, import_partners
from store.referrals import ReferralFilter, days_to_accept
from store.referrals import waiting_ages as ages
from store.referrals import waiting_count as count
from store.referrals import waiting_rows as listed
from tests.test_lifecycle import customers, partners

RULES = load_rules()
MONDAY = datetime(2026, 3, 2, 9, 0)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Partner P1; A1, A2 referred on Monday 2 March 09:00, B1 on Friday 6 March 09:00."""
    c = connect(tmp_path / "time.duckdb")
    import_partners(c, partners(("P1", 10)))
    with clock.frozen(MONDAY):
        commit(c, RULES, cohort=customers("A1", "A2"), actor="test")
    with clock.frozen("2026-03-06T09:00"):
        commit(c, RULES, cohort=customers("B1"), actor="test")
    yield c
    c.close()


def test_waiting_referrals_are_aged_in_whole_days_at_the_given_time(con) -> None:
    now = datetime(2026, 3, 10, 10, 0)  # A: 8 days 1 hour; B: 4 days 1 hour
    assert ages(con, now, 7).rows() == [(4, 1, False), (8, 2, True)]
    assert ages(con, now, 0).rows() == [(4, 1, False), (8, 2, False)]  # no window
    # Exactly at the window's end a referral is past it (it expires then).
    assert ages(con, datetime(2026, 3, 9, 9, 0), 7).rows() == [(3, 1, False), (7, 2, True)]
    # Answered referrals are not waiting.
    lifecycle.accept(con, "A1")
    assert ages(con, now, 7).rows() == [(4, 1, False), (8, 1, True)]


def waiting(con, now: datetime, window: int = 7, **filters: int) -> list[str]:
    where = ReferralFilter(now=now, window=window, **filters)
    rows = listed(con, where)
    assert count(con, where) == rows.height
    return rows["tenant_id"].to_list()


def test_waiting_more_than_and_expires_within(con) -> None:
    now = datetime(2026, 3, 10, 10, 0)
    assert waiting(con, now) == ["A1", "A2", "B1"]
    assert waiting(con, now, waiting_over=4) == ["A1", "A2", "B1"]  # 4 days 1 hour > 4 days
    assert waiting(con, now, waiting_over=5) == ["A1", "A2"]
    assert waiting(con, now, waiting_over=8) == ["A1", "A2"]
    assert waiting(con, now, waiting_over=9) == []
    assert waiting(con, now, expires_within=0) == ["A1", "A2"]  # due: closed on 9 March
    assert waiting(con, now, expires_within=2) == ["A1", "A2"]  # B closes 13 March 09:00
    assert waiting(con, now, expires_within=3) == ["A1", "A2", "B1"]
    assert waiting(con, now, window=0, expires_within=30) == []  # no window: nothing expires
    assert waiting(con, now, waiting_over=5, expires_within=3) == ["A1", "A2"]


def test_waiting_rows_give_each_age_and_accept_by(con) -> None:
    now = datetime(2026, 3, 10, 10, 0)
    rows = listed(con, ReferralFilter(now=now, window=7), personal=True)
    b1 = rows.filter(pl.col("tenant_id") == "B1").row(0, named=True)
    assert (b1["age_days"], b1["accept_by"]) == (4, datetime(2026, 3, 13, 9, 0))
    assert b1["partner_id"] == "P1" and b1["customer"] == "Customer B1"
    none = listed(con, ReferralFilter(now=now, window=0))
    assert none["accept_by"].null_count() == none.height
    with pytest.raises(ValueError, match="now"):
        listed(con, ReferralFilter())


def test_each_partners_answers_on_a_hand_made_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """P1 gets four referrals on 2 March: one accepted after 2 days, one accepted after 4
    days and completed later, one declined, one expired (set as the expiry will set it)."""
    c = connect(tmp_path / "answers.duckdb")
    import_partners(c, partners(("P1", 10)))
    import_customers(c, customers("T1", "T2", "T3", "T4"))
    with clock.frozen(MONDAY):
        commit(c, RULES, actor="test")
    with clock.frozen("2026-03-04T09:00"):
        lifecycle.accept(c, "T1")
    with clock.frozen("2026-03-06T09:00"):
        lifecycle.accept(c, "T2")
    with clock.frozen("2026-03-09T09:00"):
        lifecycle.complete(c, "T2", RULES)
        lifecycle.decline(c, "T3", "at_capacity", RULES)  # no other partner: to CSS
    c.execute(
        "UPDATE referrals SET status = 'expired', decline_reason = 'no_response' "
        "WHERE tenant_id = 'T4'"
    )
    answers = acceptance(partner_responses(c)).row(0, named=True)
    assert answers == {
        "partner_id": "P1",
        "made": 4,
        "waiting": 0,
        "accepted": 2,
        "declined": 1,
        "expired": 1,
        "answered": 4,
        "acceptance_rate": 0.5,
    }
    assert days_to_accept(c).rows() == [("P1", 2, 3.0)]  # the median of 2 and 4 days
    # Responses are counted per period of the referrals' creation.
    assert partner_responses(c, datetime(2026, 3, 3), None).height == 0
    c.close()
    # `frp fairness` on the store reports them too, in JSON and in text.
    db = str(tmp_path / "answers.duckdb")
    assert frp_main(["fairness", "--json", "--db", db]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["acceptance"] == [answers] and report["css_after_declines"] == 0
    assert frp_main(["fairness", "--db", db]) == 0
    assert "acceptance rate 50.0% of 4 answered (expired 1;" in capsys.readouterr().out
