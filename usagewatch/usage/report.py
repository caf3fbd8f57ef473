"""The usage report: everything `report usage` (table, JSON, HTML), the web console and the status
email show, built once from the stored aggregates by :func:`build`.

One builder for every view, so the console, the email and the command never disagree. The
segments are defined in docs/usage.md; the thresholds are ``usage.segments`` of the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from usagewatch.config import Config
from usagewatch.durations import format_duration
from usagewatch.errors import StoreError
from usagewatch.store import Store
from usagewatch.store import usage as q
from usagewatch.store.tables import HIST_COLUMNS
from usagewatch.usage.aggregate import percentile
from usagewatch.usage.segments import NO_USER, Pareto, Segment, heavy_of, pareto_of, segments_of

TOP = 10
NO_TEAM = "(no team)"


@dataclass
class UserUsage:
    """One user's period: what the per-user table shows."""

    user: str
    team: str | None
    queries: int
    errors: int
    time_s: float
    p95_ms: float | None
    max_ms: float
    rows: int
    bytes: int
    cost: float
    share: float  # of the period's measure (cost, else time, else queries)
    active_days: int
    open_findings: int
    first_seen: datetime | None
    segments: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.queries if self.queries else 0.0


@dataclass
class FingerprintUsage:
    fingerprint: str
    sql: str
    kind: str
    queries: int
    errors: int
    time_s: float
    p95_ms: float | None
    max_ms: float
    bytes: int
    cost: float
    users: list[tuple[str, int]]  # the users running it most (user, queries)
    user_count: int


@dataclass
class TableUsage:
    table: str
    queries: int
    errors: int
    time_s: float
    user_count: int
    users: list[tuple[str, int]]


@dataclass
class HotSpot:
    user: str
    fingerprint: str
    sql: str
    queries: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.queries if self.queries else 0.0


@dataclass
class TeamUsage:
    team: str
    users: int
    queries: int
    errors: int
    time_s: float
    p95_ms: float | None
    cost: float


@dataclass
class Point:
    start: datetime
    queries: int
    errors: int
    time_s: float
    cost: float


