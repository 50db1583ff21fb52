"""The store through its Python API: imports, simulations and commits on DuckDB files.

Writes are transactions: a bad file or a failure half-way leaves every table as it was.
A commit writes one referral per customer, FTOP task 3186 for Gateway customers referred
to a partner, three outbox messages per FRP referral, and moves the round-robin order;
a simulation moves nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import store.commits
import store.imports
from cli.main import main as frp_main
from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA
from engine.demo import WEEKLY_CUSTOMERS, WEEKS
from engine.reasons import (
    CSS_REASONS,
    FTOP_TASK_ID,
    FTOP_TASK_NAME,
    FTOP_TASK_ROLE,
    FTOP_TASK_SERVICE,
    Policy,
)
from engine.rules import Rules, load_rules
from engine.schema import InputError
from store import state
from store.bootstrap import build_demo
from store.commits import commit, simulate_stored
from store.db import connect, open_db
from store.files import read_customers
from store.imports import import_customers, import_partners
from store.notify import ROLES, message_id
from tests.db_helpers import digest

TABLES = (
    "partners",
    "rr_order",
    "customers",
    "runs",
    "referrals",
    "pools",
    "ftop_tasks",
    "outbox",
    "audit_log",
)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


@pytest.fixture
def con(demo_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to a private copy of the demo database."""
    with open_db(demo_db) as c:
        yield c


