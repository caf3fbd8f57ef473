"""``usagewatch status``: sources, findings and deliveries from the store, for a person."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone

from click.testing import CliRunner

from tests.helpers.configs import write_config
from usagewatch import config
from usagewatch.cli import cli
from usagewatch.cli.replay import replay
from usagewatch.cli.status import age, render, status_data
from usagewatch.config import SAMPLE_LOG, stock_rules_dir
from usagewatch.store import Store
from usagewatch.store import deliveries as dq

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=timezone.utc)


def setup(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "postgresql.csv"
    shutil.copyfile(SAMPLE_LOG, log)
    cfg_path = write_config(tmp_path, [{"name": "dw", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                            rules=[str(stock_rules_dir())])
    cfg = config.load(cfg_path)
    stats = replay(cfg)
    with log.open("ab") as f:
        f.write(b"not,a,csvlog,record\n")  # behind by these 20 bytes
    store = Store(cfg.database)
    rows = dq.unrouted(store)
    dq.route(store, rows[0], [dq.Planned("support", "email", "pending"), dq.Planned("support", "webhook:chat", "pending")],
             NOW - timedelta(hours=2))
    dq.route(store, rows[1], [dq.Planned("support", "email", "pending")], NOW - timedelta(minutes=30))
    dead = dq.listing(store)[1]
    dq.mark_failed(store, dead["id"], "HTTP 404 from the webhook", None)
    first = dq.listing(store)[0]
    dq.mark_failed(store, first["id"], "SMTP 451 try later", NOW + timedelta(minutes=5))
    return cfg_path, cfg, store, stats, log


def test_status_key_lines(tmp_path):
    cfg_path, cfg, store, stats, log = setup(tmp_path)
    try:
        lines = render(status_data(cfg, store, now=NOW)).splitlines()
    finally:
        store.close()
    assert stats.records == 690 and stats.new_findings == 3
    assert lines == [
        "source dw (postgres-csvlog): 1 file, 20 bytes behind, 690 records read, 0 bad records, "
        "last query 2h 17m ago (2026-11-26 04:42:04 UTC)",
        f"  {log}: following, 20 bytes behind, 690 records",
        "findings: 3 open, 0 acknowledged, 0 coached, 0 resolved, 0 dismissed",
        "deliveries: 2 pending, 0 queued, 0 sent, 1 dead",
        "not routed yet: 1 notification",
        "DEAD: 1 delivery gave up; `usagewatch outbox list --status dead` shows why, "
        "`usagewatch outbox retry --all-dead` sends them again",
        "oldest pending notification: delivery 1 (finding 1, email), waiting 2h 0m (since 2026-11-26 05:00 UTC), "
        "1 attempt, last error: SMTP 451 try later",
    ]


def test_status_command_text_and_json(tmp_path):
    cfg_path, cfg, store, stats, log = setup(tmp_path)
    store.close()
    r = CliRunner().invoke(cli, ["status", "--config", str(cfg_path)])
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert out[0].startswith("source dw (postgres-csvlog): 1 file, 20 bytes behind, 690 records read, 0 bad records")
    assert "deliveries: 2 pending, 0 queued, 0 sent, 1 dead" in out
    assert any(ln.startswith("DEAD: 1 delivery gave up") for ln in out)
    r = CliRunner().invoke(cli, ["status", "--config", str(cfg_path), "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    (src,) = data["sources"]
    assert (src["source"], src["files"], src["behind"], src["records"], src["bad"]) == ("dw", 1, 20, 690, 0)
    assert src["last_query"].startswith("2026-11-26T04:42:04") and src["last_query_age_seconds"] > 0
    assert data["findings"]["open"] == 3
    assert data["deliveries"] == {"pending": 2, "queued": 0, "sent": 0, "dead": 1}
    assert data["unrouted"] == 1
    oldest = data["oldest_pending"]
    assert (oldest["kind"], oldest["id"], oldest["channel"], oldest["attempts"]) == ("delivery", 1, "email", 1)


def test_status_of_an_empty_store(tmp_path):
    cfg_path = write_config(tmp_path, [{"name": "dw", "format": "postgres-csvlog", "paths": [f"{tmp_path}/none/*.csv"]}])
    r = CliRunner().invoke(cli, ["status", "--config", str(cfg_path)])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "source dw (postgres-csvlog): 0 files, 0 bytes behind, 0 records read, 0 bad records, no query read yet",
        "findings: 0 open, 0 acknowledged, 0 coached, 0 resolved, 0 dismissed",
        "deliveries: 0 pending, 0 queued, 0 sent, 0 dead",
        "oldest pending notification: none",
    ]


def test_age():
    assert [age(s) for s in (5, 125, 3 * 3600 + 61, 2 * 86400 + 4 * 3600)] == ["5s", "2m", "3h 1m", "2d 4h"]
