"""Usage aggregates through the whole pipeline: a replay in two halves (with a restart between them,
cut mid-record) stores exactly what one replay stores; a batch that fails to commit leaves no usage
behind and its re-read counts once; evaluations of user-disjoint halves, merged, store what one
evaluation of everything stores (``replay -j N``)."""

from __future__ import annotations

import pytest

from tests.helpers.configs import STORY_RULES, write_config
from tests.helpers.usage import stored, totals
from usagewatch import config
from usagewatch.cli.replay import replay
from usagewatch.config import SAMPLE_LOG, FollowConfig
from usagewatch.errors import StoreError
from usagewatch.pipeline import Evaluation, Evaluator, Pipeline, make_source
from usagewatch.rules import RuleEngine, load_rules
from usagewatch.store import Batch, Store
from usagewatch.store import usage as usage_store

SAMPLE_QUERIES = 272  # the sample's QueryEvents: 136 kim + 40 bi_tool + 25 dash + ... + 27 setup (postgres)


def source(log) -> list[dict]:
    return [{"name": "pg", "format": "postgres-csvlog", "paths": [str(log)]}]


@pytest.fixture
def reference(tmp_path_factory):
    """The usage rows of one uninterrupted replay of the sample."""
    d = tmp_path_factory.mktemp("ref")
    cfg = config.load(write_config(d, source(SAMPLE_LOG)))
    replay(cfg)
    store = Store(cfg.database)
    yield stored(store)
    store.close()


def test_one_replay_counts_every_query_once(reference, tmp_path):
    cfg = config.load(write_config(tmp_path, source(SAMPLE_LOG)))
    replay(cfg)
    replay(cfg)  # nothing new: positions are saved with the usage
    store = Store(cfg.database)
    assert totals(store)["queries"] == SAMPLE_QUERIES and stored(store) == reference
    kim = [v for (grain, _, user, _), v in stored(store)["queries"].items() if user == "kim"]
    assert sum(v["queries"] for v in kim) == 136
    store.close()


@pytest.mark.parametrize("cut", [0.35, 0.6])
def test_two_halves_with_a_restart_store_what_one_replay_stores(tmp_path, reference, cut):
    data = SAMPLE_LOG.read_bytes()
    log = tmp_path / "pg.csv"
    split = int(len(data) * cut)
    log.write_bytes(data[:split])
    cfg = config.load(write_config(tmp_path, source(log)))
    store = Store(cfg.database)
    Pipeline(cfg, store).poll(at_eof=False)
    store.close()
    with log.open("ab") as f:
        f.write(data[split:])
    store = Store(cfg.database)
    Pipeline(cfg, store).poll(at_eof=True)
    assert stored(store) == reference
    store.close()


def test_a_failed_commit_leaves_no_usage_and_the_rerun_counts_once(tmp_path, reference, monkeypatch):
    cfg = config.load(write_config(tmp_path, source(SAMPLE_LOG), follow={"batch_bytes": 8192}))
    real_add, calls = usage_store.add, []

    def crash_on_the_fourth(conn, delta):
        calls.append(1)
        if len(calls) == 4:  # after the usage rows of this batch were written, before its commit
            real_add(conn, delta)
            raise StoreError("the machine died")
        real_add(conn, delta)

    monkeypatch.setattr(usage_store, "add", crash_on_the_fourth)
    store = Store(cfg.database)
    with pytest.raises(StoreError):
        Pipeline(cfg, store).poll(at_eof=True)  # the daemon's way: one commit per chunk
    partial = totals(store)["queries"]
    store.close()
    assert 0 < partial < SAMPLE_QUERIES
    monkeypatch.setattr(usage_store, "add", real_add)
    replay(cfg)  # a new process: re-reads from the last committed position
    store = Store(cfg.database)
    assert stored(store) == reference
    store.close()


def test_merged_evaluations_of_user_disjoint_halves_store_what_one_evaluation_stores(tmp_path):
    src = make_source(config.load(write_config(tmp_path, source(SAMPLE_LOG))).sources[0], FollowConfig())
    src.load({})
    events = [ev for path in src.paths() for chunk in src.read(path, at_eof=True) for ev in chunk.events]
    assert len(events) == SAMPLE_QUERIES

    def evaluator() -> Evaluator:
        return Evaluator(RuleEngine(load_rules(STORY_RULES, [])))

    whole = evaluator().evaluate(events)
    users = sorted({e.user or "" for e in events})
    parts = [evaluator().evaluate([e for e in events if users.index(e.user or "") % 2 == k]) for k in (0, 1)]
    merged = Evaluation.merged(parts)
    assert merged.usage is not None and whole.usage is not None
    assert merged.usage.queries == whole.usage.queries and merged.usage.tables == whole.usage.tables
    one, two = Store(f"sqlite:///{tmp_path}/one.db"), Store(f"sqlite:///{tmp_path}/two.db")
    one.commit(Batch(usage=whole.usage))
    two.commit(Batch(usage=merged.usage))
    assert stored(one) == stored(two) and totals(two)["queries"] == SAMPLE_QUERIES
    one.close()
    two.close()


def test_usage_can_be_switched_off(tmp_path):
    cfg = config.load(write_config(tmp_path, source(SAMPLE_LOG), usage={"enabled": False}))
    replay(cfg)
    store = Store(cfg.database)
    assert totals(store)["queries"] == 0 and len(store.findings()) == 3
    store.close()
