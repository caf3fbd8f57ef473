"""The outbox sender against a real SMTP server: retries with backoff while it is down, sends each
notification exactly once, gives up (dead letter) on a permanent refusal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.store.test_store import update
from usagewatch.config import NotifyConfig
from usagewatch.notify.email import SmtpChannel, SmtpSettings
from usagewatch.notify.sender import Sender
from usagewatch.store import Batch, Store


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def notify_cfg(server) -> NotifyConfig:
    return NotifyConfig.model_validate({
        "email": {"host": server.host, "port": server.port, "from": "uw@example.com", "to": ["support@example.com"]},
        "retry": {"initial": "10s", "max": "40s"},
    })


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/uw.db", "https://wiki.example.com/")
    yield s
    s.close()


def sender_for(store, server, clock, **settings) -> Sender:
    cfg = notify_cfg(server)
    channel = SmtpChannel(SmtpSettings(host=server.host, port=server.port, timeout=5, **settings))
    return Sender(store, channel, cfg, clock=clock)


def test_retries_while_the_server_is_down_then_sends_once(store, smtp_server):
    clock = Clock()
    store.commit(Batch([update(136)]), now=clock.now)
    sender = sender_for(store, smtp_server, clock)
    smtp_server.stop()
    assert sender.send_due() == 0
    (row,) = store.outbox_rows()
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "refused" in row["last_error"].lower() or "connect" in row["last_error"].lower()
    assert row["next_attempt_at"] == clock.now + timedelta(seconds=10)

    clock.now += timedelta(seconds=5)
    assert sender.send_due() == 0            # not due yet: no attempt
    assert store.outbox_rows()[0]["attempts"] == 1

    clock.now += timedelta(seconds=5)
    assert sender.send_due() == 0            # due, still down: backoff doubles
    assert store.outbox_rows()[0]["next_attempt_at"] == clock.now + timedelta(seconds=20)

    smtp_server.start()
    clock.now += timedelta(seconds=20)
    assert sender.send_due() == 1
    (msg,) = smtp_server.wait_for(1)
    assert msg.message["Subject"] == "[usagewatch] kim ran one query 136 times"
    (row,) = store.outbox_rows()
    assert (row["status"], row["message_id"]) == ("sent", msg.message["Message-ID"])

    clock.now += timedelta(hours=1)
    assert sender.send_due() == 0            # sent means sent: never again
    assert len(smtp_server.messages) == 1


def test_backoff_is_capped(store, smtp_server):
    sender = sender_for(store, smtp_server, Clock())
    assert [sender.backoff(n).total_seconds() for n in range(5)] == [10, 20, 40, 40, 40]


def test_a_permanent_refusal_is_a_dead_letter_with_the_error_kept(store, smtp_auth_server):
    store.commit(Batch([update(40)]))
    sender = sender_for(store, smtp_auth_server, Clock(), username="usagewatch", password="wrong-password")
    assert sender.send_due() == 0
    (row,) = store.outbox_rows()
    assert row["status"] == "dead"
    assert "wrong-password" not in row["last_error"]
    assert row["last_error"]
