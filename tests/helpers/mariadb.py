"""A throwaway MariaDB server for tests: the session fixture ``mariadb_server`` and ``start_server``.

The server writes both logs the product reads, to files in its own directory: the general log
(``--general-log``) and the slow log with every statement (``--slow-query-log --long-query-time=0
--log-slow-verbosity=query_plan``), so tests read what a real MariaDB writes.

Why it is built like this:

- ``mariadbd`` run as root switches to ``--user=mysql``, so its directory is a ``tempfile.mkdtemp``
  under /tmp chowned to ``mysql`` (pytest's tmp dirs are 0700 root: mysql cannot enter them).
  Root still reads the logs directly.
- ``--no-defaults`` keeps the machine's my.cnf out; it listens on 127.0.0.1 on a free port and on
  a socket inside its directory, so it never clashes with a system server or a parallel run.
- ``mariadb-install-db --auth-root-authentication-method=normal`` gives root an empty password over
  TCP (the default, unix_socket, is a plugin PyMySQL cannot answer). Users are real accounts with
  empty passwords (no ``--skip-grant-tables``), so the logs name them as production logs would.
- When the binaries or PyMySQL are missing or the server cannot start, the fixture calls
  ``need_server``: skip locally, fail in CI.

``start_server`` is also used by ``python -m tests.helpers.mysql_workload`` to write the samples.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.postgres import free_port
from tests.helpers.servers import need_server

SERVER_BINS = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
INSTALL_BINS = ("mariadb-install-db", "mysql_install_db")


class ServerUnavailable(RuntimeError):
    """The server could not be set up here (no binaries, no mysql user, start failed)."""


def _find(candidates: tuple[str, ...]) -> str | None:
    for c in candidates:
        p = c if os.path.isabs(c) else shutil.which(c)
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


@dataclass
class MariaDB:
    """A running throwaway server. ``connect`` returns an autocommit PyMySQL connection."""

    base: Path
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def slow_log(self) -> Path:
        return self.base / "slow.log"

    @property
    def general_log(self) -> Path:
        return self.base / "general.log"

    def connect(self, user: str = "root", database: str | None = None, **kw: Any) -> Any:
        import pymysql

        kw.setdefault("autocommit", True)
        return pymysql.connect(host=self.host, port=self.port, user=user, password="",
                               database=database, **kw)

    def execute(self, *statements: str) -> None:
        """Run statements as root (admin work: users, databases)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                for sql in statements:
                    cur.execute(sql)
        finally:
            conn.close()

    def create_user(self, name: str, grant_on: str | None = None, privileges: str = "SELECT") -> None:
        """A login user with an empty password (any host), with ``privileges`` on ``grant_on``."""
        stmts = [f"CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY ''"]
        if grant_on:
            stmts.append(f"GRANT {privileges} ON {grant_on} TO '{name}'@'%'")
        self.execute(*stmts)

    def flush_logs(self) -> None:
        """``FLUSH LOGS``: the server closes and reopens its log files, so all is on disk. (It also
        writes a new start-up banner into each log, as a log rotation does.)"""
        self.execute("FLUSH GENERAL LOGS, SLOW LOGS")

    def wait_for_logs(self, needle: str, timeout: float = 10.0) -> None:
        """Wait until both logs contain ``needle`` (the logs are written as statements run; this is
        a safety net for the file system)."""
        data = needle.encode()
        deadline = time.monotonic() + timeout
        while not all(p.exists() and data in p.read_bytes() for p in (self.slow_log, self.general_log)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} did not reach the logs within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            self.execute("SHUTDOWN")
        except Exception:  # noqa: BLE001 - fall back to a signal
            self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def start_server(base: Path | None = None) -> MariaDB:
    """install-db + start a server in ``base`` (a new temp dir under /tmp when None); wait until it
    accepts connections. Raises ServerUnavailable."""
    mariadbd, install = _find(SERVER_BINS), _find(INSTALL_BINS)
    if not mariadbd or not install:
        raise ServerUnavailable("MariaDB binaries (mariadbd, mariadb-install-db) not found")
    try:
        import pymysql  # noqa: F401
    except ImportError:
        raise ServerUnavailable("PyMySQL is not installed (pip install -e '.[test]')") from None
    import pwd

    try:
        pw = pwd.getpwnam("mysql")
    except KeyError:
        raise ServerUnavailable("there is no 'mysql' user to run the server as") from None
    base = Path(base) if base else Path(tempfile.mkdtemp(prefix="usagewatch-maria-", dir="/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    server = MariaDB(base=base, port=free_port())
    r = subprocess.run([install, "--no-defaults", "--user=mysql", f"--datadir={server.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise ServerUnavailable(f"mariadb-install-db failed: {(r.stdout + r.stderr).strip()[-800:]}")
    args = [
        mariadbd, "--no-defaults", "--user=mysql", f"--datadir={server.datadir}", f"--port={server.port}",
        f"--socket={base}/sock", f"--pid-file={base}/mariadbd.pid", f"--log-error={base}/error.log",
        "--bind-address=127.0.0.1", "--general-log", f"--general-log-file={server.general_log}",
        "--slow-query-log", f"--slow-query-log-file={server.slow_log}", "--long-query-time=0",
        "--log-slow-verbosity=query_plan", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
        "--innodb-flush-log-at-trx-commit=0", "--skip-innodb-doublewrite",
    ]
    server.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            server.connect().close()
            return server
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
            time.sleep(0.1)
    err = (base / "error.log").read_text(errors="replace")[-800:] if (base / "error.log").exists() else ""
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(timeout=10)
    shutil.rmtree(base, ignore_errors=True)
    raise ServerUnavailable(f"mariadbd did not accept connections: {last}; {err.strip()}")


def remove_server(server: MariaDB) -> None:
    server.stop()
    shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDB]:
    """One MariaDB server for the whole test session (see the module docstring)."""
    try:
        server = start_server()
    except (ServerUnavailable, OSError, subprocess.SubprocessError) as exc:
        need_server(f"cannot start a MariaDB server: {exc}")
    try:
        yield server
    finally:
        remove_server(server)


@dataclass
class WorkloadLogs:
    """The slow and general log of one run of the MySQL workload, and its tally."""

    result: Any  # tests.helpers.mysql_workload.WorkloadResult
    slow_log: Path
    general_log: Path


@pytest.fixture(scope="session")
def mysql_workload_logs(mariadb_server: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> WorkloadLogs:
    """The workload run once on ``mariadb_server``; the part of each log it wrote, as files.

    The logs are cut at their sizes before the workload (a record boundary: the server writes whole
    entries), after sleeping into a new second so the general log's first line has its time. The
    server writes a slow-log entry AFTER it answered the client, so first a marker query is waited
    for in both logs: then no earlier statement's entry can still land in the slice.
    """
    from tests.helpers.mysql_workload import run_workload, wait_for_next_second

    marker = f"usagewatch-before-workload:{time.time()}"
    mariadb_server.execute(f"SELECT '{marker}'")
    mariadb_server.wait_for_logs(marker)
    sizes = {p: p.stat().st_size if p.exists() else 0 for p in (mariadb_server.slow_log, mariadb_server.general_log)}
    wait_for_next_second()
    result = run_workload(mariadb_server)
    out = tmp_path_factory.mktemp("mysql-workload")
    for p, size in sizes.items():
        with open(p, "rb") as f:
            f.seek(size)
            (out / p.name).write_bytes(f.read())
    return WorkloadLogs(result, out / "slow.log", out / "general.log")
