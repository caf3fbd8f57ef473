"""The console over real HTTP against a real SQLite store: no page or action without a user, wrong
passwords, sessions, CSRF (token and origin), the trusted proxy's header, actions with the actor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.web.client import Client
from tests.web.conftest import SECRET, SECRET_ENV
from usagewatch.config import HttpAuthConfig, HttpConfig
from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.store import Store
from usagewatch.web import Running, action_links, start_server
from usagewatch.web.console.auth import check_password, hash_password, read_users, write_user
from usagewatch.yamlload import load_text

PUBLIC = "https://uw.example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "console-users"
    write_user(path, "ana", PASSWORD)
    return path


def login_http(monkeypatch: pytest.MonkeyPatch, users: Path) -> HttpConfig:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return HttpConfig(listen="127.0.0.1:0", public_url=PUBLIC + "/", secret_env=SECRET_ENV,
                      auth=HttpAuthConfig(mode="login", users_file=str(users)))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, users: Path, store: Store) -> Iterator[Running]:
    running = start_server(login_http(monkeypatch, users), store)
    yield running
    running.stop()


@pytest.fixture
def browser(server: Running) -> Client:
    return Client(server.port, origin=PUBLIC)


@pytest.fixture
def ana(browser: Client) -> Client:
    reply = browser.login("ana", PASSWORD)
    assert reply.status == 303, reply.text
    return browser


def acted(store: Store) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["actor"], e["note"]) for e in store.history(1) if e["action"] != "opened"]


# --- access ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/console/findings", "/console/findings/1", "/console/rules", "/console/usage",
                                  "/console/findings?user=kim"])
def test_no_page_without_login(browser, path):
    reply = browser.get(path)
    assert reply.status == 303
    target = urlsplit(reply.location)
    assert target.path == "/console/login"
    assert parse_qs(target.query)["next"] == [path]
    assert "kim" not in reply.body


def test_no_action_without_login(browser, store):
    page = browser.get("/console/login")  # a real token of an anonymous session: still no action
    reply = browser.post("/console/findings/1/acknowledged", {"csrf": page.csrf(), "note": "x"})
    assert reply.status == 401
    assert store.finding(1)["status"] == "open" and acted(store) == []


def test_the_login_cookie_is_httponly_samesite_and_secure_for_an_https_public_url(browser):
    reply = browser.get("/console/login")
    assert reply.status == 200 and "Log in" in reply.text
    (cookie,) = reply.cookies
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie and "Path=/console/" in cookie
    assert reply.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in reply.headers["content-security-policy"]


@pytest.mark.parametrize("user, password", [("ana", "wrong password"), ("bob", PASSWORD), ("", "")])
def test_a_wrong_password_or_unknown_user_is_refused(browser, user, password):
    reply = browser.login(user, password)
    assert reply.status == 401
    assert "Wrong user name or password." in reply.text
    assert browser.get("/console/findings").status == 303  # still not logged in


def test_logging_in_opens_a_new_session_and_goes_to_the_page_asked_for(browser):
    first = browser.get("/console/findings/1")
    login_page = browser.get(first.location)
    anonymous = dict(browser.cookies)
    reply = browser.post("/console/login", {"csrf": login_page.csrf(), "user": "ana", "password": PASSWORD,
                                            "next": parse_qs(urlsplit(first.location).query)["next"][0]})
    assert (reply.status, reply.location) == (303, "/console/findings/1")
    assert browser.cookies != anonymous  # a fresh id and token: a planted session cannot be taken over
    page = browser.get("/console/findings/1")
    assert page.status == 200 and "kim ran one query 136 times" in page.text and "ana" in page.text


def test_the_next_page_after_login_is_never_another_site(server):
    for nxt in ("https://evil.example.com/", "//evil.example.com/console/", "/console/..\\evil"):
        browser = Client(server.port, origin=PUBLIC)
        page = browser.get("/console/login")
        reply = browser.post("/console/login", {"csrf": page.csrf(), "user": "ana", "password": PASSWORD, "next": nxt})
        assert (reply.status, reply.location) == (303, "/console/findings")


def test_logout_ends_the_session_even_for_a_copied_cookie(ana):
    stolen = dict(ana.cookies)
    page = ana.get("/console/findings")
    reply = ana.post("/console/logout", {"csrf": page.csrf()})
    assert (reply.status, reply.location) == (303, "/console/login?out=1")
    assert "Max-Age=0" in reply.cookies[0]
    assert ana.get("/console/findings").status == 303
    thief = Client(ana.port, origin=PUBLIC, cookies=stolen)
    assert thief.get("/console/findings").status == 303


def test_a_new_password_ends_the_users_sessions(ana, users):
    assert ana.get("/console/findings").status == 200
    write_user(users, "ana", "another long password")
    assert ana.get("/console/findings").status == 303


def test_too_many_failed_logins_for_a_user_are_refused_for_a_while(browser, server, users):
    for _ in range(10):
        assert browser.login("ana", "guess").status == 401
    refused = browser.login("ana", PASSWORD)
    assert refused.status == 429 and "Too many failed attempts" in refused.text
    write_user(users, "bo", PASSWORD)  # the rest of the team, behind the same proxy address, still gets in
    assert Client(server.port, origin=PUBLIC).login("bo", PASSWORD).status == 303


def test_the_console_under_a_path_prefix_answers_with_or_without_it(monkeypatch, users, store):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    http = HttpConfig(listen="127.0.0.1:0", public_url="https://intra.example.com/usagewatch", secret_env=SECRET_ENV,
                      auth=HttpAuthConfig(mode="login", users_file=str(users)))
    running = start_server(http, store)
    try:
        client = Client(running.port, origin="https://intra.example.com")
        for path in ("/usagewatch/console/findings", "/console/findings"):  # the proxy passes the prefix, or strips it
            reply = client.get(path)
            assert reply.status == 303
            assert reply.location == "/usagewatch/console/login?next=%2Fusagewatch%2Fconsole%2Ffindings"
        assert "Path=/usagewatch/console/" in client.get("/usagewatch/console/login").cookies[0]
        assert client.login("ana", PASSWORD, base="/usagewatch/console").location == "/usagewatch/console/findings"
        assert client.get("/console/findings/1").status == 200
    finally:
        running.stop()


# --- CSRF ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form, headers", [
    ({}, {}),                                                   # no token
    ({"csrf": "forged"}, {}),                                   # wrong token
    (None, {"Origin": "https://evil.example.com"}),             # right token, another site
    (None, {"Origin": "null"}),                                 # a sandboxed or no-referrer page
    (None, {"Origin": "", "Referer": "https://evil.example.com/page"}),
])
def test_a_post_without_the_right_token_or_from_another_origin_is_refused(ana, store, form, headers):
    page = ana.get("/console/findings/1")
    if form is None:
        form = {"csrf": page.csrf()}
    if headers.get("Origin") == "":
        ana.origin = None
        headers = {k: v for k, v in headers.items() if k != "Origin"}
    reply = ana.post("/console/findings/1/acknowledged", {**form, "note": "x"}, headers)
    assert reply.status == 403
    assert "security token" in reply.text or "Origin" in reply.text
    assert store.finding(1)["status"] == "open" and acted(store) == []


def test_a_token_of_another_session_is_refused(ana, server, store):
    other = Client(server.port, origin=PUBLIC)
    other.login("ana", PASSWORD)
    token = other.get("/console/findings/1").csrf()
    assert ana.post("/console/findings/1/acknowledged", {"csrf": token}).status == 403
    assert acted(store) == []


def test_a_post_from_the_listeners_own_address_is_accepted(ana, server, store):
    ana.origin = f"http://127.0.0.1:{server.port}"  # `usagewatch serve` opened directly
    page = ana.get("/console/findings/1")
    assert ana.post("/console/findings/1/acknowledged", {"csrf": page.csrf()}).status == 303


# --- pages and actions -------------------------------------------------------------------------------

def test_actions_are_recorded_with_the_users_name_and_note(ana, store):
    page = ana.get("/console/findings/1")
    assert ["Acknowledge", "Mark as coached", "Resolve", "Dismiss (not useful)"] == re.findall(
        r"<button type=\"submit\" formaction=\"[^\"]+\"[^>]*>([^<]+)</button>", page.body)
    reply = ana.post("/console/findings/1/acknowledged", {"csrf": page.csrf(), "note": "  on it  "})
    assert (reply.status, reply.location) == (303, "/console/findings/1?done=acknowledged")
    done = ana.get(reply.location)
    assert "Finding 1 acknowledged." in done.text
    ana.post("/console/findings/1/coached", {"csrf": page.csrf(), "note": "showed kim IN (...)"})
    assert acted(store) == [("acknowledged", "ana", "on it"), ("coached", "ana", "showed kim IN (...)")]
    shown = ana.get("/console/findings/1")
    assert "showed kim IN (...)" in shown.text and "coached" in shown.text
    assert "runs in the 7 days before coaching" in shown.text  # effectiveness


def test_an_impossible_action_says_why(ana, store):
    token = ana.get("/console/findings/1").csrf()
    ana.post("/console/findings/1/resolved", {"csrf": token})
    reply = ana.post("/console/findings/1/coached", {"csrf": token})
    assert reply.status == 409 and "finding 1 is resolved; it cannot be marked coached." in reply.text
    assert ana.post("/console/findings/1/promoted", {"csrf": token}).status == 404
    assert ana.get("/console/findings/99").status == 404


def test_the_findings_list_filters_and_counts(ana, store):
    page = ana.get("/console/findings?user=kim&severity=warning")
    assert page.status == 200
    assert "1 of 1 findings" in page.text and "open: 1" in page.text
    assert 'href="/console/findings/1"' in page.body
    none = ana.get("/console/findings?user=lee")
    assert "0 of 1 findings" in none.text and "No findings match." in none.text
    assert "0 of 1" in ana.get("/console/findings?status=dismissed").text


def test_the_rules_and_usage_pages_answer(ana):
    rules = ana.get("/console/rules")
    assert rules.status == 200 and "Rules in force" in rules.text  # started without a config: no rules
    usage = ana.get("/console/usage?since=7d")
    assert usage.status == 200 and "Usage" in usage.text
    assert "is not a duration" in ana.get("/console/usage?since=soon").text


def test_redacted_values_stay_out_of_the_finding_page(monkeypatch, users, store):
    running = start_server(login_http(monkeypatch, users), store, redact_values=True)
    try:
        client = Client(running.port, origin=PUBLIC)
        client.login("ana", PASSWORD)
        page = client.get("/console/findings/1")
        assert page.status == 200 and "2 values redacted" in page.text and "SELECT ?" in page.text
        assert "SELECT 1" not in page.text and "Values seen" not in page.text
    finally:
        running.stop()


def test_action_links_still_work_next_to_the_console(server, store, monkeypatch):
    from datetime import datetime, timezone

    from tests.web.client import Client as Plain

    http = HttpConfig(listen="127.0.0.1:0", public_url=PUBLIC, secret_env=SECRET_ENV)
    link = urlsplit(action_links(http, 1, datetime.now(timezone.utc))["Acknowledge"]).path
    anyone = Plain(server.port)
    assert anyone.get(link).status == 200
    assert anyone.post(link, {"note": "from the email"}).status == 200
    assert acted(store) == [("acknowledged", "email link", "from the email")]


def test_without_auth_there_is_no_console(http, store):
    running = start_server(http, store)
    try:
        reply = Client(running.port).get("/console/findings")
        assert reply.status == 404 and "http.auth" in reply.text
    finally:
        running.stop()


# --- proxy header ----------------------------------------------------------------------------------

def proxy_server(monkeypatch: pytest.MonkeyPatch, store: Store, trusted: list[str]) -> Running:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    http = HttpConfig(listen="127.0.0.1:0", public_url=PUBLIC, secret_env=SECRET_ENV,
                      auth=HttpAuthConfig(mode="proxy_header", header="X-Forwarded-User", trusted_proxies=trusted))
    return start_server(http, store)


def test_the_proxy_header_names_the_user_when_it_comes_from_a_trusted_proxy(monkeypatch, store):
    running = proxy_server(monkeypatch, store, ["127.0.0.0/8"])
    try:
        client = Client(running.port, origin=PUBLIC)
        as_lee = {"X-Forwarded-User": "lee"}
        page = client.get("/console/findings/1", as_lee)
        assert page.status == 200 and "lee" in page.text and "Log out" not in page.text
        assert client.post("/console/findings/1/acknowledged", {"csrf": page.csrf(), "note": "seen"}, as_lee).status == 303
        assert acted(store) == [("acknowledged", "lee", "seen")]
        # the session's token belongs to lee: another name in the header gets a new session
        assert client.post("/console/findings/1/coached", {"csrf": page.csrf()}, {"X-Forwarded-User": "max"}).status == 403
        assert client.get("/console/findings").status == 401  # the proxy named nobody
    finally:
        running.stop()


def test_the_proxy_header_from_an_untrusted_address_is_refused(monkeypatch, store):
    running = proxy_server(monkeypatch, store, ["10.1.2.3"])
    try:
        reply = Client(running.port).get("/console/findings", {"X-Forwarded-User": "admin"})
        assert reply.status == 403 and "trusted_proxies" in reply.text and "kim" not in reply.body
    finally:
        running.stop()


# --- users and config --------------------------------------------------------------------------------

def test_passwords_are_stored_as_salted_scrypt_hashes(users):
    stored = read_users(users)["ana"]
    assert stored.startswith("scrypt$") and PASSWORD not in users.read_text()
    assert check_password(PASSWORD, stored) and not check_password("wrong", stored)
    assert hash_password(PASSWORD) != hash_password(PASSWORD)  # salted
    assert not check_password(PASSWORD, None) and not check_password(PASSWORD, "md5$abc")
    assert users.stat().st_mode & 0o077 == 0
    with pytest.raises(UsagewatchError, match="not a usable user name"):
        write_user(users, "ana:root", PASSWORD)


def test_auth_config_errors_are_located(tmp_path):
    from usagewatch.config import from_document

    text = "http:\n  public_url: https://uw.example.com\n  auth:\n    mode: login\n    trusted_proxies: [the proxy]\n"
    with pytest.raises(ConfigError) as exc:
        from_document(load_text(text, "uw.yaml"), tmp_path)
    shown = [str(p) for p in exc.value.problems]
    assert shown == ["uw.yaml:3:3: http.auth: mode: login needs users_file (create it with "
                     "`usagewatch console add-user NAME`)"]
    text = "http:\n  public_url: https://uw.example.com\n  auth:\n    mode: login\n    user_file: x\n"
    with pytest.raises(ConfigError) as exc:
        from_document(load_text(text, "uw.yaml"), tmp_path)
    assert [str(p) for p in exc.value.problems] == ['uw.yaml:5:5: unknown key "user_file" in http.auth. '
                                                   'Did you mean "users_file"?']
