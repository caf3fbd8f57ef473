"""The action-link endpoint over real HTTP, against a real SQLite store with a finding in it."""

from __future__ import annotations

import http.client
import logging
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from tests.web.conftest import SECRET
from usagewatch.config import HttpConfig
from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.store import Store
from usagewatch.web import Running, action_links, start_server
from usagewatch.web.links import make_token


@dataclass
class Reply:
    status: int
    body: str
    headers: dict[str, str]


@pytest.fixture
def server(http: HttpConfig, store: Store) -> Iterator[Running]:
    running = start_server(http, store)
    yield running
    running.stop()


def request(server: Running, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        body = urllib.parse.urlencode(form).encode() if form is not None else (b"" if method == "POST" else None)
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if method == "POST" else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, resp.read().decode(), {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def link(http: HttpConfig, label: str, finding_id: int = 1, now: datetime | None = None) -> str:
    return path_of(action_links(http, finding_id, now or datetime.now(timezone.utc))[label])


def acted(store: Store) -> list[dict[str, str]]:
    """Finding 1's history after it was opened: what people did to it."""
    return [e for e in store.history(1) if e["action"] != "opened"]


def text(html: str) -> str:
    """The visible words of a page, on one line."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_healthz(server):
    reply = request(server, "GET", "/healthz")
    assert (reply.status, reply.body) == (200, "ok\n")
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_get_shows_the_finding_and_one_button_and_changes_nothing(server, http, store):
    before = store.finding(1)
    assert before is not None and before["status"] == "open"
    reply = request(server, "GET", link(http, "Acknowledge"))
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    words = text(reply.body)
    assert "kim ran one query 136 times" in words and "kim" in words and "136" in words and "open" in words
    assert reply.body.count("<form") == 1 and 'method="post"' in reply.body and "action=" not in reply.body
    assert reply.body.count("<button") == 1 and ">Acknowledge</button>" in reply.body
    assert "http://" not in reply.body and "https://" not in reply.body  # self-contained: no external assets
    # Opening it again (a mail scanner, a second click) still changes nothing.
    request(server, "GET", link(http, "Acknowledge"))
    request(server, "HEAD", link(http, "Acknowledge"))
    assert store.finding(1) == before and acted(store) == []


def test_pages_are_not_framed_cached_or_leaking_the_token(server, http):
    headers = request(server, "GET", link(http, "Acknowledge")).headers
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer" and headers["cache-control"] == "no-store"


def test_post_acknowledges_and_records_who(server, http, store):
    reply = request(server, "POST", link(http, "Acknowledge"))
    assert reply.status == 200
    assert "Done: this finding is now acknowledged" in text(reply.body)
    assert store.finding(1)["status"] == "acknowledged"
    [event] = acted(store)
    assert (event["actor"], event["action"]) == ("email link", "acknowledged")
    assert event["note"] == "from the link in the notification email"


def test_post_keeps_the_note_typed_on_the_page(server, http, store):
    request(server, "POST", link(http, "Mark as coached"), {"note": "showed kim IN (...) <b>today</b>"})
    assert store.finding(1)["status"] == "coached"
    assert acted(store)[-1]["note"] == "showed kim IN (...) <b>today</b>"


def test_repeating_is_idempotent_and_friendly(server, http, store):
    path = link(http, "Acknowledge")
    request(server, "POST", path)
    again = request(server, "POST", path)
    assert again.status == 200 and "already acknowledged" in text(again.body)
    shown = request(server, "GET", path)
    assert shown.status == 200 and "already acknowledged" in text(shown.body) and "<form" not in shown.body
    assert len(acted(store)) == 1


def test_not_useful_dismisses(server, http, store):
    assert request(server, "POST", link(http, "Not useful")).status == 200
    assert store.finding(1)["status"] == "dismissed"
    assert acted(store)[0]["action"] == "dismissed"


def test_tampered_token_is_403_and_changes_nothing(server, http, store):
    path = link(http, "Acknowledge")
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    for method in ("GET", "POST"):
        reply = request(server, method, tampered)
        assert reply.status == 403 and "signature does not match" in text(reply.body)
    assert store.finding(1)["status"] == "open" and acted(store) == []


def test_token_signed_with_another_key_is_403(server, store):
    token = make_token(b"someone else's key", 1, "acknowledged", datetime.now(timezone.utc) + timedelta(days=1))
    assert request(server, "POST", f"/a/{token}").status == 403
    assert store.finding(1)["status"] == "open"


def test_damaged_token_is_400(server, store):
    reply = request(server, "POST", "/a/not-a-token")
    assert reply.status == 400 and "incomplete or damaged" in text(reply.body)
    assert store.finding(1)["status"] == "open"


def test_expired_link_is_410_and_changes_nothing(http, store):
    sent = datetime(2024, 5, 2, 15, tzinfo=timezone.utc)
    path = link(http, "Acknowledge", now=sent)
    running = start_server(http, store, clock=lambda: sent + timedelta(days=15))
    try:
        for method in ("GET", "POST"):
            reply = request(running, method, path)
            assert reply.status == 410 and "This link has expired" in text(reply.body)
            assert "usagewatch findings ack 1" in text(reply.body)
    finally:
        running.stop()
    assert store.finding(1)["status"] == "open" and acted(store) == []


def test_expired_by_the_real_clock_too(server, http, store):
    path = link(http, "Acknowledge", now=datetime.now(timezone.utc) - timedelta(days=15))
    assert request(server, "POST", path).status == 410


def test_unknown_finding_is_404(server, http, store):
    for method in ("GET", "POST"):
        reply = request(server, method, link(http, "Acknowledge", finding_id=999))
        assert reply.status == 404 and "There is no finding 999" in text(reply.body)


def test_unknown_path_is_404(server):
    assert request(server, "GET", "/").status == 404
    assert request(server, "GET", "/a/x/y").status == 404


def test_impossible_transition_is_409_with_the_stores_sentence(server, http, store):
    store.transition(1, "resolved", actor="kim's manager")
    shown = request(server, "GET", link(http, "Mark as coached"))
    assert shown.status == 409 and "<form" not in shown.body
    reply = request(server, "POST", link(http, "Mark as coached"))
    assert reply.status == 409
    assert "finding 1 is resolved; it cannot be marked coached." in text(reply.body)
    assert store.finding(1)["status"] == "resolved" and len(acted(store)) == 1


def test_path_prefix_of_the_public_url_is_accepted(monkeypatch, store):
    monkeypatch.setenv("UW_PREFIX_SECRET", SECRET)
    http = HttpConfig(listen="127.0.0.1:0", public_url="https://intra.example.com/usagewatch",
                      secret_env="UW_PREFIX_SECRET")
    url = action_links(http, 1, datetime.now(timezone.utc))["Acknowledge"]
    assert url.startswith("https://intra.example.com/usagewatch/a/")
    running = start_server(http, store)
    try:
        assert request(running, "GET", path_of(url)).status == 200  # proxy passes the prefix on
        stripped = path_of(url).removeprefix("/usagewatch")
        assert request(running, "POST", stripped).status == 200  # proxy strips it
        assert request(running, "GET", "/usagewatch/healthz").status == 200
    finally:
        running.stop()
    assert store.finding(1)["status"] == "acknowledged"


def test_html_in_the_finding_is_escaped(server, http, store):
    with store.engine.begin() as conn:
        from usagewatch.store.tables import findings
        conn.execute(findings.update().values(user="<script>alert(1)</script>", title="<b>x</b>"))
    body = request(server, "GET", link(http, "Acknowledge")).body
    assert "<script>alert" not in body and "&lt;script&gt;" in body and "<b>x</b>" not in body


def test_oversized_form_is_refused(server, http, store):
    reply = request(server, "POST", link(http, "Acknowledge"), {"note": "x" * 70_000})
    assert reply.status == 413
    assert store.finding(1)["status"] == "open"


def test_secret_never_appears_in_pages_or_logs(server, http, store, caplog):
    caplog.set_level(logging.DEBUG, logger="usagewatch")
    path = link(http, "Acknowledge")
    pages = [request(server, m, p).body for m, p in
             (("GET", path), ("POST", path), ("POST", path[:-3] + "xyz"), ("GET", "/a/junk"))]
    for page in pages:
        assert SECRET not in page
    assert SECRET not in caplog.text
    assert path not in caplog.text  # whole tokens are bearer links: logs keep only their start
    assert "finding 1 acknowledged via an email link" in caplog.text


def test_missing_secret_is_a_config_error_at_start(monkeypatch, store):
    monkeypatch.delenv("UW_NOT_SET", raising=False)
    http = HttpConfig(listen="127.0.0.1:0", public_url="https://uw.example.com", secret_env="UW_NOT_SET")
    with pytest.raises(ConfigError, match="UW_NOT_SET"):
        start_server(http, store)


def test_port_in_use_is_one_sentence(server, http, store):
    busy = http.model_copy(update={"listen": f"127.0.0.1:{server.port}"})
    with pytest.raises(UsagewatchError) as err:
        start_server(busy, store)
    assert str(err.value) == f"cannot listen on 127.0.0.1:{server.port}: address in use"


def test_bad_listen_value_is_a_config_error(http, store):
    with pytest.raises(ConfigError, match="is not host:port"):
        start_server(http.model_copy(update={"listen": "8765"}), store)


def test_stop_frees_the_port(http, store):
    first = start_server(http, store)
    port = first.port
    first.stop()
    first.stop()  # idempotent
    again = start_server(http.model_copy(update={"listen": f"127.0.0.1:{port}"}), store)
    try:
        assert request(again, "GET", "/healthz").status == 200
    finally:
        again.stop()


def test_from_email_to_click(server, http, store):
    """The links in a rendered email lead to the page, and its button does what the label says."""
    from usagewatch.notify.render import render_email

    finding = store.finding(1)
    msg = render_email(finding, outbox_id=1, sender="uw@example.com", recipients=["dw@example.com"],
                       actions=action_links(http, 1, datetime.now(timezone.utc)))
    body = msg.get_body(("plain",))
    assert body is not None
    url = re.search(r"Mark as coached: +(\S+)", body.get_content()).group(1)  # type: ignore[union-attr]
    page = request(server, "GET", path_of(url))
    assert ">Mark as coached</button>" in page.body
    assert request(server, "POST", path_of(url)).status == 200
    assert store.finding(1)["status"] == "coached"


def test_acknowledging_a_coached_finding_is_409(server, http, store):
    """The store's rule: acknowledge is only for open findings; the page says why, nothing changes."""
    store.transition(1, "coached", actor="lee")
    reply = request(server, "POST", link(http, "Acknowledge"))
    assert reply.status == 409 and "finding 1 is coached; it cannot be marked acknowledged." in text(reply.body)
    assert [e["action"] for e in acted(store)] == ["coached"]


def test_simultaneous_clicks_record_one_acknowledgement(server, http, store):
    from concurrent.futures import ThreadPoolExecutor

    path = link(http, "Acknowledge")
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: request(server, "POST", path), range(6)))
    assert [r.status for r in replies] == [200] * 6
    assert store.finding(1)["status"] == "acknowledged"
    assert len(acted(store)) == 1
