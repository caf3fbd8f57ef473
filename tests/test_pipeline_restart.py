"""Stopping and restarting between two halves of a log (cut mid-record) loses nothing and counts
nothing twice: checkpoints, held-back statements and rule windows all come back from the store."""

from __future__ import annotations

import pytest

from tests.helpers.configs import write_config
from usagewatch import config
from usagewatch.cli.replay import replay
from usagewatch.config import SAMPLE_LOG
from usagewatch.pipeline import Pipeline
from usagewatch.store import Store


def findings(cfg) -> list[tuple]:
    store = Store(cfg.database)
    try:
        return sorted((f["rule"], f["user"], f["count"], f["distinct_values"]) for f in store.findings())
    finally:
        store.close()


@pytest.fixture
def reference(tmp_path_factory):
    """Findings of one uninterrupted replay of the sample."""
    d = tmp_path_factory.mktemp("ref")
    cfg = config.load(write_config(d, [{"name": "pg", "format": "postgres-csvlog", "paths": [str(SAMPLE_LOG)]}]))
    stats = replay(cfg)
    return findings(cfg), stats.queries


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.77])
def test_two_halves_with_a_restart_equal_one_run(tmp_path, reference, cut):
    data = SAMPLE_LOG.read_bytes()
    log = tmp_path / "pg.csv"
    split = int(len(data) * cut)
    log.write_bytes(data[:split])  # most likely mid-record: the reader must keep the fragment for later
    cfg = config.load(write_config(tmp_path, [{"name": "pg", "format": "postgres-csvlog", "paths": [str(log)]}]))

    store = Store(cfg.database)
    first = Pipeline(cfg, store)
    first.poll(at_eof=False)  # the daemon's way: statements may stay held back for their duration
    store.close()

    with log.open("ab") as f:
        f.write(data[split:])
    store = Store(cfg.database)
    second = Pipeline(cfg, store)  # a new process: everything it knows comes from the store
    second.poll(at_eof=True)
    store.close()

    expected, queries = reference
    assert first.stats.queries + second.stats.queries == queries
    assert findings(cfg) == expected
    assert ("same-query-different-ids", "kim", 136, 136) in expected


def test_a_failed_commit_is_read_again_without_counting_twice(tmp_path, monkeypatch):
    """After a commit fails, the reader and the rule windows go back to what the store holds, so
    re-reading the batch counts each query once (the daemon's recovery path)."""
    from tests.helpers.logwriter import RULES, LogWriter, record
    from usagewatch.errors import StoreError

    log = tmp_path / "pg.csv"
    w = LogWriter(log)
    w.write(b"".join(record(n, user="someone") for n in range(30)))  # committed; the rule ignores them
    w.next_id = 30
    cfg = config.load(write_config(tmp_path, [{"name": "pg", "format": "postgres-csvlog", "paths": [str(log)]}],
                                   rules=[str(RULES)]))
    store = Store(cfg.database)
    pipeline = Pipeline(cfg, store)
    pipeline.poll()
    w.emit(20)
    real = store.commit

    def broken(batch, now=None):
        raise StoreError("could not save a batch: disk full")

    monkeypatch.setattr(store, "commit", broken)
    with pytest.raises(StoreError):
        pipeline.poll()
    monkeypatch.setattr(store, "commit", real)
    pipeline.reload_state()
    pipeline.poll()
    assert [(f["count"], f["distinct_values"]) for f in store.findings()] == [(20, 20)]
    store.close()
