"""What people do with findings: acknowledge, mark as coached, resolve, dismiss as not useful;
each recorded with who, when and a note. And what came of it: effectiveness after coaching,
per-rule outcomes, and the service levels the support team set itself."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usagewatch.errors import StoreError
from usagewatch.store.tables import ACTIVE_STATUSES, finding_days, finding_events, findings

#: action -> (status it leads to, statuses it may come from)
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "acknowledged": ("acknowledged", ("open",)),
    "coached": ("coached", ("open", "acknowledged")),
    "resolved": ("resolved", ACTIVE_STATUSES),
    "dismissed": ("dismissed", ACTIVE_STATUSES),
}
FALSE_POSITIVE_FLAG = 0.3  # a rule with more dismissed findings than this is flagged
FALSE_POSITIVE_MIN = 5  # ... once it has at least this many findings


def record(conn: Connection, finding_id: int, action: str, actor: str, at: datetime, note: str | None = None) -> None:
    conn.execute(finding_events.insert().values(finding_id=finding_id, action=action, actor=actor, at=at, note=note))


def transition(conn: Connection, finding_id: int, action: str, actor: str, now: datetime,
               note: str | None = None) -> None:
    """Move a finding by ``action``; a repeated action is a no-op, an impossible one an error."""
    if action not in ACTIONS:
        raise StoreError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    row = conn.execute(sa.select(findings).where(findings.c.id == finding_id)).first()
    if row is None:
        raise StoreError(f"there is no finding {finding_id}. `usagewatch findings list` shows them.")
    m = row._mapping
    status, allowed = ACTIONS[action]
    if m["status"] == status:
        return
    if m["status"] not in allowed:
        raise StoreError(f"finding {finding_id} is {m['status']}; it cannot be marked {action}.")
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if action == "acknowledged":
        values["acknowledged_at"] = now
    elif action == "coached":
        values.update(coached_at=now, count_at_coaching=m["count"], acknowledged_at=m["acknowledged_at"] or now)
    else:
        values.update(resolved_at=now, acknowledged_at=m["acknowledged_at"] or now)
    # the status test is repeated in the UPDATE, so of two concurrent clicks only one changes the row
    # (and records history); the other sees zero rows changed and, like a repeated click, does nothing
    changed = conn.execute(findings.update().where(findings.c.id == finding_id, findings.c.status.in_(allowed))
                           .values(**values)).rowcount
    if changed:
        record(conn, finding_id, action, actor, now, note)


def add_runs(conn: Connection, finding_id: int, day: str, runs: int) -> None:
    """Count ``runs`` more queries of a finding on ``day`` (for before/after comparisons)."""
    if runs <= 0:
        return
    done = conn.execute(finding_days.update().where(finding_days.c.finding_id == finding_id,
                                                    finding_days.c.day == day)
                        .values(runs=finding_days.c.runs + runs)).rowcount
    if not done:
        conn.execute(finding_days.insert().values(finding_id=finding_id, day=day, runs=runs))


def history(conn: Connection, finding_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(finding_events).where(finding_events.c.finding_id == finding_id)
                        .order_by(finding_events.c.at, finding_events.c.id))
    return [{"at": r.at.isoformat(), "actor": r.actor, "action": r.action, "note": r.note} for r in rows]


def effectiveness(conn: Connection, finding: dict[str, Any], days: int = 7) -> dict[str, Any] | None:
    """Runs in the ``days`` before and after coaching (by the queries' own dates), or None."""
    coached = finding.get("coached_at")
    if not coached:
        return None
    # The count at coaching splits runs exactly into before and after; the daily counts (by the
    # queries' own dates) only trim what lies outside the ``days`` on either side.
    at = datetime.fromisoformat(coached)
    window_start = (at - timedelta(days=days)).date().isoformat()
    window_end = (at + timedelta(days=days)).date().isoformat()
    rows = conn.execute(sa.select(finding_days.c.day, finding_days.c.runs)
                        .where(finding_days.c.finding_id == finding["id"])).all()
    at_coaching = finding.get("count_at_coaching") or 0
    before = at_coaching - sum(r.runs for r in rows if r.day < window_start)
    after = finding["count"] - at_coaching - sum(r.runs for r in rows if r.day > window_end)
    before, after = max(before, 0), max(after, 0)
    return {"days": days, "before": before, "after": after, "recurred": after > 0,
            "summary": f"{finding['user']}: {before} runs in the {days} days before coaching, "
                       f"{after} in the {days} days after"}


def rule_outcomes(conn: Connection) -> list[dict[str, Any]]:
    """Per rule: findings, acknowledged, coached, recurred after coaching, false positives."""
    rows = conn.execute(sa.select(findings.c.rule, findings.c.status, findings.c.acknowledged_at,
                                  findings.c.coached_at, findings.c.count, findings.c.count_at_coaching)).all()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        r = row._mapping
        o = out.setdefault(r["rule"], {"rule": r.rule, "findings": 0, "acknowledged": 0, "coached": 0,
                                    "recurred": 0, "false_positives": 0})
        o["findings"] += 1
        o["acknowledged"] += r["acknowledged_at"] is not None
        o["coached"] += r["coached_at"] is not None
        o["recurred"] += r["coached_at"] is not None and r["count"] > (r["count_at_coaching"] or r["count"])
        o["false_positives"] += r["status"] == "dismissed"
    for o in out.values():
        o["false_positive_rate"] = round(o["false_positives"] / o["findings"], 3)
        o["flagged"] = o["findings"] >= FALSE_POSITIVE_MIN and o["false_positive_rate"] > FALSE_POSITIVE_FLAG
    return sorted(out.values(), key=lambda o: o["rule"])


def _stats(durations: list[float]) -> dict[str, float | None]:
    return {"median_hours": round(statistics.median(durations) / 3600, 2) if durations else None,
            "worst_hours": round(max(durations) / 3600, 2) if durations else None}


def sla_report(conn: Connection, since: datetime, now: datetime, ack_within: timedelta,
               resolve_within: timedelta) -> dict[str, Any]:
    """For findings opened since ``since``: how many were acknowledged / resolved within the service
    levels, median and worst times, and which active ones are overdue now."""
    rows = [r._mapping for r in conn.execute(sa.select(findings).where(findings.c.created_at >= since)
                                             .order_by(findings.c.id))]
    ack_times = [(r["acknowledged_at"] - r["created_at"]).total_seconds() for r in rows if r["acknowledged_at"]]
    res_times = [(r["resolved_at"] - r["created_at"]).total_seconds()
                 for r in rows if r["resolved_at"] and r["status"] == "resolved"]
    overdue = []
    for r in rows:
        if r["status"] not in ACTIVE_STATUSES:
            continue
        age = now - r["created_at"]
        if r["acknowledged_at"] is None and age > ack_within:
            overdue.append({"id": r["id"], "rule": r["rule"], "user": r["user"], "late": "acknowledge",
                            "age_hours": round(age.total_seconds() / 3600, 1)})
        elif age > resolve_within:
            overdue.append({"id": r["id"], "rule": r["rule"], "user": r["user"], "late": "resolve",
                            "age_hours": round(age.total_seconds() / 3600, 1)})
    return {
        "since": since.isoformat(), "findings": len(rows),
        "acknowledged": len(ack_times),
        "acknowledged_in_time": sum(t <= ack_within.total_seconds() for t in ack_times),
        "acknowledge": _stats(ack_times),
        "resolved": len(res_times),
        "resolved_in_time": sum(t <= resolve_within.total_seconds() for t in res_times),
        "resolve": _stats(res_times),
        "overdue": overdue,
    }
