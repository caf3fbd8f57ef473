"""The daemon's scheduled jobs (APScheduler): digests per route and the status report.

Kept out of ``daemon.py`` so the main loop stays about reading logs; when several daemons share one
store, this is where a job is made to run on one of them only.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from usagewatch.config import Config
from usagewatch.notify.digest import digest_routes, run_digests
from usagewatch.notify.routing import Channels
from usagewatch.notify.status import status_email
from usagewatch.store import Store

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, config: Config, store: Store, channels: Channels):
        self.config = config
        self.store = store
        self.channels = channels
        self.scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        routes_with_digest = digest_routes(self.config.notify)
        status_every = self.config.notify.status_every
        if not (routes_with_digest or status_every):
            return
        self.scheduler = BackgroundScheduler(timezone=timezone.utc, daemon=True)
        for r in routes_with_digest:
            self.scheduler.add_job(self.digest, "interval", seconds=r.digest_every.total_seconds(),
                                   args=[r.name], id=f"digest-{r.name}", coalesce=True, max_instances=1)
        if status_every:
            self.scheduler.add_job(self.status, "interval", seconds=status_every.total_seconds(),
                                   id="status", coalesce=True, max_instances=1)
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)

    def digest(self, route: str) -> None:
        try:
            for result in run_digests(self.store, self.config.notify, self.channels,
                                      datetime.now(timezone.utc), route=route):
                if result.error:
                    log.warning("digest %s via %s not sent (%s); it will be retried", route, result.channel,
                                result.error)
                elif result.findings:
                    log.info("digest %s via %s sent: %d findings", route, result.channel, result.findings)
        except Exception:  # a scheduled job must not die on one failure
            log.exception("digest %s failed; it will be tried again at its next run", route)

    def status(self) -> None:
        every = self.config.notify.status_every
        email = self.config.notify.email
        try:
            assert every is not None and email is not None and self.channels.email is not None
            self.channels.email.send(status_email(self.store, self.config, datetime.now(timezone.utc), every))
            log.info("status report sent to %s", ", ".join(email.to))
        except Exception as exc:  # next time, then; the report is a summary, not an alert
            log.warning("status report not sent: %s", exc)
