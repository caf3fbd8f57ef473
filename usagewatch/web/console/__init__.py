"""The support console: findings, one finding with its actions, the usage report and the rules in
force, behind a login or a trusted reverse proxy's header, on the action links' listener.

Routes (under ``{public_url path}/console``; the listener accepts the prefix stripped or not)::

    GET  /console/                      -> the findings list
    GET  /console/login                 the login form (mode: login)
    POST /console/login                 user + password -> a new signed session cookie
    POST /console/logout                ends the session
    GET  /console/findings              ?status=&rule=&user=&severity=
    GET  /console/findings/<id>         evidence, samples, history, effectiveness, action buttons
    POST /console/findings/<id>/<act>   acknowledged | coached | resolved | dismissed, with a note
    GET  /console/usage                 ?since=30d
    GET  /console/rules

Nothing is shown and nothing done without a user: a page redirects to the login form, a post
gets 401. Every post needs the session's CSRF token and a same-origin Origin/Referer (403 with a
sentence otherwise). Actions are recorded with the user's name as the actor.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2

from usagewatch.config import Config, HttpConfig
from usagewatch.errors import ConfigError, StoreError
from usagewatch.rules import load_rules
from usagewatch.rules.loader import Rule
from usagewatch.store import Store
from usagewatch.store.transitions import ACTIONS
from usagewatch.web.console import csrf, views
from usagewatch.web.console.auth import COOKIE, Session, Sessions, Throttle, TrustedProxies, Users, check_password, fingerprint
from usagewatch.web.console.wire import Request, Response, redirect

log = logging.getLogger(__name__)

MAX_NOTE = 2000
_FINDING = re.compile(r"/findings/(\d{1,12})(?:/([a-z]+))?")
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("usagewatch.web", "templates/console"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

__all__ = ["Console", "Request", "Response"]


class Console:
    """The console's routes over one store; ``handle(Request) -> Response``.

    ``config`` returns the config in force (the daemon's changes on reload) for the usage report
    and the rule files; ``rules`` the rules in force when the caller has them loaded already (the
    daemon), else they are loaded from the rule files per request. ``lock`` is the listener's:
    one state change at a time, like the action links.
    """

    def __init__(self, http: HttpConfig, store: Store, *, config: Callable[[], Config | None] = lambda: None,
                 rules: Callable[[], list[Rule]] | None = None, redact_values: bool = False,
                 lock: threading.Lock | None = None):
        auth = http.auth
        if auth is None:
            raise ConfigError("the console needs http.auth (a login or a reverse proxy's header); see docs/console.md.")
        self.http = http
        self.auth = auth
        self.store = store
        self.config = config
        self.rules = rules
        self.redact_values = redact_values
        self.lock = lock or threading.Lock()
        self.prefix = urlsplit(http.public_url).path.rstrip("/")
        self.base = self.prefix + "/console"
        public = urlsplit(http.public_url)
        self.sessions = Sessions(http.secret(), auth.session_ttl.total_seconds(), secure=public.scheme == "https",
                                 path=self.base + "/")
        self.users = Users(auth.users_file) if auth.mode == "login" and auth.users_file else None
        if self.users is not None and not self.users.path.exists():
            log.warning("console: the users file %s does not exist; nobody can log in until "
                        "`usagewatch console add-user NAME` creates it", self.users.path)
        self.proxies = TrustedProxies(auth.header, auth.trusted_proxies) if auth.mode == "proxy_header" else None
        self.throttle = Throttle()
        origin = csrf.origin_of(http.public_url)
        self.origins: set[str] = {origin} if origin else set()

    def listening_on(self, host: str, port: int) -> None:
        """Also accept posts from the listener's own address (``usagewatch serve`` opened directly)."""
        hosts = {host, "localhost"} if host in ("127.0.0.1", "::1") else {host}
        for h in hosts:
            self.origins.add(f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}")

    def owns(self, path: str) -> str | None:
        """The path without the public URL's prefix when it is the console's, else None."""
        for prefix in {"", self.prefix}:
            rest = path[len(prefix):] if path.startswith(prefix) else None
            if rest is not None and (rest in ("", "/") or rest == "/console" or rest.startswith("/console/")):
                return rest or "/"
        return None

    # --- the one entry point ------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        route = req.path[len("/console"):] if req.path.startswith("/console") else ""
        if route in ("", "/") and req.method != "POST":
            return redirect(self.base + "/findings")
        session = self.sessions.read(req.cookie(COOKIE))
        set_cookie: list[tuple[str, str]] = []
        if self.proxies is not None:
            refused = self._proxy_user(req)
            if isinstance(refused, Response):
                return refused
            if session is None or session.user != refused:
                session = self.sessions.new(refused)
                set_cookie.append(("Set-Cookie", self.sessions.cookie(session)))
        elif route == "/login":
            return self._login(req, session)
        elif not self._logged_in(session):
            if req.method == "POST":
                return self._message(HTTPStatus.UNAUTHORIZED, "Log in first", "Your session has ended; log in again.",
                                     login=True)
            target = req.path + ("?" + urlencode(req.query) if req.query else "")
            return redirect(f"{self.base}/login?next={quote(self.prefix + target, safe='')}")
        assert session is not None
        if req.method == "POST":
            refused_post = self._check_post(req, session)
            if refused_post is not None:
                return refused_post
        response = self._route(req, route, session)
        response.headers.extend(set_cookie)
        return response

    def _route(self, req: Request, route: str, session: Session) -> Response:
        post = req.method == "POST"
        if route == "/logout":
            return self._logout(req, session)
        if route == "/login":  # proxy mode: nothing to log in to
            return redirect(self.base + "/findings")
        if route == "/findings" and not post:
            return self._page("findings.html.j2", session, heading="Findings", **views.findings_page(self.store, req.query))
        m = _FINDING.fullmatch(route)
        if m and m.group(2) and post:
            return self._act(int(m.group(1)), m.group(2), session, req)
        if m and not m.group(2) and not post:
            return self._finding(int(m.group(1)), session, req.query.get("done", ""))
        if route == "/rules" and not post:
            return self._rules(session)
        if route == "/usage" and not post:
            page = views.usage_page(self.store, self.config(), req.query.get("since"))
            return self._page("usage.html.j2", session, heading="Usage", **page)
        return self._message(HTTPStatus.NOT_FOUND, "Not found", "There is no console page here.", session=session)

    # --- who is asking ------------------------------------------------------------------------------
    def _proxy_user(self, req: Request) -> str | Response:
        assert self.proxies is not None
        if not self.proxies.trusts(req.client):
            log.warning("console: refused a request from %s, which is not in http.auth.trusted_proxies", req.client)
            return self._message(HTTPStatus.FORBIDDEN, "Not through the proxy",
                                 "This console takes the user's name from a reverse proxy, and this request did not "
                                 "come from one of its addresses (http.auth.trusted_proxies).")
        user = self.proxies.user(req.headers.get(self.proxies.header))
        if user is None:
            return self._message(HTTPStatus.UNAUTHORIZED, "No user",
                                 f"The reverse proxy did not name a user in the {self.proxies.header} header.")
        return user

    def _logged_in(self, session: Session | None) -> bool:
        if session is None or not session.user or self.users is None:
            return False
        stored = self.users.get(session.user)  # a removed user or a new password ends the session
        return stored is not None and fingerprint(stored) == session.password

    def _login(self, req: Request, session: Session | None) -> Response:
        nxt = req.query.get("next") or req.form.get("next") or ""
        if not nxt.startswith(self.base + "/") or "//" in nxt or "\\" in nxt:
            nxt = self.base + "/findings"  # only our own pages: never an open redirect
        if self._logged_in(session) and req.method != "POST":
            return redirect(nxt)
        fresh = session is None
        anon = session or self.sessions.new()
        cookie = [("Set-Cookie", self.sessions.cookie(anon))] if fresh else []
        if req.method != "POST":
            out = "out" in req.query
            return self._page("login.html.j2", anon, heading="Log in", next=nxt, error="", logged_out=out,
                              headers=cookie)
        if session is None:
            return self._message(HTTPStatus.FORBIDDEN, "Cookies needed",
                                 "Your browser did not send the console's cookie: allow cookies for this site, "
                                 "then reload the login page.", headers=cookie)
        refused = self._check_post(req, session)
        if refused is not None:
            return refused
        name = (req.form.get("user") or "").strip()
        # per address AND name: behind a proxy every client has the proxy's address, and one person
        # mistyping must not lock out the whole team
        attempt = f"{req.client} {name.lower()}"
        if self.throttle.blocked(attempt):
            return self._page("login.html.j2", anon, HTTPStatus.TOO_MANY_REQUESTS, heading="Log in", next=nxt,
                              error="Too many failed attempts for this user; wait ten minutes.", logged_out=False)
        stored = self.users.get(name) if self.users is not None and name else None
        if not check_password(req.form.get("password") or "", stored) or stored is None:
            self.throttle.failed(attempt)
            log.warning("console: failed login for %r from %s", name[:64], req.client)
            return self._page("login.html.j2", anon, HTTPStatus.UNAUTHORIZED, heading="Log in", next=nxt,
                              error="Wrong user name or password.", logged_out=False)
        new = self.sessions.new(name, fingerprint(stored))  # a new id and token: no session fixation
        log.info("console: %s logged in from %s", name, req.client)
        return redirect(nxt, ("Set-Cookie", self.sessions.cookie(new)))

    def _logout(self, req: Request, session: Session) -> Response:
        if req.method != "POST":
            return self._page("logout.html.j2", session, heading="Log out")
        if self.proxies is not None:
            return self._message(HTTPStatus.OK, "Log out at your proxy",
                                 "This console gets your name from the reverse proxy; log out there (single sign-on).",
                                 session=session)
        log.info("console: %s logged out", session.user)
        return redirect(self.base + "/login?out=1", ("Set-Cookie", self.sessions.revoke(session)))

    def _check_post(self, req: Request, session: Session) -> Response | None:
        if not csrf.same_origin(req.headers, self.origins):
            log.warning("console: refused a post to %s from origin %s", req.path,
                        req.headers.get("Origin") or req.headers.get("Referer"))
            return self._message(HTTPStatus.FORBIDDEN, "Refused",
                                 "This form was not sent from the console's own pages (its Origin is another site).")
        if not csrf.token_matches(session.csrf, req.form):
            return self._message(HTTPStatus.FORBIDDEN, "Refused",
                                 "This form is out of date or did not come from the console (its security token is "
                                 "missing or wrong). Reload the page and try again.")
        return None

    # --- pages with state -----------------------------------------------------------------------------
    def _finding(self, fid: int, session: Session, done: str) -> Response:
        page = views.finding_page(self.store, fid, self.redact_values)
        if page is None:
            return self._message(HTTPStatus.NOT_FOUND, "Unknown finding", f"There is no finding {fid}.", session=session)
        flash = f"Finding {fid} {views.DONE_WORDS[done]}." if done in views.DONE_WORDS else ""
        return self._page("finding.html.j2", session, heading=f"Finding {fid}", flash=flash, max_note=MAX_NOTE, **page)

    def _act(self, fid: int, action: str, session: Session, req: Request) -> Response:
        if action not in ACTIONS:
            return self._message(HTTPStatus.NOT_FOUND, "Not found", f"There is no action {action!r}.", session=session)
        note = (req.form.get("note") or "").strip()[:MAX_NOTE] or None
        with self.lock:  # check-then-update in the store: one click at a time
            try:
                self.store.transition(fid, action, actor=session.user, note=note)
            except StoreError as exc:
                current = self.store.finding(fid)
                if current is None:
                    return self._message(HTTPStatus.NOT_FOUND, "Unknown finding", f"There is no finding {fid}.",
                                         session=session)
                if current["status"] not in ACTIONS[action][1]:
                    return self._message(HTTPStatus.CONFLICT, "Not possible", str(exc), session=session)
                log.error("console: could not record %s for finding %s: %s", action, fid, exc)
                return self._message(HTTPStatus.SERVICE_UNAVAILABLE, "Not saved",
                                     "usagewatch could not save this just now; nothing changed. Try again in a minute.",
                                     session=session)
        log.info("console: finding %s %s by %s", fid, action, session.user)
        return redirect(f"{self.base}/findings/{fid}?done={action}")

    def _rules(self, session: Session) -> Response:
        error = ""
        try:
            if self.rules is not None:
                rules = self.rules()
            else:
                cfg = self.config()
                rules = load_rules(cfg.rules, cfg.rule_overrides) if cfg is not None else []
        except ConfigError as exc:
            rules, error = [], "The rule files have problems: " + "; ".join(str(p) for p in exc.problems)
        return self._page("rules.html.j2", session, heading="Rules in force", rules=views.rules_page(rules, self.store),
                          error=error)

    # --- rendering ------------------------------------------------------------------------------------
    def _page(self, template: str, session: Session | None, status: HTTPStatus = HTTPStatus.OK, *,
              headers: list[tuple[str, str]] | None = None, **context: Any) -> Response:
        user = session.user if session is not None else ""
        html = _ENV.get_template(template).render(base=self.base, user=user, csrf=session.csrf if session else "",
                                                  proxy=self.proxies is not None, **context)
        return Response(status, html, list(headers or []))

    def _message(self, status: HTTPStatus, heading: str, message: str, *, session: Session | None = None,
                 login: bool = False, headers: list[tuple[str, str]] | None = None) -> Response:
        return self._page("message.html.j2", session, status, heading=heading, message=message, login=login,
                          ok=status < 400, headers=headers)
