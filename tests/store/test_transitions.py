"""Closing the loop: transitions with history, effectiveness after coaching, rule outcomes, SLA."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from tests.helpers.configs import write_config
from tests.helpers.events import at
from tests.store.test_store import update
from usagewatch.cli import cli
from usagewatch.errors import StoreError
from usagewatch.store import Batch, Store


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()


def runs(count: int, day: float, key: str = "user=kim fingerprint=f", episode: str = "e1"):
    u = update(count, key=key, episode=episode)
    u.first_seen, u.last_seen = at(0), at(day * 24 * 60)
    return u


def test_transitions_are_recorded_with_who_and_why(store):
    store.commit(Batch([runs(20, 0)]), now=at(0))
    store.transition(1, "acknowledged", "ann", now=at(60))
    store.transition(1, "acknowledged", "bob", now=at(61))  # already: no-op, no second entry
    store.transition(1, "coached", "ann", note="showed her IN lists", now=at(120))
    assert [(h["action"], h["actor"], h["note"]) for h in store.history(1)] == [
        ("opened", "usagewatch", None), ("acknowledged", "ann", None), ("coached", "ann", "showed her IN lists")]
    store.transition(1, "resolved", "ann", now=at(200))
    with pytest.raises(StoreError, match="finding 1 is resolved; it cannot be marked coached"):
        store.transition(1, "coached", "ann")


def test_effectiveness_counts_runs_before_and_after_coaching(store):
    store.commit(Batch([runs(136, 1)]), now=at(1 * 24 * 60))  # 136 runs on day 1
    store.transition(1, "coached", "ann", now=at(2 * 24 * 60))
    store.commit(Batch([runs(137, 4)]), now=at(4 * 24 * 60))  # one more run on day 4
    f = store.finding(1)
    eff = store.effectiveness(f)
    assert (eff["before"], eff["after"], eff["recurred"]) == (136, 1, True)
    assert eff["summary"] == "kim: 136 runs in the 7 days before coaching, 1 in the 7 days after"


def test_rule_outcomes_flag_a_rule_with_many_false_positives(store):
    for i in range(6):
        store.commit(Batch([runs(20, 0, key=f"user=u{i} fingerprint=f")]), now=at(0))
    for fid in (1, 2, 3):
        store.transition(fid, "dismissed", "ann")
    store.transition(4, "coached", "ann")
    (o,) = store.rule_outcomes()
    assert (o["findings"], o["coached"], o["false_positives"], o["flagged"]) == (6, 1, 3, True)


def test_sla_report_counts_what_met_the_levels_and_what_is_overdue(store):
    for i in range(3):
        store.commit(Batch([runs(20, 0, key=f"user=u{i} fingerprint=f")]), now=at(0))
    store.transition(1, "acknowledged", "ann", now=at(60))  # 1h: in time
    store.transition(2, "acknowledged", "ann", now=at(600))  # 10h: late
    store.transition(2, "resolved", "ann", now=at(720))
    r = store.sla_report(at(-60), timedelta(hours=8), timedelta(days=7), now=at(60 * 24 * 8))
    assert (r["findings"], r["acknowledged_in_time"], r["acknowledged"], r["resolved_in_time"]) == (3, 1, 2, 1)
    assert r["acknowledge"] == {"median_hours": 5.5, "worst_hours": 10.0}
    assert [(o["id"], o["late"]) for o in r["overdue"]] == [(1, "resolve"), (3, "acknowledge")]


def test_cli_coached_dismiss_show_and_reports(tmp_path):
    cfg = write_config(tmp_path, [])
    store = Store(f"sqlite:///{tmp_path}/usagewatch.db")
    today = [runs(136, 0), runs(20, 0, key="user=lee fingerprint=g")]
    for u in today:  # queries of today, so they fall in the week before the coaching below
        u.last_seen = datetime.now(timezone.utc)
    store.commit(Batch(today))
    store.close()
    run = CliRunner().invoke
    r = run(cli, ["findings", "coached", "--config", str(cfg), "1", "--note", "walked through IN lists"])
    assert r.stdout == "Finding 1 (same-query-different-ids, kim) is now coached.\n"
    assert run(cli, ["findings", "dismiss", "--config", str(cfg), "2"]).exit_code == 0
    show = run(cli, ["findings", "show", "--config", str(cfg), "1"]).stdout
    assert "After coaching: kim: 136 runs in the 7 days before coaching, 0 in the 7 days after (it stopped)" in show
    assert "coached" in show and "walked through IN lists" in show
    r = run(cli, ["report", "rules", "--config", str(cfg)])
    # a dismissed finding counts as acknowledged too (someone looked at it)
    assert r.stdout.splitlines()[1].split()[:6] == ["same-query-different-ids", "2", "2", "1", "0", "1"]
    r = run(cli, ["report", "sla", "--config", str(cfg), "--since", "7d"])
    assert r.exit_code == 0 and r.stdout.startswith("Findings opened in the last 7d: 2\n")
    assert "Acknowledged within 8h: 2 of 2" in r.stdout


def test_concurrent_clicks_record_one_transition(store_url):
    import threading

    url = store_url
    first = Store(url)
    first.commit(Batch([runs(20, 0)]))
    stores = [Store(url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def click(s: Store) -> None:
        barrier.wait()
        s.transition(1, "acknowledged", "someone")

    threads = [threading.Thread(target=click, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [h["action"] for h in first.history(1)] == ["opened", "acknowledged"]
    for s in [first, *stores]:
        s.close()
