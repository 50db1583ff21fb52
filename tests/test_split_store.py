"""A split by workload committed and lived with (#13): a referral per part, one message to
the customer naming every partner, one FTOP task per Gateway customer, and each part
declined or expired on its own, re-assigning only its workloads. docs/domain.md, "Split
by workload".

The world: exchange partners P1 and P3, teams partners P2 and P4 (SE, sv), no partner
doing both; customer T1 (Gateway) asks for exchange, teams and sharepoint, and sharepoint
is a CSS workload. The greedy cover's ties go to the lower id: P1 takes exchange, P2 teams.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.rules import Rules, load_rules
from engine.schema import validate_customers, validate_partners
from store import clock
from store.commits import SHARED_WORKLOAD_SQL, commit
from store.db import connect
from store.errors import StoreError
from store.handoff import open_referrals
from store.imports import import_customers, import_partners
from store.lifecycle import decline, expire
from tests.test_lifecycle import PARTNER_COLS

T0 = datetime(2026, 3, 2, 9, 0)
DAY = timedelta(days=1)


def rules() -> Rules:
    return replace(load_rules(), max_partners_per_customer=2, css_workloads=("sharepoint",))


def world(path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(path)
    rows = [
        [pid, f"Partner {pid}", "SE", "sv", w, "5", "0", "true", f"PSM {pid}",
         f"psm.{pid.lower()}@example.com", f"{pid.lower()}@example.com"]
        for pid, w in (("P1", "exchange"), ("P2", "teams"), ("P3", "exchange"), ("P4", "teams"))
    ]  # fmt: skip
    import_partners(con, validate_partners(pl.DataFrame(rows, schema=PARTNER_COLS, orient="row")))
    customers = {
        "tenant_id": ["T1"],
        "name": ["Quillon Freight AB"],
        "country": ["SE"],
        "language": ["sv"],
        "seats": ["800"],
        "workloads": ["exchange;teams;sharepoint"],
        "gateway": ["true"],
        "contact_email": ["it@quillon.example"],
    }
    import_customers(con, validate_customers(pl.DataFrame(customers)))
    with clock.frozen(T0):
        commit(con, rules())
    return con


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with closing(world(tmp_path / "split.duckdb")) as c:
        yield c
        assert c.execute(SHARED_WORKLOAD_SQL).fetchall() == [(0,)]  # never two for a workload


def parts(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "SELECT part, outcome, partner_id, reason, status, workloads FROM referrals "
        "WHERE tenant_id = 'T1' ORDER BY referral_id"
    ).fetchall()


def test_a_referral_per_part_with_its_workloads(con: duckdb.DuckDBPyConnection) -> None:
    assert parts(con) == [
        (1, "frp", "P1", "assigned", "active", ["exchange"]),
        (2, "frp", "P2", "assigned", "active", ["teams"]),
        (3, "css", None, "css_workload", "queued", ["sharepoint"]),
    ]
    run = con.execute("SELECT customers, placed, css FROM runs").fetchall()
    assert run == [(1, 1, 0)]  # one customer, placed (its CSS part is not a CSS customer)
    seats = con.execute("SELECT partner_id, open_referrals FROM partner_state ORDER BY 1")
    assert seats.fetchall() == [("P1", 1), ("P2", 1), ("P3", 0), ("P4", 0)]


def test_the_css_part_is_handed_off_with_its_workloads(con: duckdb.DuckDBPyConnection) -> None:
    ((queue,),) = con.execute("SELECT queue FROM referrals WHERE outcome = 'css'").fetchall()
    listed = open_referrals(con, queue).select("tenant_id", "eligible_workloads", "reason")
    assert listed.rows() == [("T1", ["sharepoint"], "css_workload")]


def test_one_task_per_gateway_customer(con: duckdb.DuckDBPyConnection) -> None:
    tasks = con.execute("SELECT tenant_id, partner_id, status FROM ftop_tasks").fetchall()
    assert tasks == [("T1", "P1", "open")]


def test_one_customer_message_naming_every_partner_and_each_partner_its_part(
    con: duckdb.DuckDBPyConnection,
) -> None:
    messages = con.execute(
        "SELECT r.partner_id, o.recipient_role, o.to_email, o.body FROM outbox o "
        "JOIN referrals r USING (referral_id) ORDER BY o.referral_id, o.recipient_role"
    ).fetchall()
    roles = [(p, role, to) for p, role, to, _ in messages]
    assert roles == [
        ("P1", "customer", "it@quillon.example"),
        ("P1", "partner", "p1@example.com"),
        ("P1", "psm", "psm.p1@example.com"),
        ("P2", "partner", "p2@example.com"),
        ("P2", "psm", "psm.p2@example.com"),
    ]
    body = {(p, role): text for p, role, _, text in messages}
    to_customer = body["P1", "customer"]
    assert "Partner P1 (p1@example.com): Exchange Online" in to_customer
    assert "Partner P2 (p2@example.com): Microsoft Teams" in to_customer
    for partner, own, other in (("P1", "Exchange Online", "Teams"), ("P2", "Teams", "Exchange")):
        for role in ("partner", "psm"):
            assert own in body[partner, role] and other not in body[partner, role]


def test_a_split_customer_names_the_part_it_declines(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(StoreError, match=r"split across partners \(P2, P1\).*--partner"):
        decline(con, "T1", "at_capacity", rules())
    with pytest.raises(StoreError, match="no open referral to P3"):
        decline(con, "T1", "at_capacity", rules(), partner_id="P3")


def test_declining_one_part_re_assigns_only_its_workloads(
    con: duckdb.DuckDBPyConnection,
) -> None:
    with clock.frozen(T0 + DAY):
        change = decline(con, "T1", "at_capacity", rules(), partner_id="P1")
    assert change.follow_up is not None and change.follow_up.placed == 1
    assert parts(con)[3:] == [(4, "frp", "P3", "assigned", "active", ["exchange"])]
    assert parts(con)[1] == (2, "frp", "P2", "assigned", "active", ["teams"])  # untouched
    # The task stays open while a part does, now with the oldest open part; no second one.
    tasks = con.execute("SELECT partner_id, status FROM ftop_tasks").fetchall()
    assert tasks == [("P2", "open")]
    ((body,),) = con.execute(
        "SELECT body FROM outbox WHERE recipient_role = 'customer' AND referral_id = 4"
    ).fetchall()
    assert "Partner P3" in body and "Partner P2" not in body  # this run's part only

    with clock.frozen(T0 + 2 * DAY):  # the second decline of the exchange part: CSS
        decline(con, "T1", "not_endorsed", rules(), partner_id="P3")
    assert parts(con)[4:] == [(4, "css", None, "declined_by_partners", "queued", ["exchange"])]
    assert parts(con)[1][4] == "active"  # teams still with P2
    assert con.execute("SELECT count(*) FROM ftop_tasks WHERE status = 'open'").fetchall() == [(1,)]


def test_a_part_expires_on_its_own(con: duckdb.DuckDBPyConnection) -> None:
    r = rules()
    with clock.frozen(T0 + DAY):
        decline(con, "T1", "at_capacity", r, partner_id="P1")  # exchange now with P3, later
    with clock.frozen(T0 + (r.accept_within_days + 0.5) * DAY):
        summary = expire(con, r)
    assert summary.expired == 1 and summary.to_partners == 1  # only P2's part was due
    assert [p[:5] for p in parts(con)] == [
        (1, "frp", "P1", "assigned", "declined"),
        (2, "frp", "P2", "assigned", "expired"),
        (3, "css", None, "css_workload", "queued"),
        (4, "frp", "P3", "assigned", "active"),
        (5, "frp", "P4", "assigned", "active"),
    ]
    assert parts(con)[4][5] == ["teams"]
    tasks = con.execute("SELECT partner_id, status FROM ftop_tasks").fetchall()
    assert tasks == [("P3", "open")]


def test_the_customer_message_stays_for_the_parts_still_open(
    con: duckdb.DuckDBPyConnection,
) -> None:
    with clock.frozen(T0 + DAY):
        decline(con, "T1", "at_capacity", rules(), partner_id="P1")
    statuses = con.execute(
        "SELECT recipient_role, status FROM outbox WHERE referral_id = 1 ORDER BY 1"
    ).fetchall()
    assert statuses == [("customer", "pending"), ("partner", "cancelled"), ("psm", "cancelled")]


def test_partner_sizes_are_kept_by_the_store(tmp_path: Path) -> None:
    con = connect(tmp_path / "sizes.duckdb")
    try:
        rows = [
            ["P1", "A", "SE", "sv", "exchange", "5", "0", "true", "S", "s@example.com",
             "a@example.com", "S;M"],
            ["P2", "B", "SE", "sv", "exchange", "5", "0", "true", "S", "s@example.com",
             "b@example.com", ""],
        ]  # fmt: skip
        frame = pl.DataFrame(rows, schema=[*PARTNER_COLS, "sizes"], orient="row")
        import_partners(con, validate_partners(frame))
        from store.state import partners

        stored = partners(con).select("partner_id", "sizes").rows()
        assert stored[0] == ("P1", ["S", "M"])
        assert not stored[1][1]  # none listed: every size
    finally:
        con.close()
