"""The sender: routes new outbox rows into deliveries and delivers the due immediate ones, retrying
with backoff while a channel is down.

An outbox row says WHAT happened (a finding opened or reopened); ``routing.route_pending`` turns
it into deliveries (WHERE it goes) in one transaction. An immediate delivery is sent here: email via
``render_email`` to its route's ``email_to``, a webhook via ``payload.finding_body``. A delivery is
marked sent only after the channel accepted it, in its own transaction; its Message-ID depends only
on the outbox row, finding, route and channel, so if a crash falls between the server's "250 OK"
and that mark, the resend carries the same Message-ID and can be recognised. Failures back off
exponentially (``retry.initial`` doubling, capped by ``retry.max``); a delivery still failing
``retry.give_up_after`` after it was made, or refused permanently, is dead with its error kept
(``usagewatch outbox retry`` revives it). Digest routes' deliveries wait for ``digest.run_digests``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any, Callable

from usagewatch.config import HttpConfig, NotifyConfig
from usagewatch.errors import ConfigError, DeliveryError
from usagewatch.notify.render import render_email
from usagewatch.notify.routing import (
    EMAIL,
    WEBHOOK_PREFIX,
    Channels,
    delivery_message_id,
    route_named,
    route_pending,
    thread_headers,
)
from usagewatch.store import Store
from usagewatch.store import deliveries as dq
from usagewatch.store.locks import claim_delivery, recover_stale_claims, unclaim_failed

log = logging.getLogger(__name__)


#: how long a claimed delivery is this sender's; a sender that dies mid-send leaves a claim that
#: another (or the restarted one) takes back after this, resending with the same Message-ID
CLAIM_LEASE = timedelta(minutes=2)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def actions_for(http: HttpConfig | None, finding_id: int, now: datetime) -> dict[str, str]:
    """The finding's action links, or none when the endpoint is not configured or its secret is
    missing (a notification without links beats no notification)."""
    if http is None:
        return {}
    from usagewatch.web.links import action_links

    try:
        return action_links(http, finding_id, now)
    except ConfigError as exc:
        log.warning("notifications go out without action links: %s", exc)
        return {}


class Sender:
    """``send_due()`` from the sender thread; sleep until ``next_due()`` (or a commit's wake-up)."""

    def __init__(self, store: Store, cfg: NotifyConfig, channels: Channels,
                 clock: Callable[[], datetime] = utcnow, http: HttpConfig | None = None,
                 on_failure: Callable[[str], None] | None = None):
        self.store = store
        self.cfg = cfg
        self.channels = channels
        self.clock = clock
        self.http = http
        self.on_failure = on_failure  # the daemon counts failures per channel for its metrics
        self.sent = 0
        self.failures = 0

    def backoff(self, attempts: int) -> timedelta:
        """Delay before attempt ``attempts + 1``: initial, doubling, capped."""
        initial, cap = self.cfg.retry.initial, self.cfg.retry.max
        return min(cap, initial * (2 ** min(attempts, 30)))

    def next_due(self) -> datetime | None:
        """When there is work next (a delivery due, or an outbox row to route); None when none."""
        return dq.next_due(self.store)

    def send_due(self) -> int:
        """Route new outbox rows, then try every due immediate delivery; returns how many went out."""
        route_pending(self.store, self.cfg, self.clock())
        engine = self.store.engine
        recover_stale_claims(engine, self.clock())
        delivered = 0
        down: set[str] = set()  # channels that failed transiently this round: do not hammer them
        for d in dq.due(self.store, self.clock()):
            if d["channel"] in down:
                continue
            # several daemons may share the store: only the one whose claim succeeds sends it
            if not claim_delivery(engine, d["id"], self.clock(), CLAIM_LEASE):
                continue
            try:
                message_id = self.deliver(d)
            except DeliveryError as exc:
                self.failures += 1
                if self.on_failure is not None:
                    self.on_failure(d["channel"])
                now = self.clock()
                give_up = (not exc.transient) or now - d["created_at"] >= self.cfg.retry.give_up_after
                retry_at = None if give_up else now + self.backoff(d["attempts"])
                log.warning("delivery %s (finding %s, route %s, %s) failed: %s; %s", d["id"], d["finding_id"],
                            d["route"], d["channel"], exc,
                            "giving up" if retry_at is None else f"retrying at {retry_at:%H:%M:%S}")
                unclaim_failed(engine, d["id"], str(exc), retry_at)
                if exc.transient:
                    down.add(d["channel"])
                continue
            self.mark_sent(d["id"], message_id)
            self.sent += 1
            delivered += 1
        return delivered

    def mark_sent(self, delivery_id: int, message_id: str) -> None:
        """Its own transaction, after the channel accepted (a seam: tests make it fail, as a crash would)."""
        dq.mark_sent(self.store, delivery_id, message_id, self.clock())

    # --- one delivery -------------------------------------------------------------------------------
    def deliver(self, d: dict[str, Any]) -> str:
        """Send one delivery; returns its Message-ID. Raises DeliveryError."""
        finding = self.store.finding(d["finding_id"])
        if finding is None:
            raise DeliveryError("the finding no longer exists.", False)
        route = route_named(self.cfg, d["route"])
        if route is None:
            raise DeliveryError(f'the route "{d["route"]}" is no longer in the config. Add it back, '
                                "then `usagewatch outbox retry`.", False)
        sender = self.cfg.email.from_ if self.cfg.email else None
        message_id = delivery_message_id(d["outbox_id"], d["finding_id"], d["route"], d["channel"], sender)
        now = self.clock()
        actions = actions_for(self.http, finding["id"], now)
        if d["channel"] == EMAIL:
            self.channels.email_sender().send(self.email(d, finding, route.email_to, message_id, actions, now))
        elif d["channel"].startswith(WEBHOOK_PREFIX):
            hook = self.channels.webhook(d["channel"])
            from usagewatch.notify.payload import finding_body

            style = next((w.style for w in self.cfg.webhooks if WEBHOOK_PREFIX + w.name == d["channel"]), "json")
            hook.send(finding_body(finding, event=d["event"], style=style, redact_values=self.cfg.redact_values,
                                   actions=actions, howto_base_url=self.cfg.howto_base_url), message_id)
        else:
            raise DeliveryError(f'unknown channel "{d["channel"]}".', False)
        return message_id

    def email(self, d: dict[str, Any], finding: dict[str, Any], to: list[str], message_id: str,
              actions: dict[str, str], now: datetime) -> EmailMessage:
        if self.cfg.email is None:
            raise DeliveryError("notify.email is not configured, so no email can be sent. Configure it.", False)
        msg = render_email(finding, outbox_id=d["outbox_id"], sender=self.cfg.email.from_, recipients=to,
                           howto_base_url=self.cfg.howto_base_url, redact_values=self.cfg.redact_values,
                           now=now, actions=actions)
        msg.replace_header("Message-ID", message_id)
        first = dq.first_message_ids(self.store, [finding["id"]]).get(finding["id"])
        if first:  # a reopened finding: file it under the first email about it
            thread_headers(msg, [first])
        return msg
