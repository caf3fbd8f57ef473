"""``replay -j N``: the replay spread over N worker processes, with the findings of one process.

Normalizing and evaluating the rules cost ~4x more per query than reading and parsing its records,
and rule keys never span two users (every stock rule groups by user). So:

- **The parent reads**, through the pipeline's own sources, exactly as ``-j 1`` does (same
  chunks, same cursors, held-back statements included), and groups the chunks exactly as
  ``Pipeline.poll(group_events=...)`` groups them for one commit.
- **Worker k evaluates the events of its partition**: those whose partition fields (user, or
  whatever every rule groups by that is known before normalization) hash to k with a stable hash
  (crc32, not ``hash()``, which is salted per process). The parent sends each worker, per chunk,
  its events as plain tuples (pickling a tuple of strings costs a fifth of pickling a
  ``QueryEvent``), plus the time and partition of every event of the chunk (a few bytes each).
  Reading once and shipping costs ~0.6 + 1.2 CPU s per 200,000 queries (parent + workers), against
  ~3.3 s for every worker to read every record, as the first version did.
- **The parent saves.** For each group it receives the N workers' ``Evaluation``s, merges them
  with ``Evaluation.merged`` and commits them with the group's cursors in one transaction via
  ``Pipeline.save``: the store sees exactly the commits of ``-j 1``, in the same order, so a later
  ``usagewatch run`` (or another replay, with any ``-j``) continues seamlessly. It reads the next
  chunks while the workers evaluate: a thread per worker writes the parent's messages to the
  worker's pipe from a short queue, and another drains the worker's results into a queue.

Two details keep the rule windows identical to ``-j 1``, not just the findings:

- **One clock for all.** The engine sweeps drained windows every ``SWEEP_EVERY`` events at the
  newest event time seen. A worker advances that clock for the events of the other partitions
  too (their times come with each chunk), so it sweeps at the same events and the same time as
  ``-j 1`` would (``_Share``).
- **Only the owner deletes.** Workers are forked after the parent restored every saved window,
  so each holds copies of windows of keys it never sees. When such a stale copy drains it reports
  a deletion, which must not win over the owner's live window: the parent remembers which worker
  wrote each key and drops deletions from the others (``_Owners``).

Workers are forked (Linux) after the parent built the ``Pipeline``, so they inherit the restored
windows and the rules without touching the store; they never use the parent's database connections
nor read a source. A file that grows while the replay reads it is read as ``-j 1`` reads it.
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
from array import array
from collections import deque
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any, Callable, Iterator, Sequence

from usagewatch.errors import UsagewatchError
from usagewatch.model import QueryEvent
from usagewatch.pipeline import Evaluation, EvaluationRun, Pipeline, slim
from usagewatch.rules import RuleEngine
from usagewatch.rules.loader import Rule
from usagewatch.sources.files import Chunk

log = logging.getLogger(__name__)

#: ``group_by`` fields a source fills in, so an event's partition is known before it is normalized
#: (``fingerprint`` and ``table`` come out of the normalizer, which is the work being spread)
PARTITION_FIELDS = ("user", "database", "application", "source")

WindowKey = tuple[str, str]


#: the most workers ``-j`` starts (an event's partition travels as a 16-bit number; and far more
#: workers than CPUs only add processes that wait for a core)
MAX_JOBS = 1024


def jobs_of(jobs: int) -> int:
    """``-j 0`` means one worker per CPU this process may run on."""
    if jobs < 0:
        raise UsagewatchError(f"-j {jobs}: the number of jobs cannot be negative (0 = one per CPU).")
    if jobs > MAX_JOBS:
        raise UsagewatchError(f"-j {jobs}: at most {MAX_JOBS:,} jobs; more workers than CPUs do not help "
                              f"(-j 0 = one per CPU).")
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
        #: the event's partition values: one value for one field, else a tuple (one C call)
        self.values = attrgetter(*fields)
        #: partition by those values, as ``values`` gives them
        self.known: dict[Any, int] = {}

    def __call__(self, ev: QueryEvent) -> int:
        raw = self.values(ev)
        k = self.known.get(raw)
        if k is None:
            values = (raw,) if len(self.fields) == 1 else raw
            blob = "\x1f".join(v or "" for v in values).encode("utf-8", "surrogatepass")  # as rule keys see them: None == ""
            k = self.known[raw] = zlib.crc32(blob) % self.jobs
        return k


#: a ``QueryEvent``'s fields in order: the parent sends an event as the tuple of them
EVENT_FIELDS = tuple(f.name for f in fields(QueryEvent))
_pack = attrgetter(*EVENT_FIELDS)


@dataclass
class _Part:
    """One chunk as one worker needs it: the partition and time of every event in log order, and
    the worker's own events as tuples. ``finish``: the chunk ends a commit group."""

    partitions: array[int]
    times: array[float]
    mine: list[tuple[Any, ...]]
    finish: bool


