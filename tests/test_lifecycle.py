"""The referral life cycle: accept, decline with re-assignment, complete, hold and drain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.rules import Rules, load_rules
from engine.schema import validate_customers, validate_partners
from store.commits import commit, simulate_stored
from store.db import connect
from store.errors import StoreError
from store.imports import import_customers, import_partners
from store.lifecycle import accept, complete, decline, drain, held

FRP = str(Path(sys.executable).parent / "frp")
PARTNER_COLS = (
    "partner_id,name,countries,languages,workloads,capacity,active_referrals,referral_ready,"
    "psm_name,psm_email,contact_email"
).split(",")


def partners(*rows: tuple[str, int]) -> pl.DataFrame:
    """Partners serving SE/sv/exchange: (partner_id, capacity)."""
    data = [
        [
            pid,
            f"Partner {pid}",
            "SE",
            "sv",
            "exchange",
            str(cap),
            "0",
            "true",
            f"PSM {pid}",
            f"psm.{pid.lower()}@example.com",
            f"{pid.lower()}@example.com",
        ]
        for pid, cap in rows
    ]
    return validate_partners(pl.DataFrame(data, schema=PARTNER_COLS, orient="row"))


def customers(*ids: str) -> pl.DataFrame:
    n = len(ids)
    return validate_customers(
        pl.DataFrame(
            {
                "tenant_id": list(ids),
                "name": [f"Customer {t}" for t in ids],
                "country": ["SE"] * n,
                "language": ["sv"] * n,
                "seats": ["500"] * n,
                "workloads": ["exchange"] * n,
                "gateway": ["true"] * n,
                "contact_email": [f"{t.lower()}@example.com" for t in ids],
            }
        )
    )


@pytest.fixture
def world(tmp_path: Path):
    con = connect(tmp_path / "life.duckdb")
    import_partners(con, partners(("P1", 2), ("P2", 2), ("P3", 2)))
    import_customers(con, customers("T1", "T2", "T3"))
    yield con
    con.close()


def referral(con: duckdb.DuckDBPyConnection, tenant: str) -> dict:
    rows = con.execute(
        "SELECT partner_id, status, reason, outcome, run_id FROM referrals WHERE tenant_id = ? "
        "ORDER BY referral_id DESC LIMIT 1",
        [tenant],
    ).fetchall()
    partner_id, status, reason, outcome, run_id = rows[0]
    return {
        "partner_id": partner_id,
        "status": status,
        "reason": reason,
        "outcome": outcome,
        "run_id": run_id,
    }


def audit_actions(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, dict]]:
    rows = con.execute(
        "SELECT action, subject, details FROM audit_log WHERE action LIKE 'referral_%' ORDER BY id"
    ).fetchall()
    return [(a, s, json.loads(d)) for a, s, d in rows]


def test_accept_then_complete_frees_the_seat(world) -> None:
    rules = load_rules()
    commit(world, rules)
    first = referral(world, "T1")
    assert first["status"] == "active" and first["partner_id"] == "P1"
    change = accept(world, "T1", actor="ann")
    assert (change.before, change.after) == ("active", "accepted")
    load = world.execute("SELECT active_total FROM partner_state WHERE partner_id = 'P1'")
    assert load.fetchall()[0][0] == 1
    complete(world, "T1", rules, actor="ann")
    assert referral(world, "T1")["status"] == "completed"
    assert (
        world.execute("SELECT active_total FROM partner_state WHERE partner_id = 'P1'").fetchall()[
            0
        ][0]
        == 0
    )
    actions = audit_actions(world)
    assert [a for a, _, _ in actions] == ["referral_accept", "referral_complete"]
    assert actions[0][2]["before"] == {"status": "active"}
    assert actions[0][2]["after"] == {"status": "accepted"}
    assert actions[1][2]["before"] == {"status": "accepted"}
    who = world.execute("SELECT DISTINCT actor FROM audit_log WHERE action LIKE 'referral_%'")
    assert who.fetchall() == [("ann",)]


def test_accept_twice_or_unknown_tenant_is_an_error(world) -> None:
    commit(world, load_rules())
    accept(world, "T1")
    with pytest.raises(StoreError, match="already accepted"):
        accept(world, "T1")
    with pytest.raises(StoreError, match="not a known customer"):
        accept(world, "NOPE")


def test_decline_reassigns_never_to_a_decliner_then_css_after_max_declines(world) -> None:
    rules = load_rules()
    assert rules.max_declines == 2
    commit(world, rules)
    assert referral(world, "T1")["partner_id"] == "P1"
    change = decline(world, "T1", "at_capacity", rules, actor="p1")
    assert change.follow_up is not None and change.follow_up.placed == 1
    second = referral(world, "T1")
    assert second["partner_id"] not in {"P1"} and second["status"] == "active"
    assert second["run_id"] != 1
    change = decline(world, "T1", "outside_service_area", rules)
    last = referral(world, "T1")
    assert last["outcome"] == "css"
    assert last["reason"] == "declined_by_partners"
    trace = world.execute(
        "SELECT trace FROM referrals WHERE tenant_id = 'T1' ORDER BY referral_id DESC LIMIT 1"
    ).fetchall()[0][0]
    assert "declined by 2 partners" in trace
    statuses = world.execute(
        "SELECT status, decline_reason FROM referrals WHERE tenant_id = 'T1' ORDER BY referral_id"
    ).fetchall()
    assert statuses == [
        ("declined", "at_capacity"),
        ("declined", "outside_service_area"),
        ("queued", None),  # the CSS referral waits for the hand-off
    ]


def test_decline_needs_a_known_reason(world) -> None:
    commit(world, load_rules())
    with pytest.raises(StoreError, match="not one of"):
        decline(world, "T1", "bored", load_rules())
    assert referral(world, "T1")["status"] == "active"


def test_a_decline_is_all_or_nothing(world, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = load_rules()
    commit(world, rules)
    before = world.execute("SELECT count(*) FROM referrals").fetchall()[0][0]

    def boom(*args, **kwargs):
        raise RuntimeError("crash during re-assignment")

    monkeypatch.setattr("store.lifecycle.commit_within", boom)
    with pytest.raises(RuntimeError):
        decline(world, "T1", "at_capacity", rules)
    assert referral(world, "T1")["status"] == "active"
    assert world.execute("SELECT count(*) FROM referrals").fetchall()[0][0] == before
    assert audit_actions(world) == []


def hold_rules() -> Rules:
    return load_rules().replace(when_full="hold")


def test_hold_keeps_customers_in_the_ftcq_and_frees_them_oldest_first(tmp_path: Path) -> None:
    con = connect(tmp_path / "hold.duckdb")
    import_partners(con, partners(("P1", 1)))
    import_customers(con, customers("T1", "T2", "T3"))
    rules = hold_rules()
    summary = commit(con, rules)
    assert (summary.placed, summary.held, summary.css) == (1, 2, 0)
    assert held(con)["tenant_id"].to_list() == ["T2", "T3"]
    assert con.execute("SELECT count(*) FROM referrals").fetchall()[0][0] == 1
    # A newer customer arrives; when the seat frees, the oldest held customer gets it.
    import_customers(con, customers("T4"))
    change = complete(con, "T1", rules)
    assert change.drained is not None and change.drained.placed == 1
    assert referral(con, "T2")["partner_id"] == "P1"
    assert held(con)["tenant_id"].to_list() == ["T3"]
    backlog = con.execute("SELECT tenant_id FROM customers WHERE in_ftcq ORDER BY ftcq_seq")
    assert [r[0] for r in backlog.fetchall()] == ["T3", "T4"]
    # Nothing frees: drain places nobody and keeps them held.
    assert drain(con, rules).placed == 0
    assert held(con)["tenant_id"].to_list() == ["T3"]
    con.close()


def test_a_commit_of_the_backlog_never_gives_a_held_customer_back_to_its_decliner(
    tmp_path: Path,
) -> None:
    """Found by tests/test_chaos.py: a customer held after a decline waits in the FTCQ, and
    the next commit of the backlog (which takes held customers first) matched it with the
    partner that had declined it. The simulation of the backlog says the same as the
    commit."""
    con = connect(tmp_path / "held.duckdb")
    import_partners(con, partners(("P1", 1), ("P2", 1), ("P3", 1)))
    import_customers(con, customers("T1", "T2", "T3"))
    rules = hold_rules()
    commit(con, rules)  # T1 -> P1, T2 -> P2, T3 -> P3: everyone full
    decline(con, "T1", "at_capacity", rules)  # P1 frees a seat, but declined T1: held
    assert held(con)["tenant_id"].to_list() == ["T1"]
    sim, _ = simulate_stored(con, rules)
    assert sim.assignments["reason"].to_list() == ["capacity_exhausted"]
    summary = commit(con, rules)  # the backlog: only T1, and only P1 has room
    assert (summary.placed, summary.held) == (0, 1)
    assert referral(con, "T1")["partner_id"] == "P1"  # the declined one, still the latest
    # When P2 frees a seat, the drain after it places T1 there, never with P1.
    complete(con, "T2", rules)
    assert referral(con, "T1")["partner_id"] == "P2"
    con.close()


def test_without_hold_full_pools_go_to_css(tmp_path: Path) -> None:
    con = connect(tmp_path / "css.duckdb")
    import_partners(con, partners(("P1", 1)))
    import_customers(con, customers("T1", "T2"))
    summary = commit(con, load_rules())
    assert (summary.placed, summary.held, summary.css) == (1, 0, 1)
    assert referral(con, "T2")["reason"] == "capacity_exhausted"
    assert held(con).height == 0
    con.close()


def frp(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([FRP, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_referral_commands(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    con = connect(db)
    import_partners(con, partners(("P1", 2), ("P2", 2)))
    import_customers(con, customers("T1", "T2"))
    commit(con, load_rules())
    con.close()
    done = frp("referral", "accept", "T1", "--db", db)
    assert done.returncode == 0, done.stderr
    assert "active -> accepted" in done.stdout
    missing = frp("referral", "decline", "T2", "--db", db)
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1 and "--reason" in missing.stderr
    declined = frp("referral", "decline", "T2", "--reason", "not_endorsed", "--db", db)
    assert declined.returncode == 0, declined.stderr
    assert "re-assigned in run" in declined.stdout
    unknown = frp("referral", "complete", "T9", "--db", db)
    assert unknown.returncode == 2 and "T9" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    drained = frp("drain", "--db", db)
    assert drained.returncode == 0 and "nothing to drain" in drained.stdout


def open_tasks(con: duckdb.DuckDBPyConnection, tenant: str) -> list[tuple[int, str]]:
    return con.execute(
        "SELECT referral_id, partner_id FROM ftop_tasks WHERE tenant_id = ? AND status = 'open'",
        [tenant],
    ).fetchall()


def test_a_declined_referrals_task_is_cancelled_and_the_new_one_has_its_own(world) -> None:
    # Ending a referral ends the partner's access (docs/domain.md, "Referral life cycle").
    rules = load_rules()
    commit(world, rules)
    first = world.execute("SELECT referral_id FROM referrals WHERE tenant_id = 'T1'").fetchall()
    decline(world, "T1", "at_capacity", rules, actor="p1")
    (old,) = first[0]
    status, closed_at = world.execute(
        "SELECT status, closed_at FROM ftop_tasks WHERE referral_id = ?", [old]
    ).fetchall()[0]
    assert (status, closed_at is not None) == ("cancelled", True)
    now_open = open_tasks(world, "T1")
    assert len(now_open) == 1 and now_open[0][1] != "P1"
    # Re-routed to CSS after the second decline: no task left open for any partner.
    decline(world, "T1", "not_endorsed", rules, actor="p2")
    assert open_tasks(world, "T1") == []
