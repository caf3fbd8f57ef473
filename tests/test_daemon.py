"""``usagewatch run`` as a real process: follows a log that a writer appends to in odd-sized chunks
(records split mid-line and mid-quoted-newline) and emails a real in-process SMTP server exactly one
message per finding, never twice, across a restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.configs import write_config
from usagewatch.config import SAMPLE_LOG

CHUNK = 4093  # odd on purpose: cuts records, lines and quoted newlines anywhere


def start_daemon(cfg: Path, log: Path, env: dict[str, str] | None = None,
                 argv: list[str] | None = None) -> subprocess.Popen:
    """``usagewatch run`` as a process; ``env`` is added to the environment, ``argv`` replaces
    ``python -m usagewatch`` (a wrapper: dropped privileges, a test hook)."""
    cmd = [*(argv or [sys.executable, "-m", "usagewatch"]), "run", "--config", str(cfg)]
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=cfg.parent,
                            env={**os.environ, **(env or {})})


class NotifySocket:
    """What systemd listens on for sd_notify: a real AF_UNIX datagram socket (``$NOTIFY_SOCKET``).
    A short directory of its own: socket paths are limited to 108 bytes."""

    def __init__(self) -> None:
        import socket
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="uw-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []  # each datagram, as sent

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path}

    def drain(self, timeout: float = 0.0) -> None:
        self.sock.settimeout(timeout if timeout > 0 else None)
        if timeout <= 0:
            self.sock.setblocking(False)
        try:
            while True:
                self.messages.append(self.sock.recv(65536).decode())
                self.sock.setblocking(False)
        except (BlockingIOError, TimeoutError):
            pass

    def fields(self) -> list[str]:
        """Every KEY=value line received so far, in order."""
        self.drain()
        return [line for m in self.messages for line in m.splitlines()]

    def wait_for(self, predicate: str | re.Pattern[str], timeout: float = 15, after: int = 0) -> str:
        """The first field (from the ``after``-th on) equal to ``predicate`` or matching it."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.fields()[after:]
            for f in got:
                if (f == predicate) if isinstance(predicate, str) else predicate.search(f):
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{predicate!r} not received; got {[f for f in got if not f.startswith('WATCHDOG')][-20:]}")
            self.drain(min(left, 0.2))

    def close(self) -> None:
        import shutil

        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(proc: subprocess.Popen, log: Path | None = None) -> int:
    """SIGTERM and the exit code; if it does not stop, its thread stacks (SIGUSR1) in the failure."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1)
        proc.kill()
        raise AssertionError("the daemon did not stop on SIGTERM:\n" + (log.read_text()[-6000:] if log else "")) from None


def test_daemon_emails_each_finding_once(tmp_path, smtp_server):
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(
        tmp_path, [{"name": "warehouse", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
        notify={"email": {"host": smtp_server.host, "port": smtp_server.port, "from": "usagewatch@example.com",
                          "to": ["dw-support@example.com"]},
                "howto_base_url": "https://wiki.example.com/howto/"},
        follow={"rescan_interval": "1s", "idle_flush": "1s"},
    )
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log)
    try:
        data = SAMPLE_LOG.read_bytes()
        with (logs / "postgresql.csv").open("ab") as out:
            for i in range(0, len(data), CHUNK):
                out.write(data[i:i + CHUNK])
                out.flush()
                time.sleep(0.01)
        messages = smtp_server.wait_for(3, timeout=30)
        time.sleep(2.5)  # more rescans and idle flushes: nothing may be sent twice
        assert len(smtp_server.messages) == 3
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    subjects = sorted(m.message["Subject"] for m in messages)
    assert [re.sub(r"\d+ times", "N times", s) for s in subjects] == [
        "[usagewatch] bi_tool ran one query N times with different customer_id values",
        "[usagewatch] dash ran the same query N times with the same values",
        "[usagewatch] kim ran one query N times with different company_id values",
    ]
    kim = next(m.message for m in messages if "kim" in m.message["Subject"])
    count = int(re.search(r"(\d+) times", kim["Subject"]).group(1))
    assert 20 <= count <= 136  # alerted when the threshold was crossed, while the log was still growing
    text = kim.get_body(("plain",)).get_content()
    assert "company_id" in text and str(count) in text
    assert "https://wiki.example.com/howto/batch-ids-into-one-query.md" in text
    assert all(m.rcpt_tos == ("dw-support@example.com",) for m in messages)
    assert len({m.message["Message-ID"] for m in messages}) == 3

    # a restart reads nothing twice and sends nothing again
    proc = start_daemon(cfg, daemon_log)
    try:
        time.sleep(3)
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(smtp_server.messages) == 3
    out = subprocess.run([sys.executable, "-m", "usagewatch", "findings", "list", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ))
    rows = {line.split()[2]: line.split()[4] for line in out.stdout.splitlines()[1:]}
    assert rows == {"kim": "136", "bi_tool": "40", "dash": "25"}


def test_daemon_survives_its_log_directory_being_deleted_and_recreated(tmp_path):
    import shutil

    from tests.helpers.logwriter import RULES, LogWriter
    from usagewatch import config
    from usagewatch.store import Store

    logs = tmp_path / "logs"
    logs.mkdir()
    cfg_path = write_config(tmp_path, [{"name": "w", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                            rules=[str(RULES)], follow={"rescan_interval": "500ms", "idle_flush": "500ms"})
    cfg = config.load(cfg_path)

    def counted() -> int:
        store = Store(cfg.database)
        try:
            return sum(f["count"] for f in store.findings(rule="count-ids"))
        finally:
            store.close()

    def wait_for(n: int) -> int:
        deadline = time.monotonic() + 20
        while (got := counted()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return got

    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg_path, daemon_log)
    try:
        w = LogWriter(logs / "a.csv")
        w.emit(30)
        assert wait_for(30) == 30
        shutil.rmtree(logs)  # PostgreSQL's log_directory removed and made again
        logs.mkdir()
        w.path = logs / "b.csv"
        w.emit(40)
        assert wait_for(70) == 70
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def wait_for_log(log: Path, text: str, after: int = 0, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = log.read_text()[after:]
        if text in got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the daemon log:\n{log.read_text()[-4000:]}")


def test_rules_reload_live_and_a_broken_edit_keeps_the_previous_rules(tmp_path):
    from tests.helpers.logwriter import RULES, LogWriter
    from usagewatch import config
    from usagewatch.store import Store

    logs, rules = tmp_path / "logs", tmp_path / "rules"
    logs.mkdir()
    rules.mkdir()
    rule = rules / "count-ids.yaml"
    rule.write_text(RULES.read_text().replace("min_runs: 2", "min_runs: 1000"))
    cfg_path = write_config(tmp_path, [{"name": "w", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                            rules=[str(rules)], follow={"rescan_interval": "300ms", "idle_flush": "300ms"})
    cfg = config.load(cfg_path)

    def findings() -> list[int]:
        store = Store(cfg.database)
        try:
            return [f["count"] for f in store.findings()]
        finally:
            store.close()

    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg_path, daemon_log)
    try:
        wait_for_log(daemon_log, "following 1 sources")
        w = LogWriter(logs / "a.csv")
        w.emit(50)
        time.sleep(1)
        assert findings() == []
        mark = len(daemon_log.read_text())
        rule.write_text(RULES.read_text().replace("kind: varying_literals", "kind: varying_literal"))
        got = wait_for_log(daemon_log, "the previous 1 rules stay in force", mark)
        from usagewatch.logs import parse_logfmt  # the daemon logs logfmt by default: quotes come escaped

        assert f'{rule}:4:7: unknown rule kind "varying_literal". Did you mean "varying_literals"?' in [
            parse_logfmt(ln).get("msg") for ln in got.splitlines()]
        mark = len(daemon_log.read_text())
        rule.write_text(RULES.read_text())  # min_runs: 2 — the matching logic changed: windows start empty
        wait_for_log(daemon_log, "rules reloaded: 1 in force (changed: count-ids)", mark)
        w.emit(5)
        deadline = time.monotonic() + 10
        while findings() != [5] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert findings() == [5]
        mark = len(daemon_log.read_text())
        proc.send_signal(signal.SIGHUP)
        wait_for_log(daemon_log, "rules reloaded: 1 in force (no change)", mark)
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_an_emailed_acknowledge_link_acknowledges_the_finding(tmp_path, smtp_server, monkeypatch):
    """The loop closed end to end: the daemon emails a finding with signed links and serves them;
    a click (GET shows a button, POST acts) acknowledges the finding, recorded as from the link."""
    import urllib.parse
    import urllib.request

    from tests.helpers.smtp import free_port
    from usagewatch.store import Store

    monkeypatch.setenv("USAGEWATCH_LINK_SECRET", "a test secret that is long enough")
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(
        tmp_path, [{"name": "warehouse", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
        notify={"email": {"host": smtp_server.host, "port": smtp_server.port, "from": "usagewatch@example.com",
                          "to": ["dw-support@example.com"]}},
        http={"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        follow={"rescan_interval": "500ms", "idle_flush": "500ms"},
    )
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log)
    try:
        (logs / "postgresql.csv").write_bytes(SAMPLE_LOG.read_bytes())
        messages = smtp_server.wait_for(3, timeout=30)
        kim = next(m.message for m in messages if "kim" in m.message["Subject"])
        text = kim.get_body(("plain",)).get_content()
        link = next(w for w in text.split() if w.startswith(f"http://127.0.0.1:{port}/a/"))
        page = urllib.request.urlopen(link, timeout=10).read().decode()
        assert "kim" in page and "<form" in page
        store = Store(f"sqlite:///{tmp_path}/usagewatch.db")
        fid = next(f["id"] for f in store.findings() if f["user"] == "kim")
        assert store.finding(fid)["status"] == "open"  # a GET (mail scanners prefetch) changes nothing
        body = urllib.parse.urlencode({"note": "on it"}).encode()
        done = urllib.request.urlopen(urllib.request.Request(link, data=body, method="POST"), timeout=10)
        assert done.status == 200
        f = store.finding(fid)
        assert f["status"] == "acknowledged"  # the first link of the email is Acknowledge
        assert store.history(fid)[-1]["actor"] == "email link"
        store.close()
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_digest_route_batches_findings_into_one_email_on_schedule(tmp_path, smtp_server):
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(
        tmp_path, [{"name": "warehouse", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
        notify={"email": {"host": smtp_server.host, "port": smtp_server.port, "from": "usagewatch@example.com",
                          "to": ["dw-support@example.com"]},
                "routes": [{"name": "team", "email_to": ["team@example.com"], "mode": "digest",
                            "digest_every": "2s"}]},
        follow={"rescan_interval": "500ms", "idle_flush": "500ms"},
    )
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log)
    try:
        (logs / "postgresql.csv").write_bytes(SAMPLE_LOG.read_bytes())
        (digest,) = smtp_server.wait_for(1, timeout=30)
        time.sleep(4.5)  # two more digest intervals: nothing new, so no more email
        assert len(smtp_server.messages) == 1
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert digest.message["Subject"] == "[usagewatch] Digest (team): 3 new"
    assert digest.rcpt_tos == ("team@example.com",)
    text = digest.message.get_body(("plain",)).get_content()
    assert all(user in text for user in ("kim", "bi_tool", "dash"))


# --- systemd: sd_notify, SIGHUP reloads the config, SIGTERM drains -------------------------------

def count_ids(database: str) -> tuple[int, int]:
    """(count, distinct ids) of the count-ids finding: equal to the ids written if none was lost
    or counted twice (tests/helpers/logwriter.py)."""
    from usagewatch.store import Store

    store = Store(database)
    try:
        rows = [(f["count"], f["distinct_values"]) for f in store.findings(rule="count-ids")]
    finally:
        store.close()
    return rows[0] if rows else (0, 0)


def wait_counted(database: str, n: int, timeout: float = 30) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while (got := count_ids(database))[0] < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def test_notifier_speaks_sd_notify_to_an_abstract_socket_and_is_silent_outside_systemd():
    import socket

    from usagewatch.service import Notifier

    assert not Notifier({}).enabled and Notifier({}).ready() is False  # not under systemd: a no-op
    name = f"usagewatch-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        n = Notifier({"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.watchdog_interval() == 15.0
        assert n.ready("following 1 file\nof 1 source")
        assert sock.recv(4096) == b"READY=1\nSTATUS=following 1 file of 1 source"
        assert n.reloading()
        assert re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=\d+", sock.recv(4096))
    # the watchdog is another process's (WATCHDOG_PID): not ours to feed
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    # the manager went away: False, never an exception
    assert Notifier({"NOTIFY_SOCKET": "@usagewatch-nobody-listens"}).notify("READY=1") is False


def test_daemon_tells_systemd_ready_status_watchdog_reloading_and_stopping(tmp_path):
    from tests.helpers.logwriter import RULES, LogWriter

    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path, [{"name": "w", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                       rules=[str(RULES)], follow={"rescan_interval": "300ms", "idle_flush": "300ms"})
    LogWriter(logs / "a.csv").emit(30)
    notify = NotifySocket()
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log, env={**notify.env, "WATCHDOG_USEC": "400000"})
    try:
        notify.wait_for("READY=1")
        status = notify.wait_for(re.compile(r"^STATUS=following"))
        assert re.fullmatch(r"STATUS=following 1 file of 1 source; \d+ queries; [01] open findings; outbox [01]", status)
        # the status line is updated (every few seconds, not more often) as queries come in
        # (no notify config: the finding's notification waits in the outbox)
        notify.wait_for("STATUS=following 1 file of 1 source; 30 queries; 1 open findings; outbox 1", timeout=15)
        start = len(notify.fields())
        time.sleep(1.0)  # a ping every 200 ms (half of WATCHDOG_USEC) from the main loop
        pings = notify.fields()[start:].count("WATCHDOG=1")
        assert 3 <= pings <= 7, notify.fields()[start:]
        mark = len(notify.fields())
        proc.send_signal(signal.SIGHUP)
        notify.wait_for(re.compile(r"^RELOADING=1$"), after=mark)
        got = notify.fields()[mark:]
        reloading = got.index("RELOADING=1")
        assert re.fullmatch(r"MONOTONIC_USEC=\d+", got[reloading + 1])
        notify.wait_for("READY=1", after=mark + reloading)
        mark = len(notify.fields())
        assert stop(proc, daemon_log) == 0
        notify.wait_for("STOPPING=1", after=mark, timeout=2)
        assert notify.fields().count("READY=1") == 2  # at start and after the reload
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def test_sighup_reloads_the_config_and_a_broken_config_keeps_the_running_one(tmp_path):
    import yaml

    from tests.helpers.logwriter import RULES, LogWriter

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    source_a = {"name": "a", "format": "postgres-csvlog", "paths": [f"{a}/*.csv"]}
    source_b = {"name": "b", "format": "postgres-csvlog", "paths": [f"{b}/*.csv"]}
    follow = {"rescan_interval": "300ms", "idle_flush": "300ms"}
    cfg = write_config(tmp_path, [source_a], rules=[str(RULES)], follow=follow)
    database = f"sqlite:///{tmp_path}/usagewatch.db"
    doc = yaml.safe_load(cfg.read_text())
    writer = LogWriter(a / "1.csv")
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log)

    def reload(text: str, expect: str) -> str:
        mark = len(daemon_log.read_text())
        cfg.write_text(text)
        proc.send_signal(signal.SIGHUP)
        return wait_for_log(daemon_log, expect, mark)

    try:
        wait_for_log(daemon_log, "following 1 sources")
        writer.emit(10)
        assert wait_counted(database, 10) == (10, 10)
        # a new source, and a database URL: the source starts, the URL waits for a restart
        got = reload(yaml.safe_dump({**doc, "sources": [source_a, source_b],
                                     "database": f"sqlite:///{tmp_path}/other.db"}),
                     "config reloaded from")
        assert f"reload: database changed in {cfg}; a restart is needed" in got
        assert "sources added: b; notify settings unchanged" in got
        writer.emit(15, b / "1.csv")
        assert wait_counted(database, 25) == (25, 25)
        # a typo: path:line:col, and everything keeps running as it was
        got = reload(yaml.safe_dump({**doc, "sources": [source_a, {**source_b, "formt": "x"}]}),
                     "the running config and rules stay in force")
        assert re.search(rf'{re.escape(str(cfg))}:\d+:\d+: unknown key \\?"formt\\?"', got), got  # logfmt escapes "
        writer.emit(5, b / "1.csv")
        assert wait_counted(database, 30) == (30, 30)
        # source a removed: its new records are not read any more
        got = reload(yaml.safe_dump({**doc, "sources": [source_b]}), "config reloaded from")
        assert "sources removed: a" in got
        writer.emit(7, a / "1.csv")
        writer.emit(3, b / "1.csv")
        assert wait_counted(database, 33) == (33, 33)
        time.sleep(1)
        assert count_ids(database) == (33, 33)
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_in_a_large_backlog_stops_promptly_and_a_restart_continues_exactly(tmp_path):
    from tests.helpers.logwriter import RULES, LogWriter

    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path, [{"name": "w", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                       rules=[str(RULES)],
                       follow={"rescan_interval": "300ms", "idle_flush": "300ms", "batch_bytes": 4096})
    database = f"sqlite:///{tmp_path}/usagewatch.db"
    writer = LogWriter(logs / "a.csv")
    writer.emit(9000)  # ~2 MB, ~500 batches of 4 KiB: a backlog of many commits
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log)
    try:
        wait_counted(database, 1)
        t0 = time.monotonic()
        assert stop(proc, daemon_log) == 0
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    done = count_ids(database)
    assert done[0] < 9000, "the backlog was read before SIGTERM; make it larger"
    assert took < 5, f"SIGTERM took {took:.1f}s"
    assert "stopped (signal received)" in daemon_log.read_text()
    proc = start_daemon(cfg, daemon_log)
    try:
        assert wait_counted(database, 9000, timeout=60) == (9000, 9000)
        time.sleep(1)
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert count_ids(database) == (9000, 9000)


def test_the_daemon_serves_prometheus_metrics(tmp_path):
    import urllib.request

    from tests.helpers.smtp import free_port

    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path, [{"name": "warehouse", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                       metrics={"listen": f"127.0.0.1:{port}"}, follow={"rescan_interval": "300ms"})
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log)
    try:
        (logs / "postgresql.csv").write_bytes(SAMPLE_LOG.read_bytes())
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                text = ""
            if 'usagewatch_queries_total{source="warehouse"} 272.0' in text:
                break
            time.sleep(0.2)
        assert 'usagewatch_queries_total{source="warehouse"} 272.0' in text, text[-2000:]
        assert 'usagewatch_findings_opened_total{rule="same-query-different-ids"} 2.0' in text
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
