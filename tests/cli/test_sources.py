"""``usagewatch sources``: per file, position, bytes behind, records read, bad records, last query."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.helpers.configs import write_config
from tests.helpers.logwriter import RULES, LogWriter
from usagewatch import config
from usagewatch.cli import cli
from usagewatch.cli.replay import replay


def test_sources_shows_progress_and_skips(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    w = LogWriter(logs / "a.csv")
    w.emit(20)
    w.write(b"not,a,csvlog,record\n")
    cfg_path = write_config(tmp_path, [{"name": "dw", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                            rules=[str(RULES)])
    replay(config.load(cfg_path))
    w.emit(5)  # written after the replay: behind
    LogWriter(logs / "b.csv").emit(3)  # never read yet: new
    r = CliRunner().invoke(cli, ["sources", "--config", str(cfg_path), "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = {row["file"].rsplit("/", 1)[1]: row for row in json.loads(r.stdout)}
    a, b = rows["a.csv"], rows["b.csv"]
    assert (a["state"], a["records"], a["bad"]) == ("following", 21, {"csv-columns": 1})
    assert a["behind"] == (logs / "a.csv").stat().st_size - a["offset"] > 0
    assert a["last_query"].startswith("2026-11-02T09:00:00.019")
    assert (b["state"], b["offset"], b["behind"]) == ("new", 0, (logs / "b.csv").stat().st_size)
    r = CliRunner().invoke(cli, ["sources", "--config", str(cfg_path)])
    assert r.stdout.splitlines()[0].split() == ["SOURCE", "FORMAT", "FILE", "STATE", "OFFSET", "BEHIND",
                                                "RECORDS", "BAD", "LAST", "QUERY"]
    assert "csv-columns 1" in r.stdout
