"""``usagewatch outbox list|retry``: exact text and exit codes."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from click.testing import CliRunner

from tests.helpers.configs import write_config
from tests.store.test_store import update
from usagewatch.cli import cli
from usagewatch.config import load
from usagewatch.notify.routing import route_pending
from usagewatch.store import Batch, Store
from usagewatch.store import deliveries as dq


def setup(tmp_path):
    path = write_config(tmp_path, [], notify={"email": {"host": "127.0.0.1", "port": 2525, "from": "uw@example.com",
                                                        "to": ["support@example.com"]}})
    cfg = load(path)
    store = Store(cfg.database)
    now = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    store.commit(Batch([update(30), update(40, key="user=lee fingerprint=g")]), now=now)
    store.commit(Batch([update(20, key="user=ann fingerprint=h")]), now=now)
    route_pending(store, cfg.notify, now)
    dq.mark_failed(store, 1, "SMTP server refused the login.", None)
    dq.mark_sent(store, 2, "<m2@example.com>", now)
    return path, store


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_list_shows_each_delivery_and_filters_by_status(tmp_path):
    path, store = setup(tmp_path)
    r = run("outbox", "list", "--config", str(path))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "ID  FINDING  ROUTE    CHANNEL  STATUS   ATTEMPTS  NEXT ATTEMPT         LAST ERROR",
        "1   1        default  email    dead     1         -                    SMTP server refused the login.",
        "2   2        default  email    sent     1         -                    -",
        "3   3        default  email    pending  0         2026-01-05 09:00:00  -",
    ]
    r = run("outbox", "list", "--config", str(path), "--status", "dead", "--format", "json")
    (row,) = json.loads(r.stdout)
    assert (row["id"], row["finding"], row["route"], row["channel"], row["status"], row["attempts"]) == (
        1, 1, "default", "email", "dead", 1)
    assert row["last_error"] == "SMTP server refused the login."
    r = run("outbox", "list", "--config", str(path), "--status", "queued")
    assert r.stdout == "No deliveries.\n"


def test_retry_revives_dead_deliveries_keeping_attempts_and_error(tmp_path):
    path, store = setup(tmp_path)
    r = run("outbox", "retry", "--config", str(path), "1")
    assert (r.exit_code, r.stdout) == (0, "Retrying 1 delivery (1); the running daemon sends them within seconds.\n")
    d = dq.listing(store)[0]
    assert (d["status"], d["attempts"], d["last_error"]) == ("pending", 1, "SMTP server refused the login.")
    assert d["next_attempt_at"] > datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

    r = run("outbox", "retry", "--config", str(path), "--all-dead")
    assert (r.exit_code, r.stderr) == (1, "Error: there are no dead deliveries. `usagewatch outbox list` shows them all.\n")
    dq.mark_failed(store, 1, "still refused", None)
    r = run("outbox", "retry", "--config", str(path), "--all-dead")
    assert r.exit_code == 0 and "Retrying 1 delivery (1)" in r.stdout

    r = run("outbox", "retry", "--config", str(path), "2")
    assert (r.exit_code, r.stderr) == (1, "Error: delivery 2 is sent; only dead or pending deliveries can be retried.\n")
    r = run("outbox", "retry", "--config", str(path), "99")
    assert (r.exit_code, r.stderr) == (1, "Error: there is no delivery 99. `usagewatch outbox list` shows them.\n")
    r = run("outbox", "retry", "--config", str(path))
    assert r.exit_code == 2 and "give delivery IDs or --all-dead" in r.stderr
