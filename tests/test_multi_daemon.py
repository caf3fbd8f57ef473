"""Several ``usagewatch run`` processes sharing one PostgreSQL store: the supported topology, one
daemon per log host (each reads its own sources), all sharing findings, notifications and the
shared jobs. Real processes, a real PostgreSQL (a fresh database per test), a real SMTP server.

What is checked: only the daemon holding the ``usagewatch-shared-jobs`` advisory lock sends
digests, so each finding is in exactly one digest and each interval has at most one digest; after
a SIGKILL of the leader, the other daemon takes over the digest job within one interval."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import sqlalchemy as sa

from tests.helpers.configs import write_config
from tests.store.test_locks import pg_url  # noqa: F401  (fixture)
from tests.test_daemon import start_daemon, stop, wait_for_log
from usagewatch.config import SAMPLE_LOG

EVERY = 2.0  # the digest interval, seconds


def host(tmp_path: Path, name: str, url: str, smtp) -> tuple[Path, Path]:
    """One log host: its own log directory and config (its own source), the shared store and route."""
    d = tmp_path / name
    (d / "logs").mkdir(parents=True)
    cfg = write_config(
        d, [{"name": f"warehouse-{name}", "format": "postgres-csvlog", "paths": [f"{d}/logs/*.csv"]}],
        database=url,
        notify={"email": {"host": smtp.host, "port": smtp.port, "from": "usagewatch@example.com",
                          "to": ["dw-support@example.com"]},
                "routes": [{"name": "team", "email_to": ["team@example.com"], "mode": "digest",
                            "digest_every": f"{EVERY:g}s"}]},
        follow={"rescan_interval": "500ms", "idle_flush": "500ms"},
    )
    return cfg, d / "logs"


def test_one_daemon_per_host_one_digest_and_failover_after_sigkill(tmp_path, pg_url, smtp_server):  # noqa: F811
    cfg_a, logs_a = host(tmp_path, "a", pg_url, smtp_server)
    cfg_b, logs_b = host(tmp_path, "b", pg_url, smtp_server)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = start_daemon(cfg_a, log_a)
    b: subprocess.Popen | None = None
    try:
        wait_for_log(log_a, "leadership gained")  # A leads: it started first
        b = start_daemon(cfg_b, log_b)
        wait_for_log(log_b, "standing by")
        (logs_a / "postgresql.csv").write_bytes(SAMPLE_LOG.read_bytes())
        (first,) = smtp_server.wait_for(1, timeout=30)
        time.sleep(2.5 * EVERY)  # more ticks of both daemons: nothing new, no second digest
        assert len(smtp_server.messages) == 1
        assert first.message["Subject"] == "[usagewatch] Digest (team): 3 new"

        a.kill()  # the leader dies without a word; its database session, and lock, go with it
        a.wait()
        killed = time.monotonic()
        wait_for_log(log_b, "leadership gained", timeout=EVERY + 5)
        took_over = time.monotonic() - killed
        assert took_over <= EVERY + 1.5, took_over  # within one interval (plus process slack)
        (logs_b / "postgresql.csv").write_bytes(SAMPLE_LOG.read_bytes().replace(b"kim", b"lee"))
        second = smtp_server.wait_for(2, timeout=30)[1]
        time.sleep(2.5 * EVERY)
        assert len(smtp_server.messages) == 2
        assert stop(b, log_b) == 0
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
    assert second.message["Subject"] == "[usagewatch] Digest (team): 1 new"
    assert "lee" in second.message.get_body(("plain",)).get_content()
    assert first.message["Message-ID"] != second.message["Message-ID"]
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT seq FROM digests ORDER BY seq")).scalars().all() == [1, 2]
        opened = conn.execute(sa.text("SELECT finding_id FROM digest_items WHERE change <> 'updated'")).scalars().all()
        users = conn.execute(sa.text('SELECT "user" FROM findings WHERE status = \'open\'')).scalars().all()
    engine.dispose()
    assert len(opened) == len(set(opened)) == 4  # each finding told once
    assert sorted(users) == ["bi_tool", "dash", "kim", "lee"]  # bi_tool and dash: one finding each


def test_active_and_standby_on_the_same_logs_count_once_and_alert_once(tmp_path, pg_url, smtp_server):  # noqa: F811
    """Two daemons with the SAME config (same files, same store): only the holder of the sources'
    lock reads; when it is killed the standby takes over from the saved positions. Every record is
    counted once and the finding is emailed once."""
    from tests.helpers.logwriter import RULES, LogWriter
    from usagewatch import config
    from usagewatch.store import Store

    logs = tmp_path / "logs"
    logs.mkdir()
    cfg_path = write_config(
        tmp_path, [{"name": "warehouse", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
        database=pg_url, rules=[str(RULES)],
        notify={"email": {"host": smtp_server.host, "port": smtp_server.port, "from": "usagewatch@example.com",
                          "to": ["dw-support@example.com"]}},
        follow={"rescan_interval": "300ms", "idle_flush": "300ms"},
    )
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    w = LogWriter(logs / "pg.csv", chunk=997)
    a = start_daemon(cfg_path, log_a)
    b: subprocess.Popen | None = None
    try:
        wait_for_log(log_a, "following")
        b = start_daemon(cfg_path, log_b)
        wait_for_log(log_b, "standing by: another daemon holds the lock of these sources")
        for _ in range(10):
            w.emit(50)
            time.sleep(0.1)
        a.kill()  # the active dies mid-stream; its session and lock go with it
        a.wait()
        for _ in range(10):
            w.emit(50)
            time.sleep(0.1)
        wait_for_log(log_b, "reading the sources now", timeout=10)
        store = Store(config.load(cfg_path).database)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = [(f["count"], f["distinct_values"]) for f in store.findings()]
            if rows and rows[0][0] >= w.next_id:
                break
            time.sleep(0.2)
        time.sleep(1)
        rows = [(f["count"], f["distinct_values"]) for f in store.findings()]
        store.close()
        assert rows == [(w.next_id, w.next_id)]
        time.sleep(1)
        assert len(smtp_server.messages) == 1  # one finding, one email, whichever daemon sent it
        assert stop(b, log_b) == 0
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
