"""``usagewatch notify test|preview``: prove the channels work end to end; see a notification before it is sent.

``notify test`` sends a made-up but realistic alert through the real channels (SMTP, webhooks) and
says per channel, in plain words, what happened and what to check. ``notify preview`` renders the
notification of a stored finding (email text, HTML, the whole message, or a webhook body) without
sending anything.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from usagewatch.cli import cli, config_option, load_config, open_store
from usagewatch.config import Config, EmailConfig, NotifyConfig, WebhookConfig
from usagewatch.errors import ConfigError, DeliveryError, UsagewatchError
from usagewatch.notify.email import SmtpChannel, smtp_settings
from usagewatch.notify.payload import finding_body
from usagewatch.notify.render import message_id, render_email
from usagewatch.notify.sender import actions_for
from usagewatch.notify.webhook import WebhookChannel, safe_url
from usagewatch.registry import did_you_mean

PREVIEW_FROM = "usagewatch@example.invalid"
PREVIEW_TO = "dw-support@example.invalid"
_TLS_WORDS = {"none": "no TLS", "starttls": "STARTTLS", "ssl": "TLS"}


def sample_finding(now: datetime | None = None) -> dict[str, Any]:
    """The alert ``notify test`` sends: the 136-company-ids story, marked as a test everywhere."""
    last = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    return {
        "id": "test",
        "rule": "same-query-different-ids",
        "user": "analyst.example",
        "database": "warehouse",
        "status": "open",
        "severity": "warning",
        "count": 136,
        "distinct_values": 136,
        "first_seen": last - timedelta(hours=5, minutes=12),
        "last_seen": last,
        "fingerprint": "test0000",
        "sample_sql": "SELECT sum(amount) FROM invoices WHERE company_id = 90417",
        "normalized_sql": "SELECT sum(amount) FROM invoices WHERE company_id = ?",
        "varying": ["company_id"],
        "sample_values": ["90417", "90418", "71002", "55120", "55121", "60001"],
        "howto": "batch-ids-into-one-query.md",  # a stock how-to page, so the link in the test works
        "title": "TEST ALERT: analyst.example ran one query 136 times with different company_id values",
        "intervention": (
            "This is a test notification from `usagewatch notify test`; nothing needs doing.\n\n"
            "A real one would suggest: show analyst.example how to get all companies in one run,\n"
            "  SELECT company_id, sum(amount) FROM invoices\n"
            "  WHERE company_id IN (SELECT company_id FROM my_companies)\n"
            "  GROUP BY company_id"
        ),
        "details": {"tables": ["invoices"]},
    }


# -- choosing the channels ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One channel to try: email to some recipients, or one webhook."""

    kind: str  # "email" | "webhook"
    recipients: tuple[str, ...] = ()
    webhook: WebhookConfig | None = None


def targets(notify: NotifyConfig, route: str | None = None, channel: str | None = None) -> list[Target]:
    """The channels ``notify test`` tries: the route's (named, else the default one), or just ``channel``."""
    routes = {r.name: r for r in notify.routes}
    chosen = None
    if route is not None:
        if route not in routes:
            hint = did_you_mean(route, list(routes)) if routes else " There are no notify.routes in the config."
            raise UsagewatchError(f'there is no route "{route}".{hint}')
        chosen = routes[route]
    elif notify.routes:
        chosen = notify.routes[0]  # without routes the default is notify.email.to
    email_to = tuple(chosen.email_to) if chosen else tuple(notify.email.to if notify.email else ())
    hooks = list(chosen.webhooks) if chosen else []
    by_name = {w.name: w for w in notify.webhooks}

    if channel is not None:
        if channel == "email":
            if notify.email is None:
                raise UsagewatchError("notify.email is not configured, so there is no email channel to test.")
            return [Target("email", email_to or tuple(notify.email.to))]
        name = channel.removeprefix("webhook:")
        if not channel.startswith("webhook:") or not name:
            raise UsagewatchError(f'--channel must be "email" or "webhook:NAME", not "{channel}".')
        if name not in by_name:
            raise UsagewatchError(f'there is no webhook "{name}" in notify.webhooks.{did_you_mean(name, list(by_name))}')
        return [Target("webhook", webhook=by_name[name])]

    found: list[Target] = []
    if email_to:
        if notify.email is None:
            raise UsagewatchError("notify.email is not configured, so there is no email channel to test.")
        found.append(Target("email", email_to))
    found.extend(Target("webhook", webhook=by_name[name]) for name in hooks)
    if not found:
        raise UsagewatchError("nothing to test: configure notify.email or notify.routes with webhooks.")
    return found


