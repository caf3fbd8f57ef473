"""Rule windows saved as an append log of events (plus rows for firing keys): a restart anywhere
restores the windows a never-stopped engine holds, and the saved log stays about two windows long."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers.configs import STORY_RULES
from tests.helpers.events import run
from tests.helpers.windows import restored, save, window_store
from usagewatch.model import NormalizedEvent
from usagewatch.rules import RuleEngine, load_rules
from usagewatch.rules.kinds.base import WindowedKind
from usagewatch.store import window_owner
from usagewatch.store.tables import rule_window_log, rule_windows


def workload(seed: int, n: int = 3000) -> list[NormalizedEvent]:
    """Bursts of one user re-running one shape with new or repeated values, quiet gaps longer
    than the one-hour window (episodes end and start again), over about eight hours."""
    rnd = random.Random(seed)
    out = []
    minute = 0.0
    for _ in range(n):
        minute += rnd.choice([0.05, 0.1, 0.5, 1.0]) if rnd.random() > 0.01 else 70
        user = rnd.choice(["kim", "lee", "ann"])
        value = str(rnd.randrange(40)) if rnd.random() < 0.7 else "7"
        out.append(run(user, minute, value, fingerprint=rnd.choice(["fp-orders", "fp-lines"])))
    return out


def live_windows(engine: RuleEngine) -> dict[tuple[str, str], dict[str, Any]]:
    """Every window still inside its rule's window of the engine's clock, whole (events + episode)."""
    out = {}
    for rule in engine.rules:
        kind = rule.kind
        assert isinstance(kind, WindowedKind)
        horizon = engine._max_ts - kind.window
        for key in kind.state_keys():
            w = kind.window_of(key)
            assert w is not None
            if w.last_ts >= horizon:
                out[(rule.id, key)] = w.to_state()
    return out


def findings(updates: dict[tuple[str, str, str], int], engine: RuleEngine, events: list[NormalizedEvent]) -> None:
    """Feed ``events`` and keep the latest count of every (rule, key, episode)."""
    for u in engine.updates(engine.feed_all(events)):
        updates[(u.rule, u.key, u.episode)] = u.count


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_restart_anywhere_restores_the_windows_and_the_findings(tmp_path, seed):
    events = workload(seed)
    rules = load_rules(STORY_RULES)
    store = window_store(tmp_path)
    never_stopped = RuleEngine(rules)
    expected: dict[tuple[str, str, str], int] = {}
    findings(expected, never_stopped, events)

    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(events)), 12))
    engine = RuleEngine(load_rules(STORY_RULES))
    got: dict[tuple[str, str, str], int] = {}
    restarts = 0
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(events)], strict=True)):
        findings(got, engine, events[a:b])
        save(engine, store)
        if i % 3 == 2:  # a restart after every third batch
            before = live_windows(engine)
            engine = restored(store, load_rules(STORY_RULES))
            assert live_windows(engine) == before
            restarts += 1
    assert restarts >= 3 and got == expected
    assert any(count >= 20 for count in expected.values())  # episodes did fire (and end, and start again)


def test_the_saved_log_holds_about_two_windows_of_events(tmp_path):
    """Eight hours of events, saved every 100: rows whose events have all drained are deleted, so the
    log covers the last two windows (one hour each here), not the whole run."""
    events = workload(4, n=6000)
    store = window_store(tmp_path)
    engine = RuleEngine(load_rules(STORY_RULES))
    for a in range(0, len(events), 100):
        engine.updates(engine.feed_all(events[a:a + 100]))
        save(engine, store)
    newest = events[-1].event.ts.timestamp()
    with store.engine.connect() as conn:
        oldest_kept = conn.execute(sa.select(sa.func.min(rule_window_log.c.newest_ts))).scalar()
        logged = conn.execute(sa.select(sa.func.count()).select_from(rule_window_log)).scalar()
        rows = conn.execute(sa.select(sa.func.count()).select_from(rule_windows)).scalar()
    span_hours = (newest - events[0].event.ts.timestamp()) / 3600
    assert span_hours > 6
    assert newest - oldest_kept <= 2 * 3600 + 600  # two windows, give or take one batch
    assert logged < len(range(0, len(events), 100)) * 2 / 2  # fewer than half the batches' rows remain
    assert rows <= 6  # rows only for firing keys: 3 users x 2 shapes at most for the varying rule


def test_a_firing_key_whose_events_drained_while_stopped_is_dropped_on_restore(tmp_path):
    """The row of an episode whose events have all left the saved log (deleted by a later batch's
    clock) is deleted at the next save instead of restoring an episode without a window."""
    store = window_store(tmp_path)
    engine = RuleEngine(load_rules(STORY_RULES))
    engine.updates(engine.feed_all([run("kim", m, str(m)) for m in range(25)]))
    save(engine, store)
    engine.updates(engine.feed_all([run("lee", 400 + m, str(m)) for m in range(3)]))  # hours later
    save(engine, store)  # drops kim's logged events (two windows back); kim's row stays (not swept yet)
    again = restored(store, load_rules(STORY_RULES))
    assert "user=kim fingerprint=fp-orders" not in again.rules[0].kind.state_keys()
    save(again, store)
    with store.engine.connect() as conn:
        keys = [r.key for r in conn.execute(sa.select(rule_windows.c.key))]
    assert "user=kim fingerprint=fp-orders" not in keys


def test_a_restart_with_a_changed_rule_deletes_the_old_rules_logged_events(tmp_path):
    from tests.rules.test_engine import _rule_file

    store = window_store(tmp_path)
    engine = RuleEngine(load_rules([_rule_file(tmp_path, 20)]))
    engine.updates(engine.feed_all([run("kim", m, str(m)) for m in range(15)]))
    save(engine, store)
    changed = restored(store, load_rules([_rule_file(tmp_path, 10)]))  # min_runs changed while stopped
    assert changed.rules[0].kind.state_keys() == []  # the old logic's events are not replayed
    save(changed, store)
    assert list(store.window_log()) == []


def test_daemons_sharing_a_store_restore_and_drain_only_their_own_logged_events(tmp_path):
    """Two daemons (source sets) on one store: B's clock three hours ahead of A's (a live daemon
    beside a backfill) drains B's old rows, not A's recent ones, so A restarted gets its windows
    back; each restores its own events only."""
    store = window_store(tmp_path)
    a, b = window_owner(["warehouse-a"]), window_owner(["warehouse-b", "warehouse-c"])
    engine_a, engine_b = RuleEngine(load_rules(STORY_RULES)), RuleEngine(load_rules(STORY_RULES))
    engine_a.updates(engine_a.feed_all([run("kim", m, str(m)) for m in range(15)]))
    save(engine_a, store, a)
    engine_b.updates(engine_b.feed_all([run("lee", m, str(m)) for m in range(5)]))
    save(engine_b, store, b)
    engine_b.updates(engine_b.feed_all([run("lee", 200 + m, str(m)) for m in range(5)]))  # 3 h later
    save(engine_b, store, b)  # drains lee's first events
    kim, lee = "user=kim fingerprint=fp-orders", "user=lee fingerprint=fp-orders"
    again_a = restored(store, load_rules(STORY_RULES), a)
    assert kim in again_a.rules[0].kind.state_keys() and lee not in again_a.rules[0].kind.state_keys()
    assert live_windows(again_a) == live_windows(engine_a)
    again_b = restored(store, load_rules(STORY_RULES), b)
    assert kim not in again_b.rules[0].kind.state_keys()
    assert live_windows(again_b) == live_windows(engine_b)
    # rows saved before owners existed ('') are everyone's, as all rows were then
    with store.engine.begin() as conn:
        conn.execute(rule_window_log.update().where(rule_window_log.c.owner == a).values(owner=""))
    assert kim in restored(store, load_rules(STORY_RULES), b).rules[0].kind.state_keys()
    assert window_owner(["b", "a", "b"]) == window_owner(["a", "b"])  # a set of sources, in any order


def test_a_daemon_given_one_more_source_keeps_its_windows(tmp_path):
    """Owners are matched by shared sources: adding a source to a daemon's config (a new owner
    text) restores what the old set logged; a daemon with none of those sources does not."""
    store = window_store(tmp_path)
    engine = RuleEngine(load_rules(STORY_RULES))
    engine.updates(engine.feed_all([run("kim", m, str(m)) for m in range(15)]))
    save(engine, store, window_owner(["warehouse-a"]))
    grown = restored(store, load_rules(STORY_RULES), window_owner(["warehouse-a", "warehouse-new"]))
    assert live_windows(grown) == live_windows(engine) != {}
    assert live_windows(restored(store, load_rules(STORY_RULES), window_owner(["warehouse-b"]))) == {}


def test_a_commit_asks_to_delete_drained_log_rows_only_when_one_has_drained(tmp_path):
    engine = RuleEngine(load_rules(STORY_RULES))
    engine.feed_all([run("kim", m, str(m)) for m in range(5)])
    assert engine.take_state().drained == {}  # nothing is two hours old
    engine.feed_all([run("kim", 200 + m, str(m)) for m in range(5)])  # 3 h later
    first = engine.take_state()
    assert set(first.drained) == {"same-query-different-ids", "same-query-repeated"}
    engine.feed_all([run("kim", 201 + m, str(m)) for m in range(5)])
    assert engine.take_state().drained == {}  # the drained row was deleted by the commit before
