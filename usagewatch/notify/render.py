"""Render one finding as the email the support team reads (subject, headers, text and HTML parts).

This module owns what a notification *says* and the safety of its headers; it does not send
anything (see ``email.py``) and does not decide *whether* to notify (the sender's stages do).

Safety rules it enforces, because findings carry text from the warehouse's users (user names,
SQL, literal values) that ends up in an email:

- every header value is stripped of CR/LF and other line breaks, so a user named
  ``"kim\\r\\nBcc: x"`` cannot add a header;
- the HTML part is rendered with Jinja2 autoescaping on, and the how-to link is only made
  clickable when it is an http(s) URL (so are the action links);
- with ``redact_values=True`` no literal value appears anywhere: sample values are replaced by a
  count, the raw ``sample_sql`` is left out, and any sample value that
  occurs in the title or the intervention text is masked (``normalized_sql`` already has
  placeholders);
- the Message-ID depends only on the outbox id, the finding id and the sender's domain, so a resend
  of the same notification carries the same Message-ID and mail clients can recognise it.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urljoin, urlsplit

import jinja2

SUBJECT_PREFIX = "[usagewatch]"
MAX_SAMPLE_VALUES = 5
MAX_SUBJECT_CHARS = 200
# RFC 5322 allows 998-character lines. The stdlib's 78 makes it fold a long subject right after
# "Subject:", which its own parser then reads back with a leading space; one line avoids both.
_POLICY = email.policy.default.clone(max_line_length=998)
REDACTED_MASK = "<redacted>"

# Every character that some mail or header parser treats as a line break.
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")
_OTHER_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_DOMAIN_CHARS = re.compile(r"[^A-Za-z0-9.-]")
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]")

_LAYOUT: dict[str, Any] = {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}
_LOADER = jinja2.PackageLoader("usagewatch.notify", "templates")
_HTML_ENV = jinja2.Environment(
    loader=_LOADER, autoescape=True, undefined=jinja2.StrictUndefined, **_LAYOUT
)
_TEXT_ENV = jinja2.Environment(
    loader=_LOADER, autoescape=False, undefined=jinja2.StrictUndefined, **_LAYOUT
)


def header_safe(value: object) -> str:
    """Return ``value`` as one header-safe line: line breaks become spaces, controls are dropped."""
    text = _LINE_BREAKS.sub(" ", str(value))
    return _OTHER_CONTROLS.sub("", text).strip()


def message_id(outbox_id: int, finding_id: object, sender: str) -> str:
    """The stable Message-ID of one notification: same inputs, same id, on every (re)send."""
    address = parseaddr(header_safe(sender))[1]
    domain = _DOMAIN_CHARS.sub("", address.rpartition("@")[2]).strip(".").lower()
    fid = _ID_CHARS.sub("", str(finding_id)) or "0"
    return f"<usagewatch.n{int(outbox_id)}.f{fid}@{domain or 'usagewatch.invalid'}>"


def howto_url(howto: str | None, base_url: str | None) -> str:
    """Resolve a finding's how-to link: absolute URLs as they are, relative paths against the base."""
    link = (howto or "").strip()
    if not link or urlsplit(link).scheme or not base_url:
        return link
    return urljoin(base_url.rstrip("/") + "/", link.lstrip("/"))


