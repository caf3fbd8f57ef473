"""Locks between daemons that share one store: who runs the shared jobs, who reads a source, who
sends a delivery. Database primitives only (no home-made cluster protocol):

- ``SharedLock(engine, name)``: a PostgreSQL *session-level advisory lock* taken with
  ``pg_try_advisory_lock`` on a DEDICATED connection that stays open for as long as this daemon
  holds it. The lock lives exactly as long as that database session: when the daemon dies (even by
  SIGKILL) the server closes its session and the lock is free for the next daemon that tries; that
  is the whole failover. The key is a stable 64-bit hash of the name (the same in every process,
  unlike Python's ``hash``).
- ``source_lock(engine, sources)``: the same, all-or-nothing over several names
  (``usagewatch-source:<name>`` per source), so a daemon reads its sources only while no other
  daemon does; taken in sorted order on one connection, so two daemons with the same sources never
  split them between themselves.
- ``claim_delivery``: a delivery is claimed by a conditional UPDATE (``pending`` -> ``sending``,
  rowcount checked) before it is sent, so two senders cannot both send it; a claim whose sender died
  is given back after a lease (``recover_stale_claims``).

On SQLite the locks are always held: a SQLite store is one file on one host, written by one daemon
(SQLite has no sessions another host could see, and two daemons on one SQLite file are not a
supported setup), so there is nobody to elect.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from usagewatch.store.tables import deliveries

log = logging.getLogger(__name__)

#: the lock of the jobs one daemon of a shared store runs: digests, status report, retention
SHARED_JOBS = "usagewatch-shared-jobs"


def source_lock_name(source: str) -> str:
    return f"usagewatch-source:{source}"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class SharedLock:
    """An advisory lock over one or more names, held all-or-nothing on one dedicated connection.

    ``try_acquire()`` returns whether this process holds the lock now (taking it if it is free,
    checking the session is still alive if it already held it); ``holding()`` only checks;
    ``release()`` unlocks and closes the connection. Thread-safe (scheduled jobs run in a pool).
    """

    def __init__(self, engine: Engine, name: str | Iterable[str]):
        self.engine = engine
        self.names = [name] if isinstance(name, str) else sorted(set(name))
        self.keys = [lock_key(n) for n in self.names]
        self.name = ", ".join(self.names)
        #: SQLite (or any non-PostgreSQL store): always held, see the module docstring
        self.local = engine.dialect.name != "postgresql"
        self._conn: Connection | None = None
        self._mutex = threading.Lock()

    def try_acquire(self) -> bool:
        with self._mutex:
            if self.local:
                return True
            if self._alive():
                return True
            self._drop()
            conn: Connection | None = None
            try:
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                taken: list[int] = []
                for key in self.keys:
                    if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                        for k in taken:  # all or nothing
                            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": k})
                        conn.close()
                        return False
                    taken.append(key)
            except SQLAlchemyError as exc:
                log.warning("could not try the lock %s: %s", self.name, exc)
                if conn is not None:
                    _discard(conn)
                return False
            self._conn = conn
            return True

    def holding(self) -> bool:
        with self._mutex:
            if self.local:
                return True
            if self._alive():
                return True
            self._drop()
            return False

    def release(self) -> None:
        with self._mutex:
            if self._conn is None:
                return
            try:
                for key in self.keys:
                    self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            except SQLAlchemyError:
                pass
            self._drop()

    def _alive(self) -> bool:
        """A session-level advisory lock lasts as long as its session: alive session, lock held."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1"))
            return True
        except SQLAlchemyError as exc:
            log.warning("the connection holding the lock %s is gone: %s", self.name, exc)
            return False

    def _drop(self) -> None:
        if self._conn is not None:
            _discard(self._conn)
            self._conn = None


def _discard(conn: Connection) -> None:
    """Close the DBAPI connection itself (never give it back to the pool): a pooled session would
    keep any advisory lock it still held."""
    try:
        conn.invalidate()
        conn.close()
    except Exception:  # already broken: nothing to release
        pass


def source_lock(engine: Engine, sources: Iterable[str]) -> SharedLock:
    """The lock a daemon must hold to read ``sources`` (all of them, or none)."""
    return SharedLock(engine, [source_lock_name(s) for s in sources])


class Leadership:
    """A ``SharedLock`` plus the log lines when it is gained or lost: ``check()`` at every tick."""

    def __init__(self, lock: SharedLock, what: str):
        self.lock = lock
        self.what = what
        self.leading: bool | None = None  # None: not tried yet

    def check(self) -> bool:
        now = self.lock.try_acquire()
        if now and not self.leading:
            log.info("leadership gained: this daemon now runs %s (lock %s)", self.what, self.lock.name)
        elif self.leading and not now:
            log.warning("leadership lost: this daemon no longer runs %s (lock %s)", self.what, self.lock.name)
        elif self.leading is None and not now:
            log.info("standing by: another daemon runs %s (lock %s)", self.what, self.lock.name)
        self.leading = now
        return now

    def release(self) -> None:
        self.lock.release()
        self.leading = False


# --- delivery claims ---------------------------------------------------------------------------------
#: a claimed delivery's status while its sender is sending it
SENDING = "sending"


def claim_delivery(engine: Engine, delivery_id: int, now: datetime, lease: timedelta) -> bool:
    """Claim a due pending delivery for this sender: ``pending`` -> ``sending`` in one conditional
    UPDATE; True only for the one sender whose UPDATE changed the row. While claimed,
    ``next_attempt_at`` is the end of the claim's lease: a sender that dies mid-send leaves a claim
    that ``recover_stale_claims`` gives back after it (so a crash can cause one resend, with the same
    Message-ID, never a lost notification)."""
    with engine.begin() as conn:
        return bool(conn.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.status == "pending",
                   deliveries.c.next_attempt_at <= now)
            .values(status=SENDING, next_attempt_at=now + lease)).rowcount)


def unclaim_failed(engine: Engine, delivery_id: int, error: str, retry_at: datetime | None) -> None:
    """A claimed delivery failed: back to ``pending`` due at ``retry_at``, or ``dead`` when None."""
    values: dict[str, Any] = {"attempts": deliveries.c.attempts + 1, "last_error": error}
    if retry_at is None:
        values["status"] = "dead"
    else:
        values.update(status="pending", next_attempt_at=retry_at)
    with engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == delivery_id, deliveries.c.status == SENDING)
                     .values(**values))


def recover_stale_claims(engine: Engine, now: datetime) -> int:
    """Claims whose lease ended (their sender died or hung) go back to ``pending``, due now."""
    with engine.begin() as conn:
        return int(conn.execute(
            deliveries.update().where(deliveries.c.status == SENDING, deliveries.c.next_attempt_at <= now)
            .values(status="pending", next_attempt_at=now)).rowcount or 0)