@pytest.fixture
def small(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh store with one pool of four partners (US, en, exchange), nobody assigned yet."""
    with open_db(tmp_path / "small.duckdb") as c:
        import_partners(c, partners_frame([{"partner_id": f"P{i}"} for i in (3, 1, 4, 2)]))
        yield c


def partners_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    base = {
        "name": "Partner Ltd",
        "countries": ["US"],
        "languages": ["en"],
        "workloads": ["exchange", "teams"],
        "capacity": 10,
        "active_referrals": 0,
        "referral_ready": True,
        "last_assigned": None,
    }
    full = []
    for row in rows:
        pid = row["partner_id"]
        r = base | {
            "psm_name": f"Psm of {pid}",
            "psm_email": f"psm.{pid.lower()}@psm.example",
            "contact_email": f"referrals@{pid.lower()}.example",
        }
        full.append(r | row)
    return pl.DataFrame(full, schema=PARTNER_SCHEMA)


def customers_frame(ids: list[str], **overrides: Any) -> pl.DataFrame:
    rows = [
        {
            "tenant_id": t,
            "name": f"Company {t}",
            "country": "US",
            "language": "en",
            "seats": 500,
            "workloads": ["exchange"],
            "gateway": i % 2 == 0,
            "contact_email": f"it@{t.lower()}.example",
            "referral_consent": True,
        }
        | overrides
        for i, t in enumerate(ids)
    ]
    return pl.DataFrame(rows, schema=CUSTOMER_SCHEMA)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def rr(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return dict(con.execute("SELECT partner_id, last_assigned FROM rr_order").fetchall())


def backlog_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    return state.backlog(con)["tenant_id"].to_list()


def run_referrals(con: duckdb.DuckDBPyConnection, run_id: int) -> pl.DataFrame:
    return state.referrals(con, run_id)


def boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom: failure injected by the test")


# --- imports ---------------------------------------------------------------------------


def test_bad_file_fails_before_the_database_is_touched(tmp_path: Path, demo_db: Path) -> None:
    bad = tmp_path / "customers.csv"
    bad.write_text(
        "tenant_id,name,country,language,seats,workloads,gateway,contact_email\n"
        "T1,One,US,en,500,exchange,true,it@one.example\n"
        "T2,Two,US,en,many,exchange,true,it@two.example\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="line 3, column seats"):
        read_customers(bad)

    fresh = tmp_path / "fresh.duckdb"
    assert frp_main(["import", "--db", str(fresh), "--customers", str(bad)]) == 2
    assert not fresh.exists()

    con = connect(demo_db)
    before = snapshot(con)
    con.close()
    assert frp_main(["import", "--db", str(demo_db), "--customers", str(bad)]) == 2
    con = connect(demo_db)
    assert snapshot(con) == before
    # An unvalidated frame without the documented columns is refused before any write.
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        import_customers(con, pl.DataFrame({"tenant_id": ["T9"]}))
    assert snapshot(con) == before
    con.close()


@pytest.mark.parametrize("kind", ["partners", "customers"])
def test_import_failure_mid_transaction_rolls_back(
    small: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import_customers(small, customers_frame(["C1", "C2"]))
    before = snapshot(small)
    if kind == "partners":
        frame = partners_frame(
            [{"partner_id": "P1", "capacity": 99}, {"partner_id": "P9", "last_assigned": 5}]
        )
        do = import_partners
    else:
        frame = customers_frame(["C2", "C3"], seats=999)
        do = import_customers
    monkeypatch.setattr(store.imports, "audit", boom)
    with pytest.raises(RuntimeError, match="boom"):
        do(small, frame)
    assert snapshot(small) == before

    # The connection is clean afterwards: no open transaction, no leftover registration.
    monkeypatch.undo()
    summary = do(small, frame)
    assert (summary.added, summary.updated) == (1, 1)
    assert snapshot(small) != before


def test_import_customers_queue_order(small: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    first = import_customers(small, customers_frame(["C3", "C1", "C2"]))
    assert (first.added, first.updated, first.queued) == (3, 0, 3)
    assert backlog_ids(small) == ["C3", "C1", "C2"]

    second = import_customers(small, customers_frame(["C5", "C4"]))
    assert (second.added, second.queued) == (2, 2)
    assert backlog_ids(small) == ["C3", "C1", "C2", "C5", "C4"]

    # Re-importing (in another order, with changed details) neither duplicates nor reorders.
    again = import_customers(small, customers_frame(["C4", "C2", "C3", "C1", "C5"], seats=800))
    assert (again.added, again.updated, again.queued) == (0, 5, 5)
    assert backlog_ids(small) == ["C3", "C1", "C2", "C5", "C4"]
    assert small.execute("SELECT count(*), min(seats) FROM customers").fetchall() == [(5, 800)]

    # A customer with an open referral leaves the FTCQ and is not re-queued by an import.
    done = commit(small, rules, cohort=customers_frame(["C2"]))
    assert done.run_id is not None
    assert backlog_ids(small) == ["C3", "C1", "C5", "C4"]
    import_customers(small, customers_frame(["C1", "C2", "C3"]))
    assert backlog_ids(small) == ["C3", "C1", "C5", "C4"]

    # Also one the store has a referral for but has never seen as a customer.
    small.execute(
        "INSERT INTO referrals (referral_id, tenant_id, outcome, queue, reason, status, "
        "created_at, updated_at) VALUES (1000, 'C7', 'css', 'CSS Americas', "
        "'no_partner_match', 'active', now()::TIMESTAMP, now()::TIMESTAMP)"
    )
    summary = import_customers(small, customers_frame(["C6", "C7", "C8"]))
    assert (summary.added, summary.queued) == (3, 2)
    assert backlog_ids(small) == ["C3", "C1", "C5", "C4", "C6", "C8"]


# --- commits: atomic and idempotent ----------------------------------------------------


@pytest.mark.parametrize("target", ["referral_messages", "audit"])
def test_commit_is_atomic(
    con: duckdb.DuckDBPyConnection, rules: Rules, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    before = snapshot(con)
    order = rr(con)
    queue = backlog_ids(con)
    assert queue
    monkeypatch.setattr(store.commits, target, boom)
    with pytest.raises(RuntimeError, match="boom"):
        commit(con, rules)
    assert snapshot(con) == before
    assert rr(con) == order
    assert backlog_ids(con) == queue

    monkeypatch.undo()
    done = commit(con, rules)
    assert done.run_id is not None and done.customers == len(queue)
    assert backlog_ids(con) == []


def test_commit_is_idempotent(con: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    cohort = state.backlog(con).head(50)
    first = commit(con, rules, cohort=cohort)
    assert first.run_id is not None and first.customers == 50 and first.skipped == 0
    after = snapshot(con)

    second = commit(con, rules, cohort=cohort)
    assert second.run_id is None
    assert (second.customers, second.placed, second.skipped) == (0, 0, 50)
    assert "nothing new assigned" in second.describe()
    assert snapshot(con) == after

    # The rest of the backlog, then the (now empty) backlog again.
    rest = commit(con, rules)
    assert rest.customers == state.referrals(con, rest.run_id).height > 0
    assert rest.skipped == 0
    final = snapshot(con)
    empty = commit(con, rules)
    assert empty.run_id is None and empty.skipped == 0
    assert snapshot(con) == final


# --- round-robin order across runs -----------------------------------------------------


def test_round_robin_order_persists_across_commits(
    small: duckdb.DuckDBPyConnection, rules: Rules
) -> None:
    a = commit(small, rules, cohort=customers_frame(["A1", "A2"]))
    assert run_referrals(small, a.run_id)["partner_id"].to_list() == ["P1", "P2"]
    after_a = rr(small)
    assert set(after_a) == {"P1", "P2"} and after_a["P1"] < after_a["P2"]

    # A simulation shows the next turns but moves nothing.
    cohort_b = customers_frame(["B1", "B2", "B3"])
    before = snapshot(small)
    for policy in Policy:
        sim, _ = simulate_stored(small, rules, policy, cohort_b)
        assert sim.assignments.height == 3
    sim, _ = simulate_stored(small, rules, Policy.ROUND_ROBIN, cohort_b)
    assert sim.assignments["partner_id"].to_list() == ["P3", "P4", "P1"]
    assert snapshot(small) == before

    b = commit(small, rules, cohort=cohort_b)
    assert run_referrals(small, b.run_id)["partner_id"].to_list() == ["P3", "P4", "P1"]
    after_b = rr(small)
    assert sorted(after_b, key=after_b.__getitem__) == ["P2", "P3", "P4", "P1"]
    assert min(after_b[p] for p in ("P3", "P4", "P1")) > max(after_a.values())

    c = commit(small, rules, cohort=customers_frame(["C1"]))
    assert run_referrals(small, c.run_id)["partner_id"].to_list() == ["P2"]


def test_round_robin_continues_on_the_demo(con: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    backlog = state.backlog(con)
    a = commit(con, rules, cohort=backlog.head(400))
    assert a.placed > 0
    partners = state.partners(con)
    stamp = dict(zip(partners["partner_id"], partners["last_assigned"], strict=True))
    room = dict(
        zip(
            partners["partner_id"],
            partners["capacity"] - partners["active_referrals"],
            strict=True,
        )
    )
    latest_a = max(v for v in stamp.values() if v is not None)

    b = commit(con, rules, cohort=backlog.slice(400))
    refs = run_referrals(con, b.run_id).filter(pl.col("outcome") == "frp")
    first = refs.row(0, named=True)
    members = con.execute(
        "SELECT partner_ids FROM pools WHERE pool_key = ?", [first["pool_key"]]
    ).fetchall()[0][0]
    with_room = [p for p in members if room[p] > 0]
    expected = min(with_room, key=lambda p: (-1 if stamp[p] is None else stamp[p], p))
    assert first["partner_id"] == expected

    after = rr(con)
    for pid in set(refs["partner_id"]):
        assert after[pid] > latest_a


# --- what a commit writes --------------------------------------------------------------


@pytest.fixture
def committed(con: duckdb.DuckDBPyConnection, rules: Rules) -> dict[str, Any]:
    """The demo backlog committed with round robin, with the state before and after."""
    cohort = state.backlog(con)
    partners_before = state.partners(con)
    summary = commit(con, rules)
    return {
        "con": con,
        "cohort": cohort,
        "summary": summary,
        "partners_before": partners_before,
        "partners_after": state.partners(con),
        "referrals": run_referrals(con, summary.run_id),
    }


def test_commit_writes_referrals_tasks_and_messages(
    committed: dict[str, Any], rules: Rules
) -> None:
    con, cohort, summary = committed["con"], committed["cohort"], committed["summary"]
    refs: pl.DataFrame = committed["referrals"]

    # One referral per customer, in cohort order.
    assert refs["tenant_id"].to_list() == cohort["tenant_id"].to_list()
    assert refs["referral_id"].is_sorted() and refs["referral_id"].n_unique() == refs.height
    pairs = set(refs.select("outcome", "status").unique().iter_rows())
    assert pairs == {("frp", "active"), ("css", "queued")}  # a CSS referral waits, queued
    assert summary.customers == refs.height
    assert summary.placed == refs.filter(pl.col("outcome") == "frp").height
    country = dict(zip(cohort["tenant_id"], cohort["country"], strict=True))
    for row in refs.iter_rows(named=True):
        if row["outcome"] == "frp":
            assert row["queue"] == "FRP" and row["reason"] == "assigned"
        else:
            assert row["queue"] == rules.queue_for(country[row["tenant_id"]])
            assert row["reason"] in {r.value for r in CSS_REASONS}

    # PSM name and email on every FRP referral, as the partner has them.
    psm = state.query(con, "SELECT partner_id, psm_name, psm_email, contact_email FROM partners")
    frp = refs.filter(pl.col("outcome") == "frp").join(
        psm, on="partner_id", how="left", suffix="_p"
    )
    assert frp.height > 0
    assert frp["psm_name"].null_count() == 0 and frp["psm_email"].null_count() == 0
    assert frp["psm_name"].to_list() == frp["psm_name_p"].to_list()
    assert frp["psm_email"].to_list() == frp["psm_email_p"].to_list()

    # FTOP task 3186 exactly for Gateway customers referred to a partner.
    gateway = set(cohort.filter(pl.col("gateway"))["tenant_id"])
    want = frp.filter(pl.col("tenant_id").is_in(list(gateway)))
    tasks = state.query(
        con, "SELECT * FROM ftop_tasks WHERE referral_id >= ?", [refs["referral_id"].min()]
    )
    assert tasks.height == summary.tasks == want.height > 0
    assert sorted(tasks["referral_id"]) == sorted(want["referral_id"])
    assert dict(zip(tasks["referral_id"], tasks["partner_id"], strict=True)) == dict(
        zip(want["referral_id"], want["partner_id"], strict=True)
    )
    assert set(tasks["task_number"]) == {FTOP_TASK_ID} == {3186}
    assert (
        set(tasks["name"]) == {FTOP_TASK_NAME} == {"(Gateway Only) Completion of Referral Process"}
    )
    assert set(tasks["role"]) == {FTOP_TASK_ROLE} == {"FastTrack Manager"}
    assert set(tasks["service"]) == {FTOP_TASK_SERVICE} == {"Core Onboarding"}
    assert tasks["mandatory"].all() and set(tasks["status"]) == {"open"}

    # Exactly three messages (customer, partner, PSM) per FRP referral, none for CSS.
    out = state.query(
        con, "SELECT * FROM outbox WHERE referral_id >= ?", [refs["referral_id"].min()]
    )
    assert out.height == summary.notifications == 3 * frp.height
    assert set(out["referral_id"]) == set(frp["referral_id"])
    per = out.group_by("referral_id").agg(pl.col("recipient_role").sort())
    assert all(r == sorted(ROLES) for r in per["recipient_role"].to_list())
    assert out["message_id"].to_list() == [
        message_id(r, role)
        for r, role in zip(out["referral_id"], out["recipient_role"], strict=True)
    ]
    assert message_id(42, "psm") == "<referral-42-psm@frp-assign.invalid>"
    assert set(out["status"]) == {"pending"}
    emails = {
        (r["referral_id"], "partner"): r["contact_email"] for r in frp.iter_rows(named=True)
    } | {(r["referral_id"], "psm"): r["psm_email"] for r in frp.iter_rows(named=True)}
    contact = dict(zip(cohort["tenant_id"], cohort["contact_email"], strict=True))
    for m in out.iter_rows(named=True):
        if m["recipient_role"] == "customer":
            assert m["to_email"] == contact[m["tenant_id"]]
        else:
            assert m["to_email"] == emails[(m["referral_id"], m["recipient_role"])]
        # In the customer's language (tests/test_notify.py checks each), English by default.
        assert m["subject"].startswith(
            (
                "Your request for a FastTrack Specialist has been assigned - ",
                "Ihre Anfrage für einen FastTrack-Spezialisten wurde zugewiesen - ",
                "Votre demande de spécialiste FastTrack a été attribuée - ",
                "Su solicitud de un especialista de FastTrack ha sido asignada - ",
            )
        )


def test_css_referrals_name_no_partner(committed: dict[str, Any]) -> None:
    css = committed["referrals"].filter(pl.col("outcome") == "css")
    assert css.height > 0
    assert css["partner_id"].null_count() == css.height
    assert css["psm_email"].null_count() == css.height
    assert css["psm_name"].null_count() == css.height


def test_commit_counts_against_capacity(committed: dict[str, Any]) -> None:
    before: pl.DataFrame = committed["partners_before"]
    after: pl.DataFrame = committed["partners_after"]
    refs: pl.DataFrame = committed["referrals"]
    given = dict(refs.filter(pl.col("outcome") == "frp").group_by("partner_id").len().iter_rows())
    assert sum(given.values()) == committed["summary"].placed
    joined = before.select("partner_id", "capacity", "active_referrals").join(
        after.select("partner_id", pl.col("active_referrals").alias("after")), on="partner_id"
    )
    assert joined.height == before.height
    for pid, capacity, was, now in joined.iter_rows():
        assert now - was == given.get(pid, 0), pid
        assert now <= max(capacity, was), pid

    # A simulation of the next cohort on the committed state sees the seats as taken.
    con = committed["con"]
    full = set(after.filter(pl.col("active_referrals") >= pl.col("capacity"))["partner_id"])
    assert full
    sim, _ = simulate_stored(
        con,
        load_rules(),
        cohort=committed["cohort"].with_columns(
            pl.concat_str(pl.lit("X-"), pl.col("tenant_id")).alias("tenant_id")
        ),
    )
    assert not full & set(sim.assignments["partner_id"].drop_nulls())


# --- the demo world --------------------------------------------------------------------


def test_build_demo_numbers(demo_summary: dict[str, int], demo_db: Path) -> None:
    """The summary `frp demo` prints (``build_demo``'s, kept by the session's build,
    tests/conftest.py) matches the database, and a built file is not replaced unless asked.
    That the same seed builds the same database, table by table, is checked on a second
    build, `frp demo`'s (tests/test_cli.py); tests/test_demo_history.py checks what the
    history holds."""
    summary = demo_summary
    assert summary["partners"] >= 300
    assert summary["countries"] >= 25
    assert summary["languages"] >= 12
    assert summary["runs"] >= WEEKS
    assert summary["past_referrals"] >= WEEKS * WEEKLY_CUSTOMERS[0]
    assert summary["referrals_without_a_run"] == 0
    assert summary["backlog"] >= 1000
    before = digest(demo_db)
    with pytest.raises(FileExistsError):
        build_demo(demo_db)
    assert digest(demo_db) == before

    con = connect(demo_db, read_only=True)
    try:
        counts = state.counts(con)
        assert counts["partners"] == summary["partners"]
        assert counts["referrals"] == summary["past_referrals"]
        assert counts["backlog"] == summary["backlog"]
        assert counts["runs"] >= summary["runs"]  # the weekly runs and the re-assignments
        assert counts["tasks"] > 0 and counts["outbox"] > 0
        countries = con.execute(
            "SELECT count(DISTINCT c) FROM (SELECT unnest(countries) c FROM partners)"
        )
        assert countries.fetchall()[0][0] == summary["countries"]
    finally:
        con.close()


def test_demo_backlog_shows_every_css_reason(demo_db_master: Path, rules: Rules) -> None:
    con = connect(demo_db_master, read_only=True)
    try:
        sim, prep = simulate_stored(con, rules, Policy.ROUND_ROBIN)
        assert prep.skipped == []
        assert sim.assignments.height == state.counts(con)["backlog"]
    finally:
        con.close()
    counts = sim.counts()
    for reason in CSS_REASONS:
        assert counts[reason.value] > 0, reason
    assert counts["assigned"] > 0
