"""The outbox: queuing notifications, sending them over SMTP, or exporting them as .eml.

A commit queues its messages as ``pending`` (:func:`queue_messages`, inside the commit's
transaction); :func:`send_pending` hands each one to the SMTP
server named by the ``FRP_SMTP_*`` environment variables (never stored in the database).
It holds no connection while it talks to the server: the pending messages are read in one
short transaction, sent with the file closed (a slow server must not keep `frp` or the
dashboard from the database, which one process at a time may hold), and the results are
recorded in short transactions every few messages or every second. A temporary failure
(connection refused or dropped, a 4xx reply) is retried with back-off and, if it
persists, leaves the message ``pending`` with ``attempts`` and ``last_error``; a
permanent one (a 5xx reply to the message) marks it ``failed`` with the server's reply,
and so does a message that cannot be built (:class:`Unbuildable`): no message holds up
the rest. A manager fixes its address and :func:`retry` makes it ``pending`` again.
A second run never sends a ``sent`` message again. A pending message whose referral was
declined or expired is ``cancelled`` with that change (``store.lifecycle``) and never sent
nor exported: the partner loses access to the customer's details. A run already at work
learns of it before its next message, not at its next record: it looks whether anything
was committed to the file since it last read it (:class:`_Watch`, no opening) and, only
then, reads which of its messages may still go in one short read-only transaction.

Claims. Without the file held during a send, two senders (``frp outbox send`` and the
dashboard's Send, or two runs of the command) could read the same pending messages. So
the short read transaction *claims* them: it stamps ``claimed_by`` (a token of this run)
and ``claimed_at`` on every pending message that nobody holds, and the run sends only
what it claimed; the other sender finds nothing of it left to claim (DuckDB refuses the
second of two claims on one row as a transaction conflict, and :func:`retry_conflicts`
claims again on what is left). Results are recorded only for messages the run still
holds, and the claim is released then (and at the end for anything left untried). Each
record refreshes ``claimed_at`` of the rest, and a run that went half the claim timeout
without one refreshes before its next try, giving up messages it no longer holds.

Guarantee: at least once. A claim older than ``FRP_OUTBOX_CLAIM_TIMEOUT`` seconds
(default 300) is taken as left by a dead sender, and its messages are claimed and sent
again. A crash after the server accepted a message but before its result was recorded
thus leaves it ``pending`` (claimed), and a run after the timeout sends it again under
the *same* Message-ID header (the outbox ``message_id``) and the same bytes, so the
duplicate can be recognised and dropped. Two live senders duplicate a message only if
one SMTP try of it outlasts half the timeout (its claim then expires under it).
"""

from __future__ import annotations

import email.errors
import email.policy
import email.utils
import hashlib
import json
import os
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from engine.schema import InputError, check_email
from store import clock
from store.db import DELIVERABLE, audit, registered, retry_conflicts, transaction
from store.errors import StoreError

if TYPE_CHECKING:
    import polars as pl

Con = duckdb.DuckDBPyConnection
T = TypeVar("T")
Progress = Callable[[int, int], None]
#: A short-lived connection: ``with open_con() as con`` opens one and closes it after.
Opener = Callable[[], AbstractContextManager[Con]]

STATUSES = ("pending", "sent", "failed", "cancelled")
#: Tries per message in one run, and the wait before the 2nd, 3rd, ... try (doubling).
ATTEMPTS = 3
BACKOFF = 0.2
#: Results are recorded after this many messages or seconds, whichever comes first: few
#: openings of the file, and few duplicates should the run be killed before a record.
RECORD_EVERY = 50
RECORD_AFTER = 1.0
#: Seconds to wait for the server on connect and on each command.
TIMEOUT = 30.0
#: Seconds after which another sender's claim counts as left by a dead process. Longer
#: than one message's worst tries with the defaults (3 x 30 s timeouts plus back-off), so
#: a live sender refreshes its claim well before it expires.
CLAIM_TIMEOUT_VAR = "FRP_OUTBOX_CLAIM_TIMEOUT"
DEFAULT_CLAIM_TIMEOUT = 300.0
#: From address of exported .eml files when FRP_SMTP_FROM is not set.
EXPORT_FROM = "FastTrack <noreply@frp-assign.invalid>"

