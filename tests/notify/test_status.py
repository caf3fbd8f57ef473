"""The support team's status report: service levels, overdue, open work, coaching, noisy rules;
printed by `report status` and emailed through the real SMTP channel with --send."""

from __future__ import annotations

from datetime import datetime, timezone

from click.testing import CliRunner

from tests.helpers.configs import write_config
from tests.store.test_store import update
from usagewatch.cli import cli
from usagewatch.store import Batch, Store


def test_status_report_printed_and_sent(tmp_path, smtp_server):
    cfg = write_config(tmp_path, [], notify={"email": {"host": smtp_server.host, "port": smtp_server.port,
                                                       "from": "uw@example.com", "to": ["support@example.com"]}})
    store = Store(f"sqlite:///{tmp_path}/usagewatch.db")
    today = [update(136), update(20, key="user=lee fingerprint=g")]
    for u in today:  # queries of today: in the week before the coaching below
        u.last_seen = datetime.now(timezone.utc)
    store.commit(Batch(today))
    store.transition(1, "coached", "ann", note="IN lists")
    store.transition(2, "acknowledged", "ann")
    store.close()
    r = CliRunner().invoke(cli, ["report", "status", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    text = r.stdout
    assert text.startswith("Subject: [usagewatch] Status for the last 7d: 2 new findings, 2 open, 0 overdue\n")
    assert "Acknowledged within 8h: 2 of 2" in text
    assert "2  same-query-different-ids" in text
    assert "kim: 136 runs in the 7 days before coaching, 0 in the 7 days after (same-query-different-ids): it stopped" \
        in text
    r = CliRunner().invoke(cli, ["report", "status", "--config", str(cfg), "--send"])
    assert r.stdout == "Status report sent to support@example.com.\n"
    (msg,) = smtp_server.wait_for(1)
    assert msg.message["Subject"].startswith("[usagewatch] Status for the last 7d")
    assert "After coaching" in msg.message.get_body(("html",)).get_content()


def test_status_email_carries_the_usage_highlights(tmp_path, smtp_server):
    from datetime import timedelta

    from tests.helpers.usage import commit, event

    cfg = write_config(tmp_path, [], notify={"email": {"host": smtp_server.host, "port": smtp_server.port,
                                                       "from": "uw@example.com", "to": ["support@example.com"]}},
                       usage={"teams": {"finance": ["kim"]}})
    now = datetime.now(timezone.utc)
    day = timedelta(days=1)
    store = Store(f"sqlite:///{tmp_path}/usagewatch.db")
    commit(store, [event("lee", now - d * day, ms=100) for d in range(8, 30) for _ in range(3)]  # then silent
           + [event("kim", now - d * day, ms=60_000) for d in range(1, 6)]                      # new and heavy
           + [event("sam", now - 2 * day, ms=50, error=n < 5) for n in range(10)]              # half of them fail
           + [event("ann", now - d * day, ms=10) for d in range(1, 30)])
    store.close()
    r = CliRunner().invoke(cli, ["report", "status", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    text = r.stdout
    usage = text[text.index("\nUSAGE\n"):]
    assert "  3 users ran 21 queries for 5.01 min of warehouse time, 5 failed.\n" in usage
    assert "  33% of users (1 of 3) account for 100% of warehouse time.\n" in usage
    assert ("NEW HEAVY USERS (heavy now, not in the period before: worth a hello)\n"
            "  kim (finance): 5 queries, 5 min, 100% of the total, 0 failed (0%)\n") in usage
    assert "GONE QUIET (ran 10+ queries a week in the 28d before the last 7d, and at most 20% of that rate since)\n" \
           "  lee: no queries in the last 7d\n" in usage
    assert "STRUGGLING (20% or more of 10+ queries failed)\n  sam: 10 queries" in usage
    r = CliRunner().invoke(cli, ["report", "status", "--config", str(cfg), "--send"])
    assert r.exit_code == 0, r.output
    (msg,) = smtp_server.wait_for(1)
    html = msg.message.get_body(("html",)).get_content()
    assert "<h4 style=\"font-size: 14px;\">New heavy users</h4>" in html and "kim (finance): 5 queries" in html
    assert "Gone quiet" in html and "lee: no queries in the last 7d" in html
