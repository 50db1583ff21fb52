"""Sending the outbox to a real SMTP server on loopback (aiosmtpd), and exporting .eml files.

Each test commits a small world (four referrals to partners in four languages, one
customer to CSS) and sends it to a server it starts on a free port. Back-off waits are
injected, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import os
import smtplib
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pytest

import store.db
import store.notify
import store.outbox
from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA
from engine.rules import load_rules
from store.commits import commit
from store.db import connect, open_db
from store.imports import import_customers, import_partners
from store.lifecycle import decline
from store.migrations import V1_DDL
from store.notify import ROLES, message_id
from store.outbox import DeliveryError, Opener, SmtpSettings, export_eml, send_pending
from tests.smtp_server import Mailbox, Server, running

FRP = str(Path(sys.executable).parent / "frp")
SENDER = "FastTrack Center <fasttrack@frp.example>"

PARTNERS = [
    # partner_id, name, country, languages, psm
    ("P1", "Alpha Cloud Ltd", "US", ["en"], "Ann Able"),
    ("P2", "Beta Digital GmbH", "DE", ["de", "en"], "Bernd Bauer"),
    ("P3", "Gamma Conseil SA", "FR", ["fr"], "Chloé Carré"),
    ("P4", "Delta Soluciones SL", "ES", ["es"], "Diego Díaz"),
]
CUSTOMERS = [
    # tenant_id, name, country, language, seats
    ("T1", "Acme <Corp> & Sons", "US", "en", 500),
    ("T2", "Müller Maschinenbau AG", "DE", "de", 4321),
    ("T3", "Boulangerie Dupont", "FR", "fr", 300),
    ("T4", "Jamones Ruiz", "ES", "es", 800),
    ("T5", "Tiny Co", "US", "en", 20),  # below the seat threshold: CSS, no messages
]


def world(path: Path) -> Path:
    """A store with run 1 committed: referrals 1-4 (T1-T4) to P1-P4, T5 to CSS."""
    partners = pl.DataFrame(
        [
            {
                "partner_id": pid,
                "name": name,
                "countries": [country],
                "languages": langs,
                "workloads": ["exchange", "teams", "intune"],
                "capacity": 10,
                "active_referrals": 0,
                "referral_ready": True,
                "psm_name": psm,
                "psm_email": f"psm.{pid.lower()}@psm.example",
                "contact_email": f"referrals@{pid.lower()}.example",
                "last_assigned": None,
            }
            for pid, name, country, langs, psm in PARTNERS
        ],
        schema=PARTNER_SCHEMA,
    )
    customers = pl.DataFrame(
        [
            {
                "tenant_id": tid,
                "name": name,
                "country": country,
                "language": lang,
                "seats": seats,
                "workloads": ["exchange", "teams", "dynamics-365"],
                "gateway": True,
                "contact_email": f"it@{tid.lower()}.example",
                "referral_consent": True,
            }
            for tid, name, country, lang, seats in CUSTOMERS
        ],
        schema=CUSTOMER_SCHEMA,
    )
    con = connect(path)
    try:
        import_partners(con, partners)
        import_customers(con, customers)
        summary = commit(con, load_rules(), actor="test")
        assert (summary.placed, summary.notifications) == (4, 12)
    finally:
        con.close()
    return path


@pytest.fixture(scope="module")
def world_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world(tmp_path_factory.mktemp("outbox") / "world.duckdb")


@pytest.fixture
def db(world_master: Path, tmp_path: Path) -> Path:
    path = tmp_path / "frp.duckdb"
    path.write_bytes(world_master.read_bytes())
    return path


@pytest.fixture
def con(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_db(db) as c:
        yield c


@pytest.fixture
def server() -> Iterator[Server]:
    with running() as s:
        yield s


def shared(con: duckdb.DuckDBPyConnection) -> Opener:
    """Short-lived connections for ``send_pending``: cursors of the test's own connection
    (same database, each with its own transaction), closed after each use."""
    return lambda: closing(con.cursor())


def settings(server: Server, **env: str) -> SmtpSettings:
    return SmtpSettings.from_env(server.env(**env))


def outbox(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    rows = con.execute(
        "SELECT message_id, status, attempts, last_error, sent_at, to_email FROM outbox"
    ).fetchall()
    keys = ("message_id", "status", "attempts", "last_error", "sent_at", "to_email")
    return {r[0]: dict(zip(keys, r, strict=True)) for r in rows}


def referral_of(con: duckdb.DuckDBPyConnection, tenant: str) -> int:
    return con.execute(
        "SELECT referral_id FROM referrals WHERE tenant_id = ?", [tenant]
    ).fetchall()[0][0]


def subject(msg: email.message.EmailMessage) -> str:
    # Python folds a subject that fits on a line of its own onto the next line, and its
    # parser then keeps the fold's space: compare without it (mail clients drop it).
    return str(msg["Subject"]).strip()


class Sleeps(list):
    """An injected ``sleep``: records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- settings --------------------------------------------------------------------------


