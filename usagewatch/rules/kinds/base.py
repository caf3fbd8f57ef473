"""The contract of a rule kind, the registry YAML ``kind:`` names resolve through, and the
event-time window with episodes that the counting kinds share.

A *window* holds one key's recent events (by the queries' own timestamps). An *episode* starts when
the kind's condition first holds for the key and lasts until the key goes quiet for a whole window;
while it lasts every new event updates the same finding instead of raising a new one.
Window and episode are plain data with ``to_state``/``from_state`` so they survive restarts.
"""

from __future__ import annotations

from collections import Counter, deque
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from usagewatch.durations import Duration
from usagewatch.model import FindingUpdate, NormalizedEvent, NormalizedQuery
from usagewatch.registry import Registry
from usagewatch.rules.schema import RuleSpec

MAX_DISTINCT_KEPT = 10_000  # per value name and episode: bounds memory on runaway keys
SAMPLE_VALUES = 5


class KindParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleKind:
    """One rule of one kind. ``observe`` sees every event that passed the rule's filter."""

    name: ClassVar[str]
    Params: ClassVar[type[KindParams]] = KindParams

    def __init__(self, spec: RuleSpec, params: KindParams):
        self.spec = spec
        self.params = params

    def observe(self, ne: NormalizedEvent) -> str | None:
        """The key this event advanced an active pattern of, or None. Cheap: it runs per event."""
        raise NotImplementedError

    def shape_matches(self, q: NormalizedQuery) -> bool:
        """False when no event with this query shape can ever count (a query_pattern rule and a
        shape without its traits). The engine asks once per shape and then skips the rule for
        every event of that shape, which is most of the per-event cost saved."""
        return True

    def update(self, key: str) -> FindingUpdate | None:
        """The finding update for ``key`` as it stands now (built once per batch, not per event)."""
        raise NotImplementedError

    def take_dirty(self) -> dict[str, dict[str, Any] | None]:
        """State of every key changed since the last call (None = key gone), for the store."""
        return {}

    def restore(self, key: str, state: dict[str, Any]) -> None:
        pass

    def sweep(self, now: float) -> None:
        """Forget keys whose window drained before ``now`` (event time, epoch seconds)."""

    def explain(self) -> list[dict[str, Any]]:
        """Per key: how close it is to firing (``rules test --explain``)."""
        return []

    def state_keys(self) -> list[str]:
        """Keys that have state (so a replaced rule's saved windows can be deleted)."""
        return list(getattr(self, "keys", {}))


kinds: Registry[RuleKind] = Registry("rule kind")


def ts_of(dt: datetime) -> float:
    return dt.timestamp()


