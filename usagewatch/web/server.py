"""The HTTP endpoint behind the action links: GET shows a page with one button, POST acts.

Routes (the path prefix of ``http.public_url`` is accepted too, so a reverse proxy may strip it
or not)::

    GET  /a/<token>   the finding and ONE button; changes nothing (mail scanners prefetch links)
    POST /a/<token>   verifies again, then ``store.transition(id, action, actor="email link")``
    GET  /healthz     200 "ok"
    /console/...      the support console when ``http.auth`` is set (``web/console/``)

Status codes: 200 page or done (also "already acknowledged"), 403 bad signature, 400 malformed
link, 410 expired, 404 unknown finding or path, 409 impossible transition (the store's sentence),
413 body too large, 503 the store failed. The signing secret is read once at start and never
written to a page or a log; the token in logged paths is shortened.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2

from usagewatch.config import Config, HttpConfig
from usagewatch.errors import ConfigError, StoreError, UsagewatchError
from usagewatch.notify.render import display_title
from usagewatch.store import Store
from usagewatch.store.transitions import ACTIONS
from usagewatch.web.console import Console, Request, Response
from usagewatch.web.links import LINK_ACTIONS, LinkError, verify

log = logging.getLogger(__name__)

ACTOR = "email link"
MAX_BODY = 64 * 1024
MAX_NOTE = 2000
_TOKEN = re.compile(r"/a/([^/?#]*)")
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("usagewatch.web", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_LABELS = {action: label for label, action in LINK_ACTIONS.items()}
#: action -> (what the page explains before, what it says after, in the past tense)
_WORDS = {
    "acknowledged": ("Acknowledge that the support team has seen this finding and someone is on it.",
                     "acknowledged"),
    "coached": ("Mark that the user has been shown a better way; usagewatch then compares their runs "
                "before and after.", "marked as coached"),
    "dismissed": ("Dismiss this finding as not useful; it counts as a false positive of its rule, "
                  "which helps tune the rules.", "dismissed as not useful"),
}
_REFUSED = {
    "malformed": (HTTPStatus.BAD_REQUEST, "This link is incomplete or damaged.",
                  "Copy the whole link from the email, or open it by clicking."),
    "bad signature": (HTTPStatus.FORBIDDEN, "This link is not valid: its signature does not match.",
                      "It may have been altered, or the signing key has changed since the email was sent."),
    "expired": (HTTPStatus.GONE, "This link has expired.", "Use the command line instead: {command}"),
}
_CLI_VERBS = {"acknowledged": "ack", "coached": "coached", "dismissed": "dismiss"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",  # a page with a button that changes state must not be framed
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the URL carries the token
    "Cache-Control": "no-store",
}


@dataclass
class Running:
    """A started server: ``port`` it listens on (useful with port 0), ``url`` to reach it, ``stop()``."""

    host: str
    port: int
    _server: ThreadingHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting requests and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    store: Store
    secret: bytes
    clock: Callable[[], datetime]
    prefix: str
    redact_values: bool
    lock: threading.Lock
    console: Console | None


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "usagewatch"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # --- routing ----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        self._dispatch(post=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(post=False)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(post=True)

    def _dispatch(self, post: bool) -> None:
        try:
            path = urlsplit(self.path).path
            if path in ("/healthz", self.server.prefix + "/healthz") and not post:
                self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
                return
            route = self.server.console.owns(path) if self.server.console is not None else None
            if route is not None:
                self._console(route, post)
                return
            token = self._token(path)
            if token is None:
                hint = "The console is off: it needs http.auth (see docs/console.md)." if "/console" in path else ""
                self._message(HTTPStatus.NOT_FOUND, "problem", "Not found", "There is no page here.", hint)
                return
            form = self._form() if post else {}
            if form is None:
                return
            self._action(token, post, form)
        except Exception:  # one broken request must never take the endpoint down
            log.exception("the action-link page failed for %s %s", self.command, _shorten(self.path))
            self._message(HTTPStatus.INTERNAL_SERVER_ERROR, "problem", "Something went wrong",
                          "usagewatch could not handle this request; its log says why.")

    def _token(self, path: str) -> str | None:
        for prefix in {"", self.server.prefix}:
            if path.startswith(prefix + "/a/"):
                m = _TOKEN.fullmatch(path[len(prefix):])
                if m:
                    return m.group(1)
        return None

    def _form(self) -> dict[str, str] | None:
        """The posted form fields; None when a response (413/400) was already sent."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._message(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else HTTPStatus.BAD_REQUEST,
                          "problem", "Request refused", "The form sent was too large or had no valid length.")
            return None
        body = self.rfile.read(length) if length else b""
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in fields.items()}

    def _console(self, route: str, post: bool) -> None:
        """Hand the request to the console as a plain ``Request``; write its ``Response``."""
        assert self.server.console is not None
        form = self._form() if post else {}
        if form is None:
            return
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        method = "POST" if post else "GET"
        reply: Response = self.server.console.handle(
            Request(method, route, query, self.headers, str(self.client_address[0]), form))
        self._send(reply.status, reply.body.encode("utf-8"), reply.content_type, reply.all_headers()[1:])

    # --- the action link ----------------------------------------------------------------------------
    def _action(self, token: str, post: bool, form: Mapping[str, str]) -> None:
        try:
            fid, action = verify(token, self.server.secret, self.server.clock())
        except LinkError as exc:
            status, message, hint = _REFUSED[exc.reason]
            if exc.finding_id is not None and exc.action is not None:
                hint = hint.format(command=f"usagewatch findings {_CLI_VERBS[exc.action]} {exc.finding_id}")
            log.info("refused an action link (%s): %s %s", exc.reason, self.command, _shorten(self.path))
            self._message(status, "problem", "Link refused", message, hint)
            return
        if post:
            # Store.transition checks the status and then updates it; two clicks at once could
            # both pass the check. One endpoint acts on one click at a time (they take milliseconds).
            with self.server.lock:
                self._decide(fid, action, post, form)
        else:
            self._decide(fid, action, post, form)

    def _decide(self, fid: int, action: str, post: bool, form: Mapping[str, str]) -> None:
        label = _LABELS[action]
        explain, done = _WORDS[action]
        finding = self.server.store.finding(fid)
        if finding is None:
            self._message(HTTPStatus.NOT_FOUND, "problem", "Unknown finding",
                          f"There is no finding {fid} (any more) in usagewatch's database.")
            return
        target, allowed = ACTIONS[action]
        if finding["status"] == target:
            self._message(HTTPStatus.OK, "done", f"Already {done}", f"This finding is already {done}. "
                          "Nothing more to do.", finding=finding)
            return
        if finding["status"] not in allowed:
            # The store would refuse it; on GET say so now instead of offering a button that fails.
            if post:
                self._transition(fid, action, finding, form)
            else:
                self._message(HTTPStatus.CONFLICT, "problem", "Not possible",
                              f"finding {fid} is {finding['status']}; it cannot be marked {action}.", finding=finding)
            return
        if not post:
            self._page(HTTPStatus.OK, "confirm.html.j2", heading=f"{label}?", finding=finding, label=label,
                       explain=explain, max_note=MAX_NOTE)
            return
        self._transition(fid, action, finding, form)

    def _transition(self, fid: int, action: str, finding: dict[str, Any], form: Mapping[str, str]) -> None:
        done = _WORDS[action][1]
        note = (form.get("note") or "").strip()[:MAX_NOTE] or "from the link in the notification email"
        try:
            updated = self.server.store.transition(fid, action, actor=ACTOR, note=note)
        except StoreError as exc:
            current = self.server.store.finding(fid)
            target, allowed = ACTIONS[action]
            if current is not None and current["status"] == target:  # someone else was quicker
                self._message(HTTPStatus.OK, "done", f"Already {done}", f"This finding is already {done}. "
                              "Nothing more to do.", finding=current)
            elif current is not None and current["status"] not in allowed:
                self._message(HTTPStatus.CONFLICT, "problem", "Not possible", str(exc), finding=current)
            else:
                log.error("could not record %s for finding %s: %s", action, fid, exc)
                self._message(HTTPStatus.SERVICE_UNAVAILABLE, "problem", "Not saved",
                              "usagewatch could not save this just now; nothing changed. Try again in a minute.",
                              finding=current)
            return
        log.info("finding %s %s via an email link", fid, action)
        self._message(HTTPStatus.OK, "done", f"Finding {fid} {done}", f"Done: this finding is now {done}. Thank you.",
                      finding=updated)

    # --- responses ------------------------------------------------------------------------------------
    def _message(self, status: HTTPStatus, kind: str, heading: str, message: str, hint: str = "",
                 finding: Mapping[str, Any] | None = None) -> None:
        self._page(status, "message.html.j2", heading=heading, kind=kind, message=message, hint=hint, finding=finding)

    def _page(self, status: HTTPStatus, template: str, finding: Mapping[str, Any] | None = None, **context: Any) -> None:
        title = display_title(finding, self.server.redact_values) if finding else ""
        html = _ENV.get_template(template).render(finding=finding, title=title, **context)
        self._send(status, html.encode("utf-8"), "text/html; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers if headers is not None else _SECURITY_HEADERS.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # --- logging: through ``logging``, never the whole token ----------------------------------------
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s %s", self.command, _shorten(self.path), code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        log.debug("http: %s", format % tuple(_shorten(str(a)) for a in args))


def _shorten(text: str) -> str:
    """A path or request line with any token cut to its first characters (tokens are bearer links)."""
    return re.sub(r"(/a/[^/?#\s]{0,8})[^/?#\s]*", r"\1...", text)


def _parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"http.listen {listen!r} is not host:port (e.g. 127.0.0.1:8765).")
    return host, int(port)