def test_settings_defaults_and_describe() -> None:
    base = {"FRP_SMTP_HOST": "smtp.example.com", "FRP_SMTP_FROM": SENDER}
    plain = SmtpSettings.from_env(base)
    assert (plain.port, plain.starttls, plain.user) == (25, False, None)
    tls = SmtpSettings.from_env(
        base | {"FRP_SMTP_STARTTLS": "true", "FRP_SMTP_USER": "u", "FRP_SMTP_PASSWORD": "pw"}
    )
    assert (tls.port, tls.starttls, tls.user, tls.password) == (587, True, "u", "pw")
    assert "pw" not in repr(tls) and "pw" not in tls.describe()
    assert tls.describe() == f"smtp.example.com:587, STARTTLS, as u, from {SENDER}"


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"FRP_SMTP_HOST": None}, "FRP_SMTP_HOST"),
        ({"FRP_SMTP_HOST": "  "}, "FRP_SMTP_HOST"),
        ({"FRP_SMTP_FROM": None}, "FRP_SMTP_FROM"),
        ({"FRP_SMTP_FROM": "not an address"}, "FRP_SMTP_FROM"),
        ({"FRP_SMTP_PORT": "smtp"}, "FRP_SMTP_PORT"),
        ({"FRP_SMTP_PORT": "70000"}, "FRP_SMTP_PORT"),
        ({"FRP_SMTP_STARTTLS": "maybe"}, "FRP_SMTP_STARTTLS"),
        ({"FRP_SMTP_USER": "u"}, "FRP_SMTP_PASSWORD"),
        ({"FRP_SMTP_USER": "u", "FRP_SMTP_PASSWORD": "p"}, "FRP_SMTP_STARTTLS"),
    ],
)
def test_bad_settings_name_the_variable(changes: dict[str, str | None], names: str) -> None:
    env = {"FRP_SMTP_HOST": "smtp.example.com", "FRP_SMTP_FROM": SENDER} | changes
    with pytest.raises(DeliveryError, match=names) as info:
        SmtpSettings.from_env({k: v for k, v in env.items() if v is not None})
    assert "\n" not in str(info.value)


# --- delivery --------------------------------------------------------------------------


def test_every_message_is_delivered_with_its_content(
    con: duckdb.DuckDBPyConnection, server: Server
) -> None:
    summary = send_pending(shared(con), settings(server), sleep=Sleeps())
    assert (summary.sent, summary.failed, summary.pending, summary.ok) == (12, 0, 0, True)
    box = server.mailbox
    queued = outbox(con)
    assert sorted(box.ids()) == sorted(queued)  # each exactly once, under its own id
    assert all(
        m["status"] == "sent" and m["sent_at"] and m["attempts"] == 1 for m in queued.values()
    )
    for msg in box.received:
        assert msg["To"] == queued[msg["Message-ID"]]["to_email"]
        assert msg["From"] == SENDER
        assert msg["Date"] is not None
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert {env[0] for env in box.envelopes} == {"fasttrack@frp.example"}

    # The German customer gets the German templates, names and contacts included.
    rid = referral_of(con, "T2")
    msg = box.by_id(message_id(rid, "customer"))
    assert msg["To"] == "it@t2.example"
    assert subject(msg) == (
        "Ihre Anfrage für einen FastTrack-Spezialisten wurde zugewiesen - Müller Maschinenbau AG"
    )
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Guten Tag Müller Maschinenbau AG" in part
        assert "Beta Digital GmbH" in part and "referrals@p2.example" in part
        assert "Bernd Bauer" in part and "psm.p2@psm.example" in part
        assert "Exchange Online" in part and "Microsoft Teams" in part
        assert "Dynamics" not in part and "dynamics-365" not in part  # not eligible
        assert "Nächster Schritt" in part
    assert '<html lang="de">' in html
    # The partner's copy: who to contact for onboarding, never the seat count.
    partner = box.by_id(message_id(rid, "partner"))
    assert partner["To"] == "referrals@p2.example"
    body = partner.get_body(("plain",)).get_content()
    assert "it@t2.example" in body and "4321" not in body and "4,321" not in body
    assert box.by_id(message_id(rid, "psm"))["To"] == "psm.p2@psm.example"

    # HTML is escaped; the English subject is the one docs/domain.md gives ("Outcome").
    acme = box.by_id(message_id(referral_of(con, "T1"), "customer"))
    assert subject(acme) == (
        "Your request for a FastTrack Specialist has been assigned - Acme <Corp> & Sons"
    )
    assert "Acme &lt;Corp&gt; &amp; Sons" in acme.get_body(("html",)).get_content()
    assert "Acme <Corp> & Sons" in acme.get_body(("plain",)).get_content()
    assert "FastTrack Ready Partner onboarding" in acme.get_body(("plain",)).get_content()
    fr = box.by_id(message_id(referral_of(con, "T3"), "partner"))
    es = box.by_id(message_id(referral_of(con, "T4"), "psm"))
    assert subject(fr).startswith("Votre demande de spécialiste FastTrack a été attribuée")
    assert subject(es).startswith("Su solicitud de un especialista de FastTrack")


def test_a_second_send_delivers_nothing(con: duckdb.DuckDBPyConnection, server: Server) -> None:
    assert send_pending(shared(con), settings(server)).sent == 12
    again = send_pending(shared(con), settings(server))
    assert (again.sent, again.failed, again.pending, again.untried) == (0, 0, 0, 0)
    assert len(server.mailbox.received) == 12
    (audits,) = con.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'send_outbox'"
    ).fetchall()[0]
    assert audits == 1  # a run with nothing to send writes no audit entry