@dataclass
class UsageReport:
    start: datetime
    end: datetime
    since: timedelta
    currency: str
    priced: bool
    measure: str  # what ranks users and fingerprints: "cost", "time" or "queries"
    totals: dict[str, Any]
    pareto: Pareto
    segments: list[Segment]
    users: list[UserUsage]
    teams: list[TeamUsage]
    fingerprints: list[FingerprintUsage]
    tables: list[TableUsage]
    hot_spots: list[HotSpot]
    series: list[Point]
    granularity: str  # "hour" or "day"
    new_heavy: list[str]  # heavy now, not heavy in the period before (the status email's highlight)

    @property
    def period(self) -> str:
        return format_duration(self.since)

    def segment(self, key: str) -> Segment:
        return next(s for s in self.segments if s.key == key)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON contract (docs/usage.md)."""
        from usagewatch.usage.contract import report_json

        return report_json(self)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _hist(row: dict[str, Any]) -> list[int]:
    return [int(row[c]) for c in HIST_COLUMNS]


def _p95(row: dict[str, Any]) -> float | None:
    """p95 from the histogram, never above the slowest query (exact when they all took as long)."""
    p = percentile(_hist(row), 0.95)
    return None if p is None else min(p, float(row["max_ms"]))


def build(store: Store, cfg: Config, since: timedelta, now: datetime | None = None) -> UsageReport:
    """The usage of the ``since`` before ``now`` (default: the wall clock), with the segments."""
    now = now or datetime.now(timezone.utc)
    start, end = now - since, now
    ucfg, seg = cfg.usage, cfg.usage.segments
    cost_of = ucfg.cost.of
    recent_start = end - seg.recent
    base_start = recent_start - seg.baseline
    earliest = min(start - since, base_start)
    try:
        with store.engine.connect() as conn:
            per_user = q.totals_by(conn, ["user"], start, end)
            activity = q.activity(conn, earliest, end)
            first = q.first_seen(conn)
            per_fp = q.totals_by(conn, ["fingerprint"], start, end)
            table_rows = q.tables(conn, start, end)
            hot = q.error_hot_spots(conn, start, end, TOP)
            open_by_user = q.open_findings_by_user(conn)
            total_time = sum(float(r["duration_ms"]) for r in per_user)
            measure = "cost" if ucfg.cost.priced else ("time" if total_time > 0 else "queries")

            def value(r: dict[str, Any]) -> float:
                if measure == "cost":
                    return cost_of(float(r["duration_ms"]), float(r["bytes"]))
                return float(r["duration_ms"]) if measure == "time" else float(r["queries"])

            per_fp.sort(key=lambda r: (-value(r), r["fingerprint"]))
            top_fps = per_fp[:TOP]
            fp_users = q.totals_by(conn, ["fingerprint", "user"], start, end,
                                   q.usage_queries.c.fingerprint.in_([r["fingerprint"] for r in top_fps])) if top_fps else []
            sql_of = q.shapes(conn, {r["fingerprint"] for r in top_fps} | {h["fingerprint"] for h in hot})
    except SQLAlchemyError as exc:  # a database at an unknown revision, or gone
        raise StoreError(f"could not read the usage statistics: {exc.__class__.__name__}: "
                         f"{getattr(exc, 'orig', None) or exc}") from None

    # --- per user ---
    days: dict[str, set[str]] = {}
    recent_n: dict[str, int] = {}
    base_n: dict[str, int] = {}
    prev_value: dict[str, float] = {}
    series_raw: dict[datetime, list[float]] = {}
    hourly = since <= timedelta(days=3)
    for r in activity:
        b = _aware(r["bucket"])
        user = r["user"]
        n = int(r["queries"])
        if b >= recent_start:
            recent_n[user] = recent_n.get(user, 0) + n
        elif b >= base_start:
            base_n[user] = base_n.get(user, 0) + n
        if start - since <= b < start:
            prev_value[user] = prev_value.get(user, 0.0) + value(r)
        if b >= start:
            days.setdefault(user, set()).add(b.date().isoformat())
            key = b if hourly and r["grain"] == "h" else b.replace(hour=0, minute=0, second=0, microsecond=0)
            p = series_raw.setdefault(key, [0, 0, 0.0, 0.0])
            p[0] += n
            p[1] += int(r["errors"])
            p[2] += float(r["duration_ms"]) / 1000.0
            p[3] += cost_of(float(r["duration_ms"]), float(r["bytes"]))

    total_value = sum(value(r) for r in per_user)
    users = []
    for r in per_user:
        name = r["user"] or NO_USER
        users.append(UserUsage(
            user=name, team=ucfg.team_of(r["user"]), queries=int(r["queries"]), errors=int(r["errors"]),
            time_s=float(r["duration_ms"]) / 1000.0, p95_ms=_p95(r), max_ms=float(r["max_ms"]), rows=int(r["rows"]),
            bytes=int(r["bytes"]), cost=cost_of(float(r["duration_ms"]), float(r["bytes"])),
            share=value(r) / total_value if total_value else 0.0, active_days=len(days.get(r["user"], ())),
            open_findings=open_by_user.get(r["user"], 0), first_seen=first.get(r["user"])))
    users.sort(key=lambda u: (-u.share, -u.queries, u.user))

    pareto = pareto_of(users, seg.heavy_share, measure)
    segments = segments_of(users, pareto, cfg, start, recent_n, base_n, since)
    heavy = set(segments[0].members)
    prev_heavy = heavy_of(prev_value, seg.heavy_share)
    new_heavy = [u.user for u in users if u.user in heavy and (u.user if u.user != NO_USER else "") not in prev_heavy]

    # --- fingerprints, tables, hot spots, teams ---
    by_fp: dict[str, list[dict[str, Any]]] = {}
    for r in fp_users:
        by_fp.setdefault(r["fingerprint"], []).append(r)
    fingerprints = []
    for r in top_fps:
        runners = sorted(by_fp.get(r["fingerprint"], []), key=lambda x: (-int(x["queries"]), x["user"]))
        sql, kind = sql_of.get(r["fingerprint"], ("", ""))
        fingerprints.append(FingerprintUsage(
            fingerprint=r["fingerprint"], sql=sql, kind=kind, queries=int(r["queries"]), errors=int(r["errors"]),
            time_s=float(r["duration_ms"]) / 1000.0, p95_ms=_p95(r), max_ms=float(r["max_ms"]), bytes=int(r["bytes"]),
            cost=cost_of(float(r["duration_ms"]), float(r["bytes"])),
            users=[(x["user"] or NO_USER, int(x["queries"])) for x in runners[:5]], user_count=len(runners)))
    tables = _tables(table_rows)
    hot_spots = [HotSpot(h["user"] or NO_USER, h["fingerprint"], sql_of.get(h["fingerprint"], ("", ""))[0],
                         int(h["queries"]), int(h["errors"])) for h in hot]
    teams = _teams(per_user, ucfg.team_of, cost_of)
    series = _series(series_raw, start, end, hourly)

    hist_total: dict[str, float] = {c: sum(int(r[c]) for r in per_user) for c in HIST_COLUMNS}
    hist_total["max_ms"] = max((float(r["max_ms"]) for r in per_user), default=0.0)
    totals = {
        "queries": sum(u.queries for u in users), "errors": sum(u.errors for u in users),
        "time_s": sum(u.time_s for u in users), "cost": sum(u.cost for u in users), "users": len(users),
        "rows": sum(u.rows for u in users), "bytes": sum(u.bytes for u in users),
        "p95_ms": _p95(hist_total), "max_ms": hist_total["max_ms"], "fingerprints": len(per_fp),
    }
    return UsageReport(start=start, end=end, since=since, currency=ucfg.cost.currency, priced=ucfg.cost.priced,
                       measure=measure, totals=totals, pareto=pareto, segments=segments, users=users, teams=teams,
                       fingerprints=fingerprints, tables=tables, hot_spots=hot_spots, series=series,
                       granularity="hour" if hourly else "day", new_heavy=new_heavy)


def _tables(rows: list[dict[str, Any]]) -> list[TableUsage]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["table"], []).append(r)
    out = []
    for table, rs in by.items():
        rs.sort(key=lambda r: (-int(r["queries"]), r["user"]))
        out.append(TableUsage(table, sum(int(r["queries"]) for r in rs), sum(int(r["errors"]) for r in rs),
                              sum(float(r["duration_ms"]) for r in rs) / 1000.0, len(rs),
                              [(r["user"] or NO_USER, int(r["queries"])) for r in rs[:5]]))
    out.sort(key=lambda t: (-t.queries, t.table))
    return out[:TOP]


def _teams(per_user: list[dict[str, Any]], team_of: Any, cost_of: Any) -> list[TeamUsage]:
    acc: dict[str, dict[str, Any]] = {}
    for r in per_user:
        team = team_of(r["user"]) or NO_TEAM
        a = acc.setdefault(team, {"users": 0, "queries": 0, "errors": 0, "ms": 0.0, "bytes": 0.0, "max_ms": 0.0,
                                  "hist": [0] * len(HIST_COLUMNS)})
        a["max_ms"] = max(a["max_ms"], float(r["max_ms"]))
        a["users"] += 1
        a["queries"] += int(r["queries"])
        a["errors"] += int(r["errors"])
        a["ms"] += float(r["duration_ms"])
        a["bytes"] += float(r["bytes"])
        a["hist"] = [x + y for x, y in zip(a["hist"], _hist(r), strict=True)]
    out = [TeamUsage(t, a["users"], a["queries"], a["errors"], a["ms"] / 1000.0,
                     _p95({**dict(zip(HIST_COLUMNS, a["hist"], strict=True)), "max_ms": a["max_ms"]}),
                     cost_of(a["ms"], a["bytes"])) for t, a in acc.items()]
    out.sort(key=lambda t: (t.team == NO_TEAM, -t.time_s, -t.queries, t.team))
    return out


def _series(raw: dict[datetime, list[float]], start: datetime, end: datetime, hourly: bool) -> list[Point]:
    """One point per hour (periods up to 3 days) or per UTC day, empty ones included (for charts)."""
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    t = start.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        t = t.replace(hour=0)
    out = []
    while t < end:
        p = raw.get(t, [0, 0, 0.0, 0.0])
        out.append(Point(t, int(p[0]), int(p[1]), float(p[2]), float(p[3])))
        t += step
    return out
