"""Plain, frozen data that crosses stages: sources -> normalize -> rules -> store -> notify.

A stage sees only these types of the stage before it, so every stage can be tested with
hand-made instances in place of the stage before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True, unsafe_hash=True)
class QueryEvent:
    """One execution of one statement, as a source saw it. Treated as immutable (hashable by
    value), but not ``frozen``: a frozen dataclass sets its 18 fields through
    ``object.__setattr__``, which made building one about a fifth of a log reader's time.

    ``ts`` is timezone-aware (the query's own timestamp; all windows use it, never the wall clock).
    ``params`` are bind values in order ($1, $2, ...; None for NULL): they are the query's literal
    values when the client used the extended protocol. ``position`` says where in which file the
    record that completed this event ended ("path:offset"), for evidence. ``query_id``, ``rows``,
    ``bytes_scanned`` and ``warehouse`` are filled by the sources that know them (query-history
    exports of Snowflake, BigQuery, ...).
    """

    source: str
    ts: datetime
    sql: str
    user: str | None = None
    database: str | None = None
    params: tuple[str | None, ...] = ()
    duration_ms: float | None = None
    session: str | None = None
    application: str | None = None
    client: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    dialect: str = "postgres"
    position: str = ""
    query_id: str | None = None
    rows: int | None = None
    bytes_scanned: int | None = None
    warehouse: str | None = None


@dataclass(frozen=True, slots=True)
class Literal:
    """One varying value of a query, in a "slot" (a place in the query's shape).

    ``slot`` numbers the places in the normalized query, so two runs of the same shape have the same
    slots. An ``IN (...)`` list is one slot whose value joins its items. ``column`` is the column the
    value is compared with or assigned to, where there is one (``company_id`` in
    ``WHERE company_id = 42``).
    """

    slot: int
    value: str | None
    column: str | None = None


@dataclass(frozen=True, slots=True)
class NormalizedQuery:
    """A query's shape: equal ``fingerprint`` for runs that differ only in literal values, whitespace,
    keyword case, comments or IN-list length; different when the structure differs.

    ``parsed`` is False when sqlglot could not parse the text and the fingerprint is token-based.
    """

    fingerprint: str
    normalized_sql: str
    kind: str
    tables: tuple[str, ...]
    literals: tuple[Literal, ...]
    parsed: bool = True
    #: named shape traits computed from the sqlglot tree (select_star, no_where, cartesian_join, ...)
    traits: frozenset[str] = frozenset()
    #: sqlglot expression type names present in the tree, lower-case (join, window, subquery, ...)
    expressions: frozenset[str] = frozenset()
    #: the number of values in the longest IN (...) list (0 when there is none)
    in_list_max: int = 0
    #: tables read without any WHERE condition (for no_where on tables a rule lists as large)
    unfiltered_tables: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NormalizedEvent:
    """What the rules see: the event and its normalized query."""

    event: QueryEvent
    query: NormalizedQuery


@dataclass(slots=True)
class FindingUpdate:
    """What a rule says about one (rule, key) after seeing events: the current state of an episode.

    An *episode* is one continuous run of the pattern for that key (it starts when the rule's
    threshold is first met and ends when the key's window drains). Updates of one episode carry
    cumulative values, so the store can simply overwrite them; ``episode`` identifies it.
    """

    rule: str
    key: str
    episode: str
    user: str | None
    database: str | None
    count: int
    distinct_values: int
    first_seen: datetime
    last_seen: datetime
    fingerprint: str | None
    sample_sql: str | None
    normalized_sql: str | None
    varying: list[str] = field(default_factory=list)
    sample_values: list[str] = field(default_factory=list)
    severity: str = "warning"
    cooldown: float = 86400.0  # seconds after a resolution before the same key may alert again
    title: str = ""
    intervention: str = ""
    howto: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FileCursor:
    """Where reading of one file stands: its identity and the offset after the last record taken.

    Identity is device+inode plus a hash of the file's first ``head_len`` bytes and of the bytes
    just before ``offset``, so a reused inode or a truncated-and-regrown file is noticed; ``path``
    is where the file was last seen (it changes when the file is rotated). ``state`` is the format assembler's held-back work
    (e.g. a statement waiting for its duration record). Committed with the findings it produced.
    """

    source: str
    path: str
    dev: int
    inode: int
    head_len: int
    head_hash: str
    offset: int
    state: dict[str, Any] = field(default_factory=dict)
    mark_hash: str = ""  # hash of the bytes just before ``offset``: catches truncate-and-regrow
    records: int = 0  # records read from this file so far
    bad: dict[str, int] = field(default_factory=dict)  # records skipped as malformed, by reason
    last_ts: str | None = None  # ISO time of the newest query read from it

    @property
    def key(self) -> str:
        """What identifies the file across renames: device:inode (a pseudo-path for polled tables)."""
        return self.path if self.dev == 0 and self.inode == 0 else f"{self.dev}:{self.inode}"


#: one rule's events of one batch for ``rule_window_log``: (rule id, rule logic, newest event time,
#: entries) where entries are ``[key, ts]`` or ``[key, ts, values]`` lists, or their JSON text
WindowLogRow = tuple[str, str, float, Any]


@dataclass(slots=True)
class WindowChanges:
    """What one batch changed in the rule windows, saved in the batch's transaction.

    Windowed rules are saved as an append log of the events a batch added (``log``), which a
    restart replays; only keys whose state is more than their events (a firing key's episode, a
    non-windowed kind's state) are saved per key (``states``). Rewriting every touched key's
    whole window per batch cost about one row per query."""

    #: (rule id, key) -> state (dict, or its JSON text); None deletes the key's row
    states: dict[tuple[str, str], Any] = field(default_factory=dict)
    log: list[WindowLogRow] = field(default_factory=list)
    #: rule id -> event time before which no live key holds events: log rows whose newest event
    #: is older can go
    drained: dict[str, float] = field(default_factory=dict)
    #: rule id -> the logic whose log rows stay (None: none) for rules replaced or removed by a reload
    dropped: dict[str, str | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.states or self.log or self.drained or self.dropped)

    def add(self, other: WindowChanges) -> None:
        """Fold in another part of the same batch (``replay -j``: workers own disjoint keys)."""
        self.states.update(other.states)
        self.log.extend(other.log)
        for rule, ts in other.drained.items():
            self.drained[rule] = max(ts, self.drained.get(rule, ts))
        self.dropped.update(other.dropped)
