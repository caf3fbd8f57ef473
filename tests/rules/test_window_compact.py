"""The compact ``KeyWindow`` (one small object per key, arrays for several entries) behaves exactly
like the plain deque of (ts, values) it replaced, and restores the states that one saved."""

from __future__ import annotations

import json
import random
from collections import Counter, deque

import pytest

from tests.helpers.configs import STORY_RULES
from tests.helpers.events import run
from usagewatch.rules import RuleEngine, load_rules
from usagewatch.rules.kinds.base import KeyWindow


class Reference:
    """The window as it was: a deque of (ts, values) and per-name Counters."""

    def __init__(self) -> None:
        self.entries: deque[tuple[float, dict[str, str | None]]] = deque()
        self.counts: dict[str, Counter[str | None]] = {}
        self.last_ts = 0.0
        self.cleared = 0

    def add(self, ts: float, values: dict[str, str | None], window: float) -> None:
        if self.entries and ts - self.last_ts > window:
            self.entries.clear()
            self.counts.clear()
            self.cleared += 1
        self.entries.append((ts, values))
        for name, value in values.items():
            self.counts.setdefault(name, Counter())[value] += 1
        self.last_ts = max(self.last_ts, ts)
        horizon = self.last_ts - window
        while self.entries and self.entries[0][0] < horizon:
            _, old = self.entries.popleft()
            for name, value in old.items():
                c = self.counts[name]
                c[value] -= 1
                if c[value] <= 0:
                    del c[value]


def same(w: KeyWindow, ref: Reference, names: list[str]) -> None:
    assert len(w) == len(ref.entries)
    assert list(w.entries()) == list(ref.entries)
    assert w.last_ts == ref.last_ts
    for n in names:
        assert w.distinct(n) == len(ref.counts.get(n, ())), n
    assert w.max_distinct() == max((len(c) for c in ref.counts.values()), default=0)
    if ref.entries:
        assert w.first_ts() == ref.entries[0][0]


def values_of(rnd: random.Random, kind: str, names: list[str]) -> dict[str, str | None]:
    if kind == "none":
        return {}
    if kind == "one":
        return {"company_id": rnd.choice([None, "1", "2", "3", str(rnd.randrange(1000))] + SPELLINGS)}
    picked = [n for n in names if rnd.random() < 0.7] if kind == "ragged" else names
    return {n: rnd.choice([None, "a", "b", str(rnd.randrange(50))] + SPELLINGS) for n in picked}


#: values that look like numbers but are other strings than the number's one spelling (a window
#: keeps decimal values as ints): each must count as its own value and come back as written
SPELLINGS = ["0", "00", "01", "1 ", "+1", "-1", "1.0", "١", "²", "", "123456789012345678",
             "1234567890123456789", "99999999999999999999999"]


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("kind", ["none", "one", "fixed", "ragged"])
def test_compact_window_equals_the_deque_it_replaced(seed: int, kind: str) -> None:
    rnd = random.Random(seed)
    names = ["company_id", "value 2", "region"]
    window = rnd.choice([5.0, 60.0, 3600.0])
    w, ref = KeyWindow(), Reference()
    ts = 1_700_000_000.0
    for _ in range(rnd.randrange(1, 400)):
        r = rnd.random()
        if r < 0.03:
            ts += window * rnd.uniform(1.01, 3)  # a quiet gap: the window starts over
        elif r < 0.08:
            ts -= rnd.uniform(0, window * 1.5)  # late (out of order), sometimes by more than the window
        else:
            ts += rnd.expovariate(1.0) * window / 20
        values = values_of(rnd, kind, names)
        w.add(ts, values, window)
        ref.add(ts, values, window)
        same(w, ref, names)
    # saved and restored (through JSON, as the store does): the same window again
    back = KeyWindow.from_state(json.loads(json.dumps(w.to_state())))
    same(back, ref, names)


