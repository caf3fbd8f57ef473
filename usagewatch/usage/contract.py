"""The JSON contract of `usagewatch report usage --format json` (documented in docs/usage.md).

Kept apart from the report's dataclasses so that renaming a field in Python cannot silently change
what scripts read: every key is written out here. Times are ISO 8601 UTC, durations in seconds
(``time_s``) or milliseconds (``p95_ms``), costs in ``currency``; shares are 0..1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usagewatch.usage.report import UsageReport


#: bumped only when a key changes meaning or goes away (new keys may appear without it)
JSON_VERSION = 1


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def report_json(r: UsageReport) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "period": {"since": r.period, "start": r.start.isoformat(), "end": r.end.isoformat(),
                   "granularity": r.granularity},
        "cost": {"currency": r.currency, "priced": r.priced},
        "measure": r.measure,
        "totals": {"users": r.totals["users"], "queries": r.totals["queries"], "errors": r.totals["errors"],
                   "time_s": _r(r.totals["time_s"]), "cost": _r(r.totals["cost"], 6), "rows": r.totals["rows"],
                   "bytes": r.totals["bytes"], "p95_ms": _r(r.totals["p95_ms"]), "max_ms": _r(r.totals["max_ms"]),
                   "fingerprints": r.totals["fingerprints"]},
        "pareto": {"sentence": r.pareto.sentence, "measure": r.pareto.measure, "head_users": r.pareto.head,
                   "users": r.pareto.users, "user_share": _r(r.pareto.user_share, 4),
                   "value_share": _r(r.pareto.value_share, 4),
                   "curve": [[_r(x, 4), _r(y, 4)] for x, y in r.pareto.curve]},
        "segments": [{"key": s.key, "title": s.title, "definition": s.definition, "members": s.members}
                     for s in r.segments],
        "new_heavy_users": r.new_heavy,
        "users": [{"user": u.user, "team": u.team, "queries": u.queries, "errors": u.errors,
                   "error_rate": _r(u.error_rate, 4), "time_s": _r(u.time_s), "p95_ms": _r(u.p95_ms),
                   "max_ms": _r(u.max_ms),
                   "rows": u.rows, "bytes": u.bytes, "cost": _r(u.cost, 6), "share": _r(u.share, 4),
                   "active_days": u.active_days, "open_findings": u.open_findings,
                   "first_seen": u.first_seen.isoformat() if u.first_seen else None, "segments": u.segments}
                  for u in r.users],
        "teams": [{"team": t.team, "users": t.users, "queries": t.queries, "errors": t.errors,
                   "time_s": _r(t.time_s), "p95_ms": _r(t.p95_ms), "cost": _r(t.cost, 6)} for t in r.teams],
        "fingerprints": [{"fingerprint": f.fingerprint, "sql": f.sql, "kind": f.kind, "queries": f.queries,
                          "errors": f.errors, "time_s": _r(f.time_s), "p95_ms": _r(f.p95_ms), "max_ms": _r(f.max_ms),
                          "bytes": f.bytes,
                          "cost": _r(f.cost, 6), "user_count": f.user_count,
                          "users": [{"user": u, "queries": n} for u, n in f.users]} for f in r.fingerprints],
        "tables": [{"table": t.table, "queries": t.queries, "errors": t.errors, "time_s": _r(t.time_s),
                    "user_count": t.user_count, "users": [{"user": u, "queries": n} for u, n in t.users]}
                   for t in r.tables],
        "error_hot_spots": [{"user": h.user, "fingerprint": h.fingerprint, "sql": h.sql, "queries": h.queries,
                             "errors": h.errors, "error_rate": _r(h.error_rate, 4)} for h in r.hot_spots],
        "series": [{"start": p.start.isoformat(), "queries": p.queries, "errors": p.errors, "time_s": _r(p.time_s),
                    "cost": _r(p.cost, 6)} for p in r.series],
    }
