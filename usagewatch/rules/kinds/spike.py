"""``spike``: a group's volume in the current window against its own rolling baseline: a user who
normally runs 40 queries an hour runs 2,000 (a runaway script, a dashboard on a one-second refresh,
a new hire exploring). Event time throughout, in fixed buckets of ``window``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator, model_validator

from usagewatch.durations import Duration
from usagewatch.model import FindingUpdate, NormalizedEvent
from usagewatch.rules.kinds.base import KindParams, RuleKind, check_group_fields, dt_of, event_ts, kinds, shared_key_function


class SpikeParams(KindParams):
    group_by: list[str] = Field(default_factory=lambda: ["user"])
    window: Duration = Field(default=timedelta(hours=1), description="Bucket size: the volume compared.")
    baseline: Duration = Field(default=timedelta(days=7), description="How far back the baseline reaches.")
    factor: float = Field(default=5.0, gt=1.0, description="Spike when the bucket holds this many times the baseline.")
    min_runs: int = Field(default=100, ge=1, description="...and at least this many queries.")
    min_history: Duration = Field(default=timedelta(days=1), description="No spike for groups younger than this.")

    @field_validator("group_by")
    @classmethod
    def _known_fields(cls, v: list[str]) -> list[str]:
        return check_group_fields(v)

    @model_validator(mode="after")
    def _spans(self) -> SpikeParams:
        if self.baseline <= self.window:
            raise ValueError("baseline must be longer than window")
        return self


_NONE_FIRED: frozenset[int] = frozenset()

#: the latest event of a key, for its finding: user, database, sql, fingerprint, normalized_sql,
#: bucket, tables, ts (a tuple in a slot, not a dict beside the state: there is one per key)
Context = tuple[str | None, str | None, str, str, str, int, tuple[str, ...], float]


class _KeyState:
    __slots__ = ("first_ts", "buckets", "fired", "context")

    def __init__(self, first_ts: float):
        self.first_ts = first_ts
        self.buckets: dict[int, int] = {}  # bucket number -> queries
        #: buckets already reported; one shared empty frozenset until the key first fires
        self.fired: set[int] | frozenset[int] = _NONE_FIRED
        self.context: Context | None = None

    def to_state(self) -> dict[str, Any]:
        return {"first_ts": self.first_ts, "buckets": {str(k): v for k, v in self.buckets.items()},
                "fired": sorted(self.fired)}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> _KeyState:
        k = cls(s["first_ts"])
        k.buckets = {int(b): n for b, n in s["buckets"].items()}
        fired = s.get("fired")
        k.fired = set(fired) if fired else _NONE_FIRED
        return k


@kinds.register("spike")
class Spike(RuleKind):
    Params = SpikeParams
    params: SpikeParams

    def __init__(self, spec, params):  # type: ignore[no-untyped-def]
        super().__init__(spec, params)
        self.size = params.window.total_seconds()
        self.span = int(params.baseline.total_seconds() // self.size)  # buckets in the baseline
        self._key_of = shared_key_function(self, params.group_by)
        self.keys: dict[str, _KeyState] = {}
        self._dirty: set[str] = set()
        self._gone: set[str] = set()

    def _baseline(self, k: _KeyState, bucket: int) -> float:
        """Average queries per bucket over the baseline before ``bucket`` (empty buckets count)."""
        first = max(bucket - self.span, int(k.first_ts // self.size))
        n = bucket - first
        return sum(k.buckets.get(b, 0) for b in range(first, bucket)) / n if n > 0 else 0.0

    def observe(self, ne: NormalizedEvent) -> str | None:
        key = self._key_of(ne)
        ts = event_ts(self, ne)
        k = self.keys.get(key)
        if k is None:
            k = self.keys[key] = _KeyState(ts)
        bucket = int(ts // self.size)
        buckets = k.buckets
        oldest = bucket - self.span
        if bucket in buckets:
            buckets[bucket] += 1
        else:
            buckets[bucket] = 1
            # buckets leave the baseline only when time moves to a new bucket: prune then, not per event
            if len(buckets) > 1:
                for old in [b for b in buckets if b < oldest]:
                    del buckets[old]
            if k.fired:
                k.fired = {b for b in k.fired if b >= oldest}
        self._dirty.add(key)
        self._gone.discard(key)
        p = self.params
        count = k.buckets[bucket]
        if ts - k.first_ts < p.min_history.total_seconds() or count < p.min_runs:
            return None
        if bucket not in k.fired and count < p.factor * self._baseline(k, bucket):
            return None
        if not k.fired:
            k.fired = set()
        k.fired.add(bucket)  # type: ignore[union-attr]
        # the finding describes the bucket that spiked: only an event counted in a fired bucket
        # sets it (a quieter next bucket in the same batch must not become the finding's episode)
        q = ne.query
        k.context = (ne.event.user, ne.event.database, ne.event.sql, q.fingerprint, q.normalized_sql, bucket,
                     q.tables, ts)
        return key

    def update(self, key: str) -> FindingUpdate | None:
        k = self.keys.get(key)
        if k is None or k.context is None:
            return None
        user, database, sql, fingerprint, normalized_sql, bucket, tables, last_ts = k.context
        base = self._baseline(k, bucket)
        start = dt_of(bucket * self.size)
        return FindingUpdate(
            rule=self.spec.id, key=key, episode=start.isoformat(), user=user, database=database,
            count=k.buckets.get(bucket, 0), distinct_values=0, first_seen=start,
            last_seen=dt_of(last_ts),
            fingerprint=fingerprint, sample_sql=sql, normalized_sql=normalized_sql,
            severity=self.spec.severity,
            details={"baseline_per_window": round(base, 2), "factor": self.params.factor,
                     "tables": list(tables), "suggested_sql": normalized_sql},
        )

    def explain(self) -> list[dict[str, Any]]:
        out = []
        for key, k in self.keys.items():
            bucket = max(k.buckets) if k.buckets else 0
            out.append({"key": key, "fired": bool(k.fired), "runs": k.buckets.get(bucket, 0),
                        "min_runs": self.params.min_runs, "baseline": round(self._baseline(k, bucket), 2),
                        "factor": self.params.factor})
        return out

    def take_dirty(self) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {key: self.keys[key].to_state() for key in self._dirty}
        out.update({key: None for key in self._gone})
        self._dirty.clear()
        self._gone.clear()
        return out

    def restore(self, key: str, state: dict[str, Any]) -> None:
        self.keys[key] = _KeyState.from_state(state)

    def sweep(self, now: float) -> None:
        horizon = int(now // self.size) - self.span
        dirty = self._dirty  # a firing key touched since the state was taken waits (see WindowedKind.sweep)
        for key in [key for key, k in self.keys.items()
                    if (not k.buckets or max(k.buckets) < horizon) and (not k.fired or key not in dirty)]:
            del self.keys[key]
            dirty.discard(key)
            self._gone.add(key)