# -- trying them -------------------------------------------------------------------------------


def email_outcome(err: DeliveryError, email: EmailConfig) -> str:
    """What went wrong, in a few words and a remedy; the channel's full sentence when nothing shorter fits."""
    cause = err.__cause__
    if isinstance(cause, smtplib.SMTPAuthenticationError):
        variable = email.password_env or "password_env"
        return (f"auth refused ({cause.smtp_code}): check notify.email.username ({email.username}) "
                f"and the password variable ({variable})")
    if isinstance(cause, smtplib.SMTPSenderRefused) and cause.smtp_code == 530:
        return (f"login required ({cause.smtp_code}): set notify.email.username and notify.email.password_env")
    if isinstance(cause, smtplib.SMTPRecipientsRefused):
        replies = "; ".join(f"{rcpt}: {code} {_words(text)}" for rcpt, (code, text) in cause.recipients.items())
        if all(400 <= code < 500 for code, _ in cause.recipients.values()):
            return f"recipients deferred ({replies}): the server asks to try again later"
        return (f"relay denied ({replies}): the server will not deliver to these addresses for this sender; "
                "check notify.email.to, notify.email.from and whether the server needs a login")
    if isinstance(cause, smtplib.SMTPSenderRefused):
        return f"sender refused ({cause.smtp_code} {_words(cause.smtp_error)}): check notify.email.from"
    if isinstance(cause, ssl.SSLCertVerificationError):
        remedy = ("install the issuing CA in the system's trust store"
                  + " or point notify.email.ca_file at it"
                  + " (notify.email.verify: false skips the check: only for tests)")
        return f"certificate not trusted ({cause.verify_message or cause}): {remedy}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS failed ({cause.reason or cause}): check that notify.email.tls matches the port"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused: is the server running and the port right?"
    if isinstance(cause, socket.gaierror):
        return f"host not found ({cause.strerror}): check notify.email.host"
    if isinstance(cause, TimeoutError) or isinstance(getattr(cause, "__context__", None), TimeoutError):
        return f"no answer within {email.timeout.total_seconds():g} s: check the host, the port and any firewall"
    return str(err)


