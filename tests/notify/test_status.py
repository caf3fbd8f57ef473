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