def test_refused_connection_is_retried_with_backoff(con: duckdb.DuckDBPyConnection) -> None:
    server = Server()  # its port is chosen but nothing listens yet: connections are refused
    sleeps = Sleeps()

    def start_server(seconds: float) -> None:  # the back-off wait brings the server up
        sleeps(seconds)
        server.start()

    try:
        summary = send_pending(shared(con), settings(server), backoff=0.05, sleep=start_server)
    finally:
        server.stop()
    assert summary.sent == 12 and summary.ok
    assert sleeps == [0.05]
    first = min(outbox(con).values(), key=lambda m: m["sent_at"])
    assert first["attempts"] == 2 and first["last_error"] is None
    assert len(server.mailbox.received) == 12


def test_unreachable_server_leaves_everything_pending(con: duckdb.DuckDBPyConnection) -> None:
    server = Server()  # never started
    sleeps = Sleeps()
    summary = send_pending(shared(con), settings(server), attempts=3, backoff=0.2, sleep=sleeps)
    assert sleeps == [0.2, 0.4]  # doubling, bounded by the attempts
    assert (summary.sent, summary.failed, summary.pending, summary.untried) == (0, 0, 1, 11)
    assert "Connection refused" in summary.problem() or "refused" in summary.problem().lower()
    rows = outbox(con).values()
    assert all(r["status"] == "pending" and r["sent_at"] is None for r in rows)
    tried = [r for r in rows if r["attempts"]]
    assert len(tried) == 1 and tried[0]["attempts"] == 3
    assert f"cannot reach 127.0.0.1:{server.port}" in tried[0]["last_error"]


def test_a_421_is_retried(con: duckdb.DuckDBPyConnection) -> None:
    box = Mailbox(refuse_once={"it@t3.example": ["421 4.3.2 Service shutting down, try later"]})
    with running(box) as server:
        sleeps = Sleeps()
        summary = send_pending(shared(con), settings(server), sleep=sleeps)
    assert summary.sent == 12 and summary.ok and sleeps == [0.2]
    row = outbox(con)[message_id(referral_of(con, "T3"), "customer")]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert len(box.received) == 12


def test_a_lasting_4xx_leaves_the_message_pending_and_goes_on(
    con: duckdb.DuckDBPyConnection,
) -> None:
    box = Mailbox(refuse={"it@t4.example": "450 4.2.1 Mailbox busy, try again later"})
    with running(box) as server:
        summary = send_pending(shared(con), settings(server), sleep=Sleeps())
        assert (summary.sent, summary.pending, summary.failed) == (11, 1, 0)
        row = outbox(con)[message_id(referral_of(con, "T4"), "customer")]
        assert (row["status"], row["attempts"]) == ("pending", 3)
        assert row["last_error"] == "450 4.2.1 Mailbox busy, try again later"
        # Once the mailbox takes mail again, the next run delivers just that one.
        box.refuse.clear()
        again = send_pending(shared(con), settings(server), sleep=Sleeps())
    assert (again.sent, again.pending) == (1, 0)
    assert len(box.received) == 12 and len(set(box.ids())) == 12


def test_a_5xx_marks_the_message_failed_with_the_reply(
    con: duckdb.DuckDBPyConnection, server: Server
) -> None:
    server.mailbox.refuse["psm.p1@psm.example"] = "550 5.1.1 <psm.p1@psm.example>: no such user"
    sleeps = Sleeps()
    summary = send_pending(shared(con), settings(server), sleep=sleeps)
    assert (summary.sent, summary.failed, summary.pending) == (11, 1, 0)
    assert sleeps == []  # a permanent refusal is not retried
    failed = outbox(con)[message_id(referral_of(con, "T1"), "psm")]
    assert (failed["status"], failed["attempts"], failed["sent_at"]) == ("failed", 1, None)
    assert failed["last_error"] == "550 5.1.1 <psm.p1@psm.example>: no such user"
    assert "no such user" in summary.problem()
    # A failed message is not tried again.
    server.mailbox.refuse.clear()
    assert send_pending(shared(con), settings(server)).sent == 0
    assert len(server.mailbox.received) == 11


