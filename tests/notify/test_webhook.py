"""Webhook delivery against a real HTTP server, and the bodies it carries (JSON and Slack)."""

from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta
from typing import Any

import pytest

from tests.helpers.http import HttpReceiver
from tests.helpers.smtp import free_port
from usagewatch.config import WebhookConfig
from usagewatch.errors import ConfigError, DeliveryError
from usagewatch.notify.payload import digest_body, finding_body
from usagewatch.notify.webhook import WebhookChannel, safe_url

TOKEN = "T0123ABCD/B0456EFGH/s3cr3tT0kenXYZ987654"
ACTIONS = {
    "Acknowledge": "https://uw.example.com/a/ack?sig=abc",
    "Coached": "https://uw.example.com/a/coached?sig=def",
    "Not useful": "https://uw.example.com/a/dismiss?sig=ghi",
}

# fixtures of tests/helpers/http.py, until tests/conftest.py registers it as a plugin


def hook(receiver: HttpReceiver, path: str = f"/services/{TOKEN}", **kw: Any) -> WebhookChannel:
    return WebhookChannel(WebhookConfig(name="chat", url=receiver.url(path), **kw))


def body(finding: dict[str, Any], style: str = "json", **kw: Any) -> dict[str, Any]:
    return finding_body(finding, event="opened", style=style, redact_values=kw.pop("redact", False), **kw)


def failure(channel: WebhookChannel, finding: dict[str, Any]) -> DeliveryError:
    with pytest.raises(DeliveryError) as err:
        channel.send(body(finding), "<usagewatch.n1.f42@example.com>")
    return err.value


# -- delivery ---------------------------------------------------------------------------------


def test_delivered_as_json_with_the_message_id(http_receiver: HttpReceiver, finding: dict[str, Any]) -> None:
    hook(http_receiver).send(body(finding, actions=ACTIONS), "<usagewatch.n3.f42@example.com>")
    [req] = http_receiver.wait_for(1)
    assert (req.method, req.path) == ("POST", f"/services/{TOKEN}")
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Idempotency-Key"] == "<usagewatch.n3.f42@example.com>"
    assert req.headers["X-Usagewatch-Message-Id"] == "<usagewatch.n3.f42@example.com>"
    assert req.headers["User-Agent"].startswith("usagewatch/")
    assert req.json["event"] == "opened"
    assert req.json["id"] == 42 and req.json["count"] == 136
    assert req.json["first_seen"] == "2024-05-02T09:14:00+00:00"
    assert req.json["actions"] == ACTIONS


def test_a_resend_carries_the_same_message_id(http_receiver: HttpReceiver, finding: dict[str, Any]) -> None:
    ch = hook(http_receiver)
    http_receiver.respond_next(503)
    with pytest.raises(DeliveryError):
        ch.send(body(finding), "<usagewatch.n7.f42@example.com>")
    ch.send(body(finding), "<usagewatch.n7.f42@example.com>")
    first, second = http_receiver.wait_for(2)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == "<usagewatch.n7.f42@example.com>"
    assert first.body == second.body


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_and_rate_limits_are_transient(http_receiver: HttpReceiver, finding: dict[str, Any], status: int) -> None:
    http_receiver.respond_next(status, headers={"Retry-After": "30"})
    err = failure(hook(http_receiver), finding)
    assert err.transient is True
    assert f"HTTP {status}" in str(err) and "Will retry." in str(err)
    if status == 429:
        assert "rate limited, asked to wait 30 s" in str(err)


@pytest.mark.parametrize(("status", "says"), [
    (404, "HTTP 404 (no_service): check the URL."),
    (410, "HTTP 410 (no_service): check the URL."),
    (403, "HTTP 403 (no_service): the receiver refused the credentials: check the URL (its token)."),
    (400, "HTTP 400 (no_service): the receiver refused the notification; check the URL and the webhook's style."),
    (301, "HTTP 301 (no_service): the receiver redirects elsewhere; put the final URL in the config."),
])
def test_client_errors_are_permanent(http_receiver: HttpReceiver, finding: dict[str, Any], status: int, says: str) -> None:
    http_receiver.respond_next(status, body="no_service", headers={"Location": "http://elsewhere.example/"})
    err = failure(hook(http_receiver), finding)
    assert err.transient is False
    assert str(err) == f"webhook chat (http://127.0.0.1:{http_receiver.port}/…): {says}"
    assert len(http_receiver.requests) == 1  # a redirect is not followed


