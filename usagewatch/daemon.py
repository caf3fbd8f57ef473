"""``usagewatch run``: follow the logs, evaluate rules, send notifications, until told to stop.

Watchdog events only *wake* the reader; the truth is a rescan of every source's globs each
``follow.rescan_interval`` (events can be lost or coalesced: see docs/architecture.md). The sender
runs in its own thread so a slow or dead mail server never delays reading.

Signals: SIGTERM/SIGINT finish the current batch, commit, and exit 0; SIGHUP reloads the config
file and the rules (everything is built and validated first; on any problem the running config
stays in force); SIGUSR1 dumps every thread's stack to stderr.

Under systemd (``Type=notify``) the daemon says READY=1 once the config, rules and sources are
loaded and the store is reachable, STATUS= a one-line summary now and then, WATCHDOG=1 from the
main loop, RELOADING=1 around a SIGHUP reload and STOPPING=1 on SIGTERM (see ``service.py``).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
import time
from datetime import datetime, timezone
from types import FrameType
from typing import Any, Callable

import sqlalchemy as sa
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from usagewatch import config as config_mod
from usagewatch import metrics
from usagewatch.config import Config, SourceConfig
from usagewatch.errors import ConfigError, StoreError, UsagewatchError
from usagewatch.jobs import Jobs
from usagewatch.notify.routing import Channels, routes
from usagewatch.notify.sender import Sender
from usagewatch.pipeline import Pipeline, make_source, tune_gc
from usagewatch.rules import load_rules
from usagewatch.service import Heartbeat, Notifier
from usagewatch.sources import Source
from usagewatch.store import Store
from usagewatch.store.locks import SharedLock, source_lock

log = logging.getLogger(__name__)

#: config keys a running daemon cannot change: a SIGHUP keeps the old value and says so
RESTART_ONLY = ("database", "http", "metrics", "log")
MAX_BACKOFF = 10.0
#: after a read that caught up with the writers, the next read waits until this long after the
#: last one began: a busy log (thousands of records/s, flushed every few ms) is then read and
#: committed in batches of this much time, not one small commit per flush. Each commit costs about
#: the same whatever its size (a transaction, the touched rule windows, the cursor), so this bounds
#: commits at ~1/READ_PACING per file with new data, for at most this much added latency. A
#: backlog is read without pause (reading it takes longer than this).
READ_PACING = 0.25
#: inotify reports opening and closing a file unwritten too (watchdog >= 2.3); they change nothing
_READ_ONLY_EVENTS = frozenset({"opened", "closed_no_write"})


class _Wake(FileSystemEventHandler):
    """Only sets flags: an exception in a watchdog handler would kill its thread. With ``only``
    (file suffixes), events for other files are ignored (editor swap files in a rule directory)."""

    def __init__(self, *flags: threading.Event, only: tuple[str, ...] = ()):
        self.flags = flags
        self.only = only

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _READ_ONLY_EVENTS:
            return  # our own reads of a log or rule file would wake us again, for ever
        if self.only:
            paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
            if not any(p.endswith(self.only) for p in paths):
                return
        for flag in self.flags:
            flag.set()


class _StopCheck(threading.Event):
    """What ``Pipeline.poll`` checks between chunks: the daemon's stop flag, and a chance for the
    main loop's heartbeat (a backlog of many chunks must not starve the systemd watchdog)."""

    def __init__(self, stop: threading.Event, beat: Callable[[], None]):
        super().__init__()
        self._stop_flag = stop
        self._beat = beat

    def is_set(self) -> bool:
        self._beat()
        return self._stop_flag.is_set()


def transient(exc: BaseException) -> bool:
    """Is this store error one that may go away (server down, file system not there yet), as
    opposed to a wrong URL, a missing driver or a schema from another version?"""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, OSError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _source_key(sc: SourceConfig, cfg: Config) -> tuple[Any, ...]:
    """What a source object is built from: if it differs after a reload, the source is rebuilt."""
    f = cfg.follow
    return (sc, f.batch_bytes, f.max_record_bytes, f.close_idle)


