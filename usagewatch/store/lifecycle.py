"""What a finding update does to the stored findings: open, update, reopen after a cooldown, or
stay quiet; and whether its notification is held back by a silence.

One open finding per rule and key (a partial unique index). When the pattern comes back for a key
whose finding was resolved, the resolved finding is reopened and notified again once the rule's
cooldown has passed since the resolution (the new activity's event time against the resolution's
time); within the cooldown the resolved finding only records the activity, without an alert.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.model import FindingUpdate
from usagewatch.store.tables import ACTIVE_STATUSES, finding_days, finding_events, findings, outbox, silences
from usagewatch.store.transitions import add_runs, record


@dataclass
class CommitResult:
    new_findings: dict[int, str] = field(default_factory=dict)  # id -> title (opened or reopened)
    updated_findings: list[int] = field(default_factory=list)
    new_outbox: int = 0
    silenced: list[int] = field(default_factory=list)


def live_silences(conn: Connection, now: datetime) -> list[Any]:
    """The unexpired silences (id, rule glob, user glob), oldest first."""
    return list(conn.execute(sa.select(silences.c.id, silences.c.rule, silences.c.user)
                             .where(silences.c.expires_at > now).order_by(silences.c.id)).all())


def silence_for(live: list[Any], rule: str, user: str | None) -> int | None:
    """The id of the first of ``live`` silences matching this rule and user."""
    for r in live:
        if fnmatch.fnmatchcase(rule, r.rule) and fnmatch.fnmatchcase(user or "", r.user):
            return int(r.id)
    return None


def active_silence(conn: Connection, rule: str, user: str | None, now: datetime) -> int | None:
    """The id of an unexpired silence matching this rule and user."""
    return silence_for(live_silences(conn, now), rule, user)


def _notify(conn: Connection, fid: int, event: str, u: FindingUpdate, now: datetime, result: CommitResult) -> None:
    silence = active_silence(conn, u.rule, u.user, now)
    if silence is not None:
        conn.execute(findings.update().where(findings.c.id == fid).values(silenced_by=silence))
        result.silenced.append(fid)
        return
    conn.execute(outbox.insert().values(finding_id=fid, event=event, status="pending", attempts=0,
                                        next_attempt_at=now, created_at=now))
    result.new_outbox += 1


def _fields(u: FindingUpdate, now: datetime, howto_base: str) -> dict[str, Any]:
    return {
        "user": u.user, "database": u.database, "severity": u.severity, "last_seen": u.last_seen,
        "fingerprint": u.fingerprint, "sample_sql": u.sample_sql, "normalized_sql": u.normalized_sql,
        "varying": u.varying, "sample_values": u.sample_values, "title": u.title,
        "intervention": u.intervention, "howto": urljoin(howto_base, u.howto),
        "details": u.details, "updated_at": now,
    }


def _next_values(m: Any, u: FindingUpdate, fields: dict[str, Any]) -> dict[str, Any]:
    """The new row values of an existing finding ``m`` after update ``u``: the same episode
    replaces its counts (they are absolute), a new episode adds to what the finding had."""
    if m["episode"] == u.episode:
        base_count, base_distinct = m["base_count"], m["base_distinct"]
    else:  # the pattern came back: add the new episode to the finding
        base_count, base_distinct = m["count"], m["distinct_values"]
    return dict(episode=u.episode, base_count=base_count, base_distinct=base_distinct,
                count=base_count + u.count, distinct_values=base_distinct + u.distinct_values, **fields)


_BULK_COLUMNS = ("episode", "base_count", "base_distinct", "count", "distinct_values", "user", "database", "severity",
                 "last_seen", "fingerprint", "sample_sql", "normalized_sql", "varying", "sample_values", "title",
                 "intervention", "howto", "details", "updated_at")
_BULK_UPDATE = findings.update().where(findings.c.id == sa.bindparam("fid")).values(
    {c: sa.bindparam(f"v_{c}") for c in _BULK_COLUMNS})


def apply_updates(conn: Connection, updates: list[FindingUpdate], now: datetime, howto_base: str,
                  result: CommitResult) -> None:
    """Apply a batch's updates. Most are a firing pattern's new counts for a finding that is still
    active: those are found with one SELECT per 500 keys and written with one executemany UPDATE
    (one round of statements per batch instead of four per update: a replay of a busy log touches
    hundreds of firing findings per batch). The same SELECT tells the keys that never had a
    finding: those are opened in bulk (``_open_new``). Reopening and anything unusual (the same key
    twice in one batch) goes through ``apply_update`` one by one, in order."""
    keys = [(u.rule, u.key) for u in updates]
    if len(set(keys)) != len(keys):
        for u in updates:
            apply_update(conn, u, now, howto_base, result)
        return
    active: dict[tuple[str, str], Any] = {}
    known: set[tuple[str, str]] = set()  # keys with a finding in any status
    wanted = set(keys)
    names = sorted({k for _, k in keys})
    for i in range(0, len(names), 500):
        for r in conn.execute(sa.select(findings).where(findings.c.key.in_(names[i:i + 500]))):
            k = (r.rule, r.key)
            if k in wanted:
                known.add(k)
                if r.status in ACTIVE_STATUSES:
                    active[k] = r._mapping
    if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
        _open_new(conn, [u for u in updates if (u.rule, u.key) not in known], now, howto_base, result)
        updates = [u for u in updates if (u.rule, u.key) in known]
    bulk: list[dict[str, Any]] = []
    runs: list[tuple[int, str, int]] = []
    for u in updates:
        m = active.get((u.rule, u.key))
        if m is None:
            apply_update(conn, u, now, howto_base, result)
            continue
        values = _next_values(m, u, _fields(u, now, howto_base))
        bulk.append({"fid": m["id"], **{f"v_{c}": values[c] for c in _BULK_COLUMNS}})
        runs.append((m["id"], u.last_seen.date().isoformat(), values["count"] - m["count"]))
        result.updated_findings.append(m["id"])
    if bulk:
        conn.execute(_BULK_UPDATE, bulk)
    for fid, day, n in runs:
        add_runs(conn, fid, day, n)


def _open_new(conn: Connection, updates: list[FindingUpdate], now: datetime, howto_base: str,
              result: CommitResult) -> None:
    """Open a finding for each update (keys that never had one) with the rows and notifications
    ``apply_update`` makes one by one, in a few executemany statements: a replay of a busy log
    opens hundreds of findings per batch, each of them seven statements when made alone."""
    if not updates:
        return
    rows = [dict(rule=u.rule, key=u.key, episode=u.episode, status="open", count=u.count,
                 distinct_values=u.distinct_values, base_count=0, base_distinct=0, first_seen=u.first_seen,
                 created_at=now, **_fields(u, now, howto_base)) for u in updates]
    ids = [r.id for r in conn.execute(findings.insert().returning(findings.c.id, sort_by_parameter_order=True), rows)]
    conn.execute(finding_events.insert(), [dict(finding_id=fid, action="opened", actor="usagewatch", at=now, note=None)
                                           for fid in ids])
    days = [dict(finding_id=fid, day=u.last_seen.date().isoformat(), runs=u.count)
            for fid, u in zip(ids, updates, strict=True) if u.count > 0]
    if days:
        conn.execute(finding_days.insert(), days)
    live = live_silences(conn, now)
    pending = []
    for fid, u in zip(ids, updates, strict=True):
        result.new_findings[fid] = u.title
        silence = silence_for(live, u.rule, u.user)
        if silence is not None:  # as ``_notify``: the finding is kept, its alert held back
            conn.execute(findings.update().where(findings.c.id == fid).values(silenced_by=silence))
            result.silenced.append(fid)
        else:
            pending.append(dict(finding_id=fid, event="opened", status="pending", attempts=0,
                                next_attempt_at=now, created_at=now))
    if pending:
        conn.execute(outbox.insert(), pending)
        result.new_outbox += len(pending)


def apply_update(conn: Connection, u: FindingUpdate, now: datetime, howto_base: str, result: CommitResult) -> None:
    fields = _fields(u, now, howto_base)
    same_key = (findings.c.rule == u.rule) & (findings.c.key == u.key)
    row = conn.execute(sa.select(findings).where(same_key, findings.c.status.in_(ACTIVE_STATUSES))).first()
    reopen = False
    if row is None:
        row = conn.execute(sa.select(findings).where(same_key, findings.c.resolved_at.is_not(None))
                           .order_by(findings.c.resolved_at.desc()).limit(1)).first()
        if row is None:
            fid = conn.execute(findings.insert().values(
                rule=u.rule, key=u.key, episode=u.episode, status="open", count=u.count,
                distinct_values=u.distinct_values, base_count=0, base_distinct=0,
                first_seen=u.first_seen, created_at=now, **fields,
            )).inserted_primary_key[0]  # type: ignore[index]
            result.new_findings[fid] = u.title
            record(conn, fid, "opened", "usagewatch", now)
            add_runs(conn, fid, u.last_seen.date().isoformat(), u.count)
            _notify(conn, fid, "opened", u, now, result)
            return
        reopen = u.last_seen - row._mapping["resolved_at"] >= timedelta(seconds=u.cooldown)
    m = row._mapping
    values = _next_values(m, u, fields)
    if reopen:
        values.update(status="open", resolved_at=None)
    conn.execute(findings.update().where(findings.c.id == m["id"]).values(**values))
    add_runs(conn, m["id"], u.last_seen.date().isoformat(), values["count"] - m["count"])
    if reopen:
        result.new_findings[m["id"]] = u.title
        record(conn, m["id"], "reopened", "usagewatch", now)
        _notify(conn, m["id"], "reopened", u, now, result)
    else:
        result.updated_findings.append(m["id"])
