"""``usagewatch run``: follow the logs, evaluate rules, send notifications, until told to stop.

Watchdog events only *wake* the reader; the truth is a rescan of every source's globs each
``follow.rescan_interval`` (events can be lost or coalesced: see docs/architecture.md). The sender
runs in its own thread so a slow or dead mail server never delays reading. SIGTERM/SIGINT finish
the current batch, commit, and exit.
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
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from usagewatch.config import Config
from usagewatch.errors import ConfigError, StoreError, UsagewatchError
from usagewatch.jobs import Jobs
from usagewatch.notify.routing import Channels, routes
from usagewatch.notify.sender import Sender
from usagewatch.pipeline import Pipeline
from usagewatch.rules import load_rules
from usagewatch.store import Store

log = logging.getLogger(__name__)


class _Wake(FileSystemEventHandler):
    """Only sets flags: an exception in a watchdog handler would kill its thread. With ``only``
    (file suffixes), events for other files are ignored (editor swap files in a rule directory)."""

    def __init__(self, *flags: threading.Event, only: tuple[str, ...] = ()):
        self.flags = flags
        self.only = only

    def on_any_event(self, event: FileSystemEvent) -> None:
        if self.only:
            paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
            if not any(p.endswith(self.only) for p in paths):
                return
        for flag in self.flags:
            flag.set()


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        self.store = Store(config.database, config.notify.howto_base_url)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.reload = threading.Event()  # rule files changed, or SIGHUP
        self.outbox_wake = threading.Event()
        self.pipeline = Pipeline(config, self.store, on_commit=lambda n: self.outbox_wake.set())
        self.channels = Channels.from_config(config.notify)
        self.sender = (Sender(self.store, config.notify, self.channels, http=config.http)
                       if routes(config.notify) else None)
        self.jobs = Jobs(config, self.store, self.channels)
        self.web: Any = None
        self.observer: BaseObserver | None = None
        self._watches: dict[str, ObservedWatch] = {}
        self._unwatchable: set[str] = set()
        self._warn_if_store_is_new()

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
        (watchdog stops a watch whose directory goes away). Cheap; runs every loop."""
        if self.observer is None:
            return
        alive = {e.watch.path for e in self.observer.emitters if e.is_alive()}
        for d, handler in self._watch_targets().items():
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
            except OSError as exc:  # inotify watch/instance limits, network file systems
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
        report = self.pipeline.engine.replace(rules)
        log.info("rules reloaded: %d in force (%s)", len(rules),
                 ", ".join(f"{k}: {', '.join(v)}" for k, v in report.items() if v and k != "kept") or "no change")

    def _start_jobs(self) -> None:
        """Scheduled jobs (digests, status report) and the action-link endpoint."""
        self.jobs.start()
        if self.config.http is not None:
            from usagewatch.web.server import start_server  # only daemons with links need the web part

            self.web = start_server(self.config.http, self.store)
            log.info("action links served on %s", self.web.url)

    def _send_loop(self) -> None:
        assert self.sender is not None
        while not self.stop.is_set():
            try:
                self.sender.send_due()
                nxt = self.sender.next_due()
            except UsagewatchError as exc:
                log.error("sender: %s", exc)
                nxt = None
            except Exception:  # the sender thread must outlive any one notification
                log.exception("sender: unexpected error; retrying shortly")
                nxt = None
            timeout = 5.0
            if nxt is not None:
                timeout = max(0.05, min(timeout, (nxt - datetime.now(timezone.utc)).total_seconds()))
            self.outbox_wake.wait(timeout)
            self.outbox_wake.clear()

    # --- main loop -------------------------------------------------------------------------------
    def run(self) -> None:
        self._install_signals()
        self._start_observer()
        self._start_jobs()
        sender_thread = None
        if self.sender is not None:
            sender_thread = threading.Thread(target=self._send_loop, name="sender", daemon=True)
            sender_thread.start()
        else:
            log.warning("notify.email is not configured: findings are stored but no email is sent")
        rescan = self.config.follow.rescan_interval.total_seconds()
        idle = self.config.follow.idle_flush.total_seconds()
        log.info("following %d sources", len(self.pipeline.sources))
        while not self.stop.is_set():
            self.wake.clear()
            self._ensure_watches()
            if self.reload.is_set():
                self.reload.clear()
                self._reload_rules()
            try:
                n = self.pipeline.poll(at_eof=False, stop=self.stop, keep_going=True)
                self.pipeline.flush_idle(idle)
            except StoreError as exc:
                log.error("%s; reloading state from the store and retrying", exc)
                time.sleep(1.0)
                self._recover()
                continue
            if n:
                continue  # more may be waiting: read again before sleeping
            self.wake.wait(min(rescan, idle) if idle > 0 else rescan)
        if self.observer is not None:
            # stopping joins watchdog's reader threads, which can block; they are daemon threads
            # and die with the process, so never let them hold up a shutdown
            threading.Thread(target=self.observer.stop, name="observer-stop", daemon=True).start()
        self.jobs.stop()
        if self.web is not None:
            self.web.stop()
        if sender_thread is not None:
            self.outbox_wake.set()
            sender_thread.join(timeout=10)
        log.info("stopped (signal received): %s", self.pipeline.stats.summary())

    def _recover(self) -> None:
        try:
            self.pipeline.reload_state()
        except StoreError as exc:
            log.error("still cannot read the store: %s", exc)

    def _install_signals(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            # only set flags here: logging from a signal handler can deadlock on the logging lock
            self.stop.set()
            self.wake.set()

        def hup(signum: int, frame: FrameType | None) -> None:
            self.reload.set()
            self.wake.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)
            signal.signal(signal.SIGHUP, hup)
            faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: where is it stuck?