class Daemon:
    def __init__(self, config: Config, notifier: Notifier | None = None):
        self.config = config
        self.notifier = notifier or Notifier()
        self.heartbeat = Heartbeat(self.notifier, self._status_line)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.reload = threading.Event()  # rule files changed
        self.reload_config = threading.Event()  # SIGHUP
        self.outbox_wake = threading.Event()
        self.store: Store
        self.pipeline: Pipeline
        self.channels: Channels
        self.sender: Sender | None = None
        self.jobs: Jobs | None = None
        self.web: Any = None
        self.metrics_http: Any = None
        self.reading: SharedLock | None = None  # the sources' lock (see _may_read)
        self._reading: bool | None = None
        self.observer: BaseObserver | None = None
        self._watches: dict[str, ObservedWatch] = {}
        self._unwatchable: set[str] = set()
        self._unreadable: set[str] = set()
        self._store_down: str | None = None  # the error, while the store cannot be written
        self._sender_thread: threading.Thread | None = None

    # --- start -----------------------------------------------------------------------------------
    def _connect(self) -> Store | None:
        """The store, retried with backoff while it is unreachable (None if stopped meanwhile)."""
        delay = 1.0
        failed = False
        while not self.stop.is_set():
            try:
                store = Store(self.config.database, self.config.notify.howto_base_url)
            except StoreError as exc:
                if not transient(exc):
                    raise
                failed = True
                log.error("store unreachable: %s; retrying in %.0fs (not ready until it connects)", exc, delay)
                self.heartbeat.set_status(f"waiting for the store: {exc}")
                self._sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if failed:
                log.info("store reachable: connected to %s", _safe_url(self.config.database))
            return store
        return None

    def _sleep(self, seconds: float) -> None:
        """Wait, unless told to stop, keeping the watchdog fed."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self.heartbeat.beat()
            self.stop.wait(self.heartbeat.wait_cap(left))

    def _warn_if_store_is_new(self) -> None:
        """A store without read positions while logs exist means everything is read from the start:
        right for a first run, a surprise after a lost database; either way, say so."""
        for src in self.pipeline.sources:
            if self.store.cursors(src.name):
                continue
            files = [p for p in src.paths() if not p.startswith("fd:")]
            if files:
                log.warning("source %s: no saved read positions in the store (first run, or a new database?); "
                            "reading %d file(s) from their start", src.name, len(files))

    # --- threads ---------------------------------------------------------------------------------
    def _start_observer(self) -> None:
        try:
            self.observer = Observer()
            self.observer.daemon = True
            self.observer.start()
        except OSError as exc:  # no inotify at all: rescans still find everything
            log.warning("file events unavailable (%s); following by periodic rescan only", exc)
            self.observer = None
        self._ensure_watches()

    def _ensure_watches(self) -> None:
        """Watch every source directory that exists; re-watch one that was deleted and recreated
        (watchdog stops a watch whose directory goes away); drop watches no source needs after a
        reload. Cheap; runs every loop."""
        if self.observer is None:
            return
        alive = {e.watch.path for e in self.observer.emitters if e.is_alive()}
        targets = self._watch_targets()
        for d in [d for d in self._watches if d not in targets]:
            self.observer.unschedule(self._watches.pop(d))
        for d, handler in targets.items():
            watch = self._watches.get(d)
            if watch is not None and d in alive:
                continue
            if watch is not None:
                self.observer.unschedule(watch)
                del self._watches[d]
            if not os.path.isdir(d):
                continue
            try:
                self._watches[d] = self.observer.schedule(handler, d, recursive=False)
                self._unwatchable.discard(d)
            except OSError as exc:  # inotify watch/instance limits, network file systems, permissions
                if d not in self._unwatchable:
                    self._unwatchable.add(d)
                    log.warning("%s: cannot watch for changes (%s); following it by periodic rescan", d, exc)

    def _watch_targets(self) -> dict[str, _Wake]:
        """Directory -> what its changes mean: new log data, or edited rules (live reload)."""
        targets: dict[str, _Wake] = {}
        rules = _Wake(self.reload, self.wake, only=(".yaml", ".yml"))
        for p in [*self.config.rules, *self.config.rule_overrides]:
            targets[p if os.path.isdir(p) else os.path.dirname(p) or "."] = rules
        data = _Wake(self.wake)
        for src in self.pipeline.sources:
            for d in src.directories():
                targets.setdefault(d, data)
        return targets

    def _check_directories(self) -> None:
        """Warn once, naming the path, about a log directory the daemon may not read (a glob over
        it silently finds nothing); the other sources keep running, and it is read once it can be."""
        for src in self.pipeline.sources:
            for d in src.directories():
                try:
                    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if d not in self._unreadable:
                        self._unreadable.add(d)
                        log.warning("source %s: cannot read directory %s (%s); its logs are not followed until "
                                    "it can be (is the daemon's user in the group that owns the logs? see "
                                    "docs/deploy.md)", src.name, d, exc.strerror or exc)
                    continue
                os.close(fd)
                if d in self._unreadable:
                    self._unreadable.discard(d)
                    log.info("source %s: directory %s can be read now", src.name, d)

    def _start_jobs(self) -> None:
        """Scheduled jobs (digests, status report) and the web endpoint (action links, console)."""
        self.jobs = Jobs(self.config, self.store, self.channels)
        self.jobs.start()
        if self.config.http is not None:
            from usagewatch.web.server import start_server  # only daemons with links need the web part

            # the console (with http.auth) shows the config and rules in force, also after a reload
            self.web = start_server(self.config.http, self.store, redact_values=self.config.notify.redact_values,
                                    config=lambda: self.config, rules=lambda: list(self.pipeline.engine.rules))
            log.info("action links%s served on %s", " and the console" if self.config.http.auth else "", self.web.url)
        if self.metrics_http is None:  # like the web endpoint, kept across reloads
            self.metrics_http = metrics.start_http(self.config.metrics, self.pipeline)

    def _make_sender(self, cfg: Config, channels: Channels) -> Sender | None:
        return (Sender(self.store, cfg.notify, channels, http=self.config.http, on_failure=metrics.delivery_failed)
                if routes(cfg.notify) else None)

    def _send_loop(self) -> None:
        while not self.stop.is_set():
            sender = self.sender  # a reload may swap it
            nxt = None
            if sender is not None:
                try:
                    sender.send_due()
                    nxt = sender.next_due()
                except UsagewatchError as exc:
                    log.error("sender: %s", exc)
                except Exception:  # the sender thread must outlive any one notification
                    log.exception("sender: unexpected error; retrying shortly")
            timeout = 5.0
            if nxt is not None:
                timeout = max(0.05, min(timeout, (nxt - datetime.now(timezone.utc)).total_seconds()))
            self.outbox_wake.wait(timeout)
            self.outbox_wake.clear()

    # --- reload ------------------------------------------------------------------------------------
    def _apply_rules(self, rules: list[Any]) -> None:
        report = self.pipeline.engine.replace(rules)
        log.info("rules reloaded: %d in force (%s)", len(rules),
                 ", ".join(f"{k}: {', '.join(v)}" for k, v in report.items() if v and k != "kept") or "no change")

    def _reload_rules(self) -> None:
        """Load the rules again; on any problem keep the rules in force and say where it is."""
        try:
            rules = load_rules(self.config.rules, self.config.rule_overrides)
        except ConfigError as exc:
            for p in exc.problems:
                log.error("%s", p)
            log.error("the edited rules have %d problem(s); the previous %d rules stay in force",
                      len(exc.problems), len(self.pipeline.engine.rules))
            return
        self._apply_rules(rules)

    def _do_reload(self) -> None:
        """SIGHUP: RELOADING=1, the config and rules again, READY=1."""
        self.notifier.reloading()
        self.heartbeat.set_status("reloading the config and rules")
        try:
            self._reload_config()
        except Exception:  # a reload must never take a running daemon down
            log.exception("reload failed; the running config stays in force")
        finally:
            self.heartbeat.set_status(self._status_line(), "READY=1")

    def _reload_config(self) -> None:
        """Build everything from the config file first (validate, load rules, make new sources,
        channels); on any problem log it with ``path:line`` and keep running as before. Then swap
        rules, sources and notify settings. Keys in RESTART_ONLY keep their old value."""
        old = self.config
        path = old.path
        if not path or path.startswith("<"):
            log.info("reload: the config is %s; reloading the rules only", path or "not from a file")
            self._reload_rules()
            return
        try:
            new = config_mod.load(path)
            rules = load_rules(new.rules, new.rule_overrides)
            for key in RESTART_ONLY:
                if getattr(new, key) != getattr(old, key):
                    log.warning("reload: %s changed in %s; a restart is needed to apply it "
                                "(systemctl restart usagewatch); the running value stays in force", key, path)
                    setattr(new, key, getattr(old, key))
            old_by_name = {sc.name: sc for sc in old.sources}
            current = {src.name: src for src in self.pipeline.sources}
            sources: list[Source] = []
            added: list[str] = []
            changed: list[str] = []
            for sc in new.sources:
                before = old_by_name.get(sc.name)
                if before is not None and sc.name in current and _source_key(before, old) == _source_key(sc, new):
                    sources.append(current[sc.name])
                    continue
                src = make_source(sc, new.follow)
                src.load(self.store.cursors(sc.name))  # exactly where the last commit left it
                sources.append(src)
                (changed if before is not None else added).append(sc.name)
            removed = [name for name in current if name not in {sc.name for sc in new.sources}]
            notify_changed = new.notify != old.notify
            channels = Channels.from_config(new.notify) if notify_changed else self.channels
            sender = self._make_sender(new, channels) if notify_changed else self.sender
        except ConfigError as exc:
            for p in exc.problems:
                log.error("%s", p)
            log.error("the config has %d problem(s); the running config and rules stay in force", len(exc.problems))
            return
        except UsagewatchError as exc:
            log.error("reload: %s; the running config and rules stay in force", exc)
            return
        # swap: nothing below can fail on the new config's account
        kept_objects = {id(s) for s in sources}
        for src in self.pipeline.sources:
            if id(src) not in kept_objects:
                close = getattr(src, "close", None)
                if close is not None:
                    close()
        self.pipeline.sources = sources
        self.pipeline.config = new
        self._apply_rules(rules)
        if notify_changed:
            self.channels, self.sender = channels, sender
            if self.jobs is not None:
                self.jobs.stop()
            self.jobs = Jobs(new, self.store, channels)
            self.jobs.start()
            self.outbox_wake.set()
        elif new.sla != old.sla or new.retention != old.retention:
            if self.jobs is not None:
                self.jobs.stop()
            self.jobs = Jobs(new, self.store, self.channels)
            self.jobs.start()
        self.config = new
        self._unreadable.clear()
        self._check_directories()
        log.info("config reloaded from %s: sources %s; notify settings %s", path,
                 "; ".join(f"{what}: {', '.join(names)}" for what, names in
                           (("added", added), ("removed", removed), ("changed", changed)) if names) or "unchanged",
                 "changed" if notify_changed else "unchanged")

    # --- status --------------------------------------------------------------------------------------
    def _status_line(self) -> str:
        """One line for ``systemctl status``: what is followed, how much, what is open."""
        if self._store_down is not None:
            return f"store unavailable, batches wait: {self._store_down}"[:200]
        sources = self.pipeline.sources
        files = sum(len(src.paths()) for src in sources)
        from usagewatch.store.tables import findings, outbox

        with self.store.engine.connect() as conn:
            open_findings = conn.execute(sa.select(sa.func.count()).select_from(findings)
                                         .where(findings.c.status == "open")).scalar() or 0
            pending = conn.execute(sa.select(sa.func.count()).select_from(outbox)
                                   .where(outbox.c.status == "pending")).scalar() or 0
        return (f"following {files} file{'s' if files != 1 else ''} of {len(sources)} "
                f"source{'s' if len(sources) != 1 else ''}; {self.pipeline.stats.queries:,} queries; "
                f"{open_findings:,} open findings; outbox {pending:,}")

    # --- main loop -------------------------------------------------------------------------------
    def run(self) -> None:
        self._install_signals()
        # everything that can be wrong with the config is found before waiting for the store
        load_rules(self.config.rules, self.config.rule_overrides)
        sources: list[Source] = [make_source(s, self.config.follow) for s in self.config.sources]
        store = self._connect()
        if store is None:
            log.info("stopped (signal received) before the store was reachable")
            return
        self.store = store
        tune_gc()
        self.pipeline = Pipeline(self.config, self.store, sources=sources,
                                 on_commit=lambda n: self.outbox_wake.set())
        self.channels = Channels.from_config(self.config.notify)
        self.sender = self._make_sender(self.config, self.channels)
        self._warn_if_store_is_new()
        self._check_directories()
        self._start_observer()
        self._start_jobs()
        self._sender_thread = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        self._sender_thread.start()
        if self.sender is None:
            log.warning("notify.email is not configured: findings are stored but no email is sent")
        log.info("following %d sources", len(self.pipeline.sources))
        self.heartbeat.set_status(self._status_line(), "READY=1")
        self._loop()
        self._shutdown()

    def _loop(self) -> None:
        check = _StopCheck(self.stop, self.heartbeat.beat)
        delay = 1.0
        needs_recovery = False
        last_dir_check = time.monotonic()
        while not self.stop.is_set():
            self.heartbeat.beat()
            self.wake.clear()
            rescan = self.config.follow.rescan_interval.total_seconds()
            idle = self.config.follow.idle_flush.total_seconds()
            self._ensure_watches()
            if time.monotonic() - last_dir_check >= rescan:
                last_dir_check = time.monotonic()
                self._check_directories()
            try:
                if needs_recovery:
                    # the state in memory ran ahead of the store: read nothing until it is reloaded
                    self.pipeline.reload_state()
                    needs_recovery = False
                if self.reload_config.is_set():
                    self.reload_config.clear()
                    self.reload.clear()
                    self._do_reload()
                elif self.reload.is_set():
                    self.reload.clear()
                    self._reload_rules()
                if not self._may_read():
                    self.wake.wait(self.heartbeat.wait_cap(rescan))
                    continue
                began = time.monotonic()
                n = self.pipeline.poll(at_eof=False, stop=check, keep_going=True)
                self.pipeline.flush_idle(idle)
            except StoreError as exc:
                needs_recovery = True
                if self._store_down is None:
                    log.error("%s; nothing read since the last commit is lost: it is read again from the "
                              "saved positions once the store accepts writes (retrying with backoff)", exc)
                else:
                    log.error("store still unavailable (%s); retrying in %.0fs", exc, delay)
                self._store_down = str(exc)
                self.heartbeat.set_status(self._status_line())
                self._sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if self._store_down is not None:
                log.info("store available again; following from the saved positions")
                self._store_down = None
                delay = 1.0
            if n:
                # more may be waiting: read again before sleeping, but no sooner than READ_PACING
                # after this read began (one commit per batch of time, not per writer's flush)
                self.stop.wait(max(0.0, READ_PACING - (time.monotonic() - began)))
                continue
            timeout = min(rescan, idle) if idle > 0 else rescan
            self.wake.wait(self.heartbeat.wait_cap(timeout))

    def _may_read(self) -> bool:
        """Whether this daemon reads its sources now. Several daemons may follow the same logs (an
        active and a standby) on one PostgreSQL store: only the holder of the sources' advisory
        lock reads, so no record is counted by two; the lock passes to a standby when the holder
        dies. On SQLite (one host) the lock is always held."""
        if self.reading is None:
            self.reading = source_lock(self.store.engine, [s.name for s in self.pipeline.sources])
        held = self.reading.try_acquire()
        if held and self._reading is False:
            # another daemon read until now: its positions and windows are in the store, not here
            self.pipeline.reload_state()
            log.info("reading the sources now (this daemon took over their lock)")
        elif not held and self._reading is not False:
            log.info("standing by: another daemon holds the lock of these sources and reads them")
        self._reading = held
        return held

    def _shutdown(self) -> None:
        if self.reading is not None:
            self.reading.release()
        if self.observer is not None:
            # stopping joins watchdog's reader threads, which can block; they are daemon threads
            # and die with the process, so never let them hold up a shutdown
            threading.Thread(target=self.observer.stop, name="observer-stop", daemon=True).start()
        if self.jobs is not None:
            self.jobs.stop()
        if self.web is not None:
            self.web.stop()
        if self.metrics_http is not None:
            self.metrics_http.stop()
        if self._sender_thread is not None:
            self.outbox_wake.set()
            self._sender_thread.join(timeout=10)
        log.info("stopped (signal received): %s", self.pipeline.stats.summary())

    def _install_signals(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            # only set flags here: logging from a signal handler can deadlock on the logging lock;
            # notify is one datagram on a fresh socket, no lock
            self.stop.set()
            self.wake.set()
            self.notifier.stopping()

        def hup(signum: int, frame: FrameType | None) -> None:
            self.reload_config.set()
            self.wake.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)
            signal.signal(signal.SIGHUP, hup)
            faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: where is it stuck?


def _safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"
