"""The generic ``jsonl`` and ``csv`` formats: options validated at config load (with "Did you mean"),
columns mapped case-insensitively and by dotted path, time and duration units."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tests.helpers.configs import write_config
from usagewatch import config
from usagewatch.cli.replay import replay
from usagewatch.errors import ConfigError
from usagewatch.normalize import known_dialects
from usagewatch.sources.formats import formats
from usagewatch.sources.formats.generic import DIALECTS, GenericCsvOptions, GenericOptions
from usagewatch.store import Store

T = datetime(2024, 5, 15, 14, 0, 5, tzinfo=timezone.utc)


def make(name: str, **options):
    cls = formats.get(name)
    return cls(cls.Options.model_validate(options))


def test_every_dialect_we_accept_is_one_sqlglot_knows():
    assert set(DIALECTS) <= set(known_dialects())


@pytest.mark.parametrize("mapping,expect", [
    ({"sql": "q"}, '"ts"'),
    ({"ts": "t"}, '"sql"'),
    ({"sql": "q", "ts": "t", "duration": "ms"}, 'Did you mean "duration_ms"?'),
    ({"sql": "q", "ts": "t", "usr": "u"}, 'Did you mean "user"?'),
])
def test_mapping_needs_sql_and_ts_and_known_fields(mapping, expect):
    with pytest.raises(ValidationError) as err:
        GenericOptions.model_validate({"mapping": mapping})
    assert expect in str(err.value)


def test_unknown_dialect_and_unit_are_rejected():
    with pytest.raises(ValidationError, match='unknown SQL dialect "postgresql". Did you mean "postgres"?'):
        GenericOptions.model_validate({"mapping": {"sql": "q", "ts": "t"}, "dialect": "postgresql"})
    with pytest.raises(ValidationError, match="duration_unit"):
        GenericOptions.model_validate({"mapping": {"sql": "q", "ts": "t"}, "duration_unit": "min"})
    with pytest.raises(ValidationError, match="delimiter"):
        GenericOptions.model_validate({"mapping": {"sql": "q", "ts": "t"}, "delimiter": ";"})  # csv only
    assert GenericCsvOptions.model_validate({"mapping": {"sql": "q", "ts": "t"}, "delimiter": ";"}).delimiter == ";"


def test_config_load_reports_the_option_problem(tmp_path):
    path = write_config(tmp_path, [{"name": "app", "format": "jsonl", "paths": [str(tmp_path / "*.jsonl")],
                                    "options": {"mapping": {"sql": "q", "ts": "t", "usr": "u"}}}])
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert 'unknown event field "usr". Did you mean "user"?' in str(err.value)


def test_jsonl_maps_nested_paths_case_insensitively_with_duration_unit():
    fmt = make("jsonl", mapping={"sql": "Metadata.Query", "ts": "started", "user": "USR", "duration_ms": "secs",
                                 "rows": "stats.rows", "error_code": "err"},
               dialect="trino", duration_unit="s")
    rec = fmt.parse(b'{"metadata": {"query": "SELECT 1"}, "Started": "2024-05-15T14:00:05Z", "usr": "kim", '
                    b'"secs": 1.5, "stats": {"Rows": "7"}}\n')
    (ev,) = fmt.assembler("app").feed(rec, "f:0")
    assert (ev.sql, ev.ts, ev.user, ev.duration_ms, ev.rows, ev.dialect) == ("SELECT 1", T, "kim", 1500.0, 7, "trino")
    assert ev.error_code is None


def test_csv_with_ts_format_delimiter_and_microseconds():
    fmt = make("csv", mapping={"sql": "query_text", "ts": "when", "duration_ms": "us", "user": "who"},
               ts_format="%d/%m/%Y %H:%M:%S", duration_unit="us", delimiter=";")
    data = b'who;when;us;query_text\nkim;15/05/2024 14:00:05;2500;"SELECT\n 1"\n'
    ends = fmt.frame(data, at_eof=False)
    assert len(ends) == 2
    asm = fmt.assembler("app")
    assert asm.feed(fmt.parse(data[: ends[0]]), "f:0") == []
    (ev,) = asm.feed(fmt.parse(data[ends[0]: ends[1]]), "f:1")
    assert (ev.sql, ev.ts, ev.user, ev.duration_ms, ev.dialect) == ("SELECT\n 1", T, "kim", 2.5, "postgres")


def test_epoch_times_and_polled_rows():
    asm = make("jsonl", mapping={"sql": "q", "ts": "t"}).assembler("poll")
    for t in (1715781605, 1715781605123, "1715781605.5", datetime(2024, 5, 15, 14, 0, 5)):
        (ev,) = asm.feed({"Q": "SELECT 1", "T": t}, "p")
        assert ev.ts - T < timedelta(seconds=1)
    assert asm.feed({"q": "", "t": 1715781605}, "p") == []
    assert asm.skipped == {"no-sql": 1}


def test_replay_of_a_generic_log(tmp_path):
    lines = [f'{{"sql": "SELECT * FROM invoices WHERE customer_id = {100 + i}", "at": {1715781605 + 60 * i}, '
             f'"who": "ann", "ms": 12}}' for i in range(22)]
    (tmp_path / "app.jsonl").write_text("\n".join(lines) + "\n")
    cfg_path = write_config(tmp_path, [{"name": "app", "format": "jsonl", "paths": [str(tmp_path / "*.jsonl")],
                                        "options": {"mapping": {"sql": "sql", "ts": "at", "user": "who",
                                                                "duration_ms": "ms"}}}])
    stats = replay(config.load(cfg_path))
    assert stats.queries == 22
    store = Store(config.load(cfg_path).database)
    try:
        (f,) = store.findings()
    finally:
        store.close()
    assert (f["rule"], f["user"], f["count"], f["varying"]) == ("same-query-different-ids", "ann", 22, ["customer_id"])
