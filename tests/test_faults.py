"""Faults a real daemon process (``usagewatch run``) meets in production, and what it does:

- the store is unreachable at start (SQLite directory not there yet, PostgreSQL port closed): it
  retries with a clear log line and says READY=1 to systemd only once connected;
- the store stops taking writes mid-run (SQLite locked by another process; "disk full"): batches
  wait and are read again from the saved positions when it returns, nothing lost or counted twice
  (the count-ids rule and ``LogWriter`` of tests/test_crash.py);
- the config file cannot be read: exit 1 with ``<path>: cannot read file: Permission denied``;
- a log directory cannot be read: a warning naming it, the other sources keep running, and it is
  read once its permissions allow.

Tests run as root (CI too), and root ignores file permissions. So the permission faults run the
daemon as root *without* CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (``setpriv``), the two capabilities
that bypass permissions, on files owned by another user: the kernel then checks the mode bits as
for anyone else. (``runuser -u nobody`` would be closer to production but cannot reach the Python
under /root of this machine.) As a normal user, plain chmod does it.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.configs import write_config
from tests.helpers.logwriter import RULES, LogWriter
from tests.test_daemon import NotifySocket, count_ids, start_daemon, stop, wait_counted, wait_for_log

FOLLOW = {"rescan_interval": "300ms", "idle_flush": "300ms"}
NOBODY = 65534


def permissions_apply() -> list[str]:
    """A command prefix under which file permissions apply to the daemon (see module docstring)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", sys.executable, "-m", "usagewatch"]


def deny(path: Path) -> None:
    """No access for the daemon: mode 000, and (as root) owned by someone else."""
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    path.chmod(0)


