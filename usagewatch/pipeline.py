"""The composition root: wires sources -> normalize -> rules -> store. Replay and run share it.

One ``step`` takes a chunk of complete records from one file, normalizes its events, feeds the
rules, renders the finding texts and commits findings + outbox rows + rule windows + the file's
cursor in one transaction. Only this module (and ``daemon``) knows every stage.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

from usagewatch.config import Config, FollowConfig, SourceConfig
from usagewatch.errors import SourceError
from usagewatch.metrics import Metrics
from usagewatch.model import FindingUpdate, NormalizedEvent, QueryEvent, WindowChanges
from usagewatch.normalize import Normalizer
from usagewatch.rules import RuleEngine, load_rules
from usagewatch.sources import Source
from usagewatch.sources.files import Chunk, FileSource
from usagewatch.store import Batch, Store, window_owner
from usagewatch.usage.aggregate import UsageAccumulator, UsageDelta

log = logging.getLogger(__name__)
_STATE_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass
class Stats:
    """Counters a user sees in the summary line (and, later, in metrics)."""

    files: set[str] = field(default_factory=set)
    records: int = 0
    queries: int = 0
    bad_records: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    unparsed_sql: int = 0
    new_findings: int = 0
    updated_findings: set[int] = field(default_factory=set)
    bytes_read: int = 0
    source_errors: int = 0

    def summary(self) -> str:
        return (f"{len(self.files)} files, {self.records:,} records, {self.queries:,} queries, "
                f"{self.new_findings} new findings ({len(self.updated_findings)} updated), "
                f"{sum(self.bad_records.values()):,} bad records, {self.unparsed_sql:,} queries not parsed "
                f"(token fingerprint), {sum(self.skipped.values()):,} non-query records skipped")


def make_source(sc: SourceConfig, follow: FollowConfig) -> Source:
    """The reader for one configured source."""
    if sc.type == "query":
        from usagewatch.sources.polled import PolledSource

        return PolledSource(sc.name, sc.make_format(), sc.database_url(), table=sc.table, query=sc.query,
                            cursor=sc.cursor or "", interval=sc.interval.total_seconds(), batch_rows=sc.batch_rows,
                            key=sc.key, start=sc.start_value())
    return FileSource(sc.name, sc.make_format(), sc.paths, sc.exclude, follow.batch_bytes,
                      follow.max_record_bytes, follow.close_idle.total_seconds())


@dataclass
class Evaluation:
    """What one chunk's events produced before anything is saved: the finding updates, the rule
    windows they changed, and counters. ``replay -j N`` computes these in worker processes."""

    updates: list[FindingUpdate]
    #: what changed in the rule windows, rows and log entries already JSON-encoded: encoding is a
    #: large part of saving, and done here it runs in ``replay -j``'s workers, not the saving process
    windows: WindowChanges
    unparsed: int = 0
    evaluations: dict[str, int] = field(default_factory=dict)
    #: this chunk's usage aggregates as deltas (additive, so the parts of workers add up)
    usage: UsageDelta | None = None

    @classmethod
    def merged(cls, parts: list[Evaluation]) -> Evaluation:
        """One chunk's evaluations from several workers, each over a disjoint share of the keys,
        as one (the saving process commits it as if one process had computed it)."""
        out = cls([], WindowChanges())
        for p in parts:
            out.updates.extend(p.updates)
            out.windows.add(p.windows)
            out.unparsed += p.unparsed
            for rule, n in p.evaluations.items():
                out.evaluations[rule] = out.evaluations.get(rule, 0) + n
        if any(p.usage is not None for p in parts):
            out.usage = UsageDelta.merged(p.usage for p in parts)
        return out


class Evaluator:
    """normalize -> rules over a list of events: every part of a step except reading and saving.

    Kept apart from ``Pipeline`` so a worker process can run it over its share of the events and
    hand the result back to the one process that saves."""

    def __init__(self, engine: RuleEngine, usage: bool = True):
        self.engine = engine
        self._normalizers: dict[str, Normalizer] = {}
        #: usage aggregates are counted here, per chunk, next to the rules (``usage.enabled``)
        self.usage = usage

    def normalizer(self, dialect: str) -> Normalizer:
        n = self._normalizers.get(dialect)
        if n is None:
            n = self._normalizers[dialect] = Normalizer(dialect=dialect)
        return n

    def evaluate(self, events: Iterable[QueryEvent]) -> Evaluation:
        run = self.start()
        run.feed(events)
        return run.finish()

    def start(self) -> EvaluationRun:
        """An evaluation fed in parts (``feed`` per chunk) and finished once: a replay's group of
        chunks is evaluated as it is read, so only the chunks' cursors wait for the commit, not
        their events."""
        return EvaluationRun(self)


class EvaluationRun:
    """One evaluation in progress: the keys its events touched, its usage, its unparsed count."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self.touched: list[tuple[str, str]] = []
        self.unparsed = 0
        # fresh: an evaluation that failed leaves nothing
        self.usage = UsageAccumulator() if evaluator.usage else None

    def feed(self, events: Iterable[QueryEvent]) -> None:
        evaluator = self.evaluator
        touched = self.touched
        unparsed = 0
        feed = evaluator.engine.feed
        add = self.usage.add if self.usage is not None else None
        dialect = None
        normalize = None
        for ev in events:
            if ev.dialect != dialect:  # one dialect per source: look its normalizer up when it changes
                dialect = ev.dialect
                normalize = evaluator.normalizer(dialect).normalize
            q = normalize(ev.sql, ev.params)  # type: ignore[misc]
            if not q.parsed:
                unparsed += 1
            hits = feed(NormalizedEvent(ev, q))
            if hits:
                touched.extend(hits)
            if add is not None:
                add(ev, q)
        self.unparsed += unparsed

    def finish(self) -> Evaluation:
        """The finding updates (one per touched key), the rules' counts, the window changes (as
        JSON text) and the usage of everything fed."""
        engine = self.evaluator.engine
        updates = engine.updates(self.touched)
        evaluations = dict(engine.evaluations_by_rule)
        engine.evaluations_by_rule.clear()
        dumps = _STATE_JSON.encode
        windows = engine.take_state()
        windows.states = {k: None if st is None else dumps(st) for k, st in windows.states.items()}
        windows.log = [(rule, logic, newest, dumps(entries)) for rule, logic, newest, entries in windows.log]
        return Evaluation(updates, windows, self.unparsed, evaluations,
                          self.usage.take() if self.usage is not None else None)