ENV = {
    "host": "FRP_SMTP_HOST",
    "port": "FRP_SMTP_PORT",
    "starttls": "FRP_SMTP_STARTTLS",
    "user": "FRP_SMTP_USER",
    "password": "FRP_SMTP_PASSWORD",
    "sender": "FRP_SMTP_FROM",
}
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off", ""}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class DeliveryError(StoreError):
    """Settings or a server that make sending impossible; the message says what to fix."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send; read from ``FRP_SMTP_*`` by :meth:`from_env`."""

    host: str
    port: int
    sender: str
    starttls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings:
        env = os.environ if environ is None else environ
        host = env.get(ENV["host"], "").strip()
        if not host:
            raise DeliveryError(
                f"{ENV['host']} is not set: name the SMTP server to send through "
                f"(and {ENV['sender']}, the sender address)"
            )
        raw_tls = env.get(ENV["starttls"], "").strip().lower()
        if raw_tls not in _TRUE | _FALSE:
            raise DeliveryError(f"{ENV['starttls']}={raw_tls!r}: expected true or false")
        starttls = raw_tls in _TRUE
        raw_port = env.get(ENV["port"], "").strip()
        if raw_port:
            if not (raw_port.isascii() and raw_port.isdigit()) or not 0 < int(raw_port) < 65536:
                raise DeliveryError(f"{ENV['port']}={raw_port!r}: expected a port number 1-65535")
            port = int(raw_port)
        else:
            port = 587 if starttls else 25
        sender = env.get(ENV["sender"], "").strip()
        if not sender or "@" not in email.utils.parseaddr(sender)[1]:
            raise DeliveryError(
                f"{ENV['sender']}={sender!r}: set the sender address, e.g. "
                "'FastTrack <fasttrack@example.com>'"
            )
        user = env.get(ENV["user"], "").strip() or None
        password = env.get(ENV["password"]) or None
        if user and password is None:
            raise DeliveryError(f"{ENV['user']} is set but {ENV['password']} is not")
        if user and not starttls and host.lower() not in _LOOPBACK:
            raise DeliveryError(
                f"{ENV['user']} is set without {ENV['starttls']}=true: the password would "
                f"cross the network in clear text to {host}"
            )
        return cls(host, port, sender, starttls, user, password)

    def describe(self) -> str:
        tls = ", STARTTLS" if self.starttls else ""
        auth = f", as {self.user}" if self.user else ""
        return f"{self.host}:{self.port}{tls}{auth}, from {self.sender}"


@dataclass
class SendSummary:
    """What one :func:`send_pending` run did."""

    sent: int = 0
    failed: int = 0
    pending: int = 0  # tried and left pending after temporary failures
    untried: int = 0  # not tried: the server could not be reached
    elsewhere: int = 0  # pending but claimed by another sender that is still within time
    cancelled: int = 0  # their referral ended (declined, expired) before they were sent
    errors: list[str] = field(default_factory=list)  # "message_id: reply", in order

    @property
    def ok(self) -> bool:
        return self.failed == self.pending == self.untried == 0

    def describe(self) -> str:
        left = self.pending + self.untried
        text = f"{self.sent:,} sent, {self.failed:,} failed, {left:,} left pending"
        if self.untried:
            text += f" ({self.untried:,} not tried: the server could not be reached)"
        if self.cancelled:
            text += f", {self.cancelled:,} cancelled (referral ended before sending)"
        if self.elsewhere:
            text += f", {self.elsewhere:,} being sent by another sender"
        return text

    def problem(self) -> str:
        """One line on what did not go ('' when everything went)."""
        if self.ok:
            return ""
        parts = []
        if self.failed:
            parts.append(f"{self.failed:,} notification(s) refused for good (status failed)")
        if self.pending + self.untried:
            parts.append(
                f"{self.pending + self.untried:,} left pending: run `frp outbox send` again later"
            )
        first = f"; first: {self.errors[0]}" if self.errors else ""
        return "; ".join(parts) + first


