"""Kill-safety: SIGKILL `frp import` and `frp commit` at random points; nothing half-done.

A copy of the demo database gets big synthetic cohorts (``engine.cohorts``, written as
Parquet) so that an import and a commit take long enough to be killed in the middle.
Each `frp` process is killed after a random delay; then the database must hold each
run whole or not at all (a run's referrals are its ``customers``, its outbox three
messages per FRP referral, its FTOP tasks one per Gateway FRP referral, one audit
entry), no customer may hold two open referrals, and each cohort file is either wholly
imported or absent, its customers waiting in the FTCQ or referred once. A retry without
a kill then completes the work. The kills survived are counted (conftest prints them).

`frp outbox send` is killed while the SMTP server holds a message: its claims keep a
second sender off until the claim timeout, and a run after it delivers every message
(those the dead run handed over again, under the same Message-ID).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from engine.cohorts import synthetic_cohort
from store import state
from store.db import connect
from tests.db_helpers import RUNS_NOT_WHOLE
from tests.smtp_server import Mailbox, running
from tests.test_outbox import world

FRP = str(Path(sys.executable).parent / "frp")
COHORT = 100_000  # customers per cohort file; a round imports one and commits it
ROUNDS = 6
KILLS_WANTED = 16
KILLS_PER_ROUND = {"import": 2, "commit": 4}
BUDGET = 45.0  # seconds for starting new rounds; the last round and its retries come after
STARTUP = 0.4  # seconds before `frp` has read its arguments: kills land after that


def spawn(*args: object) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("FRP_DB", "FRP_DEBUG")}
    return subprocess.Popen(
        [FRP, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def finish(proc: subprocess.Popen[bytes]) -> None:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


class Killer:
    """Starts `frp` and kills it at a random point of its run (the run's length is learnt)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.length = {"import": 1.2, "commit": 3.5}  # first guesses, seconds
        self.kills = {"import": 0, "commit": 0}

    def attempt(self, *args: object) -> bool:
        """Run `frp ARGS`, SIGKILL it after a random delay; True if it was killed mid-way."""
        op = str(args[0])
        started = time.monotonic()
        proc = spawn(*args)
        deadline = started + self.rng.uniform(STARTUP, max(STARTUP, 0.95 * self.length[op]))
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            if proc.returncode == -signal.SIGKILL:
                self.kills[op] += 1
                return True
            assert proc.returncode == 0, err.decode()  # it finished just before the signal
        else:
            finish(proc)
        self.length[op] = time.monotonic() - started
        return False


def check(db: Path, cohorts: dict[Path, list[str]]) -> dict[str, int]:
    """The invariants of a database after any kill; returns a few counts for the caller."""
    con = duckdb.connect(str(db), read_only=True)  # replays the WAL in memory, changes nothing
    try:

        def one(sql: str, params: list | None = None) -> list[tuple]:
            return con.execute(sql, params or []).fetchall()

        # Each run whole: its referrals, outbox, tasks and audit entry, all there.
        bad_runs = one(RUNS_NOT_WHOLE)
        assert bad_runs == [], f"runs not whole: {bad_runs}"
        orphans = one(
            "SELECT count(*) FROM referrals WHERE run_id IS NOT NULL "
            "AND run_id NOT IN (SELECT run_id FROM runs)"
        )[0][0]
        orphans += one(
            "SELECT count(*) FROM outbox "
            "WHERE referral_id NOT IN (SELECT referral_id FROM referrals)"
        )[0][0]
        orphans += one(
            "SELECT count(*) FROM ftop_tasks "
            "WHERE referral_id NOT IN (SELECT referral_id FROM referrals)"
        )[0][0]
        assert orphans == 0, "rows of a run that is not there"
        doubled = one(
            "SELECT count(*) FROM (SELECT tenant_id FROM referrals "
            "WHERE status IN ('active', 'accepted') GROUP BY tenant_id HAVING count(*) > 1)"
        )[0][0]
        assert doubled == 0, "a customer with two open referrals"

        # Each cohort file wholly imported or absent; its customers waiting or referred once.
        for path, ids in cohorts.items():
            con.execute(
                "CREATE OR REPLACE TEMP TABLE cohort AS SELECT unnest(?) AS tenant_id", [ids]
            )
            present, waiting, referred_once, bad = one(
                """
                SELECT count(c.tenant_id),
                       count(*) FILTER (c.in_ftcq AND n.refs IS NULL),
                       count(*) FILTER (NOT c.in_ftcq AND n.refs = 1),
                       count(*) FILTER (c.tenant_id IS NOT NULL AND NOT (
                           (c.in_ftcq AND n.refs IS NULL) OR (NOT c.in_ftcq AND n.refs = 1)))
                FROM cohort k LEFT JOIN customers c USING (tenant_id)
                LEFT JOIN (SELECT tenant_id, count(*) AS refs FROM referrals
                           WHERE run_id IS NOT NULL GROUP BY tenant_id) n USING (tenant_id)
                """
            )[0]
            assert present in (0, len(ids)), f"{path.name}: {present} of {len(ids)} imported"
            assert bad == 0, f"{path.name}: {bad} customers neither waiting nor referred once"
            imports = one(
                "SELECT count(*) FROM audit_log WHERE action = 'import_customers' AND subject = ?",
                [str(path)],
            )[0][0]
            assert (imports > 0) == (present > 0), f"{path.name}: audit and rows disagree"
        return {
            "runs": one("SELECT count(*) FROM runs")[0][0],
            "backlog": one("SELECT count(*) FROM customers WHERE in_ftcq")[0][0],
        }
    finally:
        con.close()


@pytest.mark.timeout(90)
def test_sigkill_during_import_and_commit(
    demo_db_master: Path, tmp_path: Path, record_property
) -> None:
    started = time.monotonic()
    rng = random.Random(int(os.environ.get("FRP_CRASH_SEED", "20261125")))
    db = tmp_path / "frp.duckdb"
    shutil.copy(demo_db_master, db)
    con = connect(db, read_only=True)
    partners = state.partners(con)
    con.close()
    cohorts: dict[Path, list[str]] = {}
    killer = Killer(rng)
    runs_before = runs_done = check(db, cohorts)["runs"]  # the demo's history has runs
    assert runs_before > 0
    for round_ in range(1, ROUNDS + 1):
        if sum(killer.kills.values()) >= KILLS_WANTED or time.monotonic() - started > BUDGET:
            break
        frame = synthetic_cohort(COHORT, seed=100 + round_, partners=partners)
        path = tmp_path / f"cohort-{round_}.parquet"
        frame.write_parquet(path)
        cohorts[path] = frame["tenant_id"].to_list()

        # Import: killed at random points, then (if no attempt got through) a retry.
        for _ in range(KILLS_PER_ROUND["import"]):
            if not killer.attempt("import", "--customers", path, "--db", db):
                check(db, cohorts)
                break
            check(db, cohorts)
        else:
            finish(spawn("import", "--customers", path, "--db", db))
        assert check(db, cohorts)["backlog"] >= COHORT

        # Commit the backlog: killed at random points, then a retry completes it.
        # A kill can land after COMMIT and before the process ends: then the run is whole.
        for _ in range(KILLS_PER_ROUND["commit"]):
            killed = killer.attempt("commit", "--db", db)
            runs = check(db, cohorts)["runs"]
            assert runs in ((runs_done, runs_done + 1) if killed else (runs_done + 1,))
            if runs == runs_done + 1:
                break
        else:
            finish(spawn("commit", "--db", db))
        runs_done += 1
        after = check(db, cohorts)
        assert after["backlog"] == 0 and after["runs"] == runs_done

    # Every customer of every cohort was imported once and referred once: nothing lost.
    con = duckdb.connect(str(db), read_only=True)
    try:
        for ids in cohorts.values():
            referred = con.execute(
                "SELECT count(DISTINCT tenant_id) FROM referrals WHERE tenant_id IN "
                "(SELECT unnest(?))",
                [ids],
            ).fetchall()[0][0]
            assert referred == len(ids)
    finally:
        con.close()
    kills = killer.kills
    survived = sum(kills.values())
    record_property("kills", survived)
    record_property("runs_lost", 0)  # any lost or half run fails check() above
    runs_made = runs_done - runs_before
    print(f"kills survived: {kills}, runs: {runs_made}, {time.monotonic() - started:.1f} s")
    assert survived >= 10, f"only {survived} kills landed mid-way ({kills}); slow machine?"
    assert kills["commit"] >= 5 and kills["import"] >= 2, kills


# --- the outbox: `frp outbox send` killed while the server holds a message -------------


@dataclass
class Holding(Mailbox):
    """Accepts the first ``accept`` messages, then holds the next one's DATA until released."""

    accept: int = 4
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if len(self.received) == self.accept and not self.held.is_set():
            self.held.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.timeout(90)
def test_sigkill_during_outbox_send(tmp_path: Path, record_property) -> None:
    """Killed mid-send, a sender leaves its claims; they block nobody past the timeout,
    and the next run delivers every message (the unrecorded ones again, same Message-ID)."""
    db = world(tmp_path / "frp.duckdb")
    box = Holding(accept=4)
    with running(box) as server:
        env = server.env()
        sender = subprocess.Popen(
            [FRP, "outbox", "send", "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("FRP_")} | env,
        )
        try:
            assert box.held.wait(60), "the sender never reached the fifth message"
            sender.send_signal(signal.SIGKILL)
            sender.communicate(timeout=30)
        finally:
            box.release.set()
        assert sender.returncode == -signal.SIGKILL
        # The held message died with the connection (aiosmtpd cancels its handler), or, if
        # the release won that race, was accepted: let the server settle either way.
        time.sleep(0.2)
        before = box.ids()  # accepted from the dead run; none was recorded as sent
        assert len(before) in (box.accept, box.accept + 1)

        def send(timeout: str) -> subprocess.CompletedProcess[str]:
            base = {k: v for k, v in os.environ.items() if not k.startswith("FRP_")}
            return subprocess.run(
                [FRP, "outbox", "send", "--db", str(db)],
                capture_output=True,
                text=True,
                env=base | env | {"FRP_OUTBOX_CLAIM_TIMEOUT": timeout},
                timeout=60,
            )

        early = send("300")  # within the dead run's claim: nothing goes twice yet
        assert early.returncode == 0, early.stderr
        assert "12 being sent by another sender" in early.stdout and box.ids() == before
        late = send("0")  # past it: the claims are stale, everything goes
        assert late.returncode == 0, late.stderr
        assert "12 sent" in late.stdout
    con = duckdb.connect(str(db), read_only=True)
    try:
        statuses = con.execute(
            "SELECT status, count(*), count(claimed_by) FROM outbox GROUP BY status"
        ).fetchall()
        ids = [r[0] for r in con.execute("SELECT message_id FROM outbox").fetchall()]
    finally:
        con.close()
    assert statuses == [("sent", 12, 0)]
    received = box.ids()
    assert sorted(set(received)) == sorted(ids)  # at least once: nothing lost
    duplicates = [m for m in set(received) if received.count(m) > 1]
    assert set(duplicates) <= set(before)  # only what the dead run had handed over
    record_property("kills", 1)
