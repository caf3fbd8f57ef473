"""``repeated_identical``: the same query with the same values, run again and again by one group:
a result that could be saved or scheduled instead of recomputed."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from pydantic import Field, field_validator

from usagewatch.durations import Duration
from usagewatch.model import FindingUpdate, NormalizedEvent
from usagewatch.rules.kinds.base import GROUP_FIELDS, KeyWindow, Params, WindowedKind, group_value, kinds


class RepeatedParams(Params):
    group_by: list[str] = Field(default_factory=lambda: ["user", "fingerprint"])
    window: Duration = timedelta(hours=1)
    min_runs: int = Field(default=20, ge=2)

    @field_validator("group_by")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [f for f in v if f not in GROUP_FIELDS]
        if bad:
            raise ValueError(f"cannot group by {bad[0]!r}; choose from {', '.join(GROUP_FIELDS)}")
        return v


def values_digest(ne: NormalizedEvent) -> str:
    joined = "\x1f".join("\x00" if lit.value is None else lit.value for lit in ne.query.literals)
    return hashlib.blake2b(joined.encode("utf-8", "replace"), digest_size=8).hexdigest()


@kinds.register("repeated_identical")
class RepeatedIdentical(WindowedKind):
    Params = RepeatedParams
    params: RepeatedParams

    def __init__(self, spec, params):  # type: ignore[no-untyped-def]
        super().__init__(spec, params)
        self.window = params.window.total_seconds()

    def key(self, ne: NormalizedEvent) -> str:
        base = " ".join(f"{f}={group_value(ne, f)}" for f in self.params.group_by)
        return f"{base} values={values_digest(ne)}"

    def holds(self, w: KeyWindow) -> bool:
        return len(w.entries) >= self.params.min_runs

    def describe(self, w: KeyWindow, update: FindingUpdate) -> None:
        update.distinct_values = 1
        update.details["suggested_sql"] = update.normalized_sql or ""
