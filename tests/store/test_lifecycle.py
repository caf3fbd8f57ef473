"""Finding lifecycle in the store: cooldown after resolution, reopening, silences."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner

from tests.helpers.configs import write_config
from tests.helpers.events import at
from tests.store.test_store import update
from usagewatch.cli import cli
from usagewatch.store import Batch, Store


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()


def later(count: int, episode: str, minutes: float):
    u = update(count, episode=episode)
    u.first_seen, u.last_seen = at(minutes), at(minutes + 30)
    u.cooldown = timedelta(hours=24).total_seconds()
    return u


def test_pattern_back_within_the_cooldown_is_recorded_without_an_alert(store):
    store.commit(Batch([later(30, "e1", 0)]))
    store.set_status(1, "resolved", now=at(60))
    r = store.commit(Batch([later(25, "e2", 120)]), now=at(150))
    assert r.new_outbox == 0 and r.updated_findings == [1]
    f = store.finding(1)
    assert (f["status"], f["count"]) == ("resolved", 55)
    assert len(store.outbox_rows()) == 1


def test_pattern_back_after_the_cooldown_reopens_and_alerts_again(store):
    store.commit(Batch([later(30, "e1", 0)]))
    store.set_status(1, "resolved", now=at(60))
    r = store.commit(Batch([later(40, "e2", 60 * 26)]), now=at(60 * 26 + 30))
    assert r.new_findings == {1: "kim ran one query 40 times"} and r.new_outbox == 1
    f = store.finding(1)
    assert (f["status"], f["count"], f["resolved_at"]) == ("open", 70, None)
    assert [o["event"] for o in store.outbox_rows()] == ["opened", "reopened"]
    assert len(store.findings()) == 1


def test_a_silence_holds_back_the_alert_but_keeps_the_finding(store):
    sid = store.add_silence("same-query-*", "kim", at(60 * 24), "coaching booked", "ann", now=at(0))
    r = store.commit(Batch([later(30, "e1", 0)]), now=at(10))
    assert r.new_findings and r.new_outbox == 0 and r.silenced == [1]
    assert store.finding(1)["silenced_by"] == sid
    assert store.outbox_rows() == []
    store.expire_silence(sid, now=at(20))
    other = update(21, key="user=kim fingerprint=other")
    assert store.commit(Batch([other]), now=at(30)).new_outbox == 1


def test_silence_and_resolve_from_the_cli(tmp_path):
    cfg = write_config(tmp_path, [])
    run = CliRunner().invoke
    r = run(cli, ["silence", "add", "--config", str(cfg), "--rule", "same-query-*", "--user", "kim",
                  "--for", "7d", "--reason", "coaching booked"])
    assert r.exit_code == 0 and r.stdout.startswith("Silence 1: rule same-query-*, user kim, until ")
    r = run(cli, ["silence", "list", "--config", str(cfg)])
    assert "rule=same-query-*  user=kim" in r.stdout and "(active, by " in r.stdout and "coaching booked" in r.stdout
    assert run(cli, ["silence", "expire", "--config", str(cfg), "1"]).stdout == "Silence 1 expired.\n"
    assert run(cli, ["silence", "list", "--config", str(cfg)]).stdout == "No silences.\n"
    r = run(cli, ["silence", "add", "--config", str(cfg), "--for", "soon", "--reason", "x", "--user", "a"])
    assert r.exit_code == 1 and r.stderr.startswith("Error: --for: 'soon' is not a duration")
    store = Store(f"sqlite:///{tmp_path}/usagewatch.db")
    store.commit(Batch([update(20)]))
    store.close()
    r = run(cli, ["findings", "resolve", "--config", str(cfg), "1"])
    assert r.stdout == "Finding 1 (same-query-different-ids, kim) is now resolved.\n"
    r = run(cli, ["findings", "ack", "--config", str(cfg), "9"])
    assert r.exit_code == 1 and r.stderr == "Error: there is no finding 9. `usagewatch findings list` shows them.\n"
