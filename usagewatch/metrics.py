"""Prometheus metrics: what the pipeline did (counters, per chunk) and where things stand (gauges,
computed when scraped from the store and the log files).

Every ``Pipeline`` owns a ``Metrics`` with its own ``CollectorRegistry`` (never the global one), so
two pipelines in one process (tests) never mix their numbers. The daemon serves it with ONE call::

    server = metrics.start_http(config.metrics, pipeline)   # None config: serves nothing
    ...
    server.stop()

Counters are incremented once per committed chunk, never per record, so the cost does not grow
with the log volume. Gauges are read at scrape time: bytes behind from the committed cursors and
the files' sizes (what ``usagewatch sources`` shows), deliveries and findings by status with one
``COUNT ... GROUP BY`` each, so they are true even for work done by another process.

Delivery failures happen in the sender, which does not know the pipeline: it calls
``delivery_failed(channel)``, a process-wide counter that every ``Metrics`` registry exposes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from usagewatch.config import Config, MetricsConfig
from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.sources.files import HELD, Chunk, FileSource
from usagewatch.store import Store
from usagewatch.store.tables import ACTIVE_STATUSES, CLOSED_STATUSES, deliveries, findings, outbox

if TYPE_CHECKING:
    from usagewatch.pipeline import Pipeline

log = logging.getLogger(__name__)

disable_created_metrics()  # no *_created series: they double the output and nobody alerts on them

DELIVERY_STATUSES = ("pending", "queued", "sent", "dead")
FINDING_STATUSES = (*ACTIVE_STATUSES, *CLOSED_STATUSES)

#: process-wide, because the sender (its own thread) has no pipeline; see ``delivery_failed``
_PROCESS = CollectorRegistry(auto_describe=True)
_DELIVERY_FAILURES = Counter("usagewatch_delivery_failures", "Failed attempts to send a notification, by channel "
                             "(email, webhook:<name>); each retry that fails counts again.", ["channel"],
                             registry=_PROCESS)


def delivery_failed(channel: str, n: int = 1) -> None:
    """Count ``n`` failed attempts to deliver over ``channel`` (the sender calls this)."""
    _DELIVERY_FAILURES.labels(channel).inc(n)


class _Forward(Collector):
    """Exposes a collector registered elsewhere (the process-wide one) in another registry."""

    def __init__(self, inner: CollectorRegistry):
        self.inner = inner

    def collect(self) -> Iterable[Any]:
        return self.inner.collect()

    def describe(self) -> Iterable[Any]:
        return []  # so registering does not collect


# --- what the store says: shared by the scrape and `usagewatch status` ---------------------------------
@dataclass
class StoreCounts:
    findings: dict[str, int]
    deliveries: dict[str, int]
    unrouted: int  # outbox rows no route has taken yet
    oldest_pending: dict[str, Any] | None  # the notification waiting longest (a delivery or an unrouted row)


def store_counts(store: Store) -> StoreCounts:
    """Findings and deliveries by status, and the oldest notification not sent yet: a handful of
    cheap aggregate queries. Raises SQLAlchemyError when the store cannot be read."""
    with store.engine.connect() as conn:
        f = {s: 0 for s in FINDING_STATUSES}
        f.update({str(s): int(n) for s, n in conn.execute(
            sa.select(findings.c.status, sa.func.count()).group_by(findings.c.status))})
        d = {s: 0 for s in DELIVERY_STATUSES}
        d.update({str(s): int(n) for s, n in conn.execute(
            sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status))})
        unrouted = int(conn.execute(sa.select(sa.func.count()).select_from(outbox)
                                    .where(outbox.c.status == "pending")).scalar() or 0)
        oldest: dict[str, Any] | None = None
        row = conn.execute(sa.select(deliveries.c.id, deliveries.c.finding_id, deliveries.c.channel,
                                     deliveries.c.created_at, deliveries.c.attempts, deliveries.c.last_error)
                           .where(deliveries.c.status == "pending")
                           .order_by(deliveries.c.created_at, deliveries.c.id).limit(1)).first()
        if row is not None:
            oldest = {"kind": "delivery", "id": int(row.id), "finding_id": int(row.finding_id),
                      "channel": row.channel, "since": row.created_at, "attempts": int(row.attempts),
                      "last_error": row.last_error}
        first = conn.execute(sa.select(outbox.c.id, outbox.c.finding_id, outbox.c.created_at)
                             .where(outbox.c.status == "pending").order_by(outbox.c.created_at, outbox.c.id)
                             .limit(1)).first()
        if first is not None and (oldest is None or first.created_at < oldest["since"]):
            oldest = {"kind": "unrouted", "id": int(first.id), "finding_id": int(first.finding_id), "channel": None,
                      "since": first.created_at, "attempts": 0, "last_error": None}
    return StoreCounts(f, d, unrouted, oldest)


def newest_query(store: Store, source: str) -> datetime | None:
    """The newest query time committed for a source (its cursors' ``last_ts``)."""
    stamps = [c.last_ts for c in store.cursors(source).values() if c.last_ts]
    return _parse_ts(max(stamps)) if stamps else None


def _parse_ts(value: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


# --- the pipeline's metrics ------------------------------------------------------------------------------
class Metrics:
    """The counters the pipeline increments, and the gauges read at scrape time."""

    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.records = Counter("usagewatch_records", "Log records (or history rows) read, by source.",
                               ["source"], registry=r)
        self.skipped = Counter("usagewatch_records_skipped", "Records skipped, by source and reason: "
                               "bad:<reason> for malformed records, not-query:<reason> for records that "
                               "are not query executions (connections, duration lines, ...).",
                               ["source", "reason"], registry=r)
        self.queries = Counter("usagewatch_queries", "Query executions normalized, by source.", ["source"], registry=r)
        self.unparsed = Counter("usagewatch_sql_unparsed", "Queries sqlglot could not parse (fingerprinted by tokens).",
                                registry=r)
        self.evaluations = Counter("usagewatch_rule_evaluations", "Queries a rule looked at (passed its filters), by rule.",
                                   ["rule"], registry=r)
        self.opened = Counter("usagewatch_findings_opened", "Findings opened or reopened (each alerts), by rule.",
                              ["rule"], registry=r)
        self._newest: dict[str, datetime] = {}  # per source: the newest query time seen by this process
        self._lock = threading.Lock()
        for sc in config.sources:  # every source shows from the first scrape, at 0
            self.records.labels(sc.name)
            self.queries.labels(sc.name)
        channels = (["email"] if config.notify.email else []) + [f"webhook:{w.name}" for w in config.notify.webhooks]
        for ch in channels:
            _DELIVERY_FAILURES.labels(ch)
        r.register(_Forward(_PROCESS))
        r.register(_StateCollector(self))

    def observe(self, chunk: Chunk, unparsed: int, evaluations: dict[str, int], opened: Iterable[str]) -> None:
        """Count one committed chunk (the pipeline calls this once per chunk)."""
        src = chunk.source
        if chunk.records:
            self.records.labels(src).inc(chunk.records)
        if chunk.events:
            self.queries.labels(src).inc(len(chunk.events))
            newest = _parse_ts(chunk.cursor.last_ts) if chunk.cursor.last_ts else None
            if newest is None:  # a polled table's cursor keeps no query time
                newest = max(e.ts for e in chunk.events)
            with self._lock:
                if src not in self._newest or newest > self._newest[src]:
                    self._newest[src] = newest
        for reason, n in chunk.bad.items():
            self.skipped.labels(src, f"bad:{reason}").inc(n)
        for reason, n in chunk.skipped.items():
            self.skipped.labels(src, f"not-query:{reason}").inc(n)
        if unparsed:
            self.unparsed.inc(unparsed)
        for rule, n in evaluations.items():
            self.evaluations.labels(rule).inc(n)
        for rule in opened:
            self.opened.labels(rule).inc()

    def newest(self, source: str) -> datetime | None:
        with self._lock:
            return self._newest.get(source)


class _StateCollector(Collector):
    """Gauges computed at scrape time: bytes behind per file, last record age per source, findings
    and deliveries by status. A store that cannot be read shows as ``usagewatch_store_up 0``
    instead of failing the whole scrape."""

    def __init__(self, metrics: Metrics):
        self.m = metrics
        self._lock = threading.Lock()
        self._globbers: dict[str, FileSource] = {}  # our own: the pipeline's are not thread-safe

    def _files(self, name: str) -> list[str]:
        sc = next(s for s in self.m.config.sources if s.name == name)
        g = self._globbers.get(name)
        if g is None:
            g = self._globbers[name] = FileSource(sc.name, sc.make_format(), sc.paths, sc.exclude)
        return [p for p in g.paths() if not p.startswith(HELD)]

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering must not read the store or glob the logs (Pipeline() would)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:  # a threading server may scrape twice at once
            yield from self._collect()

    def _collect(self) -> Iterator[GaugeMetricFamily]:
        store, now = self.m.store, datetime.now(timezone.utc)
        behind = GaugeMetricFamily("usagewatch_bytes_behind", "Bytes of a log file not read (committed) yet.",
                                   labels=["source", "file"])
        age = GaugeMetricFamily("usagewatch_last_record_age_seconds",
                                "Seconds since the newest query read from a source was run (its own timestamp).",
                                labels=["source"])
        up = 1
        for sc in self.m.config.sources:
            newest = self.m.newest(sc.name)
            try:
                cursors = store.cursors(sc.name)
            except (UsagewatchError, SQLAlchemyError) as exc:
                log.warning("metrics: cannot read the store: %s", exc)
                up, cursors = 0, {}
            stamps = [t for t in (_parse_ts(c.last_ts) for c in cursors.values() if c.last_ts) if t]
            newest = max([t for t in [newest, *stamps] if t is not None], default=None)
            if newest is not None:
                age.add_metric([sc.name], max(0.0, (now - newest).total_seconds()))
            if sc.type != "file":
                continue
            for path in self._files(sc.name):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                c = cursors.get(f"{st.st_dev}:{st.st_ino}")
                behind.add_metric([sc.name, path], max(0, st.st_size - (c.offset if c else 0)))
        yield behind
        yield age
        fam_f = GaugeMetricFamily("usagewatch_findings", "Findings in the store, by status.", labels=["status"])
        fam_d = GaugeMetricFamily("usagewatch_deliveries", "Notification deliveries in the store, by status "
                                  "(pending: to send; queued: waits for a digest; dead: gave up).", labels=["status"])
        fam_u = GaugeMetricFamily("usagewatch_outbox_unrouted", "Notifications not yet given a route and channel.")
        fam_o = GaugeMetricFamily("usagewatch_oldest_pending_notification_age_seconds",
                                  "Age of the notification waiting longest to be sent (0 when none waits).")
        try:
            counts = store_counts(store)
        except (UsagewatchError, SQLAlchemyError) as exc:
            log.warning("metrics: cannot read the store: %s", exc)
            up = 0
        else:
            for s, n in counts.findings.items():
                fam_f.add_metric([s], n)
            for s, n in counts.deliveries.items():
                fam_d.add_metric([s], n)
            fam_u.add_metric([], counts.unrouted)
            oldest = counts.oldest_pending
            fam_o.add_metric([], max(0.0, (now - oldest["since"]).total_seconds()) if oldest else 0.0)
            yield from (fam_f, fam_d, fam_u, fam_o)
        fam_up = GaugeMetricFamily("usagewatch_store_up", "1 when the last scrape could read the store, else 0.")
        fam_up.add_metric([], up)
        yield fam_up


# --- the endpoint --------------------------------------------------------------------------------------
class MetricsServer:
    """The running /metrics endpoint; ``stop()`` closes it."""

    def __init__(self, httpd: Any, thread: threading.Thread | None):
        self.httpd = httpd
        self.thread = thread
        self.host, self.port = (str(httpd.server_address[0]), int(httpd.server_address[1])) if httpd else ("", 0)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self, timeout: float = 5.0) -> None:
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout)
        self.httpd = None


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics.listen {listen!r} is not host:port (e.g. 127.0.0.1:9187).")
    return host, int(port)


def start_http(cfg: MetricsConfig | None, pipeline: Pipeline) -> MetricsServer:
    """Serve ``pipeline``'s metrics on ``cfg.listen`` (``/metrics``) from a daemon thread. With no
    ``metrics:`` in the config, serves nothing and returns a server whose ``stop()`` does nothing.
    Raises UsagewatchError when the address cannot be listened on."""
    if cfg is None:
        return MetricsServer(None, None)
    host, port = parse_listen(cfg.listen)
    try:
        httpd, thread = start_http_server(port, addr=host, registry=pipeline.metrics.registry)
    except OSError as exc:
        raise UsagewatchError(f"cannot serve metrics on {cfg.listen}: {exc.strerror or exc}") from None
    server = MetricsServer(httpd, thread)
    log.info("metrics served on %s", server.url)
    return server
