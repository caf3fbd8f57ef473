"""The contract of a rule kind, the registry YAML ``kind:`` names resolve through, and the
event-time window with episodes that the counting kinds share.

A *window* holds one key's recent events (by the queries' own timestamps). An *episode* starts when
the kind's condition first holds for the key and lasts until the key goes quiet for a whole window;
while it lasts every new event updates the same finding instead of raising a new one.
Window and episode are plain data with ``to_state``/``from_state`` so they survive restarts.
"""

from __future__ import annotations

from array import array
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, ClassVar, Iterator

from pydantic import BaseModel, ConfigDict, Field, field_validator

from usagewatch.durations import Duration
from usagewatch.model import FindingUpdate, NormalizedEvent, NormalizedQuery, QueryEvent
from usagewatch.registry import Registry
from usagewatch.rules.schema import RuleSpec

MAX_DISTINCT_KEPT = 10_000  # per value name and episode: bounds memory on runaway keys
SAMPLE_VALUES = 5


class KindParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventShare:
    """What the rules of one engine compute alike for the event being fed: its time and its group
    keys (per ``group_by``), computed by the first rule that asks and then the *same objects* for
    every other rule. A key kept by three rules is then one str and one float in memory, not three
    of each (a million live keys: hundreds of MB). The engine sets ``ne`` for the length of one
    ``feed`` and clears it after, so a value is never reused for another event, nor for the same
    event object fed again after a change; a kind used without an engine computes its own."""

    __slots__ = ("ne", "ts", "keys")

    def __init__(self) -> None:
        self.ne: NormalizedEvent | None = None
        self.ts = 0.0
        self.keys: dict[str, str] = {}  # " ".join(group_by) -> the event's key


NO_SHARE = EventShare()  # never set: a kind outside an engine computes its keys and times itself


class RuleKind:
    """One rule of one kind. ``observe`` sees every event that passed the rule's filter."""

    name: ClassVar[str]
    Params: ClassVar[type[KindParams]] = KindParams
    #: the feeding engine's ``EventShare`` (set by the engine)
    share: EventShare = NO_SHARE

    def __init__(self, spec: RuleSpec, params: KindParams):
        self.spec = spec
        self.params = params

    def observe(self, ne: NormalizedEvent) -> str | None:
        """The key this event advanced an active pattern of, or None. Cheap: it runs per event."""
        raise NotImplementedError

    def event_check(self) -> Callable[[QueryEvent], bool] | None:
        """What the kind checks on each event's own fields (duration, error...) before ``observe``,
        or None: the engine folds it into the rule's per-event filter, so an event that cannot
        count costs one call instead of a trip through ``observe``."""
        return None

    def shape_matches(self, q: NormalizedQuery) -> bool:
        """False when no event with this query shape can ever count (a query_pattern rule and a
        shape without its traits). The engine asks once per shape and calls ``observe`` only for
        events of shapes that passed, so a kind need not check them again per event."""
        return True

    def update(self, key: str) -> FindingUpdate | None:
        """The finding update for ``key`` as it stands now (built once per batch, not per event)."""
        raise NotImplementedError

    def take_dirty(self) -> dict[str, dict[str, Any] | None]:
        """Per-key state to save for every key changed since the last call (None = delete the
        key's row), for the store. Windowed kinds save most of their state with ``take_log``."""
        return {}

    def take_log(self) -> list[list[Any]]:
        """The events added to windows since the last call, ``[key, ts]`` or ``[key, ts, values]``
        in order: saved as an append log and replayed by ``replay_log`` on restore."""
        return []

    def replay_log(self, entries: list[list[Any]]) -> None:
        """Re-add saved events (``take_log``'s entries) to the windows, oldest batch first."""

    def restored(self) -> None:
        """Called once after ``restore`` and ``replay_log`` have loaded everything."""

    def take_ended(self) -> list[FindingUpdate]:
        """Final updates of episodes that ended (the key went quiet for a window and came back)
        since the last call: a batch that holds both the end of one episode and the start of the
        next must save both, not only the last one ``update(key)`` can still see."""
        return []

    def restore(self, key: str, state: dict[str, Any]) -> None:
        pass

    def sweep(self, now: float) -> None:
        """Forget keys whose window drained before ``now`` (event time, epoch seconds)."""

    def explain(self) -> list[dict[str, Any]]:
        """Per key: how close it is to firing (``rules test --explain``)."""
        return []

    def state_keys(self) -> list[str]:
        """Keys that have state in memory (``rules test --explain``, benchmarks)."""
        return list(getattr(self, "keys", {}))

    def saved_keys(self) -> list[str]:
        """Keys that have a saved row (so a replaced rule's rows can be deleted)."""
        return self.state_keys()