#: collector thresholds for a process running a pipeline (``tune_gc``)
GC_THRESHOLDS = (100_000, 20, 20)


def tune_gc() -> None:
    """Collect garbage less often than Python's default (every 700 allocations). A pipeline keeps
    millions of long-lived objects (rule windows, caches) and allocates a few dozen per query, so the
    default walked them so often that collecting took 18% of a realistic replay (4.7 of 26 CPU-s;
    1.1 s with these). Cycles are still collected: a new shape's parse tree is the main source."""
    gc.set_threshold(*GC_THRESHOLDS)


#: queries per commit in a replay (see ``Pipeline.poll``). The events are evaluated chunk by chunk
#: as they are read, so a group holds only its chunks' cursors and what the rules and usage
#: accumulate, not the events themselves. 60,000 against 20,000: 14% less CPU on a realistic
#: replay (fewer rewrites of the same usage rows and firing findings), +57 MB peak RSS (338 MB)
REPLAY_GROUP_EVENTS = 60_000


def slim(chunk: Chunk) -> Chunk:
    """The chunk as ``Pipeline.save`` needs it once its events are evaluated: it looks at them only
    for their number and the newest time, so the newest event repeated stands in for all of them."""
    events = chunk.events
    if not events:
        return chunk
    newest = max(events, key=lambda e: e.ts)
    return replace(chunk, events=[newest] * len(events))