def split(events: list[QueryEvent], part: Partitioner) -> tuple[array[int], array[float], list[list[tuple[Any, ...]]]]:
    """The events' partitions and times (as the engine's clock reads them), and each partition's
    events as tuples."""
    partitions = array("H")
    times = array("d")
    mine: list[list[tuple[Any, ...]]] = [[] for _ in range(part.jobs)]
    own, tick = partitions.append, times.append
    values, known = part.values, part.known
    for ev in events:  # ``part(ev)`` and ``ts_of(ev.ts)`` inlined: this runs for every event
        k = known.get(values(ev))
        if k is None:
            k = part(ev)
        own(k)
        tick(ev.ts.timestamp())
        mine[k].append(_pack(ev))
    return partitions, times, mine


class _Share:
    """The events of one worker's partition of a chunk, in order, as an iterator for
    ``EvaluationRun.feed``.

    For each event of another partition it moves the engine's event-time clock exactly as
    ``RuleEngine.feed`` would have (newest time, events since the last sweep, the sweep itself), so
    windows drain at the same events as in ``-j 1``; being lazy, the ticks interleave with the feeds
    in log order."""

    def __init__(self, k: int, part: _Part, engine: RuleEngine):
        self.k = k
        self.part = part
        self.engine = engine

    def __iter__(self) -> Iterator[QueryEvent]:
        k, tick, times = self.k, self.engine.tick_at, self.part.times
        mine = iter(self.part.mine)
        for i, partition in enumerate(self.part.partitions):
            if partition == k:
                yield QueryEvent(*next(mine))
            else:
                tick(times[i])


# to a worker: a pickled _Part, or b"" (no more chunks)
# from a worker: ("group", evaluation) | ("done",)
# | ("error", the UsagewatchError or None, its one-line text, its traceback)
Message = tuple[Any, ...]