kinds: Registry[RuleKind] = Registry("rule kind")


def ts_of(dt: datetime) -> float:
    return dt.timestamp()


def dt_of(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class _Missing:
    """Marks a name an entry had no value for (rows are aligned to the window's names)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_NO_VALUES: dict[str, str | None] = {}  # shared, never written to
Row = Any  # one entry's values (``_pack``ed): () none, a bare value (one name), or a tuple aligned to the names
_SHARED_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {}
MAX_SHARED_NAMES = 10_000


def _shared_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object for equal name tuples: a shape's value names are the same for every key
    of that shape, so a million windows hold one tuple (and its strings) instead of a million."""
    got = _SHARED_NAMES.get(names)
    if got is None:
        if len(_SHARED_NAMES) < MAX_SHARED_NAMES:
            _SHARED_NAMES[names] = names
        return names
    return got


def _pack(value: str | None) -> Any:
    """A value as a row keeps it: a decimal string in its one spelling (no sign, no leading zero,
    at most 18 digits) as an int, 28-32 bytes instead of the str's 50-70 (ids, the common literal,
    held once per live key); anything else as it is. Only such strings become ints, and each int
    from only one of them, so counts of distinct values are the same; ``_unpack`` gives it back."""
    if value.__class__ is str and value.isdigit() and value.isascii() and len(value) <= 18 \
            and (value[0] != "0" or len(value) == 1):  # type: ignore[union-attr, index]
        return int(value)  # type: ignore[arg-type]
    return value


def _unpack(cell: Any) -> Any:
    return str(cell) if cell.__class__ is int else cell


def _first_row(values: dict[str, str | None]) -> tuple[Row, tuple[str, ...]]:
    """The row and names of a window's first values (not empty): its names are the event's."""
    if len(values) == 1:
        for n, v in values.items():
            return _pack(v), _shared_names((n,))
    return tuple(map(_pack, values.values())), _shared_names(tuple(values))


def _cells(row: Row) -> tuple[Any, ...]:
    return row if isinstance(row, tuple) else (row,)


class _Many:
    """The entries of a window that holds more than one: timestamps in an ``array('d')`` (8 bytes
    each), the rows in a list, and per-name value counts. Evicted entries before ``head`` are
    dropped in bulk once they are half the arrays (amortised O(1) per event, no deque blocks).

    The counts are built the first time a distinct count is asked for and kept up to date from
    then on: a kind asks only once the window has its ``min_runs`` entries, which most keys never
    reach, so most windows never count at all."""

    __slots__ = ("times", "rows", "head", "counts")

    def __init__(self, times: array[float], rows: list[Row]):
        self.times = times
        self.rows = rows
        self.head = 0
        self.counts: dict[str, Counter[str | None]] | None = None


class KeyWindow:
    """One key's events inside the window, stored compactly because there is one per live key.

    A window is empty (``_data`` None), holds one entry (``_data`` its timestamp, ``_row`` its
    values) - the common case of a key seen once, which costs one small object - or several (a
    ``_Many``). An entry's values are a *row* aligned to ``names`` (shared between windows of the
    same shape): a bare value when there is one name, so a one-literal query stores just its value.
    The window's context (latest user/sql/... for the finding) lives on its episode: only a key
    that is firing needs one.
    """

    __slots__ = ("_data", "_row", "names", "episode", "last_ts")

    def __init__(self) -> None:
        self._data: float | _Many | None = None
        self._row: Row = ()
        self.names: tuple[str, ...] = ()
        self.episode: Episode | None = None
        self.last_ts = 0.0

    # rows <-> values ---------------------------------------------------------------------------------
    def _encode(self, values: dict[str, str | None]) -> Row:
        if not values:
            return ()
        names = self.names
        if not names:  # the key's first values: its names are the event's
            row, self.names = _first_row(values)
            return row
        elif len(values) == len(names) == 1:  # the common case: one literal, a bare value
            for n, v in values.items():
                if n == names[0]:
                    return _pack(v)
            return self._encode_other(values)
        elif len(values) == len(names) and tuple(values) == names:
            cells = tuple(map(_pack, values.values()))
        else:
            return self._encode_other(values)
        return cells[0] if len(cells) == 1 else cells

    def _encode_other(self, values: dict[str, str | None]) -> Row:
        """A row for values whose names differ from the window's (new names join the end)."""
        names = self.names
        new = [n for n in values if n not in names]
        if new:
            names = self.names = _shared_names(names + tuple(new))
        index = {n: i for i, n in enumerate(names)}
        size = max(index[n] for n in values) + 1
        out = [MISSING] * size
        for n, v in values.items():
            out[index[n]] = _pack(v)
        return out[0] if size == 1 else tuple(out)

    def _values(self, row: Row) -> dict[str, str | None]:
        return {n: _unpack(v) for n, v in zip(self.names, _cells(row), strict=False) if v is not MISSING}

    def _count(self, counts: dict[str, Counter[str | None]], row: Row, delta: int) -> None:
        if row.__class__ is tuple:
            pairs: Any = zip(self.names, row, strict=False)  # rows stop at their last name
        else:  # a bare value: the first name's
            pairs = ((self.names[0], row),)
        for n, v in pairs:
            if v is MISSING:
                continue
            c = counts.get(n)
            if c is None:
                c = counts[n] = Counter()
            k = c.get(v, 0) + delta
            if k > 0:
                c[v] = k
            else:
                c.pop(v, None)

    # the window ----------------------------------------------------------------------------------------
    def add(self, ts: float, values: dict[str, str | None], window: float) -> None:
        data = self._data
        if data is not None and ts - self.last_ts > window:
            # the key went quiet for a whole window: the pattern (and its episode) is over
            data = self._data = None
            self._row = ()
            self.episode = None
        row = self._encode(values)
        if ts > self.last_ts:
            self.last_ts = ts
        if data is None:
            self._data, self._row = ts, row
        elif isinstance(data, _Many):
            data.times.append(ts)
            data.rows.append(row)
            if row != () and data.counts is not None:
                self._count(data.counts, row, 1)
            if data.times[data.head] >= self.last_ts - window:
                return  # nothing to evict (most adds)
        else:
            data = self._data = _Many(array("d", (data, ts)), [self._row, row])
            self._row = ()
        self._evict(self.last_ts - window)

    def _evict(self, horizon: float) -> None:
        """Drop entries from the front while they are older than ``horizon`` (as a deque would)."""
        data = self._data
        if data is None:
            return
        if not isinstance(data, _Many):
            if data < horizon:
                self._data, self._row = None, ()
            return
        times, rows, h, counts = data.times, data.rows, data.head, data.counts
        n = len(times)
        while h < n and times[h] < horizon:
            if counts is not None:
                self._count(counts, rows[h], -1)
            rows[h] = None
            h += 1
        if h == n:
            self._data, self._row = None, ()
            return
        if h >= 32 and 2 * h >= n:
            del times[:h]
            del rows[:h]
            h = 0
        data.head = h

    def __len__(self) -> int:
        data = self._data
        if data is None:
            return 0
        if isinstance(data, _Many):
            return len(data.times) - data.head
        return 1

    def first_ts(self) -> float:
        data = self._data
        if isinstance(data, _Many):
            return data.times[data.head]
        assert data is not None, "empty window"
        return data

    def entries(self) -> Iterator[tuple[float, dict[str, str | None]]]:
        """(ts, values) of each entry, oldest first."""
        data = self._data
        if data is None:
            return
        if not isinstance(data, _Many):
            yield data, self._values(self._row)
            return
        h = data.head
        for ts, row in zip(data.times[h:], data.rows[h:], strict=True):
            yield ts, self._values(row)

    def _counts(self, data: _Many) -> dict[str, Counter[str | None]]:
        counts = data.counts
        if counts is None:
            counts = data.counts = {}
            for row in data.rows[data.head:]:
                if row != ():
                    self._count(counts, row, 1)
        return counts

    def distinct(self, name: str) -> int:
        """Different values of ``name`` in the window."""
        data = self._data
        if isinstance(data, _Many):
            return len(self._counts(data).get(name, ()))
        if data is None or name not in self.names:
            return 0
        cells = _cells(self._row)
        i = self.names.index(name)
        return int(i < len(cells) and cells[i] is not MISSING)

    def max_distinct(self) -> int:
        """The most different values any one name has in the window."""
        data = self._data
        if isinstance(data, _Many):
            return max((len(c) for c in self._counts(data).values()), default=0)
        if data is None:
            return 0
        return int(any(v is not MISSING for v in _cells(self._row)))

    # persistence -------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The whole window in the form windows were first persisted in (stores written before
        the window log hold such rows, and ``from_state`` reads them); the store now gets only
        ``episode_state`` rows plus the log, but tests and tools compare whole windows this way."""
        state = self.episode_state()
        state["entries"] = [[ts, values] for ts, values in self.entries()]
        return state

    def episode_state(self) -> dict[str, Any]:
        """What a saved row holds beside the window's logged events: the newest event time and,
        when the key is firing, its episode and context (absent keys read as none)."""
        state: dict[str, Any] = {"last_ts": self.last_ts}
        ep = self.episode
        if ep is not None:
            state["episode"] = ep.to_state()
            state["context"] = {**ep.context, "tables": list(ep.context.get("tables", ()))}
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KeyWindow:
        w = cls()
        for ts, values in state.get("entries", []):
            w._append(float(ts), values)
        w.last_ts = state.get("last_ts", 0.0)
        ep = state.get("episode")
        w.episode = Episode.from_state(ep) if ep else None
        if w.episode is not None:
            w.episode.context = state.get("context", {})
        return w

    @classmethod
    def of_bare(cls, ts: float) -> KeyWindow:
        """The window a bare timestamp stands for (see ``compact``)."""
        w = cls()
        w._data = w.last_ts = ts
        return w

    @classmethod
    def of_one(cls, one: One) -> KeyWindow:
        """The window a ``One`` stands for (see ``compact``)."""
        w = cls()
        w._data = w.last_ts = one.last_ts
        w._row, w.names = one.row, one.names
        return w

    def compact(self) -> KeyWindow | One | float:
        """What the kind keeps for the key: when the window is one entry and no episode (most keys
        of a busy warehouse are seen once in a window), the entry's timestamp if it has no values,
        else a ``One`` (56 bytes instead of 72); otherwise this window itself."""
        data = self._data
        if data.__class__ is float and self.episode is None and self.last_ts == data:
            row = self._row
            if row.__class__ is tuple and row == ():
                return data  # type: ignore[return-value]
            return One(data, row, self.names)  # type: ignore[arg-type]
        return self

    def _append(self, ts: float, values: dict[str, str | None]) -> None:
        """Add a saved entry as it was (no eviction: the saved window was already evicted)."""
        last, self.last_ts = self.last_ts, float("-inf")
        self.add(ts, values, float("inf"))
        self.last_ts = max(last, ts)


class One:
    """A window of one entry with values and no episode, as a kind keeps it (``KeyWindow.compact``):
    its timestamp (also its ``last_ts``), its row and the names the row is aligned to."""

    __slots__ = ("last_ts", "row", "names")

    def __init__(self, ts: float, row: Row, names: tuple[str, ...]):
        self.last_ts = ts
        self.row = row
        self.names = names


class Episode:
    """One continuous run of a pattern for a key: cumulative count and distinct values, and the
    context of the key's latest event (what the finding shows)."""

    __slots__ = ("id", "first_ts", "count", "values", "_context", "latest")

    def __init__(self, id: str, first_ts: float):
        self.id = id
        self.first_ts = first_ts
        self.count = 0
        self.values: dict[str, dict[str | None, None]] = {}  # name -> ordered set of values seen
        self._context: dict[str, Any] = {}
        #: the key's latest event, until its context is read: a firing key may see thousands of
        #: events per batch, and only the last one's context is ever shown or saved
        self.latest: NormalizedEvent | None = None

    @property
    def context(self) -> dict[str, Any]:
        """user, database, sql, fingerprint, normalized_sql and tables of the key's latest event."""
        ne = self.latest
        if ne is not None:
            ev, q = ne.event, ne.query
            self._context = {"user": ev.user, "database": ev.database, "sql": ev.sql,
                             "fingerprint": q.fingerprint, "normalized_sql": q.normalized_sql,
                             "tables": q.tables}
            self.latest = None
        return self._context

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._context = value
        self.latest = None

    def add(self, values: dict[str, str | None]) -> None:
        self.count += 1
        if not values:
            return
        mine = self.values
        for name, value in values.items():
            seen = mine.get(name)
            if seen is None:
                seen = mine[name] = {}
            if value not in seen and len(seen) < MAX_DISTINCT_KEPT:
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


