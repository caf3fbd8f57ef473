"""The daemon's scheduled jobs (APScheduler): digests per route, the status report and retention.

Kept out of ``daemon.py`` so the main loop stays about reading logs. When several daemons share
one store, these jobs are *shared*: each runs only on the daemon that holds the PostgreSQL advisory
lock ``usagewatch-shared-jobs`` (``store/locks.py``). Every daemon schedules them; at each tick a
daemon that leads runs the job, one that does not tries to take the lock (so when the leader dies,
its session and lock go with it and another daemon takes over at its next tick: within one
interval). On SQLite the lock is always held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from usagewatch.config import Config
from usagewatch.notify.digest import digest_routes, run_digests
from usagewatch.notify.routing import Channels
from usagewatch.notify.status import status_email
from usagewatch.store import Store
from usagewatch.store.locks import SHARED_JOBS, Leadership, SharedLock
from usagewatch.store.retention import run_retention, run_usage_retention

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, config: Config, store: Store, channels: Channels,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.config = config
        self.store = store
        self.channels = channels
        self.clock = clock
        self.scheduler: BackgroundScheduler | None = None
        self.leadership = Leadership(SharedLock(store.engine, SHARED_JOBS),
                                     "the shared jobs (digests, status report, retention)")

    def start(self) -> None:
        self.scheduler = BackgroundScheduler(timezone=timezone.utc, daemon=True)
        for r in digest_routes(self.config.notify):
            self.scheduler.add_job(self.digest, "interval", seconds=r.digest_every.total_seconds(),
                                   args=[r.name], id=f"digest-{r.name}", coalesce=True, max_instances=1)
        status_every = self.config.notify.status_every
        if status_every:
            self.scheduler.add_job(self.status, "interval", seconds=status_every.total_seconds(),
                                   id="status", coalesce=True, max_instances=1)
        self.scheduler.add_job(self.retention, "interval", seconds=self.config.retention.every.total_seconds(),
                               id="retention", coalesce=True, max_instances=1)
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        self.leadership.release()

    def leading(self) -> bool:
        """Whether this daemon runs the shared jobs now (taking the lead if it is free)."""
        try:
            return self.leadership.check()
        except Exception:  # never let a lock problem kill the scheduler thread
            log.exception("could not check the shared-jobs lock; skipping this run")
            return False

    def digest(self, route: str) -> None:
        if not self.leading():
            return
        try:
            for result in run_digests(self.store, self.config.notify, self.channels, self.clock(), route=route):
                if result.error:
                    log.warning("digest %s via %s not sent (%s); it will be retried", route, result.channel,
                                result.error)
                elif result.findings:
                    log.info("digest %s via %s sent: %d findings", route, result.channel, result.findings)
        except Exception:  # a scheduled job must not die on one failure
            log.exception("digest %s failed; it will be tried again at its next run", route)

    def status(self) -> None:
        if not self.leading():
            return
        every = self.config.notify.status_every
        email = self.config.notify.email
        try:
            assert every is not None and email is not None and self.channels.email is not None
            self.channels.email.send(status_email(self.store, self.config, self.clock(), every))
            log.info("status report sent to %s", ", ".join(email.to))
        except Exception as exc:  # next time, then; the report is a summary, not an alert
            log.warning("status report not sent: %s", exc)

    def retention(self) -> None:
        if not self.leading():
            return
        try:
            now = self.clock()
            counts = run_retention(self.store, self.config.retention, now)
            usage = run_usage_retention(self.store, self.config.usage, now)
            rolled = usage.pop("usage_queries rolled up", 0) + usage.pop("usage_tables rolled up", 0)
            if rolled:
                log.info("retention: rolled %d hourly usage rows up into days", rolled)
            counts.update(usage)
            deleted = {k: v for k, v in counts.items() if v}
            if deleted:
                log.info("retention: deleted %s", ", ".join(f"{v} {k}" for k, v in deleted.items()))
        except Exception:
            log.exception("retention failed; it runs again at its next interval")