def test_old_saved_state_restores_with_its_context_and_episode() -> None:
    """A state exactly as the deque-based window saved it (context at the window level)."""
    ts0 = 1_793_610_000.0
    state = {
        "entries": [[ts0 + m * 60, {"company_id": str(1000 + m)}] for m in range(20)],
        "last_ts": ts0 + 19 * 60,
        "episode": {"id": "2026-11-02T09:00:00+00:00", "first_ts": ts0, "count": 20,
                    "values": {"company_id": [str(1000 + m) for m in range(20)]}},
        "context": {"user": "kim", "database": "dw", "sql": "SELECT 1", "fingerprint": "fp-orders",
                    "normalized_sql": "SELECT * FROM orders WHERE company_id = ?", "tables": ["orders"]},
    }
    w = KeyWindow.from_state(state)
    assert len(w) == 20 and w.distinct("company_id") == 20 and w.episode is not None
    assert w.episode.context["user"] == "kim"
    again = w.to_state()
    assert again["entries"] == state["entries"] and again["context"] == state["context"]


def test_engine_restores_windows_saved_in_the_old_form() -> None:
    """70 runs saved by the old code (its exact state form) plus 66 after a restart: one episode of 136."""
    e1 = RuleEngine(load_rules(STORY_RULES))
    e1.updates(e1.feed_all([run("kim", m * 0.4, str(m)) for m in range(70)]))
    saved = []
    for rule in e1.rules:
        for key in rule.kind.state_keys():
            window = rule.kind.window_of(key)  # type: ignore[attr-defined]
            saved.append((rule.id, key, {**window.to_state(), "logic": rule.logic}))
    e1.take_state()
    old_form = []
    for rule, key, state in saved:
        # the old form also carried the latest event's context in windows without an episode
        if state.get("episode") is None:
            state["episode"] = None
            state["context"] = {"user": "kim", "database": "dw", "sql": "x", "fingerprint": "fp-orders",
                                "normalized_sql": "x", "tables": ["orders"]}
        old_form.append((rule, key, json.loads(json.dumps(state))))
    e2 = RuleEngine(load_rules(STORY_RULES))
    e2.restore(old_form)
    ups = e2.updates(e2.feed_all([run("kim", 28 + m * 0.4, str(1000 + m)) for m in range(66)]))
    assert [(u.count, u.distinct_values) for u in ups if u.rule == "same-query-different-ids"] == [(136, 136)]


def test_sweep_forgets_drained_windows_and_skips_when_none_can_have_drained() -> None:
    e = RuleEngine(load_rules(STORY_RULES))
    e.feed_all([run(u, 0, "1") for u in ("a", "b")] + [run("c", 30, "1")])
    kind = e.rules[0].kind
    e.take_state()
    kind.sweep(run("x", 60 + 10, None).event.ts.timestamp())  # an hour after a and b, 40 min after c
    assert sorted(kind.state_keys()) == ["user=c fingerprint=fp-orders"]
    assert kind.take_dirty() == {}  # no rows to delete: their logged events drain from the log by time
    kind.sweep(run("x", 60 + 20, None).event.ts.timestamp())  # still inside c's window
    assert kind.state_keys() == ["user=c fingerprint=fp-orders"] and kind.take_dirty() == {}


def test_a_key_seen_once_without_values_is_kept_as_a_bare_timestamp() -> None:
    e = RuleEngine(load_rules(STORY_RULES))
    repeated = next(r.kind for r in e.rules if r.id == "same-query-repeated")
    e.feed_all([run("kim", 0, "7")])
    (key,) = repeated.state_keys()
    ts = run("kim", 0, "7").event.ts.timestamp()
    assert repeated.keys[key] == ts  # a float, not a window object
    assert repeated.explain() == [{"key": key, "fired": False, "runs": 1, "min_runs": 20}]
    changes = e.take_state()
    assert changes.states == {}  # no episode: the window is its logged events
    (logged,) = [row for row in changes.log if row[0] == "same-query-repeated"]
    assert logged[2:] == (ts, [[key, ts]])
    fresh = RuleEngine(load_rules(STORY_RULES))
    fresh.restore([], [(logged[0], logged[1], json.loads(json.dumps(logged[3])))])
    again = next(r.kind for r in fresh.rules if r.id == "same-query-repeated")
    assert again.keys[key] == ts
    ups = fresh.updates(fresh.feed_all([run("kim", m, "7") for m in range(1, 25)]))
    assert [(u.rule, u.count) for u in ups] == [("same-query-repeated", 25)]
    assert isinstance(again.keys[key], KeyWindow)


def test_keys_are_named_as_before() -> None:
    import hashlib

    e = RuleEngine(load_rules(STORY_RULES))
    e.feed_all([run("kim", 0, "42")])
    digest = hashlib.blake2b(b"42", digest_size=8).hexdigest()
    logged = {(rule, entry[0]) for rule, _, _, entries in e.take_state().log for entry in entries}
    assert logged == {("same-query-different-ids", "user=kim fingerprint=fp-orders"),
                      ("same-query-repeated", f"user=kim fingerprint=fp-orders values={digest}")}