def _words(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


def _try_email(email: EmailConfig, recipients: tuple[str, ...], howto_base_url: str, redact: bool,
               finding: dict[str, Any], outbox_id: int) -> tuple[str, bool]:
    where = f"email to {', '.join(recipients)} via {email.host}:{email.port} ({_TLS_WORDS[email.tls]})"
    try:
        channel = SmtpChannel(smtp_settings(email))
    except ConfigError as exc:
        return f"{where}: {'; '.join(p.message for p in exc.problems)}", False
    except ValueError as exc:
        return f"{where}: {exc}", False
    msg = render_email(finding, outbox_id=outbox_id, sender=email.from_, recipients=recipients,
                       howto_base_url=howto_base_url, redact_values=redact)
    try:
        channel.send(msg)
    except DeliveryError as exc:
        return f"{where}: {email_outcome(exc, email)}", False
    return f"{where}: delivered", True


def _try_webhook(hook: WebhookConfig, notify: NotifyConfig, finding: dict[str, Any], msg_id: str) -> tuple[str, bool]:
    try:
        channel = WebhookChannel(hook)
    except ConfigError as exc:
        where = f"webhook {hook.name}" + (f" ({safe_url(hook.url)})" if hook.url else "")
        return f"{where}: {'; '.join(p.message for p in exc.problems)}", False
    body = finding_body(finding, event="opened", style=hook.style, redact_values=notify.redact_values,
                        actions=None, howto_base_url=notify.howto_base_url)
    try:
        channel.send(body, msg_id)
    except DeliveryError as exc:
        return str(exc), False  # the channel's sentence already starts with "webhook NAME (URL…)"
    return f"{channel.where}: delivered", True


def try_channels(cfg: Config, route: str | None = None, channel: str | None = None,
                  now: datetime | None = None) -> list[tuple[str, bool]]:
    """Send the sample alert through each chosen channel; one (line, delivered) per channel."""
    notify = cfg.notify
    chosen = targets(notify, route, channel)
    when = now or datetime.now(timezone.utc)
    finding = sample_finding(when)
    outbox_id = int(when.timestamp())  # a new Message-ID per test run: receivers must not drop it as a resend
    results = []
    for t in chosen:
        if t.kind == "email":
            assert notify.email is not None
            results.append(_try_email(notify.email, t.recipients, notify.howto_base_url, notify.redact_values,
                                      finding, outbox_id))
        else:
            assert t.webhook is not None
            sender = notify.email.from_ if notify.email else PREVIEW_FROM
            results.append(_try_webhook(t.webhook, notify, finding, message_id(outbox_id, "test", sender)))
    return results


# -- the commands ------------------------------------------------------------------------------


@cli.group("notify")
def notify_group() -> None:
    """Test the notification channels; preview a finding's notification."""


@notify_group.command("test")
@config_option
@click.option("--route", help="Test this route's channels (default: notify.email.to, or the first route).")
@click.option("--channel", metavar="email|webhook:NAME", help="Test only this channel.")
def test_cmd(config_path: str | None, route: str | None, channel: str | None) -> None:
    """Send a sample alert through the real channels and say what happened."""
    results = try_channels(load_config(config_path), route, channel)
    for line, _ in results:
        click.echo(line)
    failed = sum(1 for _, ok in results if not ok)
    if failed:
        raise UsagewatchError(f"{failed} of {len(results)} channel{'s' if len(results) != 1 else ''} "
                              "did not deliver the test alert.")


@notify_group.command("preview")
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "html", "eml", "json", "slack"]), default="text",
              show_default=True, help="The email's text or HTML part, the whole message, or a webhook body.")
@click.argument("finding_id", type=int)
def preview_cmd(config_path: str | None, fmt: str, finding_id: int) -> None:
    """Show the notification of a stored finding, without sending it."""
    cfg = load_config(config_path)
    click.echo(preview(cfg, finding_id, fmt), nl=False)


def preview(cfg: Config, finding_id: int, fmt: str) -> str:
    """The notification of finding ``finding_id`` as ``fmt`` (text, html, eml, json, slack), newline-terminated."""
    notify = cfg.notify
    store = open_store(cfg)
    try:
        finding = store.finding(finding_id)
    finally:
        store.close()
    if finding is None:
        raise UsagewatchError(f"there is no finding {finding_id}. `usagewatch findings list` shows them.")
    actions = actions_for(cfg.http, finding_id, datetime.now(timezone.utc))  # as the sender would add them
    if fmt in ("json", "slack"):
        body = finding_body(finding, event="opened", style="json" if fmt == "json" else "slack",
                            redact_values=notify.redact_values, actions=actions, howto_base_url=notify.howto_base_url)
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    sender = notify.email.from_ if notify.email else PREVIEW_FROM
    recipients = notify.email.to if notify.email else [PREVIEW_TO]
    msg = render_email(finding, outbox_id=0, sender=sender, recipients=recipients, actions=actions,
                       howto_base_url=notify.howto_base_url, redact_values=notify.redact_values)
    if fmt == "eml":
        return msg.as_string()
    part = msg.get_body(("plain",) if fmt == "text" else ("html",))
    assert part is not None
    text = part.get_content()
    return text if text.endswith("\n") else text + "\n"