def _work(k: int, pipeline: Pipeline, inbox: Connection, conn: Connection, theirs: list[Connection]) -> None:
    """A worker's life: evaluate the parts it is sent, one result per commit group; never read a
    source, never save. ``theirs``: the parent's pipe ends this process inherited, closed here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    for c in theirs:
        c.close()
    # the parent's pooled connections are the parent's: forget them without closing them (closing
    # would, for PostgreSQL, end the parent's session on the server)
    pipeline.store.engine.dispose(close=False)
    try:
        evaluator = pipeline.evaluator
        run: EvaluationRun | None = None
        while True:
            data = inbox.recv_bytes()
            if not data:
                break
            part: _Part = _loads(data)
            if run is None:
                run = evaluator.start()
            run.feed(_Share(k, part, evaluator.engine))  # as received: the events are not kept
            if part.finish:
                evaluation = run.finish()
                conn.send(("group", evaluation))
                del evaluation
                run = None
                _settle()
            del part, data
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


def _loads(data: bytes) -> Any:
    """Unpickle a message with the cyclic GC paused. A group's results are hundreds of thousands
    of small dicts and lists (rule windows), a chunk's events tens of thousands of tuples;
    allocating them sets off collections that each walk the whole heap, which cost more than the
    unpickling itself. Plain data has no cycles to find, so pausing the collector loses nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(data)
    finally:
        if enabled:
            gc.enable()


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
    """One worker process and, in the parent, two threads: one writes the parent's parts to the
    worker's pipe from a short queue, one drains the worker's results into a queue.

    Without them the parent would wait in ``send`` for a busy worker to read its part (a part is
    larger than a pipe's buffer), and a worker in ``send`` for the parent to finish a commit:
    parent and workers would take turns on the CPUs. With them the parent reads up to ``AHEAD``
    chunks ahead of each worker, and the workers evaluate while it saves."""

    AHEAD = 8

    def __init__(self, index: int, process: multiprocessing.process.BaseProcess, conn: Connection,
                 outbox: Connection):
        self.index = index
        self.process = process
        self.conn = conn
        self.outbox = outbox
        self._inbox: queue.Queue[bytes | None] = queue.Queue()  # at most one result per group in flight
        self._parts: queue.Queue[bytes | None] = queue.Queue(self.AHEAD)
        self._thread = threading.Thread(target=self._drain, name=f"{process.name}-inbox", daemon=True)
        self._writer = threading.Thread(target=self._write, name=f"{process.name}-outbox", daemon=True)
        self._thread.start()
        self._writer.start()

    def _drain(self) -> None:
        """Move messages, still pickled, from the pipe to the queue; None when the pipe ends
        (after the worker's last message, or its death)."""
        try:
            while True:
                self._inbox.put(self.conn.recv_bytes())
        except (EOFError, OSError):
            self._inbox.put(None)

    def _write(self) -> None:
        """Send the queued parts; after the last one (None) close the pipe. A dead worker's parts
        are dropped, so the parent never waits on them (it learns of the death from ``receive``)."""
        broken = False
        while True:
            data = self._parts.get()
            if data is None:
                break
            if not broken:
                try:
                    self.outbox.send_bytes(data)
                except OSError:  # the worker is gone
                    broken = True
        if not broken:
            try:
                self.outbox.send_bytes(b"")
            except OSError:
                pass

    def send(self, data: bytes | None, jobs: int) -> None:
        """Queue a pickled part for the worker (None: no more); a worker that died is an error."""
        while True:
            try:  # a timeout, so a dead worker and Ctrl-C are seen whatever the platform's lock waits do
                self._parts.put(data, timeout=0.5)
                return
            except queue.Full:
                if not self.process.is_alive():
                    while True:
                        self.receive(jobs)  # raises with the worker's error, or says how it ended

    def ready(self) -> bool:
        return not self._inbox.empty()

    def receive(self, jobs: int) -> Message:
        """The worker's next message; its death or failure as an error that says what to do."""
        while True:
            try:  # a timeout, so Ctrl-C is seen at once whatever the platform's lock waits do
                data = self._inbox.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        msg: Message | None = None if data is None else _loads(data)
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
        while self._writer.is_alive():  # it may wait for a part: give it the end
            try:
                self._parts.put(None, timeout=0.1)
            except queue.Full:
                try:
                    self._parts.get_nowait()
                except queue.Empty:
                    pass
        self._thread.join(timeout=5)
        self.conn.close()
        self.outbox.close()


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
    """End the workers (done, failed or still evaluating) and reap them."""
    for w in workers:
        w.stop()
    for w in workers:
        w.reap()


#: commit groups the workers may be evaluating before the parent waits to save the oldest
MAX_PENDING = 2


