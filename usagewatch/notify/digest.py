"""Digests: one email (and/or webhook body) per digest route and channel, every ``digest_every``,
telling what opened since the last one and what grew.

A digest gathers the route's ``queued`` deliveries (findings opened or reopened) and the active
findings the route already told about whose count grew past what its last digest said about them
("kim 136 -> 300": counts, not clocks, so an update racing a digest is never lost);
nothing queued and nothing grown means nothing is sent. The digest is recorded (a ``digests`` row,
what it said per finding in ``digest_items``) in the SAME transaction that marks its deliveries
sent, so "since the last digest" is exact and a delivery is never in two digests. A digest that
fails leaves its deliveries queued (error and attempts shown by ``usagewatch outbox list``) for the
next run; its Message-ID depends only on the route, channel and sequence number, so a resend after a
crash between the send and the record is recognisable. The email threads under the first email of
each finding it mentions (In-Reply-To the first, References all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from usagewatch.config import NotifyConfig, RouteConfig
from usagewatch.durations import format_duration
from usagewatch.errors import DeliveryError
from usagewatch.notify.render import (
    SUBJECT_PREFIX,
    _is_clickable,
    compose,
    header_safe,
    howto_url,
)
from usagewatch.notify.routing import (
    EMAIL,
    WEBHOOK_PREFIX,
    Channels,
    channels_of,
    digest_message_id,
    route_pending,
    routes,
    thread_headers,
)
from usagewatch.store import Store
from usagewatch.store import deliveries as dq

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigestResult:
    route: str
    channel: str
    findings: int  # rows in the digest; 0 = nothing to say, nothing sent
    message_id: str | None = None
    error: str | None = None


def digest_routes(cfg: NotifyConfig) -> list[RouteConfig]:
    """The routes the daemon schedules a digest job for (each every ``route.digest_every``)."""
    return [r for r in routes(cfg) if r.mode == "digest"]


def run_digests(store: Store, cfg: NotifyConfig, channels: Channels, now: datetime,
                route: str | None = None) -> list[DigestResult]:
    """Send the digest of ``route`` (every digest route when None), one per channel of the route.
    New outbox rows are routed first, so a finding opened a moment ago is in it."""
    route_pending(store, cfg, now)
    results: list[DigestResult] = []
    for r in digest_routes(cfg):
        if route is None or r.name == route:
            results.extend(_digest(store, cfg, channels, r, ch, now) for ch in channels_of(r))
    return results


def _change(event: str, previous: int | None, count: int, status: str = "open") -> str:
    if event != "updated":
        return event
    grown = f"{previous} -> {count} runs" if previous is not None else f"now {count} runs"
    # the point of coaching is that it stops: say plainly when it did not
    return f"recurred after coaching: {grown}" if status == "coached" else grown


def gather(store: Store, route: RouteConfig, channel: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The digest's rows (a finding each, with ``change``) and the queued deliveries it carries."""
    queued = dq.queued(store, route.name, channel)
    rows: dict[int, dict[str, Any]] = {}
    for d in queued:  # opened, then reopened while still queued: one row, the latest event
        f = store.finding(d["finding_id"])
        if f is not None:
            rows[f["id"]] = {**f, "change": _change(d["event"], None, f["count"]), "event": d["event"],
                             "previous_count": None}
    for u in dq.grown(store, route.name, channel):
        f = store.finding(u["finding_id"])
        if f is not None and f["id"] not in rows:
            rows[f["id"]] = {**f, "change": _change("updated", u["previous_count"], f["count"], f["status"]),
                             "event": "updated", "previous_count": u["previous_count"]}
    return list(rows.values()), [d["id"] for d in queued]


def _digest(store: Store, cfg: NotifyConfig, channels: Channels, route: RouteConfig, channel: str,
            now: datetime) -> DigestResult:
    rows, delivery_ids = gather(store, route, channel)
    if not rows and not delivery_ids:
        return DigestResult(route.name, channel, 0)
    last = dq.last_digest(store, route.name, channel)
    seq = (last["seq"] + 1) if last else 1
    message_id = digest_message_id(route.name, channel, seq, cfg.email.from_ if cfg.email else None)
    try:
        if channel == EMAIL:
            channels.email_sender().send(render_digest(store, cfg, route, rows, message_id, now))
        elif channel.startswith(WEBHOOK_PREFIX):
            from usagewatch.notify.payload import digest_body

            style = next((w.style for w in cfg.webhooks if WEBHOOK_PREFIX + w.name == channel), "json")
            body = digest_body(rows, route=route.name, style=style, redact_values=cfg.redact_values,
                               howto_base_url=cfg.howto_base_url)
            for item, row in zip(body.get("findings") or [], rows, strict=False):  # json style: say what changed
                item["change"] = row["change"]
            channels.webhook(channel).send(body, message_id)
        else:
            raise DeliveryError(f'unknown channel "{channel}".', False)
    except DeliveryError as exc:
        log.warning("digest of route %s (%s) not sent: %s; its %d notification(s) wait for the next one",
                    route.name, channel, exc, len(delivery_ids))
        dq.note_digest_failure(store, delivery_ids, str(exc))
        return DigestResult(route.name, channel, len(rows), message_id, str(exc))
    items = [{"finding_id": r["id"], "change": r["event"], "count": r["count"],
              "distinct_values": r["distinct_values"]} for r in rows]
    dq.record_digest(store, route.name, channel, seq, message_id, now, items, delivery_ids)
    return DigestResult(route.name, channel, len(rows), message_id)


def _context(cfg: NotifyConfig, route: RouteConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    table = []
    for r in rows:
        link = howto_url(r.get("howto"), cfg.howto_base_url)
        table.append({"id": r["id"], "rule": header_safe(r["rule"]), "user": header_safe(r.get("user") or "?"),
                      "runs": str(r["count"]), "distinct": str(r["distinct_values"]),
                      "change": header_safe(r["change"]), "link": header_safe(link),
                      "clickable": _is_clickable(link)})
    heads = {"id": "ID", "rule": "RULE", "user": "USER", "runs": "RUNS", "distinct": "DISTINCT",
             "change": "WHAT CHANGED"}
    widths = {k: max([len(h)] + [len(str(t[k])) for t in table]) for k, h in heads.items()}
    new = sum(1 for r in rows if r["event"] != "updated")
    return {"route": header_safe(route.name), "rows": table, "heads": heads, "widths": widths,
            "new": new, "updated": len(rows) - new, "every": format_duration(route.digest_every),
            "redacted": cfg.redact_values}


def render_digest(store: Store, cfg: NotifyConfig, route: RouteConfig, rows: list[dict[str, Any]],
                  message_id: str, now: datetime) -> EmailMessage:
    """The digest email: a summary table, threaded under the first email of each finding in it."""
    if cfg.email is None:
        raise DeliveryError("notify.email is not configured, so no email can be sent. Configure it.", False)
    context = _context(cfg, route, rows)
    parts = [f"{context['new']} new"] if context["new"] else []
    parts += [f"{context['updated']} updated"] if context["updated"] else []
    msg = compose(template="digest", context=context, sender=cfg.email.from_, recipients=route.email_to,
                  subject=f"{SUBJECT_PREFIX} Digest ({route.name}): {', '.join(parts) or 'no change'}",
                  now=now, message_id=message_id)
    msg["X-Usagewatch-Route"] = header_safe(route.name)
    first = dq.first_message_ids(store, [r["id"] for r in rows])
    thread_headers(msg, [first[r["id"]] for r in rows if r["id"] in first])
    return msg