def test_crash_between_acceptance_and_marking_resends_with_the_same_message_id(
    con: duckdb.DuckDBPyConnection, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(con: duckdb.DuckDBPyConnection, token: str, results: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(store.outbox, "_record", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        send_pending(shared(con), settings(server), record_every=1)
    (accepted,) = server.mailbox.ids()  # the server took the first message...
    assert outbox(con)[accepted]["status"] == "pending"  # ...but it was never marked

    monkeypatch.undo()
    # The dead run's claims still hold within the timeout: nothing goes twice yet.
    early = send_pending(shared(con), settings(server))
    assert (early.sent, early.elsewhere) == (0, 12) and len(server.mailbox.ids()) == 1
    summary = send_pending(shared(con), settings(server), claim_timeout=0)  # past it
    assert summary.sent == 12
    ids = server.mailbox.ids()
    assert len(ids) == 13 and ids.count(accepted) == 2  # at least once: one duplicate,
    assert len(set(ids)) == 12  # recognisable by its unchanged Message-ID
    first, second = (m for m in server.mailbox.received if m["Message-ID"] == accepted)
    assert first.as_bytes() == second.as_bytes()  # the very same message, Date included
    assert outbox(con)[accepted]["status"] == "sent"


@dataclass
class Stalling(Mailbox):
    """A server that holds the first message's DATA until ``release`` is set."""

    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return await super().handle_DATA(server, session, envelope)


#: Another process writing to the file: DuckDB refuses it while any connection is open.
OTHER_WRITER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("UPDATE partners SET capacity = 99 WHERE partner_id = 'P1'")
con.close()
"""


def test_the_database_is_free_while_the_server_is_slow(db: Path) -> None:
    box = Stalling()
    outcome: dict[str, object] = {}

    def send() -> None:
        try:
            outcome["summary"] = send_pending(lambda: open_db(db, schema=False), settings(server))
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    with running(box) as server:
        sender = threading.Thread(target=send)
        sender.start()
        try:
            assert box.stalled.wait(30), "the first message never reached the server"
            other = subprocess.run(
                [sys.executable, "-c", OTHER_WRITER, str(db)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            box.release.set()
            sender.join(60)
    assert other.returncode == 0, other.stderr  # it committed while the server stalled
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    assert isinstance(summary, store.outbox.SendSummary) and (summary.sent, summary.ok) == (
        12,
        True,
    )
    con = connect(db)
    try:
        assert {r["status"] for r in outbox(con).values()} == {"sent"}
        assert con.execute("SELECT capacity FROM partners WHERE partner_id = 'P1'").fetchall() == [
            (99,)
        ]
    finally:
        con.close()
    assert sorted(box.ids()) == sorted(outbox_ids(db))


# --- claims: two senders at once, stale claims ---------------------------------------


@dataclass
class Slow(Mailbox):
    """A server that takes ``delay`` seconds over each message: runs overlap in time."""

    delay: float = 0.1

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class Together:
    """An opener whose first connection waits for the other sender's first one: both
    claim transactions start at the same moment and collide on the same rows."""

    def __init__(self, db: Path, barrier: threading.Barrier) -> None:
        self.db, self.barrier, self.first = db, barrier, True

    @contextmanager
    def __call__(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with open_db(self.db, schema=False) as con:
            if self.first:
                self.first = False
                self.barrier.wait(30)
            yield con


def test_two_senders_at_once_deliver_each_message_once(db: Path) -> None:
    box = Slow(delay=0.02)
    barrier = threading.Barrier(2)
    summaries: list[store.outbox.SendSummary] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            summaries.append(send_pending(Together(db, barrier), settings(server)))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with running(box) as server:
        senders = [threading.Thread(target=send) for _ in range(2)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(60)
    assert errors == []
    assert sorted(box.ids()) == sorted(outbox_ids(db))  # each message exactly once
    # One claimed everything; the other collided, claimed again and found it all held.
    assert sorted((s.sent, s.elsewhere) for s in summaries) == [(0, 12), (12, 0)]
    assert all(s.ok for s in summaries)
    con = connect(db)
    try:
        assert {r["status"] for r in outbox(con).values()} == {"sent"}
        assert con.execute("SELECT count(claimed_by) FROM outbox").fetchall() == [(0,)]
    finally:
        con.close()


def test_two_frp_outbox_send_processes_at_once_deliver_each_message_once(
    db: Path, tmp_path: Path
) -> None:
    box = Slow(delay=0.15)  # 12 messages take about 2 s: the second run starts inside it
    with running(box) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRP_")}
        procs = [
            subprocess.Popen(
                [FRP, "outbox", "send", "--db", str(db)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env | server.env(),
                cwd=tmp_path,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    ids = box.ids()
    assert len(ids) == 12 and sorted(ids) == sorted(outbox_ids(db))  # exactly once each
    # The runs overlapped: the later one found what was left held by the earlier one.
    assert "being sent by another sender" in "".join(out for out, _ in outs), outs


def claim(con: duckdb.DuckDBPyConnection, tenant: str, by: str, age: str) -> list[str]:
    """Mark a referral's three messages as claimed by ``by``, ``age`` ago (an interval)."""
    rid = referral_of(con, tenant)
    con.execute(
        "UPDATE outbox SET claimed_by = ?, "
        f"claimed_at = now()::TIMESTAMP - INTERVAL '{age}' WHERE referral_id = ?",
        [by, rid],
    )
    return [message_id(rid, role) for role in ROLES]


def test_a_stale_claim_is_sent_again_and_a_live_one_is_left_alone(
    con: duckdb.DuckDBPyConnection, server: Server
) -> None:
    dead = claim(con, "T1", "host:1:dead-run", "10 minutes")  # older than the timeout
    live = claim(con, "T2", "host:2:live-run", "5 seconds")
    summary = send_pending(shared(con), settings(server), claim_timeout=300)
    assert (summary.sent, summary.elsewhere, summary.ok) == (9, 3, True)
    assert "3 being sent by another sender" in summary.describe()
    ids = server.mailbox.ids()
    assert set(dead) <= set(ids) and not set(live) & set(ids)
    rows = outbox(con)
    assert all(rows[m]["status"] == "pending" for m in live)
    # The live sender dies without recording: past the timeout its messages go too.
    assert send_pending(shared(con), settings(server), claim_timeout=300).sent == 0
    again = send_pending(shared(con), settings(server), claim_timeout=4)
    assert (again.sent, again.elsewhere) == (3, 0)
    assert sorted(server.mailbox.ids()) == sorted(outbox(con))  # each once in the end


def test_a_sender_gives_up_messages_whose_claim_another_took(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # A sender past its claim timeout (here 0: it refreshes before every try) finds that
    # another sender took the rest over: it sends none of them and records nothing there.
    other = con.cursor()

    @dataclass
    class TakeOver(Mailbox):
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            if not self.received:
                other.execute(
                    "UPDATE outbox SET claimed_by = 'host:9:other-run', "
                    "claimed_at = now()::TIMESTAMP WHERE status = 'pending'"
                )
            return await super().handle_DATA(server, session, envelope)

    box = TakeOver()
    with running(box) as server:
        summary = send_pending(shared(con), settings(server), claim_timeout=0)
    other.close()
    assert summary.sent == 1 and len(box.ids()) == 1
    # Even the message it did send is the new holder's to record (and, at worst, to send
    # again under the same Message-ID): results are recorded by claim.
    assert {r["status"] for r in outbox(con).values()} == {"pending"}
    claimed = con.execute("SELECT DISTINCT claimed_by FROM outbox").fetchall()
    assert claimed == [("host:9:other-run",)]


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 300.0), ("", 300.0), ("45", 45.0), ("0.5", 0.5)]
)
def test_claim_timeout_setting(value: str | None, seconds: float) -> None:
    env = {} if value is None else {"FRP_OUTBOX_CLAIM_TIMEOUT": value}
    assert store.outbox.read_claim_timeout(env) == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_claim_timeout_names_the_variable(value: str) -> None:
    with pytest.raises(DeliveryError, match=f"FRP_OUTBOX_CLAIM_TIMEOUT={value!r}"):
        store.outbox.read_claim_timeout({"FRP_OUTBOX_CLAIM_TIMEOUT": value})


def test_older_databases_gain_the_claim_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))  # a version-1 store from before the claims
    old.execute(V1_DDL.split("ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_by")[0])
    old.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    old.close()
    con = connect(path)  # migration 2 adds what is missing
    try:
        names = [r[0] for r in con.execute("DESCRIBE outbox").fetchall()]
    finally:
        con.close()
    assert {"claimed_by", "claimed_at"} <= set(names)


