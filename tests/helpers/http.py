"""A real HTTP server for webhook tests (stdlib ``ThreadingHTTPServer`` in a thread), as pytest fixtures.

Fixtures (each a running ``HttpReceiver`` on 127.0.0.1 and a free port, stopped afterwards):

- ``http_receiver``   plain HTTP;
- ``https_receiver``  HTTPS with a certificate signed by the throwaway test CA of
                      ``tests/helpers/smtp.py`` (``.ca_file``), which clients do not trust by default.

``HttpReceiver`` API: ``.url(path)``, ``.requests`` (list of ``ReceivedRequest``: method, path,
headers, raw body, parsed JSON), ``.wait_for(n, timeout)``, ``.respond_next(status, times, body,
headers)`` to answer the next requests with e.g. 500, 429 or 404, and ``.hang_next(times)`` to read
the request and never answer (until the test ends), for timeouts.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.helpers.smtp import TlsMaterial

HANG_LIMIT = 30.0  # a hanging answer gives up after this even if the test forgot to end


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: Message  # case-insensitive: ``headers["content-type"]``
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON


@dataclass
class _Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class HttpReceiver:
    """Records every request; answers 200 "ok" unless told otherwise for the next ones."""

    def __init__(self, tls_context: ssl.SSLContext | None = None, ca_file: str | None = None):
        self.requests: list[ReceivedRequest] = []
        self.ca_file = ca_file
        self._cond = threading.Condition()
        self._answers: list[_Answer] = []
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver._handle(self)

            do_GET = do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls_context is not None:
            self._server.socket = tls_context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.host = "127.0.0.1"
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="http-receiver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()  # let hanging handlers go
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def url(self, path: str = "/hook") -> str:
        host = "localhost" if self.scheme == "https" else self.host  # the test certificate names localhost
        return f"{self.scheme}://{host}:{self.port}{path}"

    # -- behaviour ------------------------------------------------------------------------------

    def respond_next(self, status: int, times: int = 1, body: bytes | str = b"", headers: dict[str, str] | None = None) -> None:
        """Answer ``status`` (with ``body``) to the next ``times`` requests instead of 200."""
        raw = body.encode() if isinstance(body, str) else body
        with self._cond:
            self._answers.extend(_Answer(status, raw, dict(headers or {})) for _ in range(times))

    def hang_next(self, times: int = 1) -> None:
        """Read the next ``times`` requests and never answer them (until the test ends)."""
        with self._cond:
            self._answers.extend(_Answer(hang=True) for _ in range(times))

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} request(s) within {timeout:g} s, got {len(self.requests)}")
                self._cond.wait(left)
            return list(self.requests[:n])

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._cond:
            self.requests.append(ReceivedRequest(h.command, h.path, h.headers, body, parsed))
            answer = self._answers.pop(0) if self._answers else _Answer()
            self._cond.notify_all()
        if answer.hang:
            self._release.wait(HANG_LIMIT)
            h.close_connection = True
            return
        h.send_response(answer.status)
        for name, value in answer.headers.items():
            h.send_header(name, value)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(answer.body)))
        h.end_headers()
        h.wfile.write(answer.body)


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def https_receiver(smtp_tls_material: TlsMaterial) -> Iterator[HttpReceiver]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(smtp_tls_material.cert_file, smtp_tls_material.key_file)
    receiver = HttpReceiver(tls_context=context, ca_file=str(smtp_tls_material.ca_file))
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
