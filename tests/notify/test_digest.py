"""Digests on a timeline: what opened since the last digest and what grew, in ONE email with a table,
threaded under the first email of each finding; nothing new, no email; a failed digest keeps its
notifications queued for the next one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.notify.test_sender import Clock, Hook, channels_for, finding, notify_cfg
from usagewatch.notify.digest import digest_routes, run_digests
from usagewatch.store import Batch, Store
from usagewatch.store import deliveries as dq


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/uw.db", "https://wiki.example.com/")
    yield s
    s.close()

ROUTES = [{"name": "team", "email_to": ["team@example.com"], "mode": "digest", "digest_every": "1h"}]


def body(msg) -> str:
    return msg.message.get_body(("plain",)).get_content()


def test_digest_timeline(store, smtp_server):
    clock = Clock()
    cfg = notify_cfg(smtp_server, routes=ROUTES)
    channels = channels_for(smtp_server)
    assert [r.name for r in digest_routes(cfg)] == ["team"]

    def digest() -> list:
        clock.now += timedelta(hours=1)
        return run_digests(store, cfg, channels, clock.now)

    store.commit(Batch([finding("kim", 136)]), now=clock.now)
    (r1,) = digest()                                    # 1: kim opened
    (d1,) = smtp_server.wait_for(1)
    assert (r1.findings, r1.message_id) == (1, d1.message["Message-ID"])
    assert d1.message["Subject"] == "[usagewatch] Digest (team): 1 new"
    assert d1.rcpt_tos == ("team@example.com",) and d1.message["References"] is None

    (nothing,) = digest()                               # nothing opened, nothing grew: no email
    assert nothing.findings == 0 and len(smtp_server.messages) == 1

    store.commit(Batch([finding("lee", 40), finding("ann", 25), finding("kim", 300)]), now=clock.now)
    digest()                                            # 2: lee and ann opened, kim 136 -> 300
    d2 = smtp_server.wait_for(2)[1]
    assert d2.message["Subject"] == "[usagewatch] Digest (team): 2 new, 1 updated"
    text = body(d2)
    lines = {line.split()[2]: line for line in text.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])}
    assert set(lines) == {"kim", "lee", "ann"}
    assert "136 -> 300 runs" in lines["kim"] and "opened" in lines["lee"] and "opened" in lines["ann"]
    assert "https://wiki.example.com/batch.md" in lines["kim"]
    assert d2.message["In-Reply-To"] == d2.message["References"] == d1.message["Message-ID"]
    html = d2.message.get_body(("html",)).get_content()
    assert "136 -&gt; 300 runs" in html and '<a href="https://wiki.example.com/batch.md">' in html

    store.commit(Batch([finding("kim", 310), finding("lee", 45), finding("bo", 20)]), now=clock.now)
    digest()                                            # 3: bo opened; kim and lee grew
    d3 = smtp_server.wait_for(3)[2]
    assert "300 -> 310 runs" in body(d3) and "40 -> 45 runs" in body(d3)
    assert d3.message["In-Reply-To"] == d1.message["Message-ID"]  # each finding's first email: kim's, lee's
    assert d3.message["References"] == f"{d1.message['Message-ID']} {d2.message['Message-ID']}"

    assert {d["status"] for d in dq.listing(store)} == {"sent"}
    assert len({d["message_id"] for d in dq.listing(store)}) == 3  # each carried by its digest
    digest()
    assert len(smtp_server.messages) == 3


def test_a_failed_digest_keeps_its_notifications_queued_and_resends_the_same_id(store, smtp_server):
    clock = Clock()
    cfg = notify_cfg(smtp_server, routes=ROUTES)
    channels = channels_for(smtp_server)
    store.commit(Batch([finding("kim", 136)]), now=clock.now)
    smtp_server.stop()
    (failed,) = run_digests(store, cfg, channels, clock.now)
    assert failed.error and "connect" in failed.error.lower()
    (d,) = dq.listing(store)
    assert (d["status"], d["attempts"]) == ("queued", 1) and "connect" in d["last_error"].lower()
    smtp_server.start()
    clock.now += timedelta(hours=1)
    (ok,) = run_digests(store, cfg, channels, clock.now)
    (mail,) = smtp_server.wait_for(1)
    assert ok.error is None and mail.message["Message-ID"] == failed.message_id == ok.message_id
    (d,) = dq.listing(store)
    assert (d["status"], d["last_error"], d["message_id"]) == ("sent", None, ok.message_id)


def test_only_the_routes_findings_are_in_its_digest_and_webhooks_get_a_digest_body(store, smtp_server):
    clock = Clock()
    routes = [{"name": "oncall", "match": {"severities": ["high"]}, "email_to": ["oncall@example.com"]},
              {"name": "team", "webhooks": ["chat"], "mode": "digest"}]
    cfg = notify_cfg(smtp_server, routes=routes, webhooks=[{"name": "chat", "url": "https://chat.example.com/h"}])
    channels = channels_for(smtp_server)
    store.commit(Batch([finding("kim", 136, severity="high"), finding("lee", 40)]), now=clock.now)
    (r,) = run_digests(store, cfg, channels, clock.now)
    assert (r.route, r.channel, r.findings) == ("team", "webhook:chat", 1)
    ((sent, message_id),) = channels.webhooks["chat"].sent  # type: ignore[attr-defined]
    assert sent["event"] == "digest" and [f["user"] for f in sent["findings"]] == ["lee"]
    assert sent["findings"][0]["change"] == "opened"
    assert message_id == "<usagewatch.digest1.team.webhook-chat@example.com>"
    assert smtp_server.messages == []  # kim's immediate email is the sender's job, not the digest's
    assert isinstance(channels.webhooks["chat"], Hook)


def test_a_coached_user_doing_it_again_is_called_out_in_the_digest(store, smtp_server):
    clock = Clock()
    cfg = notify_cfg(smtp_server, routes=ROUTES)
    channels = channels_for(smtp_server)
    store.commit(Batch([finding("kim", 136)]), now=clock.now)
    clock.now += timedelta(hours=1)
    run_digests(store, cfg, channels, clock.now)
    store.transition(1, "coached", "ann", now=clock.now)
    store.commit(Batch([finding("kim", 140)]), now=clock.now)
    clock.now += timedelta(hours=1)
    run_digests(store, cfg, channels, clock.now)
    assert "recurred after coaching: 136 -> 140 runs" in body(smtp_server.wait_for(2)[1])
