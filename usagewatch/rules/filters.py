"""Event filters of a rule, compiled once (globs -> one regex each) because they run per event."""

from __future__ import annotations

import fnmatch
import re

from usagewatch.model import NormalizedEvent
from usagewatch.rules.schema import RuleFilter


def _globs(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class CompiledFilter:
    def __init__(self, spec: RuleFilter):
        self._users = _globs(spec.users)
        self._not_users = _globs(spec.exclude_users)
        self._dbs = _globs(spec.databases)
        self._not_dbs = _globs(spec.exclude_databases)
        self._kinds = frozenset(k.lower() for k in spec.statements) or None

    def __call__(self, ne: NormalizedEvent) -> bool:
        user = ne.event.user or ""
        db = ne.event.database or ""
        if self._kinds is not None and ne.query.kind not in self._kinds:
            return False
        if self._users is not None and not self._users.match(user):
            return False
        if self._not_users is not None and self._not_users.match(user):
            return False
        if self._dbs is not None and not self._dbs.match(db):
            return False
        if self._not_dbs is not None and self._not_dbs.match(db):
            return False
        return True