def replay_jobs(pipeline: Pipeline, jobs: int, progress: Callable[[int], None] | None = None,
                group_events: int = 0) -> None:
    """Replay the pipeline's sources to their end with ``jobs`` worker processes (see the module
    docstring); ``progress`` gets the bytes of each saved group. The store and the pipeline's stats
    end up as ``pipeline.poll(at_eof=True, group_events=group_events)`` leaves them: the same
    groups of chunks are evaluated together and committed together."""
    bump = progress or (lambda n: None)
    if "fork" not in multiprocessing.get_all_start_methods():
        raise UsagewatchError(f"replay -j {jobs} needs to fork worker processes, which this platform cannot; "
                              "replay with -j 1.")
    fields = partition_fields(pipeline.engine.rules, jobs)
    ctx = multiprocessing.get_context("fork")
    workers: list[_Worker] = []
    started: list[tuple[multiprocessing.process.BaseProcess, Connection, Connection]] = []
    try:
        gc.freeze()  # the inherited objects stay out of the workers' collections: fewer copied pages, less GC work
        try:
            for k in range(jobs):  # all forked before any thread starts: a fork copies only its caller's thread
                results, send = ctx.Pipe(duplex=False)
                inbox, post = ctx.Pipe(duplex=False)
                # the parent's ends of every pipe so far, which the worker closes: a worker's inbox
                # must have no writer but the parent, so that it ends when the parent does
                theirs = [results, post, *(c for _, r, o in started for c in (r, o))]
                p = ctx.Process(target=_work, args=(k, pipeline, inbox, send, theirs),
                                name=f"usagewatch-replay-{k + 1}", daemon=True)
                p.start()
                send.close()  # only the worker writes its results: its death then reads as EOF here
                inbox.close()
                started.append((p, results, post))
        finally:
            gc.unfreeze()
        workers.extend(_Worker(k, p, r, o) for k, (p, r, o) in enumerate(started))
        _feed_and_save(pipeline, workers, Partitioner(fields, jobs), group_events, bump)
    finally:
        gc.unfreeze()  # what _settle froze in this process is the collector's again
        _stop(workers)
        for orphan, r, o in started[len(workers):]:  # forked, but the rest failed to start
            orphan.terminate()
            orphan.join()
            r.close()
            o.close()


def _feed_and_save(pipeline: Pipeline, workers: list[_Worker], part: Partitioner, group_events: int,
                   bump: Callable[[int], None]) -> None:
    """The parent's loop: read a chunk, send each worker its part; save each group once every
    worker has evaluated it, in order (waiting for the oldest when ``MAX_PENDING`` are out)."""
    jobs = len(workers)
    owners = _Owners()
    pending: deque[list[Chunk]] = deque()

    def save_oldest() -> None:
        msgs = [w.receive(jobs) for w in workers]
        group = pending.popleft()
        pipeline.save(group, Evaluation.merged(owners.reconcile([m[1] for m in msgs])))
        bump(sum(c.bytes_read for c in group))
        _settle()

    group: list[Chunk] = []
    queued = 0
    for chunk in pipeline.chunks(at_eof=True):
        partitions, times, mine = split(chunk.events, part)
        queued += len(chunk.events)
        finish = group_events <= 0 or queued >= group_events
        for k, w in enumerate(workers):
            w.send(pickle.dumps(_Part(partitions, times, mine[k], finish), protocol=pickle.HIGHEST_PROTOCOL), jobs)
        del mine
        group.append(slim(chunk))
        if finish:
            pending.append(group)
            group, queued = [], 0
        while pending and (len(pending) > MAX_PENDING or all(w.ready() for w in workers)):
            save_oldest()
    if group:
        last = pickle.dumps(_Part(array("H"), array("d"), [], True), protocol=pickle.HIGHEST_PROTOCOL)
        for w in workers:
            w.send(last, jobs)
        pending.append(group)
    for w in workers:
        w.send(None, jobs)
    while pending:
        save_oldest()
    for w in workers:
        msg = w.receive(jobs)
        assert msg[0] == "done", msg
