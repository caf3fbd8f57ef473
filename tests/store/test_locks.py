"""Locks between daemons sharing one PostgreSQL store (store/locks.py), against a real server:
advisory-lock leadership and its failover when the holder's process dies, all-or-nothing source
locks, atomic delivery claims, and two writers racing to open the same finding."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers.events import at
from tests.helpers.servers import need_server
from tests.store.test_store import update
from usagewatch.errors import StoreError
from usagewatch.store import Batch, Store
from usagewatch.store import deliveries as dq
from usagewatch.store.lifecycle import CommitResult, apply_update
from usagewatch.store.locks import (
    SHARED_JOBS,
    Leadership,
    SharedLock,
    claim_delivery,
    lock_key,
    recover_stale_claims,
    source_lock,
    unclaim_failed,
)
from usagewatch.store.tables import deliveries, findings

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL (127.0.0.1:5432, user postgres), dropped afterwards."""
    import psycopg

    name = f"uw_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True,
                                connect_timeout=3)
    except psycopg.OperationalError as exc:
        need_server(f"no PostgreSQL at 127.0.0.1:5432 ({exc})")
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_store(pg_url) -> Iterator[Store]:
    s = Store(pg_url, "https://wiki.example.com/howto/")
    yield s
    s.close()


def test_lock_keys_are_stable_across_processes_and_distinct():
    out = subprocess.run([sys.executable, "-c", "from usagewatch.store.locks import lock_key; "
                          f"print(lock_key({SHARED_JOBS!r}))"], capture_output=True, text=True, check=True)
    assert int(out.stdout) == lock_key(SHARED_JOBS)
    assert -2**63 <= lock_key(SHARED_JOBS) < 2**63
    assert lock_key("usagewatch-source:a") != lock_key("usagewatch-source:b")