def test_timeout_is_transient(http_receiver: HttpReceiver, finding: dict[str, Any]) -> None:
    http_receiver.hang_next()
    err = failure(hook(http_receiver, timeout=timedelta(seconds=0.5)), finding)
    assert err.transient is True
    assert str(err) == f"webhook chat (http://127.0.0.1:{http_receiver.port}/…): no answer within 0.5 s. Will retry."


def test_connection_refused_is_transient(finding: dict[str, Any]) -> None:
    port = free_port()
    ch = WebhookChannel(WebhookConfig(name="chat", url=f"http://127.0.0.1:{port}/services/{TOKEN}"))
    err = failure(ch, finding)
    assert err.transient is True
    assert str(err) == f"webhook chat (http://127.0.0.1:{port}/…): connection refused. Will retry."


def test_certificate_is_verified(https_receiver: HttpReceiver, finding: dict[str, Any]) -> None:
    err = failure(hook(https_receiver), finding)
    assert err.transient is False
    assert str(err).startswith(f"webhook chat (https://localhost:{https_receiver.port}/…): certificate not trusted (")
    assert https_receiver.requests == []


def test_only_http_urls_are_posted(finding: dict[str, Any], tmp_path: Any) -> None:
    target = tmp_path / "x.json"
    err = failure(WebhookChannel(WebhookConfig(name="chat", url=f"file://{target}")), finding)
    assert err.transient is False and "not an http(s) URL" in str(err)
    assert not target.exists()


def test_the_url_never_appears_in_errors(http_receiver: HttpReceiver, finding: dict[str, Any]) -> None:
    # the receiver echoes the path back, as some do in their 404 pages
    http_receiver.respond_next(404, body=f"No hook at /services/{TOKEN} (token {TOKEN.split('/')[-1]})")
    ch = hook(http_receiver)
    err = failure(ch, finding)
    for secret in (TOKEN, *TOKEN.split("/")):
        assert secret not in str(err) and secret not in repr(ch)
    assert "<secret>" in str(err)


def test_a_missing_url_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UW_TEST_HOOK", raising=False)
    with pytest.raises(ConfigError, match="UW_TEST_HOOK"):
        WebhookChannel(WebhookConfig(name="chat", url_env="UW_TEST_HOOK"))


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/…"),
    ("https://user:pw@example.com:8443/x?token=1", "https://example.com:8443/…"),
    ("http://example.com", "http://example.com/"),
    ("http://[::1]:9000/a", "http://[::1]:9000/…"),
    ("not a url", "<unparseable URL>"),
])
def test_safe_url(url: str, shown: str) -> None:
    assert safe_url(url) == shown


# -- bodies -----------------------------------------------------------------------------------


def test_json_body_has_the_contract_fields(finding: dict[str, Any]) -> None:
    b = finding_body(finding, event="reopened", style="json", redact_values=False, actions=None,
                     howto_base_url="https://wiki.example.com/dw/")
    assert {"id", "rule", "user", "status", "severity", "count", "distinct_values", "varying", "first_seen",
            "last_seen", "fingerprint", "normalized_sql", "title", "intervention", "howto", "actions"} <= set(b)
    assert b["event"] == "reopened"
    assert b["howto"] == "https://wiki.example.com/dw/howto/batch-ids-into-one-query.html"
    assert b["sample_values"][0] == "90417" and "90417" in b["sample_sql"]
    assert b["actions"] == {}
    json.dumps(b)  # JSON-ready: datetimes are ISO strings


