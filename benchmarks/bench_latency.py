"""Live latency, run by hand (never in the test suite):

    python benchmarks/bench_latency.py [--rate 2000] [--duration 180] [--database URL]

What it measures: how long after a PostgreSQL server writes the log record that completes a
problem pattern the support team has the email about it, while the daemon follows a busy log.

Everything is real and in the loop: a ``usagewatch run`` subprocess (stock rules, a SQLite store
in a temp dir unless ``--database`` names another, the metrics endpoint on), an in-process SMTP
server (aiosmtpd) that notes when it accepted each message, and a writer that appends PostgreSQL
csvlog records (``log_min_duration_statement`` style: one record per execution) at ``--rate``
queries/s in small flushes every ``--flush-ms``.

- Background traffic: many users (``bg...``), each running 40 query shapes; every (user, shape)
  gets fewer runs than any stock rule needs, so background traffic must never fire. The number of
  users grows with rate x duration to keep it so (a fired background finding is reported).
- Every ``--inject-every`` seconds a fresh user (``inj...``) starts running one query ``--runs``
  times with a different id each time, spread over ``--spread`` seconds between the background
  records; the ``--runs``-th record completes the stock rule ``same-query-different-ids`` (20 runs,
  20 distinct values). Latency = the time that record's ``write()`` returned -> the time the SMTP
  server accepted the email naming that user.

Whether the daemon kept up is read from its metrics endpoint (``usagewatch_bytes_behind``,
``usagewatch_records_total``) every second during the run, and from ``usagewatch status`` at the
end; with ``--database postgresql+psycopg://...`` the store's commits and rows written per second
(``pg_stat_database`` before and after) are printed too (the database must be one used only by
this run: it is emptied first). Exit status 0 when the target is met: every pattern emailed, p99 at
most 2 s, and nothing left behind 30 s after the writer stops. ``--profile`` runs the daemon under
cProfile, ``--keep`` keeps the temp dir (config, log, daemon log, each pattern's latency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

SHAPES = 40  # background query shapes per user
RUNS_PER_KEY = 10  # background runs per (user, shape) over the whole run: below every stock rule's 20
INJECTED = re.compile(rb"\binj\d{6}\b")
BACKGROUND = re.compile(rb"\bbg\d{6}\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the mail server -------------------------------------------------------------------------------
@dataclass
class Accepted:
    at: float  # time.time() when DATA was accepted
    raw: bytes


class Inbox:
    """An aiosmtpd handler that keeps each accepted message with the wall-clock time it arrived."""

    def __init__(self) -> None:
        self.messages: list[Accepted] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        with self.lock:
            self.messages.append(Accepted(time.time(), data))
        return "250 OK"

    def snapshot(self) -> list[Accepted]:
        with self.lock:
            return list(self.messages)


# --- the log writer --------------------------------------------------------------------------------
def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class CsvlogWriter:
    """PostgreSQL 15 csvlog records, one complete execution each, appended with ``os.write``."""

    def __init__(self, path: Path, background_users: int):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.background_users = background_users
        self.keys = background_users * SHAPES
        self.n_background = 0
        self.line_no: dict[str, int] = {}
        self.bytes_written = 0
        self.records_written = 0

    def record(self, ts: str, user: str, sql: str) -> str:
        line = self.line_no.get(user, 0) + 1
        self.line_no[user] = line
        pid = 10000 + (hash(user) % 50000)
        message = f"duration: 0.{line % 1000:03d} ms  statement: {sql}"
        return (f"{ts},{csv_field(user)},\"dw\",{pid},\"10.0.0.7:5432\",6b07b447.{pid:x},{line},\"SELECT\","
                f"2026-11-26 00:00:00 UTC,3/{line},0,LOG,00000,{csv_field(message)},,,,,,,,,\"bench\","
                f"\"client backend\",,0\n")

    def background(self, ts: str) -> str:
        """The next background query: (user, shape) taken round-robin over every key, so each key
        gets one run per ``keys`` queries and never the 20 a stock rule needs."""
        i = self.n_background
        self.n_background += 1
        key = i % self.keys
        user, shape = divmod(key, SHAPES)
        value = 1000 + i // self.keys
        sql = f"SELECT id, amount, booked_on FROM ledger_{shape:02d} WHERE account_id = {value}"
        return self.record(ts, f"bg{user:06d}", sql)

    def write(self, text: str) -> float:
        data = text.encode()
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.bytes_written += len(data)
        return time.time()

    def close(self) -> None:
        os.close(self.fd)


def injected_sql(run: int) -> str:
    return f"SELECT name, email, region FROM customers WHERE customer_id = {700000 + run * 7}"


# --- the daemon's numbers --------------------------------------------------------------------------
def scrape(url: str) -> dict[str, float]:
    """bytes_behind (summed over files) and records_total (summed over sources) from /metrics."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {"bytes_behind": 0.0, "records_total": 0.0}
    for line in text.splitlines():
        if line.startswith("usagewatch_bytes_behind{"):
            out["bytes_behind"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("usagewatch_records_total{"):
            out["records_total"] += float(line.rsplit(" ", 1)[1])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its waited-for children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB: window state grows with distinct queries."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pg_counters(url: str) -> dict[str, int] | None:
    """Commits and rows written in the store's database so far (pg_stat_database), or None."""
    if not url.startswith("postgresql"):
        return None
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            row = conn.execute(sa.text(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                "WHERE datname = current_database()")).one()
    finally:
        engine.dispose()
    return {"commits": row[0], "inserted": row[1], "updated": row[2], "deleted": row[3]}


def empty_pg(url: str) -> None:
    """Drop every table of the benchmark's own database, so the daemon starts from an empty store."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


@dataclass
class Result:
    latencies: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    false_fires: int = 0
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)


# --- the run -----------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=2000.0, help="queries/s written (default 2000)")
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of writing (default 180)")
    ap.add_argument("--flush-ms", type=float, default=20.0, help="ms between flushes (default 20)")
    ap.add_argument("--inject-every", type=float, default=1.0, help="s between injected patterns (default 1)")
    ap.add_argument("--runs", type=int, default=20, help="runs that complete a pattern (stock rule: 20)")
    ap.add_argument("--spread", type=float, default=0.5, help="s over which one pattern's runs are written")
    ap.add_argument("--database", default=None, help="store URL (default: SQLite in the temp dir)")
    ap.add_argument("--follow", default="", help='extra follow: settings as YAML, e.g. "{rescan_interval: 2s}"')
    ap.add_argument("--profile", action="store_true", help="run the daemon under cProfile (daemon.prof in the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (config, log, daemon log)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="uw-latency-"))
    logs = tmp / "logs"
    logs.mkdir()
    log_path = logs / "postgresql.csv"
    database = args.database or f"sqlite:///{tmp}/usagewatch.db"
    if database.startswith("postgresql"):
        empty_pg(database)
    metrics_port = free_port()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port(), ready_timeout=10.0)
    smtp.start()
    cfg: dict[str, Any] = {
        "database": database,
        "sources": [{"name": "warehouse", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
        "notify": {"email": {"host": "127.0.0.1", "port": smtp.port, "from": "usagewatch@example.com",
                             "to": ["dw-support@example.com"], "tls": "none"}},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "log": {"format": "logfmt", "level": "info"},
    }
    if args.follow:
        cfg["follow"] = yaml.safe_load(args.follow)
    cfg_path = tmp / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    total = int(args.rate * args.duration)
    background_users = max(1, -(-total // (SHAPES * RUNS_PER_KEY)))
    writer = CsvlogWriter(log_path, background_users)
    profile = ["-m", "cProfile", "-o", str(tmp / "daemon.prof")] if args.profile else []
    cmd = [sys.executable, *profile, "-m", "usagewatch", "run", "--config", str(cfg_path)]
    print("command:", shlex.join(sys.argv))
    print("daemon: ", shlex.join(cmd))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}")
    print(f"store: {database.split('@')[-1]}; {background_users:,} background users x {SHAPES} shapes; "
          f"{args.rate:,.0f} q/s for {args.duration:.0f} s in flushes every {args.flush_ms:g} ms; "
          f"a {args.runs}-run pattern every {args.inject_every:g} s")
    daemon_log = (tmp / "daemon.log").open("wb")
    daemon = subprocess.Popen(cmd, stdout=daemon_log, stderr=subprocess.STDOUT, cwd=tmp)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    result = Result()
    try:
        deadline = time.monotonic() + 60
        while not scrape(metrics_url):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the daemon did not start:\n" + (tmp / "daemon.log").read_text()[-3000:])
            time.sleep(0.2)
        pg_before = pg_counters(database)
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        completed = write_load(args, writer, result, metrics_url)
        written_end = time.monotonic()
        wall_write = args.duration
        # drain: every byte read and committed, every injected user's email accepted (or 30 s)
        drained_after = None
        wait_until = time.monotonic() + 30
        while time.monotonic() < wait_until:
            m = scrape(metrics_url)
            if drained_after is None and m.get("bytes_behind", 1) == 0:
                drained_after = time.monotonic() - written_end
            got = {u for a in inbox.snapshot() for u in INJECTED.findall(a.raw)}
            if drained_after is not None and all(u.encode() in got for u in completed):
                break
            time.sleep(0.1)
        cpu1, t1 = cpu_seconds(daemon.pid), time.monotonic()
        rss = peak_rss_mb(daemon.pid)
        pg_after = pg_counters(database)
        final = scrape(metrics_url)
        status = subprocess.run([sys.executable, "-m", "usagewatch", "status", "--format", "json",
                                 "--config", str(cfg_path)], capture_output=True, text=True, cwd=tmp)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        smtp.stop()
        writer.close()
        daemon_log.close()

    # match emails to injected users
    first_mail: dict[str, float] = {}
    for a in inbox.snapshot():
        users = set(INJECTED.findall(a.raw))
        if not users and BACKGROUND.search(a.raw):
            result.false_fires += 1
        for u in users:
            first_mail.setdefault(u.decode(), a.at)
    for user, t_written in completed.items():
        if user in first_mail:
            result.latencies[user] = first_mail[user] - t_written
        else:
            result.missing.append(user)

    lat = list(result.latencies.values())
    print()
    print(f"latency, completing record written -> email accepted ({len(lat)} of {len(completed)} patterns):")
    if lat:
        print(f"  median {statistics.median(lat):.3f} s, p95 {pct(lat, 95):.3f} s, p99 {pct(lat, 99):.3f} s, "
              f"max {max(lat):.3f} s, min {min(lat):.3f} s")
        slow = sorted(result.latencies.items(), key=lambda kv: -kv[1])[:5]
        print("  slowest: " + ", ".join(f"{u} {v:.2f} s" for u, v in slow))
    if result.missing:
        print(f"  NO EMAIL for {len(result.missing)}: {', '.join(result.missing[:10])}")
    print(f"  background findings emailed (must be 0): {result.false_fires}")
    print(f"written: {writer.records_written:,} records, {writer.bytes_written / 1e6:.1f} MB in {wall_write:.0f} s "
          f"({writer.records_written / wall_write:,.0f} records/s, {writer.bytes_written / wall_write / 1e6:.2f} MB/s)")
    behind = [m.get("bytes_behind", float("nan")) for _, m in result.samples]
    if behind:
        print(f"bytes behind during the run (1 s samples): median {statistics.median(behind):,.0f}, "
              f"max {max(behind):,.0f}; last 10 s max {max(behind[-10:]):,.0f}")
    print(f"after the writer stopped: {final.get('records_total', 0):,.0f} records read of "
          f"{writer.records_written:,} written; bytes behind {final.get('bytes_behind', float('nan')):,.0f} "
          + (f"(0 within {drained_after:.2f} s)" if drained_after is not None else "(never 0 within 30 s)"))
    busy, span = cpu1 - cpu0, t1 - t0  # the span: writing, then draining what was left
    print(f"daemon CPU: {busy:.1f} s over {span:.0f} s (writing and draining) = {busy / span:.2f} cores; "
          f"peak RSS {rss:,.0f} MB")
    if pg_before and pg_after:
        secs = span
        d = {k: pg_after[k] - pg_before[k] for k in pg_before}
        print(f"store (PostgreSQL, pg_stat_database): {d['commits'] / secs:,.1f} commits/s, "
              f"{d['inserted'] / secs:,.0f} rows inserted/s, {d['updated'] / secs:,.0f} updated/s, "
              f"{d['deleted'] / secs:,.0f} deleted/s (incl. the scrapes' and sender's transactions)")
    if status.returncode == 0:
        doc = json.loads(status.stdout)
        for s in doc.get("sources", []):
            print("status:", json.dumps({k: v for k, v in s.items() if k != "rows"}, default=str))
    else:
        print("usagewatch status failed:", status.stderr.strip()[-500:])
    if args.keep:
        (tmp / "latencies.json").write_text(json.dumps(result.latencies, indent=0))
        print(f"files kept in {tmp} (latencies.json: each pattern's latency)")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    ok = bool(lat) and not result.missing and pct(lat, 99) <= 2.0 and drained_after is not None
    print(f"target (every pattern emailed, p99 <= 2 s, 0 bytes behind within 30 s of the end): "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


def write_load(args: argparse.Namespace, writer: CsvlogWriter, result: Result, metrics_url: str) -> dict[str, float]:
    """Write for ``args.duration`` seconds; returns each injected user -> when its completing record
    was written. Metrics are scraped from a side thread so the writer keeps its pace."""
    stop = threading.Event()
    t_start = time.monotonic()

    def sampler() -> None:
        while not stop.wait(1.0):
            result.samples.append((time.monotonic() - t_start, scrape(metrics_url)))

    side = threading.Thread(target=sampler, daemon=True)
    side.start()
    tick = args.flush_ms / 1000
    completed: dict[str, float] = {}
    # injected patterns: (due time, user, run index), in order
    schedule: list[tuple[float, str, int]] = []
    n_patterns = int(args.duration / args.inject_every) - 1
    for k in range(n_patterns):
        start = 0.5 + k * args.inject_every
        for r in range(args.runs):
            schedule.append((start + r * args.spread / max(1, args.runs - 1), f"inj{k:06d}", r))
    nxt = 0
    t_next = t_start
    try:
        while True:
            now = time.monotonic()
            elapsed = now - t_start
            if elapsed >= args.duration:
                break
            ts = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
            due = int(args.rate * elapsed) - writer.records_written
            injected: list[str] = []
            finishing: list[str] = []
            while nxt < len(schedule) and schedule[nxt][0] <= elapsed:
                _, user, r = schedule[nxt]
                injected.append(writer.record(ts, user, injected_sql(r)))
                if r == args.runs - 1:
                    finishing.append(user)
                nxt += 1
            # background first, the injected records last, in one write: the latency clock of a
            # completing record starts when the write holding it returns
            parts = [writer.background(ts) for _ in range(max(0, due - len(injected)))] + injected
            if parts:
                written_at = writer.write("".join(parts))
                writer.records_written += len(parts)
                for user in finishing:
                    completed[user] = written_at
            t_next += tick
            sleep = t_next - time.monotonic()
            if sleep > 0:
                time.sleep(sleep)
            else:
                t_next = time.monotonic()  # running late: do not burst to catch up the ticks
    finally:
        stop.set()
        side.join(timeout=5)
    return completed


if __name__ == "__main__":
    raise SystemExit(main())