class Pipeline:
    def __init__(self, config: Config, store: Store, sources: list[Source] | None = None,
                 on_commit: Callable[[int], None] | None = None):
        self.config = config
        self.store = store
        self.sources = sources if sources is not None else [
            make_source(s, config.follow) for s in config.sources]
        self.on_commit = on_commit
        #: the logged window events this pipeline restores and drains are those of its sources
        self.owner = window_owner([s.name for s in self.sources])
        self.stats = Stats()
        self.metrics = Metrics(config, store)
        self.evaluator = Evaluator(RuleEngine(load_rules(config.rules, config.rule_overrides)), config.usage.enabled)
        self.reload_state()

    @property
    def engine(self) -> RuleEngine:
        return self.evaluator.engine

    def reload_state(self) -> None:
        """(Re)load cursors and rule windows from the store: after start, and after a failed commit
        (the in-memory state ran ahead of what was saved, so it is thrown away)."""
        for src in self.sources:
            src.load(self.store.cursors(src.name))
        # fresh kind objects: the windows in memory may hold events of a batch that was not saved
        engine = RuleEngine([replace(r, kind=type(r.kind)(r.spec, r.kind.params)) for r in self.engine.rules])
        engine.restore(self.store.windows(), self.store.window_log(self.owner))
        self.evaluator.engine = engine

    def step(self, chunk: Chunk) -> None:
        """Normalize, evaluate and commit one chunk (see module docstring)."""
        self.save(chunk, self.evaluator.evaluate(chunk.events))

    def save(self, chunks: Chunk | list[Chunk], ev: Evaluation) -> None:
        """Commit evaluated chunks (findings, outbox, windows, usage, the cursors: one transaction)
        and count them. Several chunks form one group when a replay batches its commits."""
        group = chunks if isinstance(chunks, list) else [chunks]
        updates, unparsed, evaluations = ev.updates, ev.unparsed, ev.evaluations
        self.stats.unparsed_sql += unparsed
        result = self.store.commit(Batch(updates, [c.cursor for c in group], ev.windows, ev.usage, self.owner))
        s = self.stats
        for chunk in group:
            s.files.add(chunk.path)
            s.records += chunk.records
            s.queries += len(chunk.events)
            s.bad_records.update(chunk.bad)
            s.skipped.update(chunk.skipped)
            s.bytes_read += chunk.bytes_read
        s.new_findings += len(result.new_findings)
        s.updated_findings.update(result.updated_findings)
        opened = self._rules_of(result.new_findings, updates)
        source = group[-1].source
        for (fid, title), rule in zip(result.new_findings.items(), opened, strict=True):
            log.info("new finding %d: %s", fid, title, extra={"finding": fid, "rule": rule, "source": source})
        for i, chunk in enumerate(group):
            first = i == 0
            self.metrics.observe(chunk, unparsed if first else 0, evaluations if first else {}, opened if first else ())
        if result.new_outbox and self.on_commit:
            self.on_commit(result.new_outbox)

    def _rules_of(self, new_findings: dict[int, str], updates: list[FindingUpdate]) -> list[str]:
        """The rule of each new finding (for metrics): by its title among the batch's updates, or
        from the store when two rules gave the same title."""
        by_title: dict[str, set[str]] = {}
        for u in updates:
            by_title.setdefault(u.title, set()).add(u.rule)
        out = []
        for fid, title in new_findings.items():
            rules = by_title.get(title, set())
            if len(rules) != 1:
                f = self.store.finding(fid)
                rules = {f["rule"]} if f else {"unknown"}
            out.append(next(iter(rules)))
        return out

    def chunks(self, at_eof: bool, keep_going: bool = False) -> Iterator[Chunk]:
        """Every source's new chunks. With ``keep_going`` (the daemon) a source that fails (a polled
        database down) is logged and skipped until the next round; otherwise the error ends the run."""
        for src in self.sources:
            try:
                for path in src.paths():
                    yield from src.read(path, at_eof=at_eof)
            except SourceError as exc:
                if not keep_going:
                    raise
                self.stats.source_errors += 1
                log.error("%s; retrying on the next round", exc)

    def poll(self, at_eof: bool = False, stop: threading.Event | None = None, keep_going: bool = False,
             group_events: int = 0, on_chunk: Callable[[Chunk], None] | None = None) -> int:
        """Read every source's new complete records and commit them; returns records processed.
        ``stop`` is checked between chunks, so a shutdown waits for one batch at most.

        ``group_events`` (replay) commits once per that many queries instead of once per chunk:
        each commit rewrites every rule window and finding its chunks touched, and a window or
        firing finding touched in ten chunks is then written once instead of ten times (on a
        realistic log 311 -> 84 us of store time per query). The daemon commits per chunk, so a
        finding's email never waits for a group to fill."""
        n = 0
        group: list[Chunk] = []
        queued = 0
        run: EvaluationRun | None = None
        for chunk in self.chunks(at_eof, keep_going):
            n += chunk.records
            if group_events <= 0:
                self.step(chunk)
            else:
                if run is None:
                    run = self.evaluator.start()
                run.feed(chunk.events)  # evaluated as read: the group keeps the cursors, not the events
                group.append(slim(chunk))
                queued += len(chunk.events)
                if queued >= group_events:
                    self.save(group, run.finish())
                    group, queued, run = [], 0, None
            if on_chunk is not None:
                on_chunk(chunk)
            if stop is not None and stop.is_set():
                break
        if group and run is not None:
            self.save(group, run.finish())
        return n

    def flush_idle(self, idle_seconds: float) -> None:
        for src in self.sources:
            for chunk in list(src.flush_idle(idle_seconds)):
                self.step(chunk)
