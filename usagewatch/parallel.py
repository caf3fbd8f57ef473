"""``replay -j N``: the replay spread over N worker processes, with the findings of one process.

Normalizing and evaluating the rules cost ~5x more per query than reading and parsing its records,
and rule keys never span two users (every stock rule groups by user). So:

- **Every worker reads and parses every record** of every file, through the pipeline's own
  sources, and so cuts the files into the same chunks as ``-j 1`` (same ``follow.batch_bytes``)
  with the same cursors (held-back statements included); reading is cheap enough to repeat.
- **Worker k evaluates only the events of its partition**: those whose partition fields (user,
  or whatever every rule groups by that is known before normalization) hash to k with a stable
  hash (crc32, not ``hash()``, which is salted per process).
- **One process saves.** Workers group chunks exactly as ``Pipeline.poll(group_events=...)`` does
  for one commit (by the count of all their events). The parent receives, for each group, the N
  workers' ``Evaluation``s, merges them with ``Evaluation.merged`` and commits them with the
  group's cursors in one transaction via ``Pipeline.save``: the store sees exactly the commits of
  ``-j 1``, in the same order, so a later ``usagewatch run`` (or another replay, with any ``-j``)
  continues seamlessly. Saving is a third of ``-j 1``'s work and stays in one process; it
  overlaps with the workers' evaluation of the next groups (a thread per worker drains its pipe
  into a short queue, so workers run ahead of the commits).

Two details keep the rule windows identical to ``-j 1``, not just the findings:

- **One clock for all.** The engine sweeps drained windows every ``SWEEP_EVERY`` events at the
  newest event time seen. A worker advances that clock for the events it skips too, so it sweeps
  at the same events and the same time as ``-j 1`` would (``_Share``).
- **Only the owner deletes.** Workers are forked after the parent restored every saved window,
  so each holds copies of windows of keys it never sees. When such a stale copy drains it reports
  a deletion, which must not win over the owner's live window: the parent remembers which worker
  wrote each key and drops deletions from the others (``_Owners``).

Workers are forked (Linux) after the parent built the ``Pipeline``, so they inherit the restored
cursors and windows without touching the store; they never use the parent's database connections.
A file that changes while the workers read it (a live log still growing at its end, a rotation)
can make them cut different chunks; the parent compares every worker's chunk (cursor included)
before saving it, and at the first difference stops the workers and reads the rest of the files
in its own process, from the last committed chunk: identical findings, only less parallel.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from usagewatch.errors import UsagewatchError
from usagewatch.model import FileCursor, QueryEvent
from usagewatch.pipeline import Evaluation, EvaluationRun, Pipeline
from usagewatch.rules import RuleEngine
from usagewatch.rules.loader import Rule
from usagewatch.sources.files import Chunk, FileSource

log = logging.getLogger(__name__)

#: ``group_by`` fields a source fills in, so an event's partition is known before it is normalized
#: (``fingerprint`` and ``table`` come out of the normalizer, which is the work being spread)
PARTITION_FIELDS = ("user", "database", "application", "source")

WindowKey = tuple[str, str]


def jobs_of(jobs: int) -> int:
    """``-j 0`` means one worker per CPU this process may run on."""
    if jobs < 0:
        raise UsagewatchError(f"-j {jobs}: the number of jobs cannot be negative (0 = one per CPU).")
    if jobs:
        return jobs
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def partition_fields(rules: Sequence[Rule], jobs: int) -> tuple[str, ...]:
    """The fields to spread events over workers by: those every rule groups by that a source fills
    in. Every rule key then lies in one partition, so no window is split between workers.

    With none (a rule that counts across users, e.g. ``group_by: [fingerprint]``), the work cannot
    be spread without changing what the rule counts, so that is an error naming the rule.
    """
    common: list[str] | None = None
    for rule in rules:
        group_by = getattr(rule.kind.params, "group_by", None) or []
        own = [f for f in PARTITION_FIELDS if f in group_by]
        narrowed = own if common is None else [f for f in common if f in own]
        if not narrowed:
            if common is None or not own:
                why = (f"groups by {', '.join(group_by)} only" if group_by else "does not group its events")
                raise UsagewatchError(
                    f"replay -j {jobs} gives each worker the queries of some users, and rule {rule.id!r} "
                    f"({rule.source}) {why}: it counts queries of several users together. Add user to "
                    f"its group_by, or replay with -j 1.")
            raise UsagewatchError(
                f"replay -j {jobs} needs a field every rule groups by ({', '.join(PARTITION_FIELDS)}); rule "
                f"{rule.id!r} ({rule.source}) groups by {', '.join(group_by)}, the rules before it by "
                f"{', '.join(common)}. Group them by one common field, or replay with -j 1.")
        common = narrowed
    return tuple(common or ("user",))


class Partitioner:
    """Which worker an event goes to: a stable hash of its partition fields, modulo the workers.

    crc32, because every worker must compute the same answer and ``hash()`` of a str is salted
    per interpreter (and a later ``usagewatch`` version must not care either way)."""

    def __init__(self, fields: tuple[str, ...], jobs: int):
        self.fields = fields
        self.jobs = jobs
        self._cache: dict[tuple[str, ...], int] = {}

    def __call__(self, ev: QueryEvent) -> int:
        values = tuple(getattr(ev, f) or "" for f in self.fields)  # as rule keys see them: None == ""
        k = self._cache.get(values)
        if k is None:
            blob = "\x1f".join(values).encode("utf-8", "surrogatepass")
            k = self._cache[values] = zlib.crc32(blob) % self.jobs
        return k


class _Share:
    """The events of one worker's partition, in order, as an iterator for ``Evaluator.evaluate``.

    For each event it skips it moves the engine's event-time clock exactly as ``RuleEngine.feed``
    would have (newest time, events since the last sweep, the sweep itself), so windows drain at
    the same events as in ``-j 1``; being lazy, the ticks interleave with the feeds in log order.
    """

    def __init__(self, events: list[QueryEvent], mine: Callable[[QueryEvent], bool], engine: RuleEngine):
        self.events = events
        self.mine = mine
        self.engine = engine

    def __iter__(self) -> Iterator[QueryEvent]:
        tick, mine = self.engine.tick, self.mine
        for ev in self.events:
            if mine(ev):
                yield ev
            else:
                tick(ev)


@dataclass(frozen=True)
class _Head:
    """A chunk without its events: what the saving process needs of it (and what every worker must
    agree on). The events stay in the workers; the count and the newest one stand in for them."""

    source: str
    path: str
    cursor: FileCursor
    records: int
    bad: dict[str, int]
    skipped: dict[str, int]
    bytes_read: int
    queries: int
    newest: QueryEvent | None

    @classmethod
    def of(cls, chunk: Chunk) -> _Head:
        newest = max(chunk.events, key=lambda e: e.ts) if chunk.events else None
        return cls(chunk.source, chunk.path, chunk.cursor, chunk.records, dict(chunk.bad), dict(chunk.skipped),
                   chunk.bytes_read, len(chunk.events), newest)

    def chunk(self) -> Chunk:
        """A chunk ``Pipeline.save`` counts like the original: it looks at its events only for
        their number and newest time, so the newest event repeated stands in for all of them."""
        events = [self.newest] * self.queries if self.newest is not None else []
        return Chunk(self.source, self.path, events, self.cursor, self.records, Counter(self.bad),
                     Counter(self.skipped), self.bytes_read)


# messages from a worker: ("chunk", [head, ...], evaluation) | ("done",)
# | ("error", the UsagewatchError or None, its one-line text, its traceback)
Message = tuple[Any, ...]


def _work(k: int, jobs: int, pipeline: Pipeline, fields: tuple[str, ...], group_events: int,
          conn: multiprocessing.connection.Connection) -> None:
    """A worker's life: read every chunk, evaluate its share, send the result; never save.

    Chunks are grouped as ``Pipeline.poll(group_events=...)`` groups them for one commit, by the
    number of ALL their events (which every worker knows), so each group is the same everywhere."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    # the parent's pooled connections are the parent's: forget them without closing them (closing
    # would, for PostgreSQL, end the parent's session on the server)
    pipeline.store.engine.dispose(close=False)
    try:
        part = Partitioner(fields, jobs)
        evaluator = pipeline.evaluator

        def mine(ev: QueryEvent) -> bool:
            return part(ev) == k

        def send(heads: list[_Head], run: EvaluationRun) -> None:
            evaluation = run.finish()
            conn.send(("chunk", heads, evaluation))
            del evaluation
            _settle()

        heads: list[_Head] = []
        queued = 0
        run: EvaluationRun | None = None
        for chunk in pipeline.chunks(at_eof=True):
            if run is None:
                run = evaluator.start()
            run.feed(_Share(chunk.events, mine, evaluator.engine))  # as read: the events are not kept
            heads.append(_Head.of(chunk))
            queued += len(chunk.events)
            if queued >= group_events:
                send(heads, run)
                heads, queued, run = [], 0, None
        if heads and run is not None:
            send(heads, run)
        conn.send(("done",))
    except BaseException as exc:  # reported to the parent, which decides; a worker never exits silently
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        detail = traceback.format_exc()
        for reported in (exc if isinstance(exc, UsagewatchError) else None, None):
            try:
                conn.send(("error", reported, text, detail))
                break
            except Exception:  # unpicklable exception (try its text alone), or the parent is gone
                continue
        sys.exit(1)
    finally:
        conn.close()


