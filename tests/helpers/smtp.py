"""A real SMTP server for tests (aiosmtpd, in-process), as pytest fixtures. No smtplib mocks.

Fixtures (each gives a running ``SmtpServer`` on 127.0.0.1 and a free port, stopped afterwards):

- ``smtp_server``       plain SMTP, no AUTH: the default for delivery tests;
- ``smtp_auth_server``  requires AUTH LOGIN/PLAIN (``.username`` / ``.password``; no TLS needed);
- ``smtp_tls_server``   offers STARTTLS with a certificate signed by a throwaway test CA
                        (``.ca_file`` is that CA; a client that does not trust it must fail);
- ``smtp_blackhole``    ``(host, port)`` of a socket that accepts TCP but never greets (timeouts).

``SmtpServer`` API: ``.host``, ``.port``, ``.messages`` (list of ``ReceivedMessage``: parsed
``EmailMessage`` + envelope), ``.wait_for(n, timeout)``, ``.stop()`` and ``.start()`` (outage and
recovery on the SAME port), ``.fail_next(stage, reply, times)`` to answer e.g. ``451`` to the next
RCPT or DATA command.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.helpers.servers import need_server

Stage = Literal["RCPT", "DATA"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the server received it."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    login: str | None  # the AUTH user, when the client logged in


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, server: SmtpServer):
        self._server = server

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self._server.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self._server._take_failure("RCPT")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._server._take_failure("DATA")
        if reply:
            return reply
        raw = envelope.original_content or envelope.content or b""
        raw_bytes = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        message = cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(raw_bytes))
        login = session.auth_data if isinstance(session.auth_data, str) else None
        self._server._received(
            ReceivedMessage(message, envelope.mail_from or "", tuple(envelope.rcpt_tos), raw_bytes, login)
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd server in a background thread that keeps every message it accepts."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        credentials: tuple[str, str] | None = None,
        starttls_context: Any = None,
        ca_file: str | None = None,
    ):
        self.host = host
        self.port = port or free_port(host)
        self.username, self.password = credentials or (None, None)
        self._starttls_context = starttls_context
        self.ca_file = ca_file  # the CA a client must trust to verify this server's certificate
        self.messages: list[ReceivedMessage] = []
        self._cond = threading.Condition()
        self._failures: list[tuple[Stage, str]] = []
        self._controller: Controller | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Start listening (again) on the same host and port."""
        if self._controller is not None:
            return
        kwargs: dict[str, Any] = {}
        if self.username is not None:
            # AUTH is required by _Handler.handle_MAIL (aiosmtpd's auth_required=True warns on
            # every connection when TLS is not required too, and tests want AUTH without TLS).
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        if self._starttls_context is not None:
            kwargs.update(tls_context=self._starttls_context, require_starttls=True)
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="smtp.test.invalid",
            ready_timeout=10.0,
            **kwargs,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until ``start()``."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    # -- behaviour ----------------------------------------------------------------------------

    def fail_next(self, stage: Stage, reply: str = "451 4.3.0 Try again later", times: int = 1) -> None:
        """Answer ``reply`` instead of accepting the next ``times`` RCPT or DATA commands."""
        with self._cond:
            self._failures.extend([(stage, reply)] * times)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``n`` messages arrived; return the first ``n``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} message(s) within {timeout:g} s, got {len(self.messages)}"
                    )
                self._cond.wait(left)
            return list(self.messages[:n])

    def _take_failure(self, stage: Stage) -> str | None:
        with self._cond:
            for i, (s, reply) in enumerate(self._failures):
                if s == stage:
                    del self._failures[i]
                    return reply
        return None

    def _received(self, item: ReceivedMessage) -> None:
        with self._cond:
            self.messages.append(item)
            self._cond.notify_all()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = login == self.username and auth_data.password.decode("utf-8", "replace") == self.password
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


@contextmanager
def running(server: SmtpServer) -> Iterator[SmtpServer]:
    """``server`` started for the block, stopped after it whatever happens."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running(SmtpServer()) as server:
        yield server


@pytest.fixture
def smtp_auth_server() -> Iterator[SmtpServer]:
    with running(SmtpServer(credentials=("usagewatch", "correct horse battery staple"))) as server:
        yield server


@dataclass(frozen=True)
class TlsMaterial:
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="session")
def smtp_tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        need_server("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("smtp-tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=usagewatch test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "server.ext", "-out", "server.pem")
    return TlsMaterial(d / "ca.pem", d / "server.pem", d / "server.key")


@pytest.fixture
def smtp_tls_server(smtp_tls_material: TlsMaterial) -> Iterator[SmtpServer]:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(smtp_tls_material.cert_file, smtp_tls_material.key_file)
    with running(SmtpServer(starttls_context=context, ca_file=str(smtp_tls_material.ca_file))) as server:
        yield server


@pytest.fixture
def smtp_tls_auth_server(smtp_tls_material: TlsMaterial) -> Iterator[SmtpServer]:
    """Requires STARTTLS first, then AUTH: what a company relay usually is."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(smtp_tls_material.cert_file, smtp_tls_material.key_file)
    server = SmtpServer(starttls_context=context, ca_file=str(smtp_tls_material.ca_file),
                        credentials=("usagewatch", "correct horse battery staple"))
    with running(server) as started:
        yield started


@pytest.fixture
def smtp_blackhole() -> Iterator[tuple[str, int]]:
    """A listening socket that completes TCP connects but never says a word (never accepts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield "127.0.0.1", int(s.getsockname()[1])