def _is_clickable(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        tz = value.strftime("%Z") or value.strftime("%z")
        return value.strftime("%Y-%m-%d %H:%M:%S") + (f" {tz}" if tz else "")
    return str(value) if value is not None else "unknown"


def _span(first: Any, last: Any) -> str:
    """'over 5 h 12 min' between two datetimes, or '' when it cannot be told."""
    if not (isinstance(first, datetime) and isinstance(last, datetime)):
        return ""
    seconds = int((last - first).total_seconds())
    if seconds < 0:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"over {hours} h {minutes} min"
    if minutes:
        return f"over {minutes} min {secs} s"
    return f"within {secs} s"


def _mask(text: str, values: Iterable[str]) -> str:
    """Replace every whole occurrence of any of ``values`` in ``text`` by the redaction mask."""
    for value in sorted({v for v in values if v and v.strip()}, key=len, reverse=True):
        text = re.sub(rf"(?<![\w]){re.escape(value)}(?![\w])", REDACTED_MASK, text)
    return text


def display_title(finding: Mapping[str, Any], redact_values: bool = False) -> str:
    """The finding's title as one line (its subject and heading), sample values masked when redacting."""
    title = header_safe(finding.get("title") or "") or header_safe(
        f"{finding.get('rule', 'a rule')} matched queries of {finding.get('user') or 'a user'}"
    )
    if redact_values:
        title = _mask(title, [header_safe(v) for v in (finding.get("sample_values") or [])])
    return title


def _context(
    finding: Mapping[str, Any],
    howto_base_url: str | None,
    redact_values: bool,
    actions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    samples = [header_safe(v) for v in (finding.get("sample_values") or [])]
    title = display_title(finding, redact_values)
    intervention = str(finding.get("intervention") or "")
    tables = [header_safe(t) for t in (dict(finding.get("details") or {}).get("tables") or [])]
    if redact_values:
        intervention = _mask(intervention, samples)
        shown_samples: list[str] = []
        samples_note = f"<{len(samples)} values redacted>" if samples else ""
    else:
        shown_samples = samples[:MAX_SAMPLE_VALUES]
        more = len(samples) - len(shown_samples)
        samples_note = f"and {more} more" if more > 0 else ""
    link = howto_url(finding.get("howto"), howto_base_url)
    finding_id = finding.get("id")
    return {
        "title": title,
        "finding_id": finding_id,
        "rule": header_safe(finding.get("rule") or ""),
        "user": header_safe(finding.get("user") or "") or "unknown user",
        "database": header_safe(finding.get("database") or "") or "unknown database",
        "status": header_safe(finding.get("status") or ""),
        "severity": header_safe(finding.get("severity") or ""),
        "count": finding.get("count"),
        "distinct_values": finding.get("distinct_values"),
        "varying": [header_safe(c) for c in (finding.get("varying") or [])],
        "samples": shown_samples,
        "samples_note": samples_note,
        "first_seen": _when(finding.get("first_seen")),
        "last_seen": _when(finding.get("last_seen")),
        "span": _span(finding.get("first_seen"), finding.get("last_seen")),
        "fingerprint": finding.get("fingerprint") or "",
        "normalized_sql": (finding.get("normalized_sql") or "").strip(),
        "sample_sql": "" if redact_values else (finding.get("sample_sql") or "").strip(),
        "intervention": intervention.strip(),
        "howto": link,
        "howto_clickable": _is_clickable(link),
        "tables": tables,
        "redacted": redact_values,
        "show_command": f"usagewatch findings show {finding_id}",
        # (label, url, clickable): what the reader acts on, shown first in both parts
        "actions": [(header_safe(label), header_safe(url), _is_clickable(header_safe(url)))
                     for label, url in (actions or {}).items()],
        "action_label_width": max((len(header_safe(label)) for label in (actions or {})), default=0) + 1,
    }


def render_email(
    finding: Mapping[str, Any],
    *,
    outbox_id: int,
    sender: str,
    recipients: Sequence[str],
    howto_base_url: str | None = None,
    redact_values: bool = False,
    now: datetime | None = None,
    actions: Mapping[str, str] | None = None,
) -> EmailMessage:
    """Build the notification email for one finding (one outbox row).

    ``actions`` maps a label ("Acknowledge") to the URL of its action link
    (``usagewatch.web.links.action_links``); both parts then show them first, as buttons in HTML.
    ``now`` sets the Date header (defaults to the current time); everything else in the message
    depends only on the arguments, so rendering the same outbox row twice gives the same email.
    """
    context = _context(finding, howto_base_url, redact_values, actions)
    msg = EmailMessage(policy=_POLICY)
    subject = header_safe(f"{SUBJECT_PREFIX} {context['title']}")
    if len(subject) > MAX_SUBJECT_CHARS:
        subject = subject[: MAX_SUBJECT_CHARS - 3].rstrip() + "..."
    msg["Subject"] = subject
    msg["From"] = header_safe(sender)
    msg["To"] = ", ".join(r for r in (header_safe(r) for r in recipients) if r)
    msg["Date"] = format_datetime(now or datetime.now(timezone.utc))
    msg["Message-ID"] = message_id(outbox_id, finding.get("id"), sender)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    msg["X-Usagewatch-Finding"] = header_safe(finding.get("id"))
    msg["X-Usagewatch-Rule"] = header_safe(finding.get("rule") or "")
    msg.set_content(_TEXT_ENV.get_template("finding.txt.j2").render(context), charset="utf-8")
    msg.add_alternative(
        _HTML_ENV.get_template("finding.html.j2").render(context), subtype="html", charset="utf-8"
    )
    return msg


def compose(*, template: str, context: Mapping[str, Any], subject: str, sender: str, recipients: Sequence[str],
            now: datetime, message_id: str) -> EmailMessage:
    """A text + HTML email from ``<template>.txt.j2`` and ``<template>.html.j2`` (HTML autoescaped),
    with the headers every usagewatch email carries, each stripped of CR/LF (digests, status)."""
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = header_safe(subject)
    msg["From"] = header_safe(sender)
    msg["To"] = ", ".join(t for t in (header_safe(t) for t in recipients) if t)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    msg.set_content(_TEXT_ENV.get_template(f"{template}.txt.j2").render(context), charset="utf-8")
    msg.add_alternative(_HTML_ENV.get_template(f"{template}.html.j2").render(context), subtype="html", charset="utf-8")
    return msg
