"""Teams from the config's map (team -> users) and a CSV file (user,team); every problem of the CSV
is reported as file:line, by `check` too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers.configs import write_config
from usagewatch import config
from usagewatch.cli import cli
from usagewatch.errors import ConfigError

DATA = Path(__file__).parents[1] / "data" / "usage"


def test_teams_from_the_map_and_a_csv_file_relative_to_the_config(tmp_path):
    shutil.copy(DATA / "teams.csv", tmp_path / "teams.csv")
    cfg = config.load(write_config(tmp_path, [], usage={"teams": {"finance": ["ann"], "ops": ["ops", "cron"]},
                                                        "teams_file": "teams.csv"}))
    assert cfg.usage.teams_file == str(tmp_path / "teams.csv")
    team = cfg.usage.team_of
    assert [team(u) for u in ("ann", "ops", "cron", "kim", "zoe", "bi_tool", "nobody")] == \
        ["finance", "ops", "ops", "finance", "finance", "bi", None]


def test_every_bad_csv_line_is_reported_with_file_and_line(tmp_path):
    shutil.copy(DATA / "bad-teams.csv", tmp_path / "teams.csv")
    path = write_config(tmp_path, [], usage={"teams_file": "teams.csv"})
    with pytest.raises(ConfigError) as err:
        config.load(path)
    csv = tmp_path / "teams.csv"
    assert [str(p) for p in err.value.problems] == [
        f"{csv}:3: expected two fields, user and team (like: kim,finance); found 1: 'lee'",
        f"{csv}:4: expected two fields, user and team (like: kim,finance); found 3: 'zoe,finance,extra'",
        f'{csv}:5: user "kim" is already in team "finance" (line 2); a user belongs to one team',
    ]
    r = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert r.exit_code == 1
    assert f"{csv}:3: expected two fields" in r.stderr and r.stderr.endswith("Error: 3 problems in the config or rules.\n")


def test_a_user_in_two_teams_of_the_map_or_a_missing_file_is_an_error(tmp_path):
    path = write_config(tmp_path, [], usage={"teams": {"finance": ["kim"], "sales": ["kim"]}})
    with pytest.raises(ConfigError, match=r'config.yaml:\d+:\d+: usage.teams: user "kim" is in team "finance" and in '
                                          r'team "sales"; a user belongs to one team'):
        config.load(path)
    path = write_config(tmp_path, [], usage={"teams_file": "nope.csv"})
    with pytest.raises(ConfigError, match=rf"{tmp_path}/nope.csv: cannot read the teams file: No such file"):
        config.load(path)