def _loads(data: bytes) -> Message:
    """Unpickle a worker's message with the cyclic GC paused. A chunk's results are hundreds of
    thousands of small dicts and lists (rule windows); allocating them sets off collections that
    each walk the whole heap, which cost more than the unpickling itself. Plain data has no cycles
    to find, so pausing the collector loses nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        msg: Message = pickle.loads(data)
    finally:
        if enabled:
            gc.enable()
    return msg


def _settle() -> None:
    """Collect what a group left, then move every surviving object out of the collector's sight.

    Between groups a process keeps long-lived objects (rule windows, normalizer caches, in the
    worker; the store's machinery in the parent) that a full collection would walk again and
    again while the next group allocates; once frozen they are never walked again. Collecting
    first means no garbage cycle (sqlglot trees point back to their parents) is frozen with them;
    frozen objects that die later are still freed by reference counting."""
    gc.collect()
    gc.freeze()


class _Worker:
    """One worker process and, in the parent, a thread that drains its pipe into a short queue.

    Without the thread a worker would block in ``send`` (its results are larger than a pipe's
    buffer) until the parent had saved the chunk before: parent and workers would take turns on the
    CPUs. With it a worker runs up to ``AHEAD`` chunks ahead of the commits (bounded memory)."""

    AHEAD = 4

    def __init__(self, index: int, process: multiprocessing.process.BaseProcess,
                 conn: multiprocessing.connection.Connection):
        self.index = index
        self.process = process
        self.conn = conn
        self._inbox: queue.Queue[bytes | None] = queue.Queue(self.AHEAD)
        self._thread = threading.Thread(target=self._drain, name=f"{process.name}-inbox", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        """Move messages, still pickled, from the pipe to the queue; None when the pipe ends
        (after the worker's last message, or its death)."""
        try:
            while True:
                self._inbox.put(self.conn.recv_bytes())
        except (EOFError, OSError):
            self._inbox.put(None)

    def receive(self, jobs: int) -> Message:
        """The worker's next message; its death or failure as an error that says what to do."""
        while True:
            try:  # a timeout, so Ctrl-C is seen at once whatever the platform's lock waits do
                data = self._inbox.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        msg = None if data is None else _loads(data)
        if msg is None:
            self.process.join(timeout=5)
            code = self.process.exitcode
            how = (f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exited with status {code}")
            raise UsagewatchError(
                f"replay worker {self.index + 1} of {jobs} {how}; the store holds every chunk saved before "
                f"(nothing half-saved): run the replay again to continue from there.")
        if msg[0] == "error":
            _, exc, text, detail = msg
            log.debug("replay worker %d of %d failed:\n%s", self.index + 1, jobs, detail)
            if exc is not None:
                raise exc
            raise UsagewatchError(f"replay worker {self.index + 1} of {jobs} failed: {text}; the store holds "
                                  f"every chunk saved before (nothing half-saved).")
        return msg

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()

    def reap(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        while self._thread.is_alive():  # it may wait to put a message: make room until it ends
            try:
                self._inbox.get(timeout=0.1)
            except queue.Empty:
                pass
        self.conn.close()


@dataclass
class _Owners:
    """Which worker wrote each window key, to drop the deletions that other workers' stale copies
    (inherited at fork) report when they drain. A key nobody wrote yet is a restored window every
    worker holds the same copy of and sweeps at the same event, so their deletions agree."""

    by_key: dict[WindowKey, int] = field(default_factory=dict)

    def reconcile(self, parts: list[Evaluation]) -> list[Evaluation]:
        by_key = self.by_key
        for k, part in enumerate(parts):
            for key, state in part.windows.states.items():
                if state is not None:
                    by_key[key] = k
        for k, part in enumerate(parts):
            stale = [key for key, state in part.windows.states.items() if state is None and by_key.get(key, k) != k]
            for key in stale:
                del part.windows.states[key]
        for k, part in enumerate(parts):
            for key, state in part.windows.states.items():
                if state is None and by_key.get(key) == k:
                    del by_key[key]  # gone everywhere: the others' copies drained no later than the owner's
        return parts


def _stop(workers: list[_Worker]) -> None:
    """End the workers (done, failed or still reading) and reap them."""
    for w in workers:
        w.stop()
    for w in workers:
        w.reap()


def replay_jobs(pipeline: Pipeline, jobs: int, progress: Callable[[int], None] | None = None,
                group_events: int = 0) -> None:
    """Replay the pipeline's sources to their end with ``jobs`` worker processes (see the module
    docstring); ``progress`` gets the bytes of each saved chunk. The store and the pipeline's stats
    end up as ``pipeline.poll(at_eof=True, group_events=group_events)`` leaves them: the same
    groups of chunks are evaluated together and committed together."""
    bump = progress or (lambda n: None)
    files_only = [s for s in pipeline.sources if not isinstance(s, FileSource)]
    if files_only:
        log.warning("source %r is a query-history table; replay -j spreads log files only, so this replay "
                    "runs in one process", files_only[0].name)
        _serial(pipeline, bump, group_events)
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        raise UsagewatchError(f"replay -j {jobs} needs to fork worker processes, which this platform cannot; "
                              "replay with -j 1.")
    fields = partition_fields(pipeline.engine.rules, jobs)
    ctx = multiprocessing.get_context("fork")
    workers: list[_Worker] = []
    started: list[tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]] = []
    try:
        gc.freeze()  # the inherited objects stay out of the workers' collections: fewer copied pages, less GC work
        try:
            for k in range(jobs):  # all forked before any thread starts: a fork copies only its caller's thread
                recv, send = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_work, args=(k, jobs, pipeline, fields, group_events, send),
                                name=f"usagewatch-replay-{k + 1}", daemon=True)
                p.start()
                send.close()  # only the worker writes: its death then reads as EOF here
                started.append((p, recv))
        finally:
            gc.unfreeze()
        workers.extend(_Worker(k, p, recv) for k, (p, recv) in enumerate(started))
        owners = _Owners()
        while True:
            msgs = [w.receive(jobs) for w in workers]
            if all(m[0] == "done" for m in msgs):
                return
            heads = [m[1] if m[0] == "chunk" else None for m in msgs]
            if any(h != heads[0] for h in heads):
                where = next((h[0].path for h in heads if h), "a file")
                log.warning("%s changed while %d workers were reading it (still being written?); reading the "
                            "rest in one process from the last saved chunk", where, jobs)
                _stop(workers)
                pipeline.reload_state()
                _serial(pipeline, bump, group_events)
                return
            group = heads[0]
            assert group is not None
            pipeline.save([h.chunk() for h in group], Evaluation.merged(owners.reconcile([m[2] for m in msgs])))
            bump(sum(h.bytes_read for h in group))
            del msgs, heads, group
            _settle()
    finally:
        gc.unfreeze()  # what _settle froze in this process is the collector's again
        _stop(workers)
        for orphan, conn in started[len(workers):]:  # forked, but the rest failed to start
            orphan.terminate()
            orphan.join()
            conn.close()


def _serial(pipeline: Pipeline, bump: Callable[[int], None], group_events: int) -> None:
    pipeline.poll(at_eof=True, group_events=group_events, on_chunk=lambda c: bump(c.bytes_read))
