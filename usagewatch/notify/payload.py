"""The JSON bodies webhooks receive: a finding (or a digest of several) as plain JSON or as a Slack message.

This module owns what a webhook *says*; ``webhook.py`` delivers it. Two styles:

- ``json``: the finding's contract fields (the same names as ``findings list --format json``) plus
  ``event`` and ``actions``, for ticketing tools and scripts;
- ``slack``: ``{"text": ..., "blocks": [...]}`` in Slack's Block Kit (header, facts, the
  intervention, the how-to link, action links as buttons); Mattermost and Rocket.Chat read it too.

Safety, as in the email (``render.py`` owns the rules and this module reuses them):

- with ``redact_values`` no literal value appears: ``sample_values`` and ``sample_sql`` are left
  out and any sample value in the title or intervention is masked;
- text from the warehouse's users is escaped for Slack's mrkdwn (``&``, ``<``, ``>``), so a user
  named ``<!channel>`` cannot ping a whole channel and a title cannot forge a link;
- only http(s) URLs become links or buttons.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from usagewatch.notify.render import SUBJECT_PREFIX, _context, header_safe

EVENTS: tuple[str, ...] = ("opened", "reopened", "update")
STYLES: tuple[str, ...] = ("json", "slack")

#: Block Kit limits (https://api.slack.com/reference/block-kit/blocks)
SLACK_HEADER_CHARS = 150
SLACK_TEXT_CHARS = 3000
SLACK_FIELD_CHARS = 2000
SLACK_MAX_BLOCKS = 50
SLACK_MAX_BUTTONS = 25
SLACK_BUTTON_LABEL_CHARS = 75
#: findings listed one by one in a Slack digest; the rest are counted
DIGEST_SLACK_ITEMS = 40

_EVENT_WORDS = {"opened": "New finding", "reopened": "Finding reopened", "update": "Finding update"}
_ACTION_LABELS = {
    "ack": "Acknowledge", "acknowledge": "Acknowledge", "acknowledged": "Acknowledge",
    "coached": "Coached", "resolve": "Resolve", "resolved": "Resolve",
    "dismiss": "Not useful", "dismissed": "Not useful", "not_useful": "Not useful", "not-useful": "Not useful",
}


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _is_http(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


def _check(style: str, event: str | None = None) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    if event is not None and event not in EVENTS:
        raise ValueError(f"event must be one of {', '.join(EVENTS)}, not {event!r}")


def finding_fields(
    finding: Mapping[str, Any], *, redact_values: bool, howto_base_url: str | None = None
) -> dict[str, Any]:
    """The finding as JSON-ready contract fields, redacted as configured (datetimes as ISO 8601)."""
    ctx = _context(finding, howto_base_url, redact_values)
    out: dict[str, Any] = {
        "id": finding.get("id"),
        "rule": finding.get("rule"),
        "user": finding.get("user"),
        "database": finding.get("database"),
        "status": finding.get("status"),
        "severity": finding.get("severity"),
        "count": finding.get("count"),
        "distinct_values": finding.get("distinct_values"),
        "varying": list(finding.get("varying") or []),
        "first_seen": _iso(finding.get("first_seen")),
        "last_seen": _iso(finding.get("last_seen")),
        "fingerprint": finding.get("fingerprint"),
        "normalized_sql": finding.get("normalized_sql"),
        "title": ctx["title"],
        "intervention": ctx["intervention"],
        "howto": ctx["howto"] or None,
    }
    if redact_values:
        out["redacted"] = True
    else:
        out["sample_sql"] = finding.get("sample_sql")
        out["sample_values"] = [str(v) for v in (finding.get("sample_values") or [])]
    return out


def finding_body(
    finding: Mapping[str, Any],
    *,
    event: str,
    style: str,
    redact_values: bool,
    actions: Mapping[str, str] | None = None,
    howto_base_url: str | None = None,
) -> dict[str, Any]:
    """The webhook body announcing one finding (``event``: opened, reopened or update; ``style``: json
    or slack; ValueError otherwise). ``actions`` maps an action name (acknowledge,
    coached, dismiss, ...) to its signed link; ``event`` says why this notification is sent."""
    _check(style, event)
    fields = finding_fields(finding, redact_values=redact_values, howto_base_url=howto_base_url)
    links = dict(actions or {})
    if style == "json":
        return {"event": event, **fields, "actions": links}
    return _slack_finding(fields, event, links)


def digest_body(
    findings: Sequence[Mapping[str, Any]],
    *,
    route: str,
    style: str,
    redact_values: bool,
    howto_base_url: str | None = None,
) -> dict[str, Any]:
    """The webhook body of one digest: the findings of a route since the last digest."""
    _check(style)
    items = [finding_fields(f, redact_values=redact_values, howto_base_url=howto_base_url) for f in findings]
    if style == "json":
        return {"event": "digest", "route": route, "count": len(items), "findings": items}
    return _slack_digest(items, route)


# -- Slack ------------------------------------------------------------------------------------


def mrkdwn_escape(text: object) -> str:
    """Escape text for Slack mrkdwn: the three characters Slack wants escaped, nothing else."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url: str | None, label: str) -> str:
    """``<url|label>`` for an http(s) URL; the escaped label alone otherwise."""
    if url and _is_http(url):
        return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{mrkdwn_escape(label)}>"
    return mrkdwn_escape(label)


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _facts(f: Mapping[str, Any]) -> list[dict[str, str]]:
    facts = [
        ("User", f["user"] or "unknown"),
        ("Database", f["database"] or "unknown"),
        ("Runs", f["count"]),
        ("Distinct values", f["distinct_values"]),
        ("Varying", ", ".join(f["varying"]) or "-"),
        ("Rule", f"{f['rule']} ({f['severity']})" if f.get("severity") else f["rule"]),
        ("First seen", f["first_seen"]),
        ("Last seen", f["last_seen"]),
    ]
    return [_mrkdwn(_cut(f"*{label}*\n{mrkdwn_escape(value)}", SLACK_FIELD_CHARS))
            for label, value in facts if value is not None]