def dt_of(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class KeyWindow:
    """One key's events inside the window: (ts, values) entries plus per-name value counts."""

    __slots__ = ("entries", "counts", "episode", "last_ts", "context")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, dict[str, str | None]]] = deque()
        self.counts: dict[str, Counter[str | None]] = {}
        self.episode: Episode | None = None
        self.last_ts = 0.0
        self.context: dict[str, Any] = {}  # latest user/db/sql/... for the finding

    def add(self, ts: float, values: dict[str, str | None], window: float) -> None:
        if self.entries and ts - self.last_ts > window:
            # the key went quiet for a whole window: the pattern (and its episode) is over
            self.entries.clear()
            self.counts.clear()
            self.episode = None
        self.entries.append((ts, values))
        for name, value in values.items():
            self.counts.setdefault(name, Counter())[value] += 1
        self.last_ts = max(self.last_ts, ts)
        horizon = self.last_ts - window
        while self.entries and self.entries[0][0] < horizon:
            _, old = self.entries.popleft()
            for name, value in old.items():
                c = self.counts[name]
                c[value] -= 1
                if c[value] <= 0:
                    del c[value]

    def distinct(self, name: str) -> int:
        return len(self.counts.get(name, ()))

    def to_state(self) -> dict[str, Any]:
        return {
            "entries": [[ts, values] for ts, values in self.entries],
            "last_ts": self.last_ts,
            "episode": self.episode.to_state() if self.episode else None,
            "context": {**self.context, "tables": list(self.context.get("tables", ()))},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KeyWindow:
        w = cls()
        for ts, values in state.get("entries", []):
            w.entries.append((ts, values))
            for name, value in values.items():
                w.counts.setdefault(name, Counter())[value] += 1
        w.last_ts = state.get("last_ts", 0.0)
        ep = state.get("episode")
        w.episode = Episode.from_state(ep) if ep else None
        w.context = state.get("context", {})
        return w


class Episode:
    """One continuous run of a pattern for a key: cumulative count and distinct values."""

    __slots__ = ("id", "first_ts", "count", "values")

    def __init__(self, id: str, first_ts: float):
        self.id = id
        self.first_ts = first_ts
        self.count = 0
        self.values: dict[str, dict[str | None, None]] = {}  # name -> ordered set of values seen

    def add(self, values: dict[str, str | None]) -> None:
        self.count += 1
        for name, value in values.items():
            seen = self.values.setdefault(name, {})
            if len(seen) < MAX_DISTINCT_KEPT:
                seen[value] = None

    def distinct(self, name: str) -> int:
        return len(self.values.get(name, ()))

    def samples(self, name: str) -> list[str]:
        return [str(v) for v in list(self.values.get(name, {}))[:SAMPLE_VALUES]]

    def to_state(self) -> dict[str, Any]:
        return {"id": self.id, "first_ts": self.first_ts, "count": self.count,
                "values": {k: list(v) for k, v in self.values.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Episode:
        ep = cls(state["id"], state["first_ts"])
        ep.count = state["count"]
        ep.values = {k: dict.fromkeys(v) for k, v in state["values"].items()}
        return ep


GROUP_FIELDS = ("user", "database", "fingerprint", "table", "application", "source")


def group_value(ne: NormalizedEvent, field: str) -> str:
    if field == "fingerprint":
        return ne.query.fingerprint
    if field == "table":
        return ",".join(ne.query.tables)
    return getattr(ne.event, field) or ""


class WindowParams(KindParams):
    """Parameters every counting kind has: how events are grouped, the window, the run threshold."""

    group_by: list[str] = Field(default_factory=lambda: ["user", "fingerprint"])
    window: Duration = timedelta(hours=1)
    min_runs: int = Field(default=20, ge=2)

    @field_validator("group_by")
    @classmethod
    def _known_fields(cls, v: list[str]) -> list[str]:
        return check_group_fields(v)


def check_group_fields(v: list[str]) -> list[str]:
    bad = [f for f in v if f not in GROUP_FIELDS]
    if bad:
        raise ValueError(f"cannot group by {bad[0]!r}; choose from {', '.join(GROUP_FIELDS)}")
    return v


class WindowedKind(RuleKind):
    """Shared machinery of kinds that count a key's events in a sliding event-time window.

    Subclasses say how to key an event (``key``), which values to track (``values``), when the
    pattern holds (``holds``) and how to describe the finding (``describe``).
    """

    Params: ClassVar[type[KindParams]] = WindowParams
    params: WindowParams

    def __init__(self, spec: RuleSpec, params: WindowParams):  # type: ignore[override]
        super().__init__(spec, params)
        self.window = params.window.total_seconds()
        self.keys: dict[str, KeyWindow] = {}
        self._dirty: set[str] = set()
        self._gone: set[str] = set()

    # hooks --------------------------------------------------------------------------------------
    def key(self, ne: NormalizedEvent) -> str:
        """The group an event counts in: by default its ``group_by`` fields."""
        return " ".join(f"{f}={group_value(ne, f)}" for f in self.params.group_by)

    def values(self, ne: NormalizedEvent) -> dict[str, str | None]:
        return {}

    def matches(self, ne: NormalizedEvent) -> bool:
        """Whether the event counts at all (kinds that look at one query's shape or outcome)."""
        return True

    def progress(self, w: KeyWindow) -> dict[str, Any]:
        """How far a key is from firing, for ``rules test --explain``: counts against thresholds."""
        return {"runs": len(w.entries), "min_runs": self.params.min_runs}

    def holds(self, w: KeyWindow) -> bool:
        raise NotImplementedError

    def describe(self, w: KeyWindow, update: FindingUpdate) -> None:
        """Fill the kind-specific parts of ``update`` (varying, distinct_values, samples, details)."""

    # machinery ----------------------------------------------------------------------------------
    def observe(self, ne: NormalizedEvent) -> str | None:
        if not self.matches(ne):
            return None
        key = self.key(ne)
        w = self.keys.get(key)
        if w is None:
            w = self.keys[key] = KeyWindow()
        ts = ts_of(ne.event.ts)
        values = self.values(ne)
        w.add(ts, values, self.window)
        ev = ne.event
        w.context = {"user": ev.user, "database": ev.database, "sql": ev.sql,
                     "fingerprint": ne.query.fingerprint, "normalized_sql": ne.query.normalized_sql,
                     "tables": ne.query.tables}
        self._dirty.add(key)
        self._gone.discard(key)
        if w.episode is None:
            if not self.holds(w):
                return None
            first_ts = w.entries[0][0]
            w.episode = Episode(f"{dt_of(first_ts).isoformat()}", first_ts)
            for _, vals in w.entries:
                w.episode.add(vals)
        else:
            w.episode.add(values)
        return key

    def update(self, key: str) -> FindingUpdate | None:
        w = self.keys.get(key)
        ep = w.episode if w is not None else None
        if w is None or ep is None:  # swept or drained since it was touched
            return None
        ctx = w.context
        update = FindingUpdate(
            rule=self.spec.id, key=key, episode=ep.id, user=ctx.get("user"), database=ctx.get("database"),
            count=ep.count, distinct_values=0, first_seen=dt_of(ep.first_ts), last_seen=dt_of(w.last_ts),
            fingerprint=ctx.get("fingerprint"), sample_sql=ctx.get("sql"),
            normalized_sql=ctx.get("normalized_sql"), severity=self.spec.severity,
            details={"tables": list(ctx.get("tables", ()))},
        )
        self.describe(w, update)
        return update

    def explain(self) -> list[dict[str, Any]]:
        return [{"key": key, "fired": w.episode is not None, **self.progress(w)} for key, w in self.keys.items()]

    def take_dirty(self) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {k: self.keys[k].to_state() for k in self._dirty}
        out.update({k: None for k in self._gone})
        self._dirty.clear()
        self._gone.clear()
        return out

    def restore(self, key: str, state: dict[str, Any]) -> None:
        self.keys[key] = KeyWindow.from_state(state)

    def sweep(self, now: float) -> None:
        horizon = now - self.window
        for key in [k for k, w in self.keys.items() if w.last_ts < horizon]:
            del self.keys[key]
            self._dirty.discard(key)
            self._gone.add(key)
