"""The outbox sender: delivers pending notifications, retrying with backoff while the channel is down.

A notification is marked sent only after the channel accepted it, in its own transaction; the
Message-ID depends only on the outbox row and the finding, so if a crash falls between the SMTP
server's "250 OK" and that mark, the resend carries the same Message-ID and can be recognised.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

from usagewatch.config import NotifyConfig
from usagewatch.errors import DeliveryError, StoreError
from usagewatch.notify.email import SmtpChannel, SmtpSettings
from usagewatch.notify.render import render_email
from usagewatch.store import Store

log = logging.getLogger(__name__)

GIVE_UP_AFTER = timedelta(days=2)


class Channel(Protocol):
    def send(self, msg) -> None: ...  # type: ignore[no-untyped-def]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def smtp_channel(cfg: NotifyConfig) -> SmtpChannel | None:
    e = cfg.email
    if e is None:
        return None
    return SmtpChannel(SmtpSettings(host=e.host, port=e.port, tls=e.tls, username=e.username,
                                    password=e.password(), timeout=e.timeout.total_seconds(), verify=e.verify))


class Sender:
    def __init__(self, store: Store, channel: Channel, cfg: NotifyConfig,
                 clock: Callable[[], datetime] = utcnow):
        assert cfg.email is not None
        self.store = store
        self.channel = channel
        self.cfg = cfg
        self.clock = clock
        self.sent = 0
        self.failures = 0

    def backoff(self, attempts: int) -> timedelta:
        """Delay before attempt ``attempts + 1``: initial, doubling, capped."""
        initial, cap = self.cfg.retry.initial, self.cfg.retry.max
        return min(cap, initial * (2 ** min(attempts, 30)))

    def send_due(self) -> int:
        """Try every notification that is due; returns how many were delivered."""
        delivered = 0
        email = self.cfg.email
        assert email is not None
        for row in self.store.due_notifications(self.clock()):
            finding = self.store.finding(row["finding_id"])
            if finding is None:
                self.store.mark_failed(row["id"], "finding no longer exists", None)
                continue
            msg = render_email(finding, outbox_id=row["id"], sender=email.from_, recipients=email.to,
                               howto_base_url=self.cfg.howto_base_url, redact_values=self.cfg.redact_values)
            try:
                self.channel.send(msg)
            except DeliveryError as exc:
                self.failures += 1
                now = self.clock()
                give_up = (not exc.transient) or now - row["created_at"] > GIVE_UP_AFTER
                retry_at = None if give_up else now + self.backoff(row["attempts"])
                log.warning("notification %s for finding %s not delivered (%s); %s", row["id"], finding["id"], exc,
                            "giving up" if retry_at is None else f"retrying at {retry_at:%H:%M:%S}")
                self.store.mark_failed(row["id"], str(exc), retry_at)
                if exc.transient:
                    break  # the server is down: do not hammer it with the rest of the queue
                continue
            try:
                self.store.mark_sent(row["id"], str(msg["Message-ID"]), self.clock())
            except StoreError:
                log.exception("notification %s was sent but could not be marked sent", row["id"])
                raise
            self.sent += 1
            delivered += 1
        return delivered
