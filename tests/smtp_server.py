"""A real SMTP server on loopback for the delivery tests (aiosmtpd), and what it received.

``Controller`` cannot bind port 0, so :func:`free_port` picks a free port by binding a
socket first. The handler can refuse recipients for good (5xx) or for a while (4xx),
and can require a login.
"""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    """Messages the server accepted, and replies it should give instead of accepting.

    ``refuse[address]``: a reply given to RCPT for that address every time;
    ``refuse_once[address]``: replies given to the next RCPTs for it, one each, then accept.
    """

    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_once: dict[str, list[str]] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return self.refuse[address]
        queued = self.refuse_once.get(address)
        if queued:
            return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(msg)  # type: ignore[arg-type]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def ids(self) -> list[str]:
        return [m["Message-ID"] for m in self.received]

    def by_id(self, message_id: str) -> EmailMessage:
        (msg,) = [m for m in self.received if m["Message-ID"] == message_id]
        return msg


class Server:
    """One aiosmtpd server on a fixed free port; can be started after it was chosen."""

    def __init__(self, mailbox: Mailbox | None = None, *, password: str | None = None) -> None:
        self.mailbox = mailbox or Mailbox()
        self.port = free_port()
        self.password = password
        self._controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.password == (self.password or "").encode()
        )
        if ok:
            self.mailbox.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        kwargs = {}
        if self.password is not None:
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        self._controller = Controller(self.mailbox, hostname=HOST, port=self.port, **kwargs)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def env(self, **extra: str) -> dict[str, str]:
        """FRP_SMTP_* settings that point at this server."""
        return {
            "FRP_SMTP_HOST": HOST,
            "FRP_SMTP_PORT": str(self.port),
            "FRP_SMTP_FROM": "FastTrack Center <fasttrack@frp.example>",
            **extra,
        }


@contextmanager
def running(mailbox: Mailbox | None = None, **kwargs) -> Iterator[Server]:
    server = Server(mailbox, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