# --- messages ---------------------------------------------------------------------------


def queue_messages(con: Con, messages: pl.DataFrame) -> int:
    """Add rendered messages (``store.notify.MESSAGE_SCHEMA``) as ``pending``, in the
    caller's transaction, so they exist exactly when the commit's referrals do; returns
    how many were queued."""
    if messages.height:
        with registered(con, run_messages=messages.to_arrow()):
            con.execute(
                "INSERT INTO outbox BY NAME SELECT *, 'pending' AS status, "
                "?::TIMESTAMP AS created_at, 0 AS attempts FROM run_messages",
                [clock.now()],
            )
    return messages.height


class Unbuildable(DeliveryError):
    """An outbox row no MIME message can be made of (an address stored before the import
    refused control characters): it is marked ``failed``, never left to block the rest."""


def build_message(row: Mapping[str, Any], sender: str) -> EmailMessage:
    """One outbox row as a MIME message: multipart/alternative (text, html) when it has an
    HTML part, else plain text; Message-ID is the outbox ``message_id``, Date its creation.
    Raises :class:`Unbuildable` when a header cannot hold its value."""
    try:
        return _build(row, sender)
    except (ValueError, TypeError, email.errors.MessageError) as exc:
        # Not the address itself: the reason is shown where a viewer sees no customer email.
        raise Unbuildable(f"cannot build the message ({exc}); fix the address and retry") from None


def _build(row: Mapping[str, Any], sender: str) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Message-ID"] = row["message_id"]
    msg["Date"] = email.utils.format_datetime(_aware(row["created_at"]))
    msg["From"] = sender
    msg["To"] = row["to_email"]
    msg["Subject"] = row["subject"]
    # Quoted-printable keeps every part 7-bit: no server needs 8BITMIME for accents.
    msg.set_content(row["body"], cte="quoted-printable")
    if row.get("body_html"):
        msg.add_alternative(row["body_html"], subtype="html", cte="quoted-printable")
        # A boundary from the id, not a random one: a resend is byte for byte the same
        # message. "=_" never occurs in base64 or quoted-printable text.
        digest = hashlib.sha256(row["message_id"].encode()).hexdigest()[:32]
        msg.set_boundary(f"=_frp_{digest}")
    return msg


def _aware(value: datetime | None) -> datetime:
    """A message's Date: when it was queued, as the clock (naive UTC) stored it."""
    moment = clock.now() if value is None else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_COLUMNS = "message_id, to_email, subject, body, body_html, created_at"


def _rows(con: Con, where: str, params: list[Any]) -> list[dict[str, Any]]:
    """On ``con`` itself, not a cursor: inside :func:`_claim`'s transaction it must see the
    cancellations made just before."""
    rel = con.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE {where} "
        "ORDER BY created_at, referral_id, recipient_role",
        params,
    )
    names = [d[0] for d in rel.description]
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]


def retry(con: Con, message_id: str, to_email: str, *, actor: str) -> str:
    """Send a ``failed`` message again, to ``to_email`` (checked as the import checks an
    address): it is ``pending`` once more, for the next send. Returns the address as stored.

    The audit entry names the message and whether the address changed, never the address:
    a purge must leave no trace of the customer's email."""
    try:
        address = check_email(to_email, "to_email", f"message {message_id}")
    except InputError as exc:
        raise DeliveryError(exc.one_line()) from None
    with transaction(con):
        rows = con.execute(
            "SELECT status, to_email FROM outbox WHERE message_id = ?", [message_id]
        ).fetchall()
        if not rows:
            raise DeliveryError(f"message {message_id}: no such message")
        status, before = rows[0]
        if status != "failed":
            raise DeliveryError(
                f"message {message_id} is {status}: only a failed message is retried"
            )
        con.execute(
            "UPDATE outbox SET status = 'pending', to_email = ?, last_error = NULL, "
            "claimed_by = NULL, claimed_at = NULL WHERE message_id = ?",
            [address, message_id],
        )
        details = {"address_changed": address != before}
        audit(con, actor, "retry_message", message_id, json.dumps(details))
    return address


