"""systemd integration without a dependency: the sd_notify protocol, and the daemon's heartbeat.

sd_notify is one datagram of ``KEY=value`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``). Outside systemd the
variable is unset and every call is a no-op. A fresh socket per message and no locks, so it is safe
to call from a signal handler (STOPPING=1).

``Heartbeat`` is what the main loop calls on every turn (and between chunks of a long backlog):
``WATCHDOG=1`` every half of ``$WATCHDOG_USEC`` (so a hung main loop is killed and restarted by
systemd), and ``STATUS=`` a one-line summary at most every ``status_every`` seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if addr.startswith("@"):
            self.address = b"\0" + addr[1:].encode()  # abstract namespace (Linux)
        elif addr.startswith("/"):
            self.address = addr
        self.watchdog_usec = 0
        pid = env.get("WATCHDOG_PID")
        if not pid or pid == str(os.getpid()):
            try:
                self.watchdog_usec = max(0, int(env.get("WATCHDOG_USEC", "0")))
            except ValueError:
                self.watchdog_usec = 0
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the timeout systemd set, or None (no watchdog)."""
        if not (self.enabled and self.watchdog_usec):
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; False (never an exception) if it failed."""
        if self.address is None:
            return False
        message = "\n".join(f.replace("\n", " ") if f.startswith("STATUS=") else f for f in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(message)
            return True
        except OSError as exc:
            if not self._warned:  # once: a gone manager must not flood the log
                self._warned = True
                log.warning("cannot notify the service manager at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")


class Heartbeat:
    """Periodic WATCHDOG=1 and STATUS= from the main loop; ``beat()`` is cheap when nothing is due."""

    def __init__(self, notifier: Notifier, status: Callable[[], str], status_every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        self.status = status
        self.status_every = status_every
        self.clock = clock
        self.interval = notifier.watchdog_interval()
        self._next_ping = 0.0
        self._next_status = 0.0
        self._last_status = ""

    def beat(self) -> None:
        if not self.notifier.enabled:
            return
        now = self.clock()
        if self.interval is not None and now >= self._next_ping:
            self.notifier.watchdog()
            self._next_ping = now + self.interval
        if now >= self._next_status:
            self._next_status = now + self.status_every
            try:
                text = self.status()
            except Exception as exc:  # a status line must never take the main loop down
                text = f"status unavailable: {exc}"
            if text != self._last_status:
                self.notifier.status(text)
                self._last_status = text

    def set_status(self, text: str, *fields: str) -> None:
        """Say something now (waiting for the store, reloading, READY=1 in ``fields``), outside
        the periodic summary."""
        self._last_status = text
        self._next_status = self.clock() + self.status_every
        self.notifier.notify(*fields, f"STATUS={text}")

    def wait_cap(self, timeout: float) -> float:
        """``timeout`` shortened so a sleeping loop still pings the watchdog in time."""
        return timeout if self.interval is None else max(0.01, min(timeout, self.interval))
