"""Scaling past one machine, in a test: the load is split BY SOURCE across two real ``usagewatch
run`` daemons that share one PostgreSQL store (docs/scaling.md).

Each daemon follows its own source (its own log directory; in production its own log host), so
each holds the advisory lock of its own source and both read at the same time. Both write findings
into the one store. What must hold, and is checked with real processes, a real PostgreSQL (a fresh
database) and a real SMTP server:

- every record of each source is counted exactly once: each source's count-ids finding has as many
  runs and distinct ids as were written to that source, and its checkpoint (saved per source) has
  read exactly that many records up to the end of the file;
- every finding is emailed exactly once, whichever daemon's sender claimed it;
- the shared jobs (here the status report, every 2 s) run on one daemon only: one daemon logs
  "leadership gained", the other "standing by", and only the leader's log says it sent reports,
  one per interval, never two for the same tick.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import sqlalchemy as sa

from tests.helpers.configs import write_config
from tests.helpers.logwriter import RULES, LogWriter
from tests.helpers.smtp import SmtpServer
from tests.test_daemon import start_daemon, stop, wait_for_log

STATUS_EVERY = 2.0  # seconds between status reports: a shared job
SENT = "status report sent"


def split_host(tmp_path: Path, name: str, url: str, smtp: SmtpServer) -> tuple[Path, Path]:
    """One daemon's config: its own source ``warehouse-<name>`` over its own log directory, the
    shared store, immediate email to the shared SMTP server, the status report as a shared job."""
    d = tmp_path / name
    (d / "logs").mkdir(parents=True)
    cfg = write_config(
        d, [{"name": f"warehouse-{name}", "format": "postgres-csvlog", "paths": [f"{d}/logs/*.csv"]}],
        database=url, rules=[str(RULES)],
        notify={"email": {"host": smtp.host, "port": smtp.port, "from": "usagewatch@example.com",
                          "to": ["dw-support@example.com"]},
                "status_every": f"{STATUS_EVERY:g}s"},
        follow={"rescan_interval": "300ms", "idle_flush": "300ms"},
    )
    return cfg, d / "logs"


def store_state(url: str) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]], list[int]]:
    """(count, distinct ids) of each table's count-ids finding, (records, offset) of each source's
    checkpoints, and the finding id of every sent delivery."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT normalized_sql, count, distinct_values FROM findings "
                                         "WHERE rule = 'count-ids'")).all()
            cps = conn.execute(sa.text('SELECT source, SUM(records), SUM("offset") FROM checkpoints '
                                       "GROUP BY source")).all()
            sent = conn.execute(sa.text("SELECT finding_id FROM deliveries WHERE status = 'sent'")).scalars().all()
    finally:
        engine.dispose()
    by_table = {sql.split(" FROM ")[1].split()[0]: (n, d) for sql, n, d in found}
    return by_table, {src: (int(r), int(o)) for src, r, o in cps}, list(sent)


def test_two_daemons_split_by_source_share_one_store_count_once_and_run_shared_jobs_once(
        tmp_path, postgres_url, smtp_server):
    cfg_a, logs_a = split_host(tmp_path, "a", postgres_url, smtp_server)
    cfg_b, logs_b = split_host(tmp_path, "b", postgres_url, smtp_server)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    wa = LogWriter(logs_a / "pg.csv", chunk=997, table="orders_a")
    wb = LogWriter(logs_b / "pg.csv", chunk=1009, table="orders_b")
    a = start_daemon(cfg_a, log_a)
    b: subprocess.Popen | None = None
    try:
        wait_for_log(log_a, "following")
        b = start_daemon(cfg_b, log_b)
        wait_for_log(log_b, "following")
        for _ in range(12):  # both sources grow at once, in chunks that cut records anywhere
            wa.emit(40)
            wb.emit(55)
            time.sleep(0.1)
        expected = {"orders_a": (wa.next_id, wa.next_id), "orders_b": (wb.next_id, wb.next_id)}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found, checkpoints, sent = store_state(postgres_url)
            if found == expected and len(sent) == 2:
                break
            time.sleep(0.2)
        time.sleep(2.5 * STATUS_EVERY)  # more ticks of both daemons: no second email, no double report
        assert stop(a, log_a) == 0
        assert stop(b, log_b) == 0
        found, checkpoints, sent = store_state(postgres_url)
        messages = list(smtp_server.messages)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()

    # each source counted exactly once, by the daemon that reads it
    assert found == expected
    assert checkpoints == {"warehouse-a": (wa.next_id, (logs_a / "pg.csv").stat().st_size),
                           "warehouse-b": (wb.next_id, (logs_b / "pg.csv").stat().st_size)}
    text_a, text_b = log_a.read_text(), log_b.read_text()
    for text in (text_a, text_b):  # each daemon holds its own source's lock: neither waits for the other
        assert "standing by: another daemon holds the lock of these sources" not in text

    # every finding emailed once
    finding_mails = [m for m in messages if "Status for" not in m.message["Subject"]]
    bodies = [m.message.get_body(("plain",)).get_content() for m in finding_mails]
    assert len(finding_mails) == 2, [m.message["Subject"] for m in finding_mails]
    assert sorted(t for t in ("orders_a", "orders_b") for body in bodies if t in body) == ["orders_a", "orders_b"]
    assert len({m.message["Message-ID"] for m in finding_mails}) == 2
    assert len(sent) == len(set(sent)) == 2

    # the shared job ran on one daemon only, once per interval
    leaders = [t for t in (text_a, text_b) if "leadership gained" in t]
    assert len(leaders) == 1
    follower = text_b if leaders[0] is text_a else text_a
    assert "standing by: another daemon runs the shared jobs" in follower
    assert SENT not in follower
    reports = [m for m in messages if "Status for" in m.message["Subject"]]
    logged = leaders[0].count(SENT)
    # one more email than log lines only if a stop fell between the server's "250" and the log line
    assert logged >= 2 and len(reports) - logged in (0, 1), (len(reports), logged)
    dates = sorted(m.message["Date"].datetime.timestamp() for m in reports)
    assert all(later - earlier >= STATUS_EVERY / 2 for earlier, later in zip(dates, dates[1:], strict=False)), dates
