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
