"""A throwaway PostgreSQL cluster for tests: the session fixture ``pg_cluster`` and ``start_cluster``.

The cluster logs the way the product expects production to (``stderr``, ``csvlog`` and ``jsonlog``
together, ``log_statement=all`` plus ``log_min_duration_statement=0``, connections and
disconnections), so tests read the very records a real PostgreSQL writes instead of hand-made
imitations. The stderr log uses ``STDERR_PREFIX``, a ``log_line_prefix`` that carries everything
csvlog has that an event needs, so the three logs of one run give equal events.

Why it is built like this:

- PostgreSQL refuses to run as root, and tests run as root (CI too). The cluster lives in a temp
  dir chowned to the ``postgres`` user, and ``initdb``/``pg_ctl`` run through ``runuser``. Root can
  still read the log files, so tests read them directly.
- It listens on 127.0.0.1 on a free port plus a unix socket inside the temp dir, so it never
  clashes with a system PostgreSQL or a parallel test run.
- ``log_filename`` is a fixed short name with rotation off: with ``stderr,csvlog,jsonlog``
  PostgreSQL writes ``pg.log``, ``pg.csv`` and ``pg.json`` next to each other and nothing else.
- When the binaries are missing or the cluster cannot start, the fixture calls ``need_server``:
  skip locally, fail in CI.

``read_records``/``assemble`` run log bytes through a format the way a file reader would (framing
chunk by chunk, keeping half records), for tests of the PostgreSQL formats.

``start_cluster`` is also used by ``python -m tests.helpers.workload`` to write the sample logs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.servers import need_server
from usagewatch.errors import BadRecord
from usagewatch.model import QueryEvent

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
LOG_BASENAME = "pg"
LOG_KINDS = {"stderr": ".log", "csvlog": ".csv", "jsonlog": ".json"}
STDERR_PREFIX = "%m [%p] %q%u@%d %c %l %e %r app=%a "
"""The test cluster's ``log_line_prefix``: user, database, session, SQLSTATE, client, application."""
SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "logging_collector": "on",
    "log_destination": "'stderr,csvlog,jsonlog'",
    "log_line_prefix": f"'{STDERR_PREFIX}'",
    "log_directory": "'log'",
    "log_filename": f"'{LOG_BASENAME}.log'",
    "log_file_mode": "0640",
    "log_rotation_age": "0",
    "log_rotation_size": "0",
    "log_statement": "'all'",
    "log_min_duration_statement": "0",
    "log_connections": "on",
    "log_disconnections": "on",
    "log_timezone": "'UTC'",
    "timezone": "'UTC'",
    "lc_messages": "'C'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "40",
    "autovacuum": "off",
}


class ClusterUnavailable(RuntimeError):
    """The cluster could not be set up here (no binaries, no postgres user, start failed)."""


def find_bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        p = Path(d, name)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, **kw)


