"""``usagewatch replay PATH``: files outside the configured sources get their format from --format or
their extension; a file that cannot be told is a one-sentence error."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from tests.helpers.configs import write_config
from usagewatch.cli import cli
from usagewatch.config import SAMPLE_LOG


def test_replay_of_a_jsonlog_path_infers_the_format(tmp_path):
    cfg = write_config(tmp_path, [])
    log = tmp_path / "pg.json"
    shutil.copy(SAMPLE_LOG.with_suffix(".json"), log)
    r = CliRunner().invoke(cli, ["replay", "--config", str(cfg), str(log)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Replayed 1 files, ") and ", 3 new findings (0 updated), 0 bad records," in r.stdout


def test_unknown_extension_asks_for_format(tmp_path):
    cfg = write_config(tmp_path, [])
    log = tmp_path / "pg.log"
    shutil.copy(SAMPLE_LOG, log)
    r = CliRunner().invoke(cli, ["replay", "--config", str(cfg), str(log)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {log}: cannot tell its log format; pass --format (one of ")
    assert "postgres-csvlog, postgres-jsonlog" in r.stderr
    r = CliRunner().invoke(cli, ["replay", "--config", str(cfg), "--format", "postgres-csvlogg", str(log)])
    assert r.stderr == 'Error: unknown log format "postgres-csvlogg". Did you mean "postgres-csvlog"?\n'
    r = CliRunner().invoke(cli, ["replay", "--config", str(cfg), "--format", "postgres-csvlog", str(log)])
    assert r.exit_code == 0 and ", 3 new findings" in r.stdout


def test_missing_path_is_an_error(tmp_path):
    cfg = write_config(tmp_path, [])
    r = CliRunner().invoke(cli, ["replay", "--config", str(cfg), str(tmp_path / "nope.csv")])
    assert (r.exit_code, r.stderr) == (1, f"Error: {tmp_path}/nope.csv: no such file.\n")
