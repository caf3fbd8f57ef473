"""Retention: what the store forgets, so a year-long run stays bounded.

``run_retention(store, cfg, now)`` deletes, each kind in batches of short transactions (never one
giant transaction that would hold locks against the daemons' commits):

- closed findings (resolved or dismissed) whose closing is older than ``closed_findings``, with
  everything that refers to them: history, daily run counts, outbox rows, deliveries, digest items;
- sent and dead deliveries older than ``evidence``, and routed/dead outbox rows older than it
  without deliveries left, of findings that are NOT active (an active finding's sent deliveries are
  what a digest route "already told about", and its first email is the thread its later emails
  file under; it has only a few of them);
- daily run counts (``finding_days``) older than ``evidence``;
- digest items older than ``evidence`` except the latest per finding, route and channel (the next
  digest's "136 -> 300" compares against it), and digests older than ``evidence`` left without
  items, except the latest per route and channel (its sequence number makes the next digest's
  Message-ID);
- rule windows whose newest event is older than ``evidence`` (drained windows the engine never
  swept: a key that went quiet, a rule removed from the config).

``run_usage_retention(store, usage_cfg, now)`` rolls usage rows older than ``usage.hourly_for``
up from hours into days (sums and histograms add, so totals stay exact) and deletes day rows older
than ``usage.keep`` (``store/usage.py``).

Returns how many rows of each table went. A closed finding is locked (``FOR UPDATE SKIP LOCKED``
on PostgreSQL) while it is deleted, so a daemon reopening it at that moment either waits or finds
it gone (its batch then fails and is re-read, making a new finding): never a half-deleted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.config import RetentionConfig, UsageConfig
from usagewatch.store import usage as usage_store
from usagewatch.store.store import Store
from usagewatch.store.tables import (
    ACTIVE_STATUSES,
    CLOSED_STATUSES,
    deliveries,
    digest_items,
    digests,
    finding_days,
    finding_events,
    findings,
    outbox,
    rule_window_log,
    rule_windows,
)

TABLES = ("findings", "finding_events", "finding_days", "outbox", "deliveries", "digest_items", "digests",
          "rule_windows", "rule_window_log")


def run_retention(store: Store, cfg: RetentionConfig, now: datetime, batch: int = 500) -> dict[str, int]:
    counts = dict.fromkeys(TABLES, 0)
    closed_before = now - cfg.closed_findings
    evidence_before = now - cfg.evidence
    engine = store.engine

    # closed findings and everything about them
    while True:
        with engine.begin() as conn:
            q = (sa.select(findings.c.id)
                 .where(findings.c.status.in_(CLOSED_STATUSES), findings.c.resolved_at < closed_before)
                 .order_by(findings.c.id).limit(batch))
            if engine.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            ids = [int(i) for i in conn.execute(q).scalars()]
            if not ids:
                break
            _delete_findings(conn, ids, counts)

    inactive = sa.select(findings.c.id).where(findings.c.status.not_in(ACTIVE_STATUSES))

    # sent and dead deliveries of findings that are not active
    old_delivery = sa.or_(
        (deliveries.c.status == "sent") & (deliveries.c.sent_at < evidence_before),
        (deliveries.c.status == "dead") & (deliveries.c.created_at < evidence_before))
    _in_batches(engine, counts, "deliveries", batch,
                sa.select(deliveries.c.id).where(old_delivery, deliveries.c.finding_id.in_(inactive)),
                lambda ids: deliveries.delete().where(deliveries.c.id.in_(ids), old_delivery))

    # outbox rows done with (routed or dead) that no delivery refers to any more
    has_delivery = sa.exists().where(deliveries.c.outbox_id == outbox.c.id)
    old_outbox = (outbox.c.status != "pending") & (outbox.c.created_at < evidence_before) & ~has_delivery
    _in_batches(engine, counts, "outbox", batch,
                sa.select(outbox.c.id).where(old_outbox, outbox.c.finding_id.in_(inactive)),
                lambda ids: outbox.delete().where(outbox.c.id.in_(ids), old_outbox))

    # daily run counts
    day = evidence_before.date().isoformat()
    while True:
        with engine.begin() as conn:
            keys = [tuple(r) for r in conn.execute(
                sa.select(finding_days.c.finding_id, finding_days.c.day).where(finding_days.c.day < day)
                .order_by(finding_days.c.day).limit(batch))]
            if not keys:
                break
            counts["finding_days"] += conn.execute(finding_days.delete().where(
                sa.tuple_(finding_days.c.finding_id, finding_days.c.day).in_(keys))).rowcount or 0

    # digest items superseded by a newer one of the same finding, route and channel
    d, d2, i2 = digests.alias("d"), digests.alias("d2"), digest_items.alias("i2")
    newer = (sa.exists().select_from(i2.join(d2, d2.c.id == i2.c.digest_id))
             .where(i2.c.finding_id == digest_items.c.finding_id, d2.c.route == d.c.route,
                    d2.c.channel == d.c.channel, d2.c.seq > d.c.seq))
    while True:
        with engine.begin() as conn:
            keys = [tuple(r) for r in conn.execute(
                sa.select(digest_items.c.digest_id, digest_items.c.finding_id)
                .select_from(digest_items.join(d, d.c.id == digest_items.c.digest_id))
                .where(d.c.sent_at < evidence_before, newer).limit(batch))]
            if not keys:
                break
            counts["digest_items"] += conn.execute(digest_items.delete().where(
                sa.tuple_(digest_items.c.digest_id, digest_items.c.finding_id).in_(keys))).rowcount or 0

    # digests left without items, except the latest of each route and channel
    later = sa.exists().where(d2.c.route == digests.c.route, d2.c.channel == digests.c.channel,
                              d2.c.seq > digests.c.seq)
    no_items = ~sa.exists().where(digest_items.c.digest_id == digests.c.id)
    old_digest = (digests.c.sent_at < evidence_before) & no_items & later
    _in_batches(engine, counts, "digests", batch, sa.select(digests.c.id).where(old_digest),
                lambda ids: digests.delete().where(digests.c.id.in_(ids), old_digest))

    # drained rule windows: logged events (the pipeline drops them as they drain; these are the
    # ones of rules no longer configured) and rows of keys that stopped
    horizon = evidence_before.timestamp()
    with engine.begin() as conn:
        counts["rule_window_log"] += conn.execute(rule_window_log.delete().where(
            rule_window_log.c.newest_ts < horizon)).rowcount or 0
    after: tuple[str, str] | None = None
    while True:
        with engine.begin() as conn:
            q = sa.select(rule_windows.c.rule, rule_windows.c.key, rule_windows.c.state)
            if after is not None:
                q = q.where(sa.tuple_(rule_windows.c.rule, rule_windows.c.key) > sa.tuple_(*after))
            rows = conn.execute(q.order_by(rule_windows.c.rule, rule_windows.c.key).limit(batch)).all()
            if not rows:
                break
            after = (rows[-1].rule, rows[-1].key)
            gone = [(r.rule, r.key) for r in rows if _drained(r.state, horizon)]
            if gone:
                counts["rule_windows"] += conn.execute(rule_windows.delete().where(
                    sa.tuple_(rule_windows.c.rule, rule_windows.c.key).in_(gone))).rowcount or 0
    return counts


def _drained(state: Any, horizon: float) -> bool:
    """A window whose newest event (``last_ts``, epoch seconds of event time) is before ``horizon``.
    States without ``last_ts`` (the spike kind keeps buckets) are swept by their rule, not here."""
    last = state.get("last_ts") if isinstance(state, dict) else None
    return isinstance(last, (int, float)) and last < horizon


def _in_batches(engine: sa.engine.Engine, counts: dict[str, int], table: str, batch: int,
                select_ids: sa.Select[Any], delete: Any) -> None:
    """Select up to ``batch`` ids, delete them (the delete repeats the condition), until none are left."""
    while True:
        with engine.begin() as conn:
            ids = [int(i) for i in conn.execute(select_ids.limit(batch)).scalars()]
            if not ids:
                return
            counts[table] += conn.execute(delete(ids)).rowcount or 0


def _delete_findings(conn: Connection, ids: Sequence[int], counts: dict[str, int]) -> None:
    """Children first (PostgreSQL enforces the foreign keys)."""
    for table, cond in (("digest_items", digest_items.c.finding_id.in_(ids)),
                        ("deliveries", deliveries.c.finding_id.in_(ids)),
                        ("outbox", outbox.c.finding_id.in_(ids)),
                        ("finding_events", finding_events.c.finding_id.in_(ids)),
                        ("finding_days", finding_days.c.finding_id.in_(ids)),
                        ("findings", findings.c.id.in_(ids))):
        t = {"digest_items": digest_items, "deliveries": deliveries, "outbox": outbox,
             "finding_events": finding_events, "finding_days": finding_days, "findings": findings}[table]
        counts[table] += conn.execute(t.delete().where(cond)).rowcount or 0


def run_usage_retention(store: Store, cfg: UsageConfig, now: datetime) -> dict[str, int]:
    """Roll hourly usage rows older than ``cfg.hourly_for`` up into days; delete days older than ``cfg.keep``."""
    return usage_store.roll_up(store.engine, now - cfg.hourly_for, now - cfg.keep)