def outbox_ids(db: Path) -> list[str]:
    con = connect(db, read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT message_id FROM outbox").fetchall()]
    finally:
        con.close()


def test_notifications_of_a_declined_referral_are_cancelled(
    con: duckdb.DuckDBPyConnection, server: Server
) -> None:
    # The partner declines before the outbox is sent: it must not receive the customer's
    # details any more, and the customer must not hear of a partner that declined.
    rid = referral_of(con, "T3")
    decline(con, "T3", "at_capacity", load_rules(), actor="test")
    summary = send_pending(shared(con), settings(server))
    # Cancelled with the decline itself, so the send finds nothing left to cancel.
    assert (summary.sent, summary.cancelled, summary.ok) == (9, 0, True)
    rows = outbox(con)
    for role in ROLES:
        row = rows[message_id(rid, role)]
        assert (row["status"], row["sent_at"]) == ("cancelled", None)
        assert row["last_error"] == "referral declined before it was sent"
        assert message_id(rid, role) not in server.mailbox.ids()
    assert send_pending(shared(con), settings(server)).cancelled == 0


def test_login_when_a_user_is_set(con: duckdb.DuckDBPyConnection) -> None:
    with running(password="s3cret") as server:
        good = settings(server, FRP_SMTP_USER="frp", FRP_SMTP_PASSWORD="s3cret")
        assert send_pending(shared(con), good).sent == 12
    assert server.mailbox.logins == ["frp"]


def test_a_refused_login_marks_nothing(con: duckdb.DuckDBPyConnection) -> None:
    with running(password="s3cret") as server:
        bad = settings(server, FRP_SMTP_USER="frp", FRP_SMTP_PASSWORD="wrong")
        with pytest.raises(DeliveryError, match="refused the session: 535"):
            send_pending(shared(con), bad)
    assert {r["status"] for r in outbox(con).values()} == {"pending"}
    assert server.mailbox.received == []


def test_messages_queued_before_html_go_as_text(db: Path, server: Server) -> None:
    # An outbox from before the HTML part (version 1): connect() adds the column back, empty.
    raw = duckdb.connect(str(db))
    raw.execute("ALTER TABLE outbox DROP COLUMN body_html")
    for table, column in (("partners", "sizes"), ("referrals", "part"), ("referrals", "workloads")):
        raw.execute(f"ALTER TABLE {table} DROP COLUMN {column}")  # version 3's
    raw.execute("ALTER TABLE runs DROP COLUMN rules_version")  # version 4's
    raw.execute("DROP TABLE rules_versions")
    raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    raw.close()
    con = connect(db)
    try:
        assert send_pending(shared(con), settings(server)).sent == 12
    finally:
        con.close()
    msg = server.mailbox.received[0]
    assert msg.get_content_type() == "text/plain"
    assert "FastTrack" in msg.get_content()


# --- export ----------------------------------------------------------------------------


def test_export_writes_one_eml_per_message(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRP_SMTP_FROM", SENDER)
    folder = tmp_path / "eml" / "run1"
    written = export_eml(con, folder)
    assert len(written) == 12 and {p.parent for p in written} == {folder}
    rid = referral_of(con, "T2")
    path = folder / f"referral-{rid}-customer.eml"
    assert path in written
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["Message-ID"] == message_id(rid, "customer")
    assert (msg["From"], msg["To"]) == (SENDER, "it@t2.example")
    assert subject(msg).startswith("Ihre Anfrage für einen FastTrack-Spezialisten")
    assert msg["Date"] is not None
    assert msg.get_content_type() == "multipart/alternative"
    assert "Nächster Schritt" in msg.get_body(("html",)).get_content()
    assert {r["status"] for r in outbox(con).values()} == {"pending"}  # marks nothing

    monkeypatch.delenv("FRP_SMTP_FROM")
    con.execute("UPDATE outbox SET status = 'sent' WHERE recipient_role = 'psm'")
    only = export_eml(con, tmp_path / "psm", ["sent"])
    assert sorted(p.name for p in only) == sorted(
        f"referral-{referral_of(con, t)}-psm.eml" for t in ("T1", "T2", "T3", "T4")
    )
    exported = email.message_from_bytes(only[0].read_bytes(), policy=email.policy.default)
    assert exported["From"] == store.outbox.EXPORT_FROM


def test_export_refuses_a_file_as_folder(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(DeliveryError, match="not a folder"):
        export_eml(con, target)


# --- command line ----------------------------------------------------------------------


def frp(*args: object, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FRP_SMTP_", "FRP_DEBUG"))}
    proc = subprocess.run(
        [FRP, *map(str, args)],
        capture_output=True,
        text=True,
        env=base | env,
        cwd=cwd,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def test_cli_send_and_export(db: Path, server: Server, tmp_path: Path) -> None:
    missing = frp("outbox", "send", "--db", db, env={}, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.splitlines() == [missing.stderr.strip()]
    assert "FRP_SMTP_HOST is not set" in missing.stderr

    sent = frp("outbox", "send", "--db", db, env=server.env(), cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert "12 sent, 0 failed, 0 left pending" in sent.stdout and sent.stderr == ""
    assert len(server.mailbox.received) == 12
    again = frp("outbox", "send", "--db", db, env=server.env(), cwd=tmp_path)
    assert again.returncode == 0 and "0 sent" in again.stdout
    assert len(server.mailbox.received) == 12

    out = tmp_path / "eml"
    export = frp("outbox", "export", out, "--db", db, "--status", "sent", env={}, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert "12 .eml files written" in export.stdout and len(list(out.glob("*.eml"))) == 12
    con = duckdb.connect(str(db))
    try:
        (actor, subject), *_ = con.execute(
            "SELECT actor, subject FROM audit_log WHERE action = 'export_personal_data'"
        ).fetchall()
    finally:
        con.close()
    assert actor.startswith("cli:") and str(out) in subject


def test_cli_send_to_an_unreachable_server_is_one_line(db: Path, tmp_path: Path) -> None:
    server = Server()  # never started
    proc = frp("outbox", "send", "--db", db, "--backoff", "0", env=server.env(), cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("frp: 12 left pending: run `frp outbox send` again later")
    assert f"cannot reach 127.0.0.1:{server.port}" in line


def test_building_the_frp_parser_loads_neither_duckdb_nor_jinja() -> None:
    # Every `frp` command builds the whole parser, the outbox commands' included:
    # `frp simulate` on files must not pay for the store they import in their handlers.
    code = (
        "import sys; from cli.main import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'duckdb', 'jinja2'}))"
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [
        ("outbox",),
        ("outbox", "send", "--attempts", "0"),
        ("outbox", "send", "--backoff", "soon"),
        ("outbox", "export"),
        ("outbox", "export", "x", "--status", "lost"),
        ("outbox", "send", "--db", "{missing}"),
    ],
)
def test_cli_bad_arguments_are_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    argv = [a.replace("{missing}", str(tmp_path / "none.duckdb")) for a in args]
    env = Server().env() if "send" in args else {}
    proc = frp(*argv, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


# --- documentation ---------------------------------------------------------------------


def test_readme_documents_every_delivery_setting_and_template_variable() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    delivery = readme.split("\n## Delivery\n", 1)[1].split("\n## ", 1)[0]
    for variable in (*store.outbox.ENV.values(), "FRP_TEMPLATES"):
        assert f"`{variable}" in delivery, variable
    row = {
        "referral_id": 1,
        "tenant_id": "T",
        "customer_name": "C",
        "customer_email": "c@x.example",
        "eligible_workloads": ["exchange"],
        "partner_id": "P",
        "partner_name": "P",
        "partner_email": "p@x.example",
        "psm_name": "S",
        "psm_email": "s@x.example",
    }
    context = store.notify.context(row, "customer", "en")
    names = [
        f"{key}.{sub}" if isinstance(value, dict) else key
        for key, value in context.items()
        for sub in (value if isinstance(value, dict) else [None])
    ]
    for name in [*names, "subject"]:
        assert f"`{name}`" in delivery, name
    assert "at least once" in delivery and "Message-ID" in delivery
    for command in ("frp outbox send", "frp outbox export", "frp psm", "frp task list"):
        assert command in readme, command


def test_export_never_writes_a_declined_referrals_messages(db: Path, tmp_path: Path) -> None:
    # The declining partner loses access at once: its message (with the customer's contact
    # details) is cancelled with the decline, so an export of what is pending leaves it out.
    con = connect(db)
    try:
        rid = referral_of(con, "T3")
        decline(con, "T3", "at_capacity", load_rules(), actor="test")
        cancelled = {r["status"] for r in outbox(con).values() if f"-{rid}-" in r["message_id"]}
    finally:
        con.close()
    out = tmp_path / "pending"
    done = frp("outbox", "export", out, "--db", db, "--status", "pending", env={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = {p.name for p in out.glob("*.eml")}
    assert names and not any(n.startswith(f"referral-{rid}-") for n in names)
    everything = tmp_path / "all"
    frp("outbox", "export", everything, "--db", db, env={}, cwd=tmp_path)
    assert not any(p.name.startswith(f"referral-{rid}-") for p in everything.glob("*.eml"))
    assert cancelled == {"cancelled"}  # at the decline, not at the next send


def test_a_send_cancels_what_an_older_version_left_pending(
    con: duckdb.DuckDBPyConnection, server: Server
) -> None:
    # A file where a referral was declined before declines cancelled its messages at once.
    rid = referral_of(con, "T2")
    con.execute("UPDATE referrals SET status = 'declined' WHERE referral_id = ?", [rid])
    summary = send_pending(shared(con), settings(server))
    assert (summary.sent, summary.cancelled) == (9, 3)
    assert "3 cancelled (referral ended before sending)" in summary.describe()
    assert {outbox(con)[message_id(rid, role)]["status"] for role in ROLES} == {"cancelled"}


# --- messages that cannot go: failed, never blocking (issue #15) ------------------------


def bad_address(con: duckdb.DuckDBPyConnection, tenant: str, address: str) -> str:
    """Store ``address`` on the customer's message as a file from before the import refused
    control characters could have; returns that message's id."""
    mid = message_id(referral_of(con, tenant), "customer")
    con.execute("UPDATE outbox SET to_email = ? WHERE message_id = ?", [address, mid])
    return mid


@pytest.mark.parametrize("address", ["it\x1c@t1.example", "it@t1\x1e.example", "a\u2028@b.example"])
def test_a_message_that_cannot_be_built_fails_and_the_rest_are_sent(
    con: duckdb.DuckDBPyConnection, server: Server, address: str
) -> None:
    mid = bad_address(con, "T1", address)
    summary = send_pending(shared(con), settings(server), sleep=Sleeps())
    assert (summary.sent, summary.failed, summary.pending, summary.untried) == (11, 1, 0, 0)
    row = outbox(con)[mid]
    assert (row["status"], row["sent_at"]) == ("failed", None)
    assert (
        "cannot build the message" in row["last_error"] and "fix the address" in row["last_error"]
    )
    assert address not in row["last_error"]  # a viewer sees the reason, never the address
    assert mid in summary.problem()
    assert send_pending(shared(con), settings(server)).sent == 0
    assert len(server.mailbox.received) == 11


def test_an_address_the_server_cannot_take_fails_and_the_rest_are_sent(
    con: duckdb.DuckDBPyConnection, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Non-ASCII needs SMTPUTF8: a server without it refuses this message only.
    has_extn = smtplib.SMTP.has_extn
    monkeypatch.setattr(
        smtplib.SMTP, "has_extn", lambda self, name: name != "smtputf8" and has_extn(self, name)
    )
    mid = bad_address(con, "T1", "jürgen@t1.example")
    summary = send_pending(shared(con), settings(server), sleep=Sleeps())
    assert (summary.sent, summary.failed, summary.untried) == (11, 1, 0)
    assert outbox(con)[mid]["status"] == "failed"


def test_export_skips_and_reports_a_message_that_cannot_be_built(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    mid = bad_address(con, "T2", "it\x1d@t2.example")
    written = export_eml(con, tmp_path / "eml")
    assert len(written) == 11 and len(list((tmp_path / "eml").iterdir())) == 11
    (skipped,) = written.skipped
    assert skipped.startswith(f"{mid}: cannot build the message")


def test_cli_send_and_export_go_past_a_message_that_cannot_be_built(
    db: Path, server: Server, tmp_path: Path
) -> None:
    with open_db(db) as c:
        mid = bad_address(c, "T3", "it\x1c@t3.example")
    sent = frp("outbox", "send", "--db", db, env=server.env(), cwd=tmp_path)
    assert sent.returncode == 2 and "11 sent, 1 failed, 0 left pending" in sent.stdout
    (line,) = sent.stderr.splitlines()
    assert "1 notification(s) refused for good (status failed)" in line and mid in line
    again = frp("outbox", "send", "--db", db, env=server.env(), cwd=tmp_path)
    assert again.returncode == 0 and "0 sent, 0 failed, 0 left pending" in again.stdout
    assert len(server.mailbox.received) == 11
    out = tmp_path / "eml"
    export = frp("outbox", "export", out, "--db", db, env={}, cwd=tmp_path)
    assert export.returncode == 2 and "11 .eml files written" in export.stdout
    (line,) = export.stderr.splitlines()
    assert "1 message(s) skipped" in line and mid in line
    assert len(list(out.glob("*.eml"))) == 11


def test_retry_checks_the_address_and_only_takes_a_failed_message(
    con: duckdb.DuckDBPyConnection,
) -> None:
    mid = bad_address(con, "T4", "it\x1e@t4.example")
    with pytest.raises(DeliveryError, match="is pending: only a failed message"):
        store.outbox.retry(con, mid, "it@t4.example", actor="test")
    con.execute("UPDATE outbox SET status = 'failed', last_error = 'x' WHERE message_id = ?", [mid])
    with pytest.raises(DeliveryError, match="column to_email.*no control characters"):
        store.outbox.retry(con, mid, "it\x1e@t4.example", actor="test")
    with pytest.raises(DeliveryError, match="no such message"):
        store.outbox.retry(con, "<nope@x>", "it@t4.example", actor="test")
    assert store.outbox.retry(con, mid, " it@t4.example ", actor="boss") == "it@t4.example"
    row = outbox(con)[mid]
    assert (row["status"], row["to_email"], row["last_error"]) == ("pending", "it@t4.example", None)
    assert con.execute(
        "SELECT actor, subject FROM audit_log WHERE action = 'retry_message'"
    ).fetchall() == [("boss", mid)]


def test_cli_retry_fixes_the_address_and_the_next_send_delivers_it(
    db: Path, server: Server, tmp_path: Path
) -> None:
    with open_db(db) as c:
        mid = bad_address(c, "T3", "it\x1c@t3.example")
    assert frp("outbox", "send", "--db", db, env=server.env(), cwd=tmp_path).returncode == 2
    bad = frp(
        "outbox", "retry", mid, "--email", "it\x1c@t3.example", "--db", db, env={}, cwd=tmp_path
    )
    assert bad.returncode == 2 and "no control characters" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1
    unknown = frp(
        "outbox", "retry", "<nope@x>", "--email", "x@t3.example", "--db", db, env={}, cwd=tmp_path
    )
    assert unknown.returncode == 2 and "no such message" in unknown.stderr
    done = frp("outbox", "retry", mid, "--email", "it@t3.example", "--db", db, env={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"message {mid} is pending again" in done.stdout
    again = frp(
        "outbox", "retry", mid, "--email", "it@t3.example", "--db", db, env={}, cwd=tmp_path
    )
    assert again.returncode == 2 and "only a failed message" in again.stderr
    sent = frp("outbox", "send", "--db", db, env=server.env(), cwd=tmp_path)
    assert sent.returncode == 0 and "1 sent, 0 failed" in sent.stdout
    assert [m["To"] for m in server.mailbox.received].count("it@t3.example") == 1


def test_a_referral_declined_while_a_sender_is_at_work_gets_none_of_its_messages_sent(
    con: duckdb.DuckDBPyConnection, server: Server
) -> None:
    """The sender claimed T2's messages before the decline cancelled them; it must not send
    them afterwards, although the decline came between two of its messages, long before
    its next record (the partner loses access at once: docs/domain.md)."""
    declined = referral_of(con, "T2")

    def decline_after_the_first(done: int, total: int) -> None:
        if done == 1:
            decline(con.cursor(), "T2", "at_capacity", load_rules())

    summary = send_pending(shared(con), settings(server), progress=decline_after_the_first)
    sent_to = {m["Message-ID"] for m in server.mailbox.received}
    assert not [m for m in sent_to if f"referral-{declined}-" in m], sorted(sent_to)
    statuses = {m: r["status"] for m, r in outbox(con).items() if f"referral-{declined}-" in m}
    assert set(statuses.values()) == {"cancelled"}, statuses
    assert summary.sent == len(sent_to) == 9


class Counted:
    """An opener of short connections to the file (as `frp outbox send` opens them) that
    counts its openings."""

    def __init__(self, db: Path) -> None:
        self.db, self.openings = db, 0

    def __call__(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        self.openings += 1
        return open_db(self.db, schema=False)


def test_a_decline_by_another_connection_to_the_file_stops_its_messages_too(
    db: Path, server: Server
) -> None:
    """The decline comes on a connection of its own that closes (a checkpoint: the file's
    header rewritten, the log emptied), as `frp decline` or the dashboard make it."""
    with open_db(db) as c:
        declined = referral_of(c, "T3")

    def decline_after_the_first(done: int, total: int) -> None:
        if done == 1:
            with open_db(db) as c:
                decline(c, "T3", "at_capacity", load_rules(), actor="test")

    opener = Counted(db)
    summary = send_pending(opener, settings(server), progress=decline_after_the_first)
    sent_to = server.mailbox.ids()
    assert not [m for m in sent_to if f"referral-{declined}-" in m], sorted(sent_to)
    assert (summary.sent, summary.cancelled) == (9, 3) and len(sent_to) == 9


def test_a_sender_opens_the_file_only_when_something_changed(db: Path, server: Server) -> None:
    """No opening per message: one to claim, one look after its own write, one at the end
    (results recorded on their usual rhythm, here only at the end)."""
    opener = Counted(db)
    summary = send_pending(opener, settings(server), record_after=3600)
    assert summary.sent == 12 and len(server.mailbox.ids()) == 12
    assert opener.openings == 3