def one_source(tmp_path: Path, logs: Path, **extra: object) -> Path:
    return write_config(tmp_path, [{"name": "w", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                        rules=[str(RULES)], follow=FOLLOW, **extra)


def test_store_unreachable_at_start_is_retried_and_ready_only_once_connected(tmp_path):
    logs, state = tmp_path / "logs", tmp_path / "state"  # the store's directory is not there yet
    logs.mkdir()
    database = f"sqlite:///{state}/usagewatch.db"
    cfg = one_source(tmp_path, logs, database=database)
    LogWriter(logs / "a.csv").emit(20)
    notify = NotifySocket()
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log, env=notify.env)
    try:
        got = wait_for_log(daemon_log, "not ready until it connects")
        assert "store unreachable: cannot open the database" in got and "unable to open database file" in got
        assert "retrying in 1s" in got
        time.sleep(2)
        fields = notify.fields()
        assert "READY=1" not in fields
        assert any(f.startswith("STATUS=waiting for the store:") for f in fields)
        state.mkdir()  # the file system is mounted, the volume attached ...
        notify.wait_for("READY=1", timeout=20)
        assert "store reachable: connected to" in daemon_log.read_text()
        assert wait_counted(database, 20) == (20, 20)
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def test_postgres_store_on_a_closed_port_is_retried_and_sigterm_still_stops(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = one_source(tmp_path, logs, database=f"postgresql+psycopg://usagewatch@127.0.0.1:{port}/usagewatch")
    notify = NotifySocket()
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log, env=notify.env)
    try:
        got = wait_for_log(daemon_log, "not ready until it connects")
        assert f"store unreachable: cannot open the database postgresql+psycopg://usagewatch@127.0.0.1:{port}" in got
        assert "Connection refused" in got or "connection failed" in got
        t0 = time.monotonic()
        assert stop(proc, daemon_log) == 0
        assert time.monotonic() - t0 < 5
        notify.wait_for("STOPPING=1", timeout=2)
        assert "READY=1" not in notify.fields()
        assert "stopped (signal received) before the store was reachable" in daemon_log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def test_store_locked_mid_run_holds_batches_and_loses_nothing(tmp_path):
    """Another process holds SQLite's write lock (a long `sqlite3` session, a backup tool):
    commits fail after the busy timeout; when the lock goes, everything arrives exactly once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    database = f"sqlite:///{tmp_path}/usagewatch.db"
    cfg = one_source(tmp_path, logs)
    writer = LogWriter(logs / "a.csv", chunk=997)
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log)
    try:
        writer.emit(50)
        assert wait_counted(database, 50) == (50, 50)
        mark = len(daemon_log.read_text())
        lock = sqlite3.connect(tmp_path / "usagewatch.db", isolation_level=None, timeout=10)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            writer.emit(70)
            got = wait_for_log(daemon_log, "database is locked", mark, timeout=30)
            assert "read again from the saved positions once the store accepts writes" in got
            writer.emit(30)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert wait_counted(database, 150, timeout=60) == (150, 150)
        wait_for_log(daemon_log, "store available again", mark)
        time.sleep(1)
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert count_ids(database) == (150, 150)


# Disk full, simulated: a loop or tmpfs mount needs root *and* a kernel that lets the container
# mount, which CI does not promise. SQLite's `PRAGMA max_page_count` makes it fail the same way
# (SQLITE_FULL, "database or disk is full") at the size it has reached. The pragma is set on each
# connection checkout by a hook installed in the daemon process by this wrapper, from a file the
# test rewrites: the product has no test-only code.
DISK_FULL_BOOT = """
import sys
import sqlalchemy as sa
limit_file = sys.argv.pop(1)
def limit(dbapi_conn, record, proxy):
    with open(limit_file) as f:
        pages = int(f.read())
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA max_page_count = {pages}")
    cur.close()
sa.event.listen(sa.pool.Pool, "checkout", limit)
from usagewatch.cli import main
sys.argv[0] = "usagewatch"
main()
"""


def test_disk_full_mid_run_holds_batches_and_loses_nothing(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    database = f"sqlite:///{tmp_path}/usagewatch.db"
    cfg = one_source(tmp_path, logs)
    limit = tmp_path / "max_page_count"
    limit.write_text("1073741823")
    writer = LogWriter(logs / "a.csv", chunk=997)
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log, argv=[sys.executable, "-c", DISK_FULL_BOOT, str(limit)])
    try:
        writer.emit(100)
        assert wait_counted(database, 100) == (100, 100)
        mark = len(daemon_log.read_text())
        limit.write_text("1")  # no page more than the file has now
        for _ in range(30):  # the window of ids grows until a commit needs a new page
            writer.emit(100)
            if "database or disk is full" in daemon_log.read_text()[mark:]:
                break
            time.sleep(0.2)
        wait_for_log(daemon_log, "database or disk is full", mark, timeout=20)
        written = writer.next_id
        limit.write_text("1073741823")  # space freed
        assert wait_counted(database, written, timeout=60) == (written, written)
        wait_for_log(daemon_log, "store available again", mark)
        time.sleep(1)
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert count_ids(database) == (written, written)


def test_an_unreadable_config_file_exits_1_naming_it(tmp_path):
    prefix = permissions_apply()
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = one_source(tmp_path, logs)
    deny(cfg)
    r = subprocess.run([*(prefix or [sys.executable, "-m", "usagewatch"]), "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1
    # the CLI's one error form for config problems (as `usagewatch check` prints a missing file)
    assert r.stderr == (f"{cfg}: cannot read file: Permission denied\n"
                        "Error: 1 problem in the config or rules.\n"), r.stderr


def test_an_unreadable_log_directory_is_named_and_other_sources_keep_running(tmp_path):
    prefix = permissions_apply()
    readable, locked = tmp_path / "readable", tmp_path / "locked"
    readable.mkdir()
    locked.mkdir()
    cfg = write_config(tmp_path, [{"name": "open", "format": "postgres-csvlog", "paths": [f"{readable}/*.csv"]},
                                  {"name": "closed", "format": "postgres-csvlog", "paths": [f"{locked}/*.csv"]}],
                       rules=[str(RULES)], follow=FOLLOW)
    database = f"sqlite:///{tmp_path}/usagewatch.db"
    writer = LogWriter(readable / "a.csv")
    writer.emit(20)
    writer.emit(10, locked / "b.csv")
    deny(locked)
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log, argv=prefix or None)
    try:
        got = wait_for_log(daemon_log, f"source closed: cannot read directory {locked} (Permission denied)")
        assert "its logs are not followed until it can be" in got
        assert wait_counted(database, 20) == (20, 20)
        writer.emit(5)
        assert wait_counted(database, 25) == (25, 25)
        locked.chmod(0o755)  # the admin adds the daemon's user to the logs' group
        wait_for_log(daemon_log, f"source closed: directory {locked} can be read now")
        assert wait_counted(database, 35) == (35, 35)
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        locked.chmod(0o755)
    assert daemon_log.read_text().count(f"cannot read directory {locked}") == 1  # once, not every rescan