def test_on_sqlite_the_lock_is_always_held(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/uw.db")
    a, b = SharedLock(store.engine, SHARED_JOBS), SharedLock(store.engine, SHARED_JOBS)
    assert a.try_acquire() and b.try_acquire() and a.holding() and b.holding()
    a.release()
    assert a.holding()
    store.close()


def test_one_holder_at_a_time_and_release_hands_over(pg_store, pg_url):
    other = Store(pg_url)
    a, b = SharedLock(pg_store.engine, SHARED_JOBS), SharedLock(other.engine, SHARED_JOBS)
    assert a.try_acquire()
    assert a.try_acquire() and a.holding()  # re-entrant for its holder
    assert not b.try_acquire() and not b.holding()
    a.release()
    assert not a.holding()
    assert b.try_acquire() and not a.try_acquire()
    b.release()
    other.close()


def test_a_lost_session_loses_the_lock_and_another_takes_it(pg_store, pg_url):
    other = Store(pg_url)
    a, b = SharedLock(pg_store.engine, SHARED_JOBS), SharedLock(other.engine, SHARED_JOBS)
    assert a.try_acquire() and not b.try_acquire()
    assert a._conn is not None
    pid = a._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    with other.engine.connect() as conn:  # what a dead process (or a failed network) amounts to
        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    assert not a.holding()
    assert b.try_acquire()
    assert not a.try_acquire()
    b.release()
    other.close()


def test_sigkill_of_the_holding_process_frees_the_lock(pg_store, pg_url):
    code = ("import sys, time, sqlalchemy as sa\n"
            "from usagewatch.store.locks import SharedLock\n"
            f"lock = SharedLock(sa.create_engine({pg_url!r}), 'usagewatch-shared-jobs')\n"
            "print(lock.try_acquire(), flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "True"
        b = SharedLock(pg_store.engine, SHARED_JOBS)
        assert not b.try_acquire()
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while not b.try_acquire() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.holding()
        b.release()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_source_locks_are_all_or_nothing(pg_store, pg_url):
    other = Store(pg_url)
    a = source_lock(pg_store.engine, ["s2", "s1"])
    b = source_lock(other.engine, ["s3", "s2"])
    c = source_lock(other.engine, ["s3"])
    assert a.try_acquire()
    assert not b.try_acquire()  # s2 is taken: b gives back s3 rather than hold half its sources
    assert c.try_acquire()
    c.release()
    a.release()
    assert b.try_acquire()
    b.release()
    other.close()


def test_leadership_logs_gain_standby_and_loss(pg_store, pg_url, caplog):
    caplog.set_level(logging.INFO, logger="usagewatch.store.locks")
    other = Store(pg_url)
    a = Leadership(SharedLock(pg_store.engine, SHARED_JOBS), "the shared jobs")
    b = Leadership(SharedLock(other.engine, SHARED_JOBS), "the shared jobs")
    assert a.check() and not b.check()
    assert a.lock._conn is not None
    a.lock._conn.invalidate()  # A's session is gone (so is its lock) and B gets there first
    # the server ends A's session (and frees its lock) a moment after the socket closes
    deadline = time.monotonic() + 5
    while not b.check() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.check()
    assert not a.check()
    text = caplog.text
    assert "leadership gained" in text and "standing by" in text and "leadership lost" in text
    b.release()
    other.close()


def _deliveries(store: Store, n: int) -> list[int]:
    store.commit(Batch([update(30, key=f"user=kim fingerprint={i}") for i in range(n)]), now=at(0))
    for row in dq.unrouted(store):
        dq.route(store, row, [dq.Planned("default", "email", "pending")], at(0))
    return [d["id"] for d in dq.listing(store)]


def test_two_senders_claim_each_delivery_exactly_once(pg_store, pg_url):
    ids = _deliveries(pg_store, 40)
    other = Store(pg_url)
    won: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def sender(name: str, store: Store) -> None:
        barrier.wait()
        for i in ids:
            if claim_delivery(store.engine, i, at(1), timedelta(minutes=5)):
                won[name].append(i)

    threads = [threading.Thread(target=sender, args=("a", pg_store)), threading.Thread(target=sender, args=("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert sorted(won["a"] + won["b"]) == ids  # every delivery claimed once, by one sender
    assert {d["status"] for d in dq.listing(pg_store)} == {"sending"}


def test_a_stale_claim_is_given_back_and_a_failed_one_retried(pg_store):
    first, second = _deliveries(pg_store, 2)
    assert claim_delivery(pg_store.engine, first, at(1), timedelta(minutes=5))
    assert not claim_delivery(pg_store.engine, first, at(2), timedelta(minutes=5))
    assert recover_stale_claims(pg_store.engine, at(3)) == 0  # lease still running
    assert recover_stale_claims(pg_store.engine, at(7)) == 1  # its sender died
    assert claim_delivery(pg_store.engine, first, at(7), timedelta(minutes=5))
    assert claim_delivery(pg_store.engine, second, at(7), timedelta(minutes=5))
    unclaim_failed(pg_store.engine, first, "451 try later", at(20))
    unclaim_failed(pg_store.engine, second, "550 no such user", None)
    got = {d["id"]: (d["status"], d["attempts"], d["last_error"]) for d in dq.listing(pg_store)}
    assert got == {first: ("pending", 1, "451 try later"), second: ("dead", 1, "550 no such user")}
    assert not claim_delivery(pg_store.engine, first, at(19), timedelta(minutes=5))  # not due yet


def test_two_writers_opening_the_same_finding_make_one(pg_store, pg_url):
    """Daemon A opens rule+key in a transaction not committed yet; daemon B's commit of the same
    rule+key blocks on the partial unique index, then fails as a whole when A commits (nothing of
    B's batch saved, so nothing is half-counted); the daemon re-reads the batch and the retry
    updates A's finding. One open finding, one outbox row."""
    other = Store(pg_url, "https://wiki.example.com/howto/")
    errors: list[Exception] = []
    started = threading.Event()

    def commit_b() -> None:
        started.set()
        try:
            other.commit(Batch([update(35)]), now=at(40))
        except StoreError as exc:
            errors.append(exc)

    with pg_store.engine.begin() as conn:
        apply_update(conn, update(30), at(30), "", CommitResult())
        b = threading.Thread(target=commit_b)
        b.start()
        started.wait()
        time.sleep(0.5)  # B is now waiting on the unique index
    b.join(10)
    assert len(errors) == 1 and "could not save a batch" in str(errors[0])
    assert other.commit(Batch([update(35)]), now=at(41)).updated_findings == [1]
    with pg_store.engine.connect() as conn:
        rows = conn.execute(sa.select(findings.c.id, findings.c.count, findings.c.status)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar() == 0
    assert [tuple(r) for r in rows] == [(1, 35, "open")]
    assert len(pg_store.outbox_rows()) == 1
    other.close()