@dataclass
class PgCluster:
    """A running throwaway cluster. ``connect`` returns an autocommit psycopg 3 connection."""

    base: Path
    port: int
    host: str = "127.0.0.1"
    superuser: str = "postgres"
    pg_ctl: str = "pg_ctl"
    _running: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base

    def log_dir(self) -> Path:
        return self.datadir / "log"

    def log_files(self, kind: str) -> list[Path]:
        """The log files of ``kind`` ("stderr", "csvlog" or "jsonlog"), oldest first."""
        return sorted(self.log_dir().glob(f"*{LOG_KINDS[kind]}"))

    def connect(self, user: str | None = None, dbname: str = "postgres", **kw: Any) -> Any:
        import psycopg

        kw.setdefault("autocommit", True)
        return psycopg.connect(
            host=self.host, port=self.port, user=user or self.superuser, dbname=dbname,
            application_name=kw.pop("application_name", "usagewatch-tests"), **kw,
        )

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement as the superuser (admin work: roles, databases)."""
        with self.connect(dbname=dbname) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_role(self, name: str, *, superuser: bool = False) -> None:
        """Create a login role unless it exists (roles are cluster-wide, tests may share them)."""
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            if not exists:
                su = " SUPERUSER" if superuser else ""
                conn.execute(f'CREATE ROLE "{name}" LOGIN{su}')  # type: ignore[arg-type]

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> None:
        """Wait until every log kind contains ``needle`` (the logging collector writes a bit later)."""
        deadline = time.monotonic() + timeout
        data = needle.encode()
        while True:
            if all(any(data in p.read_bytes() for p in self.log_files(k)) for k in LOG_KINDS):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} did not reach the logs within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._running:
            _as_postgres([self.pg_ctl, "-D", str(self.datadir), "-m", "fast", "-w", "stop"], timeout=60)
            self._running = False


def start_cluster(base: Path | None = None) -> PgCluster:
    """initdb + start a cluster in ``base`` (a new temp dir when None). Raises ClusterUnavailable."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise ClusterUnavailable("PostgreSQL binaries (initdb, pg_ctl) not found")
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            raise ClusterUnavailable("running as root but runuser is missing")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise ClusterUnavailable("running as root and there is no 'postgres' user") from None
    # as root, /tmp: the postgres user must be able to reach the dir (a TMPDIR under /root is not)
    tmp_parent = "/tmp" if os.geteuid() == 0 and os.path.isdir("/tmp") else None
    base = Path(base) if base else Path(tempfile.mkdtemp(prefix="usagewatch-pg-", dir=tmp_parent))
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    cluster = PgCluster(base=base, port=free_port(), pg_ctl=pg_ctl)
    r = _as_postgres([initdb, "-D", str(cluster.datadir), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--locale=C", "--no-sync"], timeout=120)
    if r.returncode != 0:
        raise ClusterUnavailable(f"initdb failed: {r.stderr.strip()[-500:]}")
    settings = dict(SETTINGS, port=str(cluster.port), unix_socket_directories=f"'{cluster.socket_dir}'")
    with open(cluster.datadir / "postgresql.conf", "a", encoding="utf-8") as f:
        f.write("\n# usagewatch test cluster\n")
        f.writelines(f"{k} = {v}\n" for k, v in settings.items())
    r = _as_postgres([pg_ctl, "-D", str(cluster.datadir), "-l", str(base / "server.log"), "-w",
                      "-t", "60", "start"], timeout=90)
    if r.returncode != 0:
        log = (base / "server.log").read_text(errors="replace") if (base / "server.log").exists() else ""
        raise ClusterUnavailable(f"pg_ctl start failed: {(r.stderr + log).strip()[-800:]}")
    cluster._running = True
    return cluster


def make_format(format_name: str, options: dict[str, Any] | None = None) -> Any:
    """The format ``format_name`` built with ``options`` (validated by its ``Options``)."""
    from usagewatch.sources.formats import (
        formats,  # late: a broken format must not break the plugin
    )

    cls = formats.get(format_name)
    return cls(cls.Options.model_validate(options or {}))


def read_records(format_name: str, data: bytes, chunk: int | None = None, path: str = "log",
                 options: dict[str, Any] | None = None,
                 ) -> tuple[list[tuple[dict[str, Any], str]], Counter[str]]:
    """Frame and parse ``data`` like a reader that gets it ``chunk`` bytes at a time (all at once
    when None): the (fields, "path:end_offset") of each good record, and BadRecord counts.
    ``options`` are the format's (``log_line_prefix`` for postgres-stderr)."""
    fmt = make_format(format_name, options)
    records: list[tuple[dict[str, Any], str]] = []
    bad: Counter[str] = Counter()
    size = chunk or max(len(data), 1)
    buf, base = b"", 0
    for i in range(0, max(len(data), 1), size):
        buf += data[i:i + size]
        at_eof = i + size >= len(data)
        start = 0
        for end in fmt.frame(buf, at_eof):
            try:
                records.append((fmt.parse(buf[start:end]), f"{path}:{base + end}"))
            except BadRecord as exc:
                bad[exc.reason] += 1
            start = end
        buf, base = buf[start:], base + start
    return records, bad


def assemble(format_name: str, records: list[tuple[dict[str, Any], str]], source: str = "test",
             flush: bool = True, options: dict[str, Any] | None = None) -> tuple[list[QueryEvent], Any]:
    """Feed records to a fresh assembler of ``format_name``; the events and the assembler."""
    asm = make_format(format_name, options).assembler(source)
    events = [ev for fields, pos in records for ev in asm.feed(fields, pos)]
    if flush:
        events += asm.flush()
    return events, asm


def remove_cluster(cluster: PgCluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL 15 cluster for the whole test session (see the module docstring)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need_server("psycopg is not installed")
    try:
        cluster = start_cluster()
    except (ClusterUnavailable, OSError, subprocess.SubprocessError) as exc:
        need_server(f"cannot start a PostgreSQL cluster: {exc}")
    try:
        yield cluster
    finally:
        remove_cluster(cluster)
