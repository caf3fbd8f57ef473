"""Event filters of a rule, compiled once (globs -> one regex each) because they run per event."""

from __future__ import annotations

import fnmatch
import re
from typing import Callable
from zoneinfo import ZoneInfo

from usagewatch.model import NormalizedEvent, NormalizedQuery, QueryEvent
from usagewatch.rules.schema import RuleFilter, parse_hours


def _globs(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CompiledFilter:
    """A rule's filter as one predicate; checks are ordered cheapest first."""

    def __init__(self, spec: RuleFilter):
        self._users = _globs(spec.users)
        self._not_users = _globs(spec.exclude_users + spec.allow)
        self._dbs = _globs(spec.databases)
        self._not_dbs = _globs(spec.exclude_databases)
        self._tables = _globs(spec.tables)
        self._not_tables = _globs(spec.exclude_tables)
        self._kinds = frozenset(k.lower() for k in spec.statements) or None
        self._sources = frozenset(spec.sources) or None
        self._hours = parse_hours(spec.hours) if spec.hours else None
        self._days = frozenset(_WEEKDAYS.index(d) for d in spec.weekdays) or None
        self._zone = ZoneInfo(spec.timezone)

    def __call__(self, ne: NormalizedEvent) -> bool:
        return self.shape_ok(ne.query) and self.event_ok(ne.event)

    def shape_ok(self, q: NormalizedQuery) -> bool:
        """The checks that depend only on the query's shape (statement kind, tables): the engine
        runs them once per shape, not once per event."""
        if self._kinds is not None and q.kind not in self._kinds:
            return False
        if self._tables is not None and not any(self._tables.match(t) for t in q.tables):
            return False
        if self._not_tables is not None and any(self._not_tables.match(t) for t in q.tables):
            return False
        return True

    def event_check(self) -> Callable[[QueryEvent], bool] | None:
        """The per-event part (users, databases, source, hours), or None when the filter has none,
        so the engine skips the call altogether."""
        parts = (self._sources, self._users, self._not_users, self._dbs, self._not_dbs, self._hours, self._days)
        if all(p is None for p in parts):
            return None
        return self.event_ok

    def event_ok(self, ev: QueryEvent) -> bool:
        if self._sources is not None and ev.source not in self._sources:
            return False
        user = ev.user or ""
        if self._users is not None and not self._users.match(user):
            return False
        if self._not_users is not None and self._not_users.match(user):
            return False
        db = ev.database or ""
        if self._dbs is not None and not self._dbs.match(db):
            return False
        if self._not_dbs is not None and self._not_dbs.match(db):
            return False
        if self._hours is not None or self._days is not None:
            local = ev.ts.astimezone(self._zone)
            if self._days is not None and local.weekday() not in self._days:
                return False
            if self._hours is not None:
                minute, (start, end) = local.hour * 60 + local.minute, self._hours
                inside = start <= minute < end if start <= end else (minute >= start or minute < end)
                if not inside:
                    return False
        return True
