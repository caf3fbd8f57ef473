"""Queries of the ``deliveries``, ``digests`` and ``digest_items`` tables: where each notification
goes, whether it went, and what each digest said.

The store's finding transaction only writes outbox rows (WHAT happened). The notifier routes each
outbox row once, in one transaction that inserts its deliveries (WHERE it goes) and marks the row
``routed``; the unique (outbox_id, route, channel) constraint means that a second router, or a
restart halfway, cannot make a second delivery. Every function here is one short transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from usagewatch.errors import StoreError
from usagewatch.store.store import Store
from usagewatch.store.tables import (
    ACTIVE_STATUSES,
    deliveries,
    digest_items,
    digests,
    findings,
    outbox,
)

STATUSES = ("pending", "sending", "queued", "sent", "dead")  # sending: claimed by a sender right now


@dataclass(frozen=True)
class Planned:
    """One delivery the router decided on."""

    route: str
    channel: str
    status: str  # pending (immediate) or queued (digest)


@contextmanager
def _tx(store: Store, what: str) -> Iterator[Connection]:
    try:
        with store.engine.begin() as conn:
            yield conn
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        raise StoreError(f"could not {what}: {exc}") from None


@contextmanager
def _read(store: Store, what: str) -> Iterator[Connection]:
    try:
        with store.engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"could not {what}: {exc}") from None


# --- routing ---------------------------------------------------------------------------------------
def unrouted(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """Outbox rows not routed yet, oldest first, with their finding's rule and severity."""
    q = (sa.select(outbox.c.id, outbox.c.finding_id, outbox.c.event, outbox.c.created_at,
                   findings.c.rule, findings.c.severity)
         .select_from(outbox.outerjoin(findings, findings.c.id == outbox.c.finding_id))
         .where(outbox.c.status == "pending").order_by(outbox.c.id).limit(limit))
    with _read(store, "read the outbox") as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def route(store: Store, row: dict[str, Any], plan: Sequence[Planned], now: datetime,
          note: str | None = None) -> int:
    """Insert the deliveries of one outbox row and mark it routed, in ONE transaction; returns how
    many were inserted (0 when another router got there first)."""
    try:
        with _tx(store, f"route notification {row['id']}") as conn:
            marked = conn.execute(outbox.update().where(outbox.c.id == row["id"], outbox.c.status == "pending")
                                  .values(status="routed", last_error=note)).rowcount
            if not marked:
                return 0
            have = {(r.route, r.channel) for r in conn.execute(
                sa.select(deliveries.c.route, deliveries.c.channel).where(deliveries.c.outbox_id == row["id"]))}
            rows = [dict(outbox_id=row["id"], finding_id=row["finding_id"], event=row["event"], route=p.route,
                         channel=p.channel, status=p.status, attempts=0, next_attempt_at=now, created_at=now)
                    for p in plan if (p.route, p.channel) not in have]
            if rows:
                conn.execute(deliveries.insert(), rows)
            return len(rows)
    except IntegrityError:  # a concurrent router inserted the same deliveries: theirs stand
        return 0


def give_up_on_outbox(store: Store, outbox_id: int, error: str) -> None:
    with _tx(store, f"update notification {outbox_id}") as conn:
        conn.execute(outbox.update().where(outbox.c.id == outbox_id).values(status="dead", last_error=error))


# --- immediate deliveries ----------------------------------------------------------------------------
def due(store: Store, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
    q = (sa.select(deliveries).where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
         .order_by(deliveries.c.id).limit(limit))
    with _read(store, "read the deliveries") as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def next_due(store: Store) -> datetime | None:
    """When the sender has work next: the earliest pending delivery, or an unrouted outbox row."""
    with _read(store, "read the deliveries") as conn:
        times = [conn.execute(sa.select(sa.func.min(deliveries.c.next_attempt_at))
                              .where(deliveries.c.status == "pending")).scalar(),
                 conn.execute(sa.select(sa.func.min(outbox.c.created_at))
                              .where(outbox.c.status == "pending")).scalar()]
    found = [t for t in times if t is not None]  # min() keeps the column type: aware UTC datetimes
    return min(found) if found else None


def mark_sent(store: Store, delivery_id: int, message_id: str, now: datetime) -> None:
    with _tx(store, f"mark delivery {delivery_id} sent") as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(
            status="sent", sent_at=now, message_id=message_id, attempts=deliveries.c.attempts + 1,
            last_error=None))


def mark_failed(store: Store, delivery_id: int, error: str, retry_at: datetime | None) -> None:
    """Record a failed attempt; ``retry_at`` None means give up (dead letter, error kept)."""
    values: dict[str, Any] = {"attempts": deliveries.c.attempts + 1, "last_error": error}
    if retry_at is None:
        values["status"] = "dead"
    else:
        values["next_attempt_at"] = retry_at
    with _tx(store, f"record a failed delivery {delivery_id}") as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(**values))


def first_message_ids(store: Store, finding_ids: Iterable[int]) -> dict[int, str]:
    """The Message-ID of the first email sent about each finding (immediate or digest), for threading."""
    ids = sorted(set(finding_ids))
    if not ids:
        return {}
    q = (sa.select(deliveries.c.finding_id, deliveries.c.message_id)
         .where(deliveries.c.finding_id.in_(ids), deliveries.c.channel == "email",
                deliveries.c.status == "sent", deliveries.c.message_id.is_not(None))
         .order_by(deliveries.c.sent_at, deliveries.c.id))
    out: dict[int, str] = {}
    with _read(store, "read the deliveries") as conn:
        for r in conn.execute(q):
            out.setdefault(int(r.finding_id), str(r.message_id))
    return out


