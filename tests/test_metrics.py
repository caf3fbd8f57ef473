"""/metrics over real HTTP after the pipeline read a real PostgreSQL csvlog (the shipped sample):
the counters are the replay's Stats, bytes behind follows the file, the store's gauges its rows."""

from __future__ import annotations

import shutil
import socket
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.configs import write_config
from usagewatch import config, metrics
from usagewatch.config import SAMPLE_LOG, MetricsConfig, stock_rules_dir
from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.pipeline import Pipeline
from usagewatch.store import Store
from usagewatch.store import deliveries as dq


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_label(samples: dict, name: str, label: str, **fixed: str) -> dict[str, float]:
    out = {}
    for (n, labels), v in samples.items():
        d = dict(labels)
        if n == name and all(d.get(k) == x for k, x in fixed.items()):
            out[d[label]] = v
    return out


@pytest.fixture
def sample(tmp_path):
    """A config following a copy of the shipped sample log (so the test can make it grow)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "postgresql.csv"
    shutil.copyfile(SAMPLE_LOG, log)
    cfg_path = write_config(tmp_path, [{"name": "dw", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                            rules=[str(stock_rules_dir())], metrics={"listen": "127.0.0.1:0"},
                            notify={"email": {"host": "127.0.0.1", "from": "uw@example.com", "to": ["s@example.com"]},
                                    "webhooks": [{"name": "chat", "url": "http://127.0.0.1:9/"}]})
    cfg = config.load(cfg_path)
    store = Store(cfg.database)
    yield cfg, store, log
    store.close()


@pytest.fixture
def served(sample):
    cfg, store, log = sample
    pipeline = Pipeline(cfg, store)
    server = metrics.start_http(cfg.metrics, pipeline)
    yield cfg, store, log, pipeline, server
    server.stop()


def test_counters_match_the_replays_stats(served):
    cfg, store, log, pipeline, server = served
    before = scrape(server.url)
    assert by_label(before, "usagewatch_records_total", "source") == {"dw": 0.0}
    assert by_label(before, "usagewatch_bytes_behind", "file") == {str(log): log.stat().st_size}
    assert pipeline.poll(at_eof=True) > 0
    st = pipeline.stats
    got = scrape(server.url)

    assert by_label(got, "usagewatch_records_total", "source") == {"dw": st.records}
    assert by_label(got, "usagewatch_queries_total", "source") == {"dw": st.queries}
    assert got[("usagewatch_sql_unparsed_total", ())] == st.unparsed_sql > 0
    skipped = by_label(got, "usagewatch_records_skipped_total", "reason", source="dw")
    want = {f"not-query:{k}": v for k, v in st.skipped.items()} | {f"bad:{k}": v for k, v in st.bad_records.items()}
    assert skipped == want and sum(skipped.values()) > 0
    # findings opened per rule: what the store holds, and as many as the replay counted
    opened = by_label(got, "usagewatch_findings_opened_total", "rule")
    assert opened == dict(Counter(f["rule"] for f in store.findings()))
    assert sum(opened.values()) == st.new_findings > 0
    evaluations = by_label(got, "usagewatch_rule_evaluations_total", "rule")
    assert set(evaluations) <= {r.id for r in pipeline.engine.rules} and evaluations
    assert all(0 < n <= st.queries for n in evaluations.values())
    # the newest query of the sample, against the wall clock
    newest = max(datetime.fromisoformat(c.last_ts) for c in store.cursors("dw").values() if c.last_ts)
    age = by_label(got, "usagewatch_last_record_age_seconds", "source")["dw"]
    assert abs(age - (datetime.now(timezone.utc) - newest).total_seconds()) < 60
    assert got[("usagewatch_store_up", ())] == 1.0
    # every configured channel is there from the start, at 0
    assert {"email", "webhook:chat"} <= set(by_label(got, "usagewatch_delivery_failures_total", "channel"))


def test_bytes_behind_is_zero_after_reading_and_grows_with_the_file(served):
    cfg, store, log, pipeline, server = served
    pipeline.poll(at_eof=True)
    assert by_label(scrape(server.url), "usagewatch_bytes_behind", "file", source="dw") == {str(log): 0.0}
    more = SAMPLE_LOG.read_bytes()[:4000]
    more = more[:more.rfind(b"\n") + 1]  # whole lines of real records
    with log.open("ab") as f:
        f.write(more)
    assert by_label(scrape(server.url), "usagewatch_bytes_behind", "file", source="dw") == {str(log): len(more)}
    records = by_label(scrape(server.url), "usagewatch_records_total", "source")["dw"]
    pipeline.poll(at_eof=False)
    got = scrape(server.url)
    assert by_label(got, "usagewatch_bytes_behind", "file", source="dw") == {str(log): 0.0}
    assert by_label(got, "usagewatch_records_total", "source")["dw"] == records + more.count(b"\n2026-") + 1


def test_deliveries_and_findings_gauges_read_the_store(served):
    cfg, store, log, pipeline, server = served
    pipeline.poll(at_eof=True)
    rows = dq.unrouted(store)
    assert len(rows) >= 2
    long_ago = datetime.now(timezone.utc) - timedelta(hours=3)
    for row in rows:
        dq.route(store, row, [dq.Planned("support", "email", "pending")], long_ago)
    first, *rest = dq.listing(store)
    dq.mark_failed(store, first["id"], "550 mailbox unavailable", None)  # a dead letter
    got = scrape(server.url)
    assert by_label(got, "usagewatch_deliveries", "status") == {"pending": len(rest), "queued": 0, "sent": 0, "dead": 1}
    assert got[("usagewatch_outbox_unrouted", ())] == 0
    assert 3 * 3600 - 60 < got[("usagewatch_oldest_pending_notification_age_seconds", ())] < 3 * 3600 + 60
    assert by_label(got, "usagewatch_findings", "status") == {
        "open": len(store.findings()), "acknowledged": 0, "coached": 0, "resolved": 0, "dismissed": 0}


def test_the_sender_counts_failures_per_channel(served):
    cfg, store, log, pipeline, server = served
    before = by_label(scrape(server.url), "usagewatch_delivery_failures_total", "channel")
    metrics.delivery_failed("webhook:chat")
    metrics.delivery_failed("webhook:chat", 2)
    after = by_label(scrape(server.url), "usagewatch_delivery_failures_total", "channel")
    assert after["webhook:chat"] == before["webhook:chat"] + 3
    assert after["email"] == before["email"]


def test_two_pipelines_keep_their_own_numbers(sample):
    cfg, store, log = sample
    a = Pipeline(cfg, store)
    a.poll(at_eof=True)
    b = Pipeline(cfg, store)  # the cursor is committed: nothing left to read
    b.poll(at_eof=True)
    assert a.metrics.registry.get_sample_value("usagewatch_records_total", {"source": "dw"}) == a.stats.records
    assert b.metrics.registry.get_sample_value("usagewatch_records_total", {"source": "dw"}) == 0


def test_no_metrics_config_serves_nothing_and_bad_addresses_are_clear(sample):
    cfg, store, log = sample
    pipeline = Pipeline(cfg, store)
    metrics.start_http(None, pipeline).stop()  # no `metrics:` key: nothing to stop
    with pytest.raises(ConfigError, match="not host:port"):
        metrics.start_http(MetricsConfig(listen="9187"), pipeline)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(UsagewatchError, match="cannot serve metrics"):
            metrics.start_http(MetricsConfig(listen=f"127.0.0.1:{taken}"), pipeline)
