"""``repeated_identical``: the same query with the same values, run again and again by one group:
a result that could be saved or scheduled instead of recomputed."""

from __future__ import annotations

import hashlib

from usagewatch.model import FindingUpdate, NormalizedEvent
from usagewatch.rules.kinds.base import KeyWindow, WindowedKind, WindowParams, kinds


def values_digest(ne: NormalizedEvent) -> str:
    joined = "\x1f".join("\x00" if lit.value is None else lit.value for lit in ne.query.literals)
    return hashlib.blake2b(joined.encode("utf-8", "replace"), digest_size=8).hexdigest()


@kinds.register("repeated_identical")
class RepeatedIdentical(WindowedKind):
    Params = WindowParams

    def key(self, ne: NormalizedEvent) -> str:
        return f"{self._key_of(ne)} values={values_digest(ne)}"

    def holds(self, w: KeyWindow) -> bool:
        return len(w) >= self.params.min_runs

    def describe(self, w: KeyWindow, update: FindingUpdate) -> None:
        update.distinct_values = 1
        update.details["suggested_sql"] = update.normalized_sql or ""
