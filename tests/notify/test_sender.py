"""The sender against a real SMTP server: routes outbox rows into deliveries, retries with backoff
while the server is down, sends each delivery exactly once, gives up (dead letter) on a permanent
refusal or after ``retry.give_up_after``, and a crash between send and mark resends the same
Message-ID."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.store.test_store import update
from usagewatch.config import NotifyConfig
from usagewatch.model import FindingUpdate
from usagewatch.notify.email import SmtpChannel, SmtpSettings
from usagewatch.notify.routing import Channels
from usagewatch.notify.sender import CLAIM_LEASE, Sender
from usagewatch.store import Batch, Store
from usagewatch.store import deliveries as dq


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class Hook:
    """A webhook channel that keeps what it was given (the project's own seam; HTTP is webhook.py's)."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], str]] = []

    def send(self, body: Any, message_id: str) -> None:
        self.sent.append((dict(body), message_id))


def notify_cfg(server, **extra: Any) -> NotifyConfig:
    return NotifyConfig.model_validate({
        "email": {"host": server.host, "port": server.port, "from": "uw@example.com", "to": ["support@example.com"]},
        "retry": {"initial": "10s", "max": "40s"},
        **extra,
    })


def finding(user: str, count: int, *, rule: str = "same-query-different-ids", severity: str = "warning",
            episode: str = "e1") -> FindingUpdate:
    u = update(count, episode=episode, key=f"user={user} fingerprint=f")
    u.user, u.rule, u.severity, u.title = user, rule, severity, f"{user} ran one query {count} times"
    return u


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/uw.db", "https://wiki.example.com/")
    yield s
    s.close()


def channels_for(server, **settings: Any) -> Channels:
    return Channels(SmtpChannel(SmtpSettings(host=server.host, port=server.port, timeout=5, **settings)),
                    {"chat": Hook()})


def sender_for(store, server, clock, cfg: NotifyConfig | None = None, **settings: Any) -> Sender:
    return Sender(store, cfg or notify_cfg(server), channels_for(server, **settings), clock=clock)


def test_retries_while_the_server_is_down_then_sends_once(store, smtp_server):
    clock = Clock()
    store.commit(Batch([update(136)]), now=clock.now)
    sender = sender_for(store, smtp_server, clock)
    smtp_server.stop()
    assert sender.send_due() == 0
    (row,) = dq.listing(store)
    assert (row["route"], row["channel"], row["status"], row["attempts"]) == ("default", "email", "pending", 1)
    assert "refused" in row["last_error"].lower() or "connect" in row["last_error"].lower()
    assert row["next_attempt_at"] == clock.now + timedelta(seconds=10)
    assert sender.next_due() == clock.now + timedelta(seconds=10)

    clock.now += timedelta(seconds=5)
    assert sender.send_due() == 0            # not due yet: no attempt
    assert dq.listing(store)[0]["attempts"] == 1

    clock.now += timedelta(seconds=5)
    assert sender.send_due() == 0            # due, still down: backoff doubles
    assert dq.listing(store)[0]["next_attempt_at"] == clock.now + timedelta(seconds=20)

    smtp_server.start()
    clock.now += timedelta(seconds=20)
    assert sender.send_due() == 1
    (msg,) = smtp_server.wait_for(1)
    assert msg.message["Subject"] == "[usagewatch] kim ran one query 136 times"
    assert msg.rcpt_tos == ("support@example.com",)
    assert msg.message["In-Reply-To"] is None  # the first email about it starts the thread
    (row,) = dq.listing(store)
    assert (row["status"], row["message_id"]) == ("sent", msg.message["Message-ID"])
    assert msg.message["Message-ID"] == "<usagewatch.n1.f1.default.email@example.com>"
    assert [o["status"] for o in store.outbox_rows()] == ["routed"]

    clock.now += timedelta(hours=1)
    assert sender.send_due() == 0            # sent means sent: never again
    assert sender.next_due() is None
    assert len(smtp_server.messages) == 1


def test_backoff_is_capped(store, smtp_server):
    sender = sender_for(store, smtp_server, Clock())
    assert [sender.backoff(n).total_seconds() for n in range(5)] == [10, 20, 40, 40, 40]


