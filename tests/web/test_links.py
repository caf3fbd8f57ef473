"""Signed, expiring action links: what a token carries, and every way one is refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.web.conftest import SECRET
from usagewatch.config import HttpConfig
from usagewatch.errors import ConfigError
from usagewatch.web.links import LinkError, action_links, make_token, verify

NOW = datetime(2024, 5, 2, 15, tzinfo=timezone.utc)
KEY = SECRET.encode()


def token_of(url: str) -> str:
    prefix = "https://uw.example.com/a/"
    assert url.startswith(prefix)
    return url[len(prefix):]


def test_three_links_by_label_each_verifies_to_its_action(http):
    links = action_links(http, 42, NOW)
    assert list(links) == ["Acknowledge", "Mark as coached", "Not useful"]
    got = {label: verify(token_of(url), KEY, NOW) for label, url in links.items()}
    assert got == {"Acknowledge": (42, "acknowledged"), "Mark as coached": (42, "coached"),
                   "Not useful": (42, "dismissed")}


def test_links_differ_per_action_and_finding(http):
    a, b = action_links(http, 42, NOW), action_links(http, 43, NOW)
    urls = list(a.values()) + list(b.values())
    assert len(set(urls)) == 6


def test_tokens_are_url_safe_and_hold_no_secret(http):
    for url in action_links(http, 42, NOW).values():
        token = token_of(url)
        assert all(c.isalnum() or c in "-_." for c in token), token
        assert "=" not in token and SECRET not in url
        assert len(token) < 120


def test_no_http_config_no_links():
    assert action_links(None, 42, NOW) == {}


def test_missing_secret_is_a_clear_config_error(monkeypatch):
    monkeypatch.delenv("UW_NOT_SET", raising=False)
    http = HttpConfig(public_url="https://uw.example.com", secret_env="UW_NOT_SET")
    with pytest.raises(ConfigError, match="the environment variable UW_NOT_SET \\(http.secret_env\\) is not set"):
        action_links(http, 42, NOW)


def test_link_expires_after_the_ttl(http):
    token = token_of(action_links(http, 42, NOW)["Acknowledge"])
    assert verify(token, KEY, NOW + timedelta(days=14) - timedelta(seconds=1)) == (42, "acknowledged")
    with pytest.raises(LinkError) as err:
        verify(token, KEY, NOW + timedelta(days=14))
    assert (err.value.reason, err.value.finding_id, err.value.action) == ("expired", 42, "acknowledged")


def test_other_key_is_a_bad_signature(http):
    token = token_of(action_links(http, 42, NOW)["Acknowledge"])
    with pytest.raises(LinkError) as err:
        verify(token, b"another key", NOW)
    assert err.value.reason == "bad signature"


def test_changed_payload_is_a_bad_signature_not_a_new_link():
    """Swapping in the payload of another finding, action or a later expiry keeps the old signature."""
    good = make_token(KEY, 42, "acknowledged", NOW + timedelta(days=1))
    sig = good.split(".")[1]
    for other in (make_token(KEY, 43, "acknowledged", NOW + timedelta(days=1)),
                  make_token(KEY, 42, "dismissed", NOW + timedelta(days=1)),
                  make_token(KEY, 42, "acknowledged", NOW + timedelta(days=99))):
        forged = other.split(".")[0] + "." + sig
        with pytest.raises(LinkError) as err:
            verify(forged, KEY, NOW)
        assert err.value.reason == "bad signature"


def test_expired_and_tampered_reads_as_bad_signature():
    old = make_token(KEY, 42, "acknowledged", NOW - timedelta(days=1))
    flipped = old[:-1] + ("A" if old[-1] != "A" else "B")
    with pytest.raises(LinkError) as err:
        verify(flipped, KEY, NOW)
    assert err.value.reason == "bad signature"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", "x" * 600, "é.é", "YQ.="])
def test_garbage_is_malformed(token):
    with pytest.raises(LinkError) as err:
        verify(token, KEY, NOW)
    assert err.value.reason == "malformed"


def test_a_signed_payload_of_the_wrong_shape_is_still_refused():
    """Even signed with the right key, only our own payload format is accepted."""
    import base64
    import hashlib
    import hmac

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    for payload in (b"uw1:42:resolved:9999999999", b"uw2:42:acknowledged:9999999999", b"uw1:x:acknowledged:1"):
        token = b64(payload) + "." + b64(hmac.new(KEY, payload, hashlib.sha256).digest())
        with pytest.raises(LinkError) as err:
            verify(token, KEY, NOW)
        assert err.value.reason == "malformed"


def test_make_token_refuses_actions_links_cannot_carry():
    with pytest.raises(ValueError):
        make_token(KEY, 42, "resolved", NOW)