def _buttons(actions: Mapping[str, str]) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = []
    for name, url in actions.items():
        if not (isinstance(url, str) and _is_http(url)) or len(buttons) == SLACK_MAX_BUTTONS:
            continue
        label = _ACTION_LABELS.get(name.lower()) or name.replace("_", " ").replace("-", " ").capitalize()
        button: dict[str, Any] = {
            "type": "button",
            "text": {"type": "plain_text", "text": _cut(label, SLACK_BUTTON_LABEL_CHARS)},
            "url": url,
            "action_id": re.sub(r"[^A-Za-z0-9_-]+", "-", f"usagewatch-{name}".lower())[:255],
        }
        if not buttons:
            button["style"] = "primary"
        buttons.append(button)
    return buttons


def _slack_finding(f: Mapping[str, Any], event: str, actions: Mapping[str, str]) -> dict[str, Any]:
    title = header_safe(f["title"])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, SLACK_HEADER_CHARS)}},
        {"type": "section", "fields": _facts(f)},
    ]
    if f.get("normalized_sql"):
        sql = _cut(mrkdwn_escape(f["normalized_sql"].strip()), SLACK_TEXT_CHARS - 40)
        blocks.append({"type": "section", "text": _mrkdwn(f"*The query* (values as placeholders)\n```{sql}```")})
    if f.get("intervention"):
        text = _cut(mrkdwn_escape(f["intervention"]), SLACK_TEXT_CHARS - 40)
        blocks.append({"type": "section", "text": _mrkdwn(f"*Suggested intervention*\n{text}")})
    if f.get("howto"):
        who = f["user"] or "the user"
        blocks.append({"type": "section", "text": _mrkdwn(f"How-to page to share with {mrkdwn_escape(who)}: "
                                                           + _link(f["howto"], f["howto"]))})
    buttons = _buttons(actions)
    if buttons:
        blocks.append({"type": "actions", "block_id": f"usagewatch-finding-{f['id']}"[:255], "elements": buttons})
    footer = f"{_EVENT_WORDS[event]} · finding {f['id']} · `usagewatch findings show {f['id']}`"
    if f.get("redacted"):
        footer += " · literal values redacted"
    blocks.append({"type": "context", "elements": [_mrkdwn(mrkdwn_escape(footer))]})
    text = f"{SUBJECT_PREFIX} {_EVENT_WORDS[event]}: {title}"
    return {"text": mrkdwn_escape(_cut(text, SLACK_TEXT_CHARS)), "blocks": blocks}


def _slack_digest(items: Sequence[Mapping[str, Any]], route: str) -> dict[str, Any]:
    n = len(items)
    head = f"{n} finding{'s' if n != 1 else ''} for {route}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"usagewatch digest: {head}", SLACK_HEADER_CHARS)}},
    ]
    shown = items[:DIGEST_SLACK_ITEMS]
    for f in shown:
        line = (f"*{_link(f['howto'], header_safe(f['title']))}*\n"
                f"{mrkdwn_escape(f['user'] or 'unknown user')} · {f['count']} runs · "
                f"{mrkdwn_escape(f['rule'])}{' (' + mrkdwn_escape(f['severity']) + ')' if f.get('severity') else ''} · "
                f"last seen {mrkdwn_escape(f['last_seen'])} · finding {f['id']}")
        blocks.append({"type": "section", "text": _mrkdwn(_cut(line, SLACK_TEXT_CHARS))})
    more = n - len(shown)
    footer = f"and {more} more: `usagewatch findings list`" if more else "`usagewatch findings show ID` for one in full"
    if any(f.get("redacted") for f in items):
        footer += " · literal values redacted"
    blocks.append({"type": "context", "elements": [_mrkdwn(mrkdwn_escape(footer))]})
    assert len(blocks) <= SLACK_MAX_BLOCKS
    return {"text": mrkdwn_escape(f"{SUBJECT_PREFIX} {head}"), "blocks": blocks}