def test_redaction_leaves_no_sample_value(finding: dict[str, Any]) -> None:
    for style in ("json", "slack"):
        b = finding_body(finding, event="opened", style=style, redact_values=True, actions=ACTIONS)
        text = json.dumps(b)
        for value in finding["sample_values"]:
            assert value not in text, (style, value)
        assert "sample_sql" not in text and "sample_values" not in text
    b = finding_body(finding, event="opened", style="json", redact_values=True)
    assert "WHERE company_id IN (<redacted>, <redacted>, '<redacted>')" in b["intervention"]
    assert b["redacted"] is True


def test_slack_body_shape(finding: dict[str, Any]) -> None:
    b = body(finding, style="slack", actions=ACTIONS, howto_base_url="https://wiki.example.com/dw/")
    assert b["text"] == "[usagewatch] New finding: kim ran one query 136 times with different company_id values"
    types = [blk["type"] for blk in b["blocks"]]
    assert types == ["header", "section", "section", "section", "section", "actions", "context"]
    assert b["blocks"][0]["text"] == {"type": "plain_text",
                                      "text": "kim ran one query 136 times with different company_id values"}
    facts = [f["text"] for f in b["blocks"][1]["fields"]]
    assert "*User*\nkim" in facts and "*Runs*\n136" in facts and "*Varying*\ncompany_id" in facts
    everything = json.dumps(b)
    assert "Suggested intervention" in everything and "Show kim how to get all companies" in everything
    assert "<https://wiki.example.com/dw/howto/batch-ids-into-one-query.html|" in everything
    buttons = b["blocks"][5]["elements"]
    assert [(x["type"], x["text"]["text"], x["url"]) for x in buttons] == [
        ("button", label, url) for label, url in ACTIONS.items()]
    assert buttons[0]["style"] == "primary"


def test_slack_text_from_users_is_escaped(finding: dict[str, Any]) -> None:
    finding = {**finding, "user": "<!channel>", "title": "a <b> & c", "howto": "javascript:alert(1)"}
    b = body(finding, style="slack", actions={"Acknowledge": "javascript:alert(1)"})
    text = json.dumps(b)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert b["text"].endswith("a &lt;b&gt; &amp; c")
    assert not any(blk["type"] == "actions" for blk in b["blocks"])  # no button for a non-http link
    assert "<javascript" not in text


def test_unknown_style_or_event_is_refused(finding: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="style"):
        finding_body(finding, event="opened", style="teams", redact_values=False)
    with pytest.raises(ValueError, match="event"):
        finding_body(finding, event="closed", style="json", redact_values=False)


def test_digest_bodies(finding: dict[str, Any]) -> None:
    other = {**finding, "id": 43, "user": "lee", "title": "lee ran one query 40 times"}
    j = digest_body([finding, other], route="everything-else", style="json", redact_values=True)
    assert (j["event"], j["route"], j["count"]) == ("digest", "everything-else", 2)
    assert [f["id"] for f in j["findings"]] == [42, 43]
    assert "90417" not in json.dumps(j)
    s = digest_body([finding, other], route="everything-else", style="slack", redact_values=False)
    assert s["text"] == "[usagewatch] 2 findings for everything-else"
    assert [blk["type"] for blk in s["blocks"]] == ["header", "section", "section", "context"]
    assert "lee ran one query 40 times" in s["blocks"][2]["text"]["text"]
    many = digest_body([{**finding, "id": i} for i in range(100)], route="r", style="slack", redact_values=False)
    assert len(many["blocks"]) <= 50
    assert "and 60 more" in many["blocks"][-1]["elements"][0]["text"]


def test_the_receiver_refusing_tcp_mid_request_is_transient(finding: dict[str, Any]) -> None:
    """A socket that accepts and closes at once: the connection breaks, which is worth a retry."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        ch = WebhookChannel(WebhookConfig(name="chat", url=f"http://127.0.0.1:{port}/h"))
        def slam() -> None:
            conn, _ = s.accept()
            conn.close()

        t = threading.Thread(target=slam)
        t.start()
        err = failure(ch, finding)
        t.join(5)
    assert err.transient is True