def test_a_permanent_refusal_is_a_dead_letter_with_the_error_kept(store, smtp_auth_server):
    store.commit(Batch([update(40)]))
    sender = sender_for(store, smtp_auth_server, Clock(), username="usagewatch", password="wrong-password")
    assert sender.send_due() == 0
    (row,) = dq.listing(store)
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert "wrong-password" not in row["last_error"]
    assert "login" in row["last_error"]
    assert sender.next_due() is None


def test_still_failing_after_give_up_after_is_a_dead_letter(store, smtp_server):
    clock = Clock()
    store.commit(Batch([update(40)]), now=clock.now)
    cfg = notify_cfg(smtp_server, retry={"initial": "10s", "max": "1h", "give_up_after": "2h"})
    sender = sender_for(store, smtp_server, clock, cfg)
    smtp_server.stop()
    sender.send_due()
    attempts = 1
    while dq.listing(store)[0]["status"] == "pending":
        nxt = sender.next_due()
        assert nxt is not None
        clock.now = nxt
        sender.send_due()
        attempts += 1
    (row,) = dq.listing(store)
    assert row["status"] == "dead" and row["attempts"] == attempts
    assert clock.now - row["created_at"] >= timedelta(hours=2)
    assert clock.now - row["created_at"] < timedelta(hours=3)  # capped backoff: no day-long sleeps
    assert "connect" in row["last_error"].lower()
    smtp_server.start()
    clock.now += timedelta(days=1)
    assert sender.send_due() == 0 and smtp_server.messages == []


def test_a_crash_between_send_and_mark_resends_the_same_message_id(store, smtp_server):
    """The server said 250 but the mark was never written: the delivery stays claimed by the dead
    sender until its lease ends, then another sender (or the restarted one) takes it back and the
    resend carries the same Message-ID, so the receiver can tell it is the same notification."""
    clock = Clock()
    store.commit(Batch([update(136)]), now=clock.now)
    crashing = sender_for(store, smtp_server, clock)

    def crash(delivery_id: int, message_id: str) -> None:
        raise RuntimeError("killed between send and mark")

    crashing.mark_sent = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        crashing.send_due()
    (row,) = dq.listing(store)
    assert (row["status"], row["attempts"]) == ("sending", 0)

    restarted = sender_for(store, smtp_server, clock)   # a new process reads the same store
    assert restarted.send_due() == 0  # the claim may still be a live sender's: not before its lease ends
    clock.now += CLAIM_LEASE
    assert restarted.send_due() == 1
    first, second = smtp_server.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"] == dq.listing(store)[0]["message_id"]
    assert restarted.send_due() == 0 and len(smtp_server.messages) == 2


def test_a_reopened_finding_threads_under_its_first_email(store, smtp_server):
    clock = Clock()
    store.commit(Batch([update(30)]), now=clock.now)
    sender = sender_for(store, smtp_server, clock)
    assert sender.send_due() == 1
    store.set_status(1, "resolved", now=clock.now)
    u = update(50, episode="e2")
    u.last_seen = clock.now + timedelta(days=3)  # past the rule's cooldown
    clock.now += timedelta(days=3)
    store.commit(Batch([u]), now=clock.now)
    assert sender.send_due() == 1
    first, again = smtp_server.wait_for(2)
    assert again.message["Message-ID"] != first.message["Message-ID"]
    assert again.message["In-Reply-To"] == first.message["Message-ID"]
    assert again.message["References"] == first.message["Message-ID"]
    assert [(d["event"], d["status"]) for d in dq.listing(store)] == [("opened", "sent"), ("reopened", "sent")]


def test_a_webhook_route_gets_the_finding_body_with_a_stable_id(store, smtp_server):
    clock = Clock()
    cfg = notify_cfg(smtp_server, webhooks=[{"name": "chat", "url": "https://chat.example.com/hook"}],
                     routes=[{"name": "oncall", "email_to": ["oncall@example.com"], "webhooks": ["chat"]}])
    sender = sender_for(store, smtp_server, clock, cfg)
    store.commit(Batch([finding("kim", 136)]), now=clock.now)
    assert sender.send_due() == 2
    ((body, message_id),) = sender.channels.webhooks["chat"].sent  # type: ignore[attr-defined]
    assert (body["event"], body["user"], body["count"]) == ("opened", "kim", 136)
    assert message_id == "<usagewatch.n1.f1.oncall.webhook-chat@example.com>"
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ("oncall@example.com",)
    assert {d["channel"]: d["message_id"] for d in dq.listing(store)} == {
        "email": mail.message["Message-ID"], "webhook:chat": message_id}
