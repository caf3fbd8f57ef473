"""Where a notification goes: the routes of the config, the channels they name, and the stable
Message-IDs of what is sent along them.

A route matches a finding by rule id globs and severities; the FIRST matching route wins. With no
routes configured there is one immediate route, ``default``, to ``notify.email.to``. A route sends
to ``email`` (its ``email_to``) and to ``webhook:<name>`` for each webhook it names; each
(outbox row, route, channel) becomes one delivery row: ``pending`` for an immediate route,
``queued`` for a digest route. ``route_pending`` does this for every outbox row not routed yet.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any, Protocol

from usagewatch.config import NotifyConfig, RouteConfig
from usagewatch.errors import DeliveryError
from usagewatch.notify.render import header_safe
from usagewatch.store import Store
from usagewatch.store import deliveries as dq
from usagewatch.store.deliveries import Planned

log = logging.getLogger(__name__)

DEFAULT_ROUTE = "default"
EMAIL = "email"
WEBHOOK_PREFIX = "webhook:"

_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_DOMAIN_CHARS = re.compile(r"[^A-Za-z0-9.-]")


# --- channels --------------------------------------------------------------------------------------
class EmailSender(Protocol):
    def send(self, msg: EmailMessage) -> None: ...


class WebhookSender(Protocol):
    def send(self, body: Mapping[str, Any], message_id: str) -> None: ...


class Channels:
    """Resolves a delivery's channel name to the object that sends it; tests inject real test servers."""

    def __init__(self, email: EmailSender | None = None, webhooks: Mapping[str, WebhookSender] | None = None):
        self.email = email
        self.webhooks = dict(webhooks or {})

    @classmethod
    def from_config(cls, cfg: NotifyConfig) -> Channels:
        from usagewatch.notify.email import SmtpChannel, smtp_settings
        from usagewatch.notify.webhook import WebhookChannel

        email = None
        if cfg.email is not None:
            email = SmtpChannel(smtp_settings(cfg.email))
        return cls(email, {w.name: WebhookChannel(w) for w in cfg.webhooks})

    def email_sender(self) -> EmailSender:
        if self.email is None:
            raise DeliveryError("notify.email is not configured, so no email can be sent. Configure it.", False)
        return self.email

    def webhook(self, channel: str) -> WebhookSender:
        name = channel.removeprefix(WEBHOOK_PREFIX)
        found = self.webhooks.get(name)
        if found is None:
            raise DeliveryError(f'the webhook "{name}" is not in notify.webhooks. Add it back, '
                                "then `usagewatch outbox retry`.", False)
        return found


# --- routes ----------------------------------------------------------------------------------------
def routes(cfg: NotifyConfig) -> list[RouteConfig]:
    """The routes in force: the configured ones, else the default immediate route to notify.email.to."""
    if cfg.routes:
        return list(cfg.routes)
    if cfg.email is None:
        return []
    return [RouteConfig(name=DEFAULT_ROUTE, email_to=list(cfg.email.to))]


def route_named(cfg: NotifyConfig, name: str) -> RouteConfig | None:
    return next((r for r in routes(cfg) if r.name == name), None)


def matches(route: RouteConfig, rule: str, severity: str | None) -> bool:
    m = route.match
    if m.rules and not any(fnmatch.fnmatchcase(rule, g) for g in m.rules):
        return False
    return not m.severities or severity in m.severities


def choose(cfg: NotifyConfig, rule: str, severity: str | None) -> RouteConfig | None:
    """The first route matching the finding, or None."""
    return next((r for r in routes(cfg) if matches(r, rule, severity)), None)


def channels_of(route: RouteConfig) -> list[str]:
    return ([EMAIL] if route.email_to else []) + [WEBHOOK_PREFIX + w for w in route.webhooks]


def plan(cfg: NotifyConfig, rule: str, severity: str | None) -> list[Planned]:
    route = choose(cfg, rule, severity)
    if route is None:
        return []
    status = "queued" if route.mode == "digest" else "pending"
    return [Planned(route.name, ch, status) for ch in channels_of(route)]


def route_pending(store: Store, cfg: NotifyConfig, now: datetime) -> int:
    """Turn every outbox row not routed yet into its deliveries; returns how many were made."""
    made = 0
    while rows := dq.unrouted(store):
        for row in rows:
            if row["rule"] is None:
                dq.give_up_on_outbox(store, row["id"], "the finding no longer exists")
                continue
            planned = plan(cfg, row["rule"], row["severity"])
            note = None
            if not planned:
                note = f"no route matches rule {row['rule']} (severity {row['severity']}): nobody is told"
                log.warning("notification %s of finding %s: %s", row["id"], row["finding_id"], note)
            made += dq.route(store, row, planned, now, note)
    return made


# --- stable Message-IDs --------------------------------------------------------------------------------
def _domain(sender: str | None) -> str:
    address = parseaddr(header_safe(sender or ""))[1]
    domain = _DOMAIN_CHARS.sub("", address.rpartition("@")[2]).strip(".").lower()
    return domain or "usagewatch.invalid"


def _token(text: str) -> str:
    """``text`` as Message-ID characters; a short hash keeps two names that clean alike apart."""
    clean = _ID_CHARS.sub("-", text.replace(WEBHOOK_PREFIX, "webhook-")) or "x"
    if clean != text.replace(WEBHOOK_PREFIX, "webhook-"):
        clean += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return clean


def delivery_message_id(outbox_id: int, finding_id: int, route: str, channel: str, sender: str | None) -> str:
    """Depends only on the outbox row, finding, route and channel: a resend carries the same id."""
    return f"<usagewatch.n{int(outbox_id)}.f{int(finding_id)}.{_token(route)}.{_token(channel)}@{_domain(sender)}>"


def digest_message_id(route: str, channel: str, seq: int, sender: str | None) -> str:
    """The ``seq``-th digest of a route and channel: a resend after a crash before it was recorded
    carries the same id."""
    return f"<usagewatch.digest{int(seq)}.{_token(route)}.{_token(channel)}@{_domain(sender)}>"


def thread_headers(msg: EmailMessage, references: list[str]) -> None:
    """In-Reply-To the first, References all: mail clients file the message under those emails."""
    refs = [r for r in dict.fromkeys(references) if r and r != msg["Message-ID"]]
    if refs:
        msg["In-Reply-To"] = refs[0]
        msg["References"] = " ".join(refs)