# --- sending ----------------------------------------------------------------------------


class _Temporary(Exception):
    """Worth trying again later: no connection, a dropped one, or a 4xx reply."""

    def __init__(self, reply: str, *, connection: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.connection = connection  # the server itself is unreachable


class _Permanent(Exception):
    """The server refused this message for good (a 5xx reply)."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


class _Session:
    """One SMTP session, opened on first use and reopened after a failure."""

    def __init__(self, settings: SmtpSettings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self.smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        try:
            smtp = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
        except smtplib.SMTPConnectError as exc:
            raise self._session_error(exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _Temporary(_os_reply(exc, s), connection=True) from None
        try:
            smtp.ehlo()
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.user:
                smtp.login(s.user, s.password or "")
        except smtplib.SMTPNotSupportedError as exc:
            _quit(smtp)
            raise DeliveryError(f"SMTP server {s.host}:{s.port}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            _quit(smtp)
            raise self._session_error(exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quit(smtp)
            raise _Temporary(_os_reply(exc, s), connection=True) from None
        return smtp

    def _session_error(self, code: int, text: bytes | str) -> Exception:
        # A refusal before any message (greeting, EHLO, STARTTLS, login) is about the
        # settings or the server, not about a message: never mark messages failed for it.
        reply = _reply(code, text)
        if 400 <= code < 500:
            return _Temporary(reply, connection=True)
        s = self.settings
        return DeliveryError(f"SMTP server {s.host}:{s.port} refused the session: {reply}")

    def send(self, msg: EmailMessage, to: str) -> None:
        """Returns once the server accepted the message; raises _Temporary or _Permanent."""
        if self.smtp is None:
            self.smtp = self._open()
        sender = email.utils.parseaddr(self.settings.sender)[1]
        try:
            self.smtp.send_message(msg, from_addr=sender, to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._classify(code, text)
        except smtplib.SMTPSenderRefused as exc:
            if exc.smtp_code >= 500:
                self.close()
                raise DeliveryError(
                    f"SMTP server refused the sender {sender}: "
                    f"{_reply(exc.smtp_code, exc.smtp_error)}; check {ENV['sender']}"
                ) from None
            self._classify(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPResponseException as exc:  # DATA refused, or a 421 mid-session
            self._classify(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPNotSupportedError, ValueError) as exc:
            # This message, not the server: an address the server cannot take (non-ASCII
            # without SMTPUTF8) or smtplib refuses to put in a command. Never retried.
            raise _Permanent(f"the address cannot be sent to: {exc}") from None
        except (OSError, smtplib.SMTPException) as exc:  # dropped connection, timeout
            self.close()
            raise _Temporary(_os_reply(exc, self.settings), connection=True) from None

    def _classify(self, code: int, text: bytes | str) -> None:
        reply = _reply(code, text)
        if code >= 500:
            raise _Permanent(reply)
        if code == 421:  # the server is closing the session: the next try reconnects
            self.close()
        raise _Temporary(reply, connection=code == 421)

    def close(self) -> None:
        if self.smtp is not None:
            _quit(self.smtp)
            self.smtp = None


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _os_reply(exc: BaseException, s: SmtpSettings) -> str:
    what = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"cannot reach {s.host}:{s.port}: {what}"


@dataclass(frozen=True)
class _Result:
    """What became of one message in this run, waiting to be recorded."""

    message_id: str
    status: str  # "sent", "failed", or "pending" (temporary failures only)
    tries: int
    reply: str | None = None
    unreachable: bool = False  # the server itself could not be reached


def read_claim_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Seconds before another sender's claim is taken as stale: ``$FRP_OUTBOX_CLAIM_TIMEOUT``,
    else 300."""
    env = os.environ if environ is None else environ
    text = env.get(CLAIM_TIMEOUT_VAR, "").strip()
    if not text:
        return DEFAULT_CLAIM_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise DeliveryError(f"{CLAIM_TIMEOUT_VAR}={text!r}: expected a number of seconds >= 0")
    return value


def _run_token() -> str:
    """Who holds a claim: host and process for whoever reads the table, plus a random
    part so two runs in one process (two dashboard sessions) never share a token."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


#: A claim is free when nobody holds it or its holder has not refreshed it within the
#: timeout. Parameters: the real time (``clock.wall``: claims are leases between
#: processes, not business time) and the timeout in microseconds.
_FREE = (
    "status = 'pending' AND (claimed_by IS NULL OR claimed_at IS NULL "
    "OR claimed_at < ?::TIMESTAMP - to_microseconds(?::BIGINT))"
)


@dataclass(frozen=True)
class _Claim:
    """What one short transaction claimed for this run."""

    cancelled: int
    rows: list[dict[str, Any]]
    elsewhere: int  # pending messages held by another live sender


def _claim(con: Con, token: str, timeout: float) -> _Claim:
    """Cancel what may no longer go out, claim every free pending message for ``token``,
    and read what was claimed, oldest first (the caller's transaction: one short one)."""
    cancelled = cancel_undeliverable(con)
    at = clock.wall()
    con.execute(
        f"UPDATE outbox SET claimed_by = ?, claimed_at = ? WHERE {_FREE}",
        [token, at, at, _micros(timeout)],
    )
    rows = _rows(con, "status = 'pending' AND claimed_by = ?", [token])
    (elsewhere,) = con.execute(
        "SELECT count(*) FROM outbox WHERE status = 'pending' AND claimed_by <> ?", [token]
    ).fetchall()[0]
    return _Claim(cancelled, rows, elsewhere)


def _micros(seconds: float) -> int:
    return int(seconds * 1_000_000)


def cancel_undeliverable(con: Con) -> int:
    """Cancel pending messages of referrals that ended without completion (declined,
    expired), in the caller's transaction: the life cycle calls it with the change that
    ends them, and a send again first, for files older than that rule."""
    rows = con.execute(
        """
        UPDATE outbox SET status = 'cancelled',
               last_error = 'referral ' || r.status || ' before it was sent',
               claimed_by = NULL, claimed_at = NULL
        FROM referrals r
        WHERE outbox.referral_id = r.referral_id AND outbox.status = 'pending'
          AND NOT list_contains(?::VARCHAR[], r.status)
          AND (outbox.recipient_role <> 'customer' OR NOT EXISTS (
              -- the customer's message names every part of its run: kept for the others
              SELECT 1 FROM referrals q WHERE q.tenant_id = r.tenant_id
                AND q.run_id = r.run_id AND q.outcome = 'frp'
                AND list_contains(?::VARCHAR[], q.status)))
        RETURNING outbox.message_id
        """,
        [list(DELIVERABLE), list(DELIVERABLE)],
    ).fetchall()
    return len(rows)


def _record(con: Con, token: str, results: Sequence[_Result]) -> None:
    """The results of messages tried since the last record (the caller's transaction).

    Only messages this run still holds (``claimed_by = token``, still ``pending``): one
    whose claim expired and went to another sender is that sender's to record, and a
    message cancelled meanwhile (a purge) stays cancelled. Recording releases the claim:
    a message left pending after temporary failures is free for the next run at once."""
    for r in results:
        con.execute(
            "UPDATE outbox SET status = ?, attempts = attempts + ?, last_error = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ?::TIMESTAMP END, "
            "claimed_by = NULL, claimed_at = NULL "
            "WHERE message_id = ? AND status = 'pending' AND claimed_by = ?",
            [r.status, r.tries, r.reply, r.status, clock.now(), r.message_id, token],
        )


def _refresh(con: Con, token: str) -> set[str]:
    """Move this run's claims to now, so no other sender takes them as stale; return the
    messages it still holds (not taken over after an expiry, not cancelled meanwhile)."""
    rows = con.execute(
        "UPDATE outbox SET claimed_at = ? "
        "WHERE claimed_by = ? AND status = 'pending' RETURNING message_id",
        [clock.wall(), token],
    ).fetchall()
    return {r[0] for r in rows}


def _release(con: Con, token: str) -> None:
    """Free what this run claimed but did not try (the server was unreachable, or an error
    stopped the run): the next run may send it without waiting for the timeout."""
    con.execute(
        "UPDATE outbox SET claimed_by = NULL, claimed_at = NULL "
        "WHERE claimed_by = ? AND status = 'pending'",
        [token],
    )


def _audit_send(con: Con, actor: str, host: str, summary: SendSummary) -> None:
    counts = {
        "sent": summary.sent,
        "failed": summary.failed,
        "pending": summary.pending + summary.untried,
        "cancelled": summary.cancelled,
    }
    audit(con, actor, "send_outbox", host, json.dumps(counts))


def _sendable(con: Con, token: str, held: list[str]) -> tuple[set[str], set[str]]:
    """Of the messages ``held``: those this run may still send (pending, still its claim,
    referral not ended), and those cancelled or whose referral ended meanwhile."""
    rows = con.execute(
        """
        SELECT o.message_id,
               o.status = 'pending' AND o.claimed_by = ? AND list_contains(?::VARCHAR[], r.status),
               o.status = 'cancelled' OR NOT list_contains(?::VARCHAR[], r.status)
        FROM outbox o JOIN referrals r USING (referral_id)
        WHERE o.message_id IN (SELECT unnest(?::VARCHAR[]))
        """,
        [token, list(DELIVERABLE), list(DELIVERABLE), held],
    ).fetchall()
    return {m for m, ok, _ in rows if ok}, {m for m, _, ended in rows if ended}


def _file_of(con: Con) -> str:
    """The database file behind ``con`` ('' for one in memory: no file to watch)."""
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return (row[0] if row else None) or ""


#: How much of the database file :class:`_Watch` reads: DuckDB's main header and the two
#: database headers, one of which every checkpoint rewrites.
_HEADERS = 3 * 4096


class _Watch:
    """Whether anything was committed to the database file since the run last read it,
    without opening it (an opening costs more than sending a message; a look, a fraction
    of a millisecond). A committed transaction is durable, so it is on disk when the commit
    returns: appended to the write-ahead log (``<file>.wal`` grows or appears) or
    checkpointed into the file (a database header rewritten, the log emptied). Either way
    what :meth:`look` sees differs. A store in memory has no file: always "changed"."""

    def __init__(self) -> None:
        self.path: str | None = None  # learnt on the first connection
        self.seen: tuple[object, ...] | None = None

    def look(self) -> None:
        self.seen = self._state()

    def changed(self) -> bool:
        return self.seen is None or self._state() != self.seen

    def _state(self) -> tuple[object, ...] | None:
        if not self.path:
            return None
        try:
            with open(self.path, "rb") as f:
                headers = f.read(_HEADERS)
                db = os.fstat(f.fileno())
        except OSError:
            return None
        try:
            wal = os.stat(f"{self.path}.wal")
            log: tuple[int, ...] = (wal.st_ino, wal.st_size, wal.st_mtime_ns)
        except FileNotFoundError:
            log = ()
        return (db.st_ino, db.st_size, db.st_mtime_ns, headers, log)


class _Run:
    """One run's hold on the messages it claimed, kept between its short transactions: the
    claim token, which messages it still holds, and the results not yet recorded."""

    def __init__(self, open_con: Opener, stale_after: float) -> None:
        self.open_con = open_con
        self.stale_after = stale_after
        self.token = _run_token()
        self.held: set[str] = set()
        self.unrecorded: list[_Result] = []
        self.recorded_at = time.monotonic()
        self.watch = _Watch()
        self.ended: set[str] = set()  # cancelled while held: never tried, counted as such

    def transact(self, fn: Callable[[Con], T], what: str) -> T:
        """``fn`` in a short transaction of its own, re-run if it collides with another
        sender's (two claims of one row: the loser claims again on what is left)."""

        def once() -> T:
            self.watch.look()  # before reading: a commit after this look shows as a change
            with self.open_con() as con, transaction(con):
                if self.watch.path is None:
                    self.watch.path = _file_of(con)
                return fn(con)

        return retry_conflicts(once, what=what)

    def claim(self) -> _Claim:
        claim = self.transact(
            lambda con: _claim(con, self.token, self.stale_after),
            "claiming the pending notifications",
        )
        self.held = {row["message_id"] for row in claim.rows}
        self.recorded_at = time.monotonic()
        return claim

    def record(self) -> None:
        """Record the results so far and refresh the claims on the rest."""

        def flush(con: Con) -> set[str]:
            _record(con, self.token, self.unrecorded)
            return _refresh(con, self.token)

        self.held = self.transact(flush, "recording sent notifications")
        self.unrecorded, self.recorded_at = [], time.monotonic()

    def due(self, every: int, after: float) -> bool:
        return len(self.unrecorded) >= every or time.monotonic() - self.recorded_at >= after

    def still_held(self, message_id: str) -> bool:
        """Before each try: past half the timeout without a record, record and refresh
        first, so the claim cannot expire while this run still means to send; else, when
        anything was committed to the file since this run last read it, look which of its
        messages may still go (a decline cancels them at once: the partner loses access)."""
        if time.monotonic() - self.recorded_at >= self.stale_after / 2:
            self.record()
        elif self.watch.changed():
            self.check()
        return message_id in self.held

    def check(self) -> None:
        """One read-only query, no record: the results keep their rhythm (RECORD_EVERY)."""
        held = sorted(self.held)
        sendable, ended = self.transact(
            lambda con: _sendable(con, self.token, held), "checking for cancellations"
        )
        self.held &= sendable
        self.ended |= ended

    def finish(self, actor: str, host: str, summary: SendSummary) -> None:
        """The last record: results, claims released on what was not tried, the audit."""

        def last(con: Con) -> None:
            _record(con, self.token, self.unrecorded)
            _release(con, self.token)
            _audit_send(con, actor, host, summary)

        self.transact(last, "recording sent notifications")


def _tally(summary: SendSummary, result: _Result) -> None:
    if result.status == "sent":
        summary.sent += 1
        return
    summary.failed += result.status == "failed"
    summary.pending += result.status == "pending"
    summary.errors.append(f"{result.message_id}: {result.reply}")


def send_pending(
    open_con: Opener,
    settings: SmtpSettings,
    *,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = TIMEOUT,
    actor: str = "cli",
    progress: Progress | None = None,
    record_every: int = RECORD_EVERY,
    record_after: float = RECORD_AFTER,
    claim_timeout: float | None = None,
) -> SendSummary:
    """Send every ``pending`` message nobody else holds, oldest first; see the module
    docstring for claims and failures. ``backoff`` doubles after each try (0.2, 0.4, ...
    seconds); ``claim_timeout`` defaults to :func:`read_claim_timeout`.

    ``open_con()`` gives a short-lived connection (a context manager that closes it): one
    to claim what is pending, one per record of results (after ``record_every`` messages
    or ``record_after`` seconds, whichever comes first, or before a try once half the
    claim timeout passed without a record), one at the end with the audit entry, and a
    read-only one before a try when something was committed since the last (a decline
    elsewhere, or this run's own record). None is
    open while the SMTP server is talked to, so a slow server never keeps the file from
    `frp` or the dashboard."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    stale_after = read_claim_timeout() if claim_timeout is None else max(0.0, claim_timeout)
    run = _Run(open_con, stale_after)
    claim = run.claim()
    rows = claim.rows
    summary = SendSummary(cancelled=claim.cancelled, elsewhere=claim.elsewhere)
    session = _Session(settings, timeout)
    try:
        for done, row in enumerate(rows):
            try:
                msg = build_message(row, settings.sender)
            except Unbuildable as exc:  # failed for good; the rest still go
                result: _Result | None = _Result(row["message_id"], "failed", 0, str(exc))
            else:
                result = _send_one(session, msg, row, attempts, backoff, sleep, run.still_held)
            if result is not None:  # None: taken over by another sender or cancelled meanwhile
                # Accepted but not yet recorded: a crash from here means a duplicate
                # after the claim timeout (same Message-ID, byte for byte), never a loss.
                run.unrecorded.append(result)
                _tally(summary, result)
                if result.unreachable:  # the rest would fail the same way
                    summary.untried = len(rows) - done - 1
                    break
            else:
                summary.cancelled += row["message_id"] in run.ended
            if run.due(record_every, record_after):
                run.record()
            if progress is not None:
                progress(done + 1, len(rows))
    finally:
        session.close()
        if rows or summary.cancelled:
            run.finish(actor, settings.host, summary)
    return summary


def _send_one(
    session: _Session,
    msg: EmailMessage,
    row: Mapping[str, Any],
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None],
    still_held: Callable[[str], bool],
) -> _Result | None:
    """Try one message up to ``attempts`` times (no connection to the database, except
    when ``still_held`` must refresh the claim first); None: the claim was lost."""
    mid = row["message_id"]
    last: _Temporary | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        if not still_held(mid):
            return None
        try:
            session.send(msg, row["to_email"])
        except _Permanent as exc:
            return _Result(mid, "failed", attempt + 1, exc.reply)
        except _Temporary as exc:
            last = exc
            continue
        return _Result(mid, "sent", attempt + 1)
    assert last is not None
    return _Result(mid, "pending", attempts, last.reply, unreachable=last.connection)


# --- export -----------------------------------------------------------------------------


class Exported(list[Path]):
    """The .eml files written, in order; ``skipped`` says which messages could not be
    built ("message_id: reason"), so one bad row never stops an export part way."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []


def export_eml(
    con: Con, folder: str | Path, statuses: Sequence[str] = (), sender: str | None = None
) -> Exported:
    """Write one ``.eml`` file per outbox message (``statuses`` filter; all when empty) into
    ``folder``, named after the message id (``referral-42-customer.eml``). Marks nothing;
    a message that cannot be built is skipped and listed in ``skipped``.

    Never a cancelled message, nor any of a referral that ended without completion
    (declined, expired): the partner lost access to the customer with it."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise DeliveryError(f"{out}: exists and is not a folder; name a folder for the .eml files")
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise DeliveryError(f"status {bad[0]!r}: expected one of {', '.join(STATUSES)}")
    where, params = (
        ("list_contains(?::VARCHAR[], status)", [list(statuses)]) if statuses else ("TRUE", [])
    )
    deliverable = (
        "status <> 'cancelled' AND referral_id IN (SELECT referral_id FROM referrals "
        "WHERE list_contains(?::VARCHAR[], status))"
    )
    rows = _rows(con, f"{where} AND {deliverable}", [*params, list(DELIVERABLE)])
    sender = sender or os.environ.get(ENV["sender"], "").strip() or EXPORT_FROM
    written = Exported()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for row in rows:
            path = out / f"{eml_name(row['message_id'])}.eml"
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                data = build_message(row, sender).as_bytes()
            except Unbuildable as exc:
                written.skipped.append(f"{row['message_id']}: {exc}")
                continue
            tmp.write_bytes(data)
            tmp.replace(path)  # a reader never sees half a file
            written.append(path)
    except OSError as exc:
        raise DeliveryError(
            f"{out}: cannot write the .eml files ({exc.strerror or exc}); "
            f"{len(written)} written before that"
        ) from None
    return written


def eml_name(message_id: str) -> str:
    """``<referral-42-customer@frp-assign.invalid>`` -> ``referral-42-customer``."""
    local = message_id.strip("<>").split("@", 1)[0]
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in local) or "message"