KeyFunction = Callable[[NormalizedEvent], str]


def shared_key_function(kind: RuleKind, group_by: list[str]) -> KeyFunction:
    """A rule's key function that takes the event's key from the engine's ``EventShare`` when
    another rule with the same ``group_by`` already built it (and leaves it there otherwise)."""
    make = key_function(group_by)
    group = " ".join(group_by)  # a str: its hash is cached, a tuple's is not

    def key_of(ne: NormalizedEvent) -> str:
        share = kind.share
        if share.ne is not ne:
            return make(ne)
        keys = share.keys
        key = keys.get(group)
        if key is None:
            key = keys[group] = make(ne)
        return key

    return key_of


def event_ts(kind: RuleKind, ne: NormalizedEvent) -> float:
    """The event's time in epoch seconds: the engine's one float object for it when it feeds it."""
    share = kind.share
    return share.ts if share.ne is ne else ne.event.ts.timestamp()


def key_function(group_by: list[str]) -> KeyFunction:
    """The function naming an event's group, ``"user=kim fingerprint=ab12..."`` (the names saved
    keys and findings carry). Built once per rule: the key is computed for every event a rule sees,
    and the common groupings get a single f-string instead of a join over ``group_value`` calls."""
    if group_by == ["user", "fingerprint"]:
        return lambda ne: f"user={ne.event.user or ''} fingerprint={ne.query.fingerprint}"
    if group_by == ["user"]:
        return lambda ne: f"user={ne.event.user or ''}"
    fields = tuple(group_by)
    return lambda ne: " ".join(f"{f}={group_value(ne, f)}" for f in fields)


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
        #: key -> its window, or for a window of one entry without episode (``KeyWindow.compact``)
        #: just its timestamp (no values) or a ``One``: most keys of a busy warehouse are seen once
        self.keys: dict[str, KeyWindow | One | float] = {}
        #: keys whose saved row (``rows``) must be rewritten or deleted at the next take
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        #: keys that have a saved row: firing keys (episode) and windows restored from a whole-window row
        self._rows: set[str] = set()
        #: events added since the last ``take_log``
        self._log: list[list[Any]] = []
        #: episode rows restored before the log re-created their windows (see ``restored``)
        self._pending: dict[str, dict[str, Any]] = {}
        self._ended: list[FindingUpdate] = []
        #: no window's last_ts is older than this (a lower bound): a sweep before it has nothing to do
        self._oldest = float("inf")
        self._key_of = shared_key_function(self, params.group_by)
        if type(self).key is WindowedKind.key:
            self.key = self._key_of  # type: ignore[method-assign, assignment]  # one call less per event
        #: the values hook, None where a kind keeps the default (no call per event for it); what a
        #: kind checks per event before counting goes through ``event_check`` and ``shape_matches``
        self._values = None if type(self).values is WindowedKind.values else self.values
        #: whether one event can never make the pattern hold (every kind's ``holds`` needs min_runs)
        self._bare_first = params.min_runs >= 2

    # hooks --------------------------------------------------------------------------------------
    def key(self, ne: NormalizedEvent) -> str:
        """The group an event counts in: by default its ``group_by`` fields."""
        return self._key_of(ne)

    def values(self, ne: NormalizedEvent) -> dict[str, str | None]:
        return {}

    def progress(self, w: KeyWindow) -> dict[str, Any]:
        """How far a key is from firing, for ``rules test --explain``: counts against thresholds."""
        return {"runs": len(w), "min_runs": self.params.min_runs}

    def holds(self, w: KeyWindow) -> bool:
        raise NotImplementedError

    def describe(self, w: KeyWindow, update: FindingUpdate) -> None:
        """Fill the kind-specific parts of ``update`` (varying, distinct_values, samples, details)."""

    # machinery ----------------------------------------------------------------------------------
    def _window(self, found: KeyWindow | One | float | None, ts: float) -> KeyWindow:
        """The window object for a key's entry in ``keys`` (None: a new key, seen at ``ts``)."""
        if found is None:
            if ts < self._oldest:
                self._oldest = ts
            return KeyWindow()
        cls = found.__class__
        if cls is float:
            return KeyWindow.of_bare(found)  # type: ignore[arg-type]
        if cls is One:
            return KeyWindow.of_one(found)  # type: ignore[arg-type]
        return found  # type: ignore[return-value]

    def observe(self, ne: NormalizedEvent) -> str | None:
        key = self.key(ne)
        keys = self.keys
        found = keys.get(key)
        share = self.share
        ts = share.ts if share.ne is ne else ne.event.ts.timestamp()  # ``event_ts``, inlined
        values: dict[str, str | None]
        if found is None and self._bare_first:
            # a new key of a kind that cannot fire on one event: its window is what
            # ``KeyWindow.compact`` keeps of one entry, the bare timestamp or a ``One``
            if ts < self._oldest:
                self._oldest = ts
            values_of = self._values
            if values_of is None or not (values := values_of(ne)):
                keys[key] = ts
                self._log.append([key, ts])
            else:
                keys[key] = One(ts, *_first_row(values))
                self._log.append([key, ts, values])
            return None
        w = self._window(found, ts)
        if w.episode is not None and ts - w.last_ts > self.window:
            # this event ends the key's episode (quiet for a whole window) and may start another:
            # keep the ended one's final update, the same batch may hold both
            ended = self.update(key)
            if ended is not None:
                self._ended.append(ended)
        values_of = self._values
        if values_of is None:
            values = _NO_VALUES
            self._log.append([key, ts])
        else:
            values = values_of(ne)
            self._log.append([key, ts, values] if values else [key, ts])
        w.add(ts, values, self.window)
        ep = w.episode
        if ep is None:
            if not self.holds(w):
                keys[key] = w.compact()
                if key in self._rows:  # its episode ended: the row goes
                    self._dirty.add(key)
                return None
            self._dirty.add(key)
            keys[key] = w
            first_ts = w.first_ts()
            ep = w.episode = Episode(f"{dt_of(first_ts).isoformat()}", first_ts)
            for _, vals in w.entries():
                ep.add(vals)
        else:
            ep.add(values)
            self._dirty.add(key)
        ep.latest = ne  # the finding shows the latest event; its context dict is built when read
        return key

    def window_of(self, key: str) -> KeyWindow | None:
        """The key's window as an object (also when the kind keeps only a bare timestamp)."""
        found = self.keys.get(key)
        return None if found is None else self._window(found, 0.0)  # ts is read only for a new key

    def update(self, key: str) -> FindingUpdate | None:
        w = self.keys.get(key)
        if not isinstance(w, KeyWindow) or w.episode is None:
            return None  # swept or drained since it was touched (a bare timestamp never fired)
        ep = w.episode
        ctx = ep.context
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
        out = []
        for key in self.keys:
            w = self.window_of(key)
            assert w is not None
            out.append({"key": key, "fired": w.episode is not None, **self.progress(w)})
        return out

    def take_ended(self) -> list[FindingUpdate]:
        out, self._ended = self._ended, []
        return out

    def take_dirty(self) -> dict[str, dict[str, Any] | None]:
        """Rows of firing keys touched since the last call, and deletions of rows whose key
        stopped firing or was swept; every other key is saved by its events (``take_log``)."""
        keys = self.keys
        rows = self._rows
        out: dict[str, dict[str, Any] | None] = {}
        for k in self._gone:
            if k in rows:
                rows.discard(k)
                out[k] = None
        for k in self._dirty:
            w = keys.get(k)
            if isinstance(w, KeyWindow) and w.episode is not None:
                out[k] = w.episode_state()
                rows.add(k)
            elif k in rows:
                rows.discard(k)
                out[k] = None
        self._dirty.clear()
        self._gone.clear()
        return out

    def take_log(self) -> list[list[Any]]:
        out, self._log = self._log, []
        return out

    def saved_keys(self) -> list[str]:
        return list(self._rows)

    def restore(self, key: str, state: dict[str, Any]) -> None:
        """A saved row: a whole window (written before the window log), or a firing key's episode,
        attached once the log has re-created the key's window (``restored``)."""
        self._rows.add(key)
        if "entries" not in state:
            self._pending[key] = state
            return
        w = KeyWindow.from_state(state)
        self.keys[key] = w.compact()
        if w.last_ts < self._oldest:
            self._oldest = w.last_ts

    def replay_log(self, entries: list[list[Any]]) -> None:
        keys = self.keys
        window = self.window
        for entry in entries:
            key, ts = entry[0], float(entry[1])
            w = self._window(keys.get(key), ts)
            w.add(ts, entry[2] if len(entry) > 2 else {}, window)
            keys[key] = w.compact()

    def restored(self) -> None:
        """Attach the restored episodes to their windows. An episode whose window the log no
        longer has (its events drained before the restart) is over: its row is deleted."""
        for key, state in self._pending.items():
            w = self.window_of(key)
            ep = state.get("episode")
            if w is None or not len(w) or not ep:
                self._gone.add(key)
                if w is not None and not len(w):
                    del self.keys[key]
                continue
            w.episode = Episode.from_state(ep)
            w.episode.context = state.get("context", {})
            w.last_ts = max(w.last_ts, float(state.get("last_ts", w.last_ts)))
            self.keys[key] = w
        self._pending.clear()

    def sweep(self, now: float) -> None:
        """Forget keys whose window drained before ``now``, except firing keys touched since the
        state was last taken: the engine builds their finding updates at the end of the batch, and
        a key forgotten before that would lose its update - with several chunks per commit, or a
        chunk spanning days, a finding would depend on where batches end. Such a key is forgotten
        by the first sweep after the batch. (A key without an episode has no update to lose.)"""
        horizon = now - self.window
        if self._oldest >= horizon:
            return  # no window can have drained: skip the walk over every key
        keys = self.keys
        dirty = self._dirty
        oldest = float("inf")
        gone = []
        for k, w in keys.items():
            last = w if w.__class__ is float else w.last_ts  # type: ignore[union-attr]
            if last < horizon and (k not in dirty or w.__class__ is not KeyWindow or w.episode is None):  # type: ignore[union-attr]
                gone.append(k)
            elif last < oldest:
                oldest = last
        rows = self._rows
        for key in gone:
            del keys[key]
            dirty.discard(key)
            if key in rows:  # only a key with a saved row has something to delete; the others
                self._gone.add(key)  # are not kept (nor their key strs) until the next take
        self._oldest = oldest