def test_groups_with_one_name_share_one_window_as_when_keys_were_names() -> None:
    """user "a fingerprint=b" with shape "c" and user "a" with shape "b fingerprint=c" are both named
    "user=a fingerprint=b fingerprint=c": one key, as it was."""
    e = RuleEngine(load_rules(STORY_RULES))
    events = [run("a fingerprint=b", m, str(m), fingerprint="c") for m in range(10)]
    events += [run("a", 10 + m, str(100 + m), fingerprint="b fingerprint=c") for m in range(10)]
    ups = e.updates(e.feed_all(events))
    assert [(u.rule, u.key, u.count) for u in ups] == [
        ("same-query-different-ids", "user=a fingerprint=b fingerprint=c", 20)]
    kind = e.rules[0].kind
    assert kind.state_keys() == ["user=a fingerprint=b fingerprint=c"]



def test_a_key_touched_in_the_batch_is_not_swept_before_its_update_is_built() -> None:
    """A sweep inside a batch (every 10,000 events, or a replay group of many chunks) used to drop
    a key that had fired earlier in the batch, so its finding depended on where batches ended."""
    e = RuleEngine(load_rules(STORY_RULES))
    touched = e.feed_all([run("kim", m, str(m)) for m in range(20)])
    kind = e.rules[0].kind
    kind.sweep(run("x", 3 * 60, None).event.ts.timestamp())  # hours later, same batch
    assert [(u.user, u.count) for u in e.updates(touched)] == [("kim", 20)]
    assert kind.state_keys() == ["user=kim fingerprint=fp-orders"]
    e.take_state()
    kind.sweep(run("x", 3 * 60, None).event.ts.timestamp())  # the batch was taken: now it goes
    assert kind.state_keys() == [] and kind.take_dirty() == {"user=kim fingerprint=fp-orders": None}


def test_a_key_seen_once_with_a_value_keeps_it_through_a_restart() -> None:
    """The first run of a shape is kept small (no window object) but still counts with its value:
    after a restart from the log, 19 more runs with other values make one episode of 20 values,
    the first one's value as written ("0042", not 42)."""
    e = RuleEngine(load_rules(STORY_RULES))
    varying = next(r.kind for r in e.rules if r.id == "same-query-different-ids")
    e.feed_all([run("kim", 0, "0042")])
    (key,) = varying.state_keys()
    assert not isinstance(varying.keys[key], KeyWindow)
    assert varying.explain() == [{"key": key, "fired": False, "runs": 1, "min_runs": 20, "distinct": 1,
                                  "min_distinct": 20}]
    window = varying.window_of(key)
    assert window is not None and list(window.entries()) == [(run("kim", 0, "0").event.ts.timestamp(),
                                                             {"company_id": "0042"})]
    changes = e.take_state()
    fresh = RuleEngine(load_rules(STORY_RULES))
    fresh.restore([], [(rid, logic, json.loads(json.dumps(entries))) for rid, logic, _, entries in changes.log])
    ups = fresh.updates(fresh.feed_all([run("kim", m, str(m)) for m in range(1, 20)]))
    (up,) = [u for u in ups if u.rule == "same-query-different-ids"]
    assert (up.count, up.distinct_values) == (20, 20)
    assert up.sample_values[:2] == ["0042", "1"]


def test_an_event_object_fed_again_after_a_change_counts_as_changed() -> None:
    """Rules share each event's key and time while the engine feeds it, never beyond that feed."""
    e = RuleEngine(load_rules(STORY_RULES))
    ne = run("kim", 0, "7")
    e.feed(ne)
    ne.event.user = "lee"
    ne.event.ts = run("lee", 5, "7").event.ts
    e.feed(ne)
    keys = {(rule, entry[0], entry[1]) for rule, _, _, entries in e.take_state().log for entry in entries}
    assert {(rule, key.split(" ")[0], ts) for rule, key, ts in keys} == {
        (rule, f"user={user}", run(user, minute, "7").event.ts.timestamp())
        for rule in ("same-query-different-ids", "same-query-repeated")
        for user, minute in (("kim", 0), ("lee", 5))}