# --- digests -----------------------------------------------------------------------------------------
def queued(store: Store, route_name: str, channel: str) -> list[dict[str, Any]]:
    q = (sa.select(deliveries).where(deliveries.c.route == route_name, deliveries.c.channel == channel,
                                     deliveries.c.status == "queued").order_by(deliveries.c.id))
    with _read(store, "read the deliveries") as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def last_digest(store: Store, route_name: str, channel: str) -> dict[str, Any] | None:
    q = (sa.select(digests).where(digests.c.route == route_name, digests.c.channel == channel)
         .order_by(digests.c.seq.desc()).limit(1))
    with _read(store, "read the digests") as conn:
        row = conn.execute(q).first()
    return dict(row._mapping) if row else None


def grown(store: Store, route_name: str, channel: str) -> list[dict[str, Any]]:
    """Active findings this route and channel already told about (a sent delivery) whose count grew
    past what the last digest mentioning them said; each with ``previous_count``. Counts, not
    clocks, decide: an update committed while a digest was being sent is in the next one."""
    told = (sa.select(deliveries.c.finding_id).where(deliveries.c.route == route_name,
                                                     deliveries.c.channel == channel,
                                                     deliveries.c.status == "sent"))
    q = (sa.select(findings.c.id, findings.c.count)
         .where(findings.c.id.in_(told), findings.c.status.in_(ACTIVE_STATUSES)).order_by(findings.c.id))
    out = []
    with _read(store, "read the findings") as conn:
        for f in conn.execute(q):
            prev = conn.execute(
                sa.select(digest_items.c.count)
                .select_from(digest_items.join(digests, digests.c.id == digest_items.c.digest_id))
                .where(digest_items.c.finding_id == f.id, digests.c.route == route_name,
                       digests.c.channel == channel)
                .order_by(digests.c.seq.desc()).limit(1)).scalar()
            if prev is None or f.count > prev:
                out.append({"finding_id": int(f.id), "previous_count": prev})
    return out


def record_digest(store: Store, route_name: str, channel: str, seq: int, message_id: str, now: datetime,
                  items: Sequence[dict[str, Any]], delivery_ids: Sequence[int]) -> int:
    """Record a sent digest, what it said, and mark the deliveries it carried sent: ONE transaction."""
    with _tx(store, f"record the digest of route {route_name}") as conn:
        did = int(conn.execute(digests.insert().values(route=route_name, channel=channel, seq=seq,
                                                       message_id=message_id, sent_at=now))
                  .inserted_primary_key[0])  # type: ignore[index]
        if items:
            conn.execute(digest_items.insert(), [dict(digest_id=did, finding_id=i["finding_id"], change=i["change"],
                                                      count=i["count"], distinct_values=i["distinct_values"])
                                                 for i in items])
        if delivery_ids:
            conn.execute(deliveries.update().where(deliveries.c.id.in_(list(delivery_ids)),
                                                   deliveries.c.status == "queued")
                         .values(status="sent", sent_at=now, message_id=message_id, digest_id=did,
                                 attempts=deliveries.c.attempts + 1, last_error=None))
        return did


def note_digest_failure(store: Store, delivery_ids: Sequence[int], error: str) -> None:
    """A digest could not be sent: its deliveries stay queued for the next one, the error shown."""
    if not delivery_ids:
        return
    with _tx(store, "record a failed digest") as conn:
        conn.execute(deliveries.update().where(deliveries.c.id.in_(list(delivery_ids)))
                     .values(attempts=deliveries.c.attempts + 1, last_error=error))


# --- the `outbox` command ------------------------------------------------------------------------------
def listing(store: Store, status: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(deliveries).order_by(deliveries.c.id)
    if status:
        q = q.where(deliveries.c.status == status)
    with _read(store, "read the deliveries") as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def unrouted_count(store: Store) -> int:
    with _read(store, "read the outbox") as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(outbox)
                                .where(outbox.c.status == "pending")).scalar() or 0)


def retry(store: Store, ids: Sequence[int] | None, now: datetime) -> list[int]:
    """Dead or pending deliveries -> pending and due now (attempts and last error kept); ``ids``
    None means every dead one. Raises StoreError naming an id that is missing or not retryable."""
    with _tx(store, "retry deliveries") as conn:
        if ids is None:
            chosen = [int(i) for i in conn.execute(sa.select(deliveries.c.id).where(deliveries.c.status == "dead"))
                      .scalars()]
        else:
            found = {int(r.id): r.status for r in conn.execute(
                sa.select(deliveries.c.id, deliveries.c.status).where(deliveries.c.id.in_(list(ids))))}
            for i in ids:
                if i not in found:
                    raise StoreError(f"there is no delivery {i}. `usagewatch outbox list` shows them.")
                if found[i] not in ("dead", "pending"):
                    raise StoreError(f"delivery {i} is {found[i]}; only dead or pending deliveries can be retried.")
            chosen = list(ids)
        if chosen:
            conn.execute(deliveries.update().where(deliveries.c.id.in_(chosen))
                         .values(status="pending", next_attempt_at=now))
        return sorted(chosen)