def start_server(http: HttpConfig, store: Store, *, clock: Callable[[], datetime] | None = None,
                 redact_values: bool = False, config: Callable[[], Config | None] | None = None,
                 rules: Callable[[], list[Any]] | None = None) -> Running:
    """Listen on ``http.listen`` and serve the action links (and, with ``http.auth``, the console)
    in a daemon thread.

    ``clock`` gives "now" for expiry checks (tests); ``redact_values`` masks sample values in the
    titles shown, as ``notify.redact_values`` does in emails. ``config`` returns the config in force
    and ``rules`` the rules in force, for the console's usage and rules pages. Raises
    ``ConfigError`` when the signing secret is not set, ``UsagewatchError`` when the address cannot
    be listened on.
    """
    secret = http.secret()  # fail at start, not at the first click
    lock = threading.Lock()
    console = (Console(http, store, config=config or (lambda: None), rules=rules, redact_values=redact_values,
                       lock=lock) if http.auth is not None else None)
    host, port = _parse_listen(http.listen)
    cls = _IPv6Server if ":" in host else _Server
    try:
        server = cls((host, port), _Handler)
    except OSError as exc:
        raise UsagewatchError(f"cannot listen on {http.listen}: {_why(exc)}") from None
    server.store = store
    server.secret = secret
    server.clock = clock or (lambda: datetime.now(timezone.utc))
    server.prefix = urlsplit(http.public_url).path.rstrip("/")
    server.redact_values = redact_values
    server.lock = lock
    server.console = console
    bound_host, bound_port = server.server_address[:2]
    if console is not None:
        console.listening_on(str(bound_host), int(bound_port))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="usagewatch-http", daemon=True)
    thread.start()
    log.info("action links%s served on %s:%s", " and the console" if console else "", bound_host, bound_port)
    return Running(str(bound_host), int(bound_port), server, thread)


def _why(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    reasons = {errno.EADDRINUSE: "address in use",
               errno.EACCES: "permission denied (ports below 1024 need privileges)",
               errno.EADDRNOTAVAIL: "this machine has no such address"}
    return reasons.get(exc.errno or 0, (exc.strerror or str(exc)).lower())
