"""Config loading: every problem reported with its file and line, did-you-mean on misspelt names."""

from __future__ import annotations

from pathlib import Path

import pytest

from usagewatch import config
from usagewatch.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return [str(p) for p in info.value.problems]


def test_good_config_resolves_relative_paths_against_its_directory():
    cfg = config.load(DATA / "good.yaml")
    assert cfg.database == f"sqlite:///{DATA}/state/usagewatch.db"
    assert cfg.sources[0].paths == [f"{DATA}/logs/*.csv"]
    assert cfg.notify.email is not None and cfg.notify.email.from_ == "usagewatch@example.com"


def test_every_problem_is_reported_with_its_line():
    got = problems(DATA / "typos.yaml")
    path = DATA / "typos.yaml"
    assert f'{path}:4:5: unknown key "formt" in sources[0]. Did you mean "format"?' in got
    assert f'{path}:3:5: missing required key "sources[0].format".' in got
    assert any(p.startswith(f"{path}:7:13: sources[1].format: unknown log format \"postgres-csvlogg\". "
                            'Did you mean "postgres-csvlog"?') for p in got)
    assert any(p.startswith(f"{path}:8:5: sources[1].paths:") for p in got)
    assert any(p.startswith(f"{path}:12:11: notify.email.port:") for p in got)
    assert any(p.startswith(f"{path}:15:10: notify.email.tls:") for p in got)
    assert any(p.startswith(f"{path}:17:20: follow.rescan_interval: 'soon' is not a duration") for p in got)
    assert len(got) == 7


def test_missing_file_names_the_file(tmp_path):
    got = problems(tmp_path / "nope.yaml")
    assert got == [f"{tmp_path}/nope.yaml: cannot read file: No such file or directory"]


def test_password_comes_from_the_environment_only(monkeypatch, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("notify:\n  email: {host: h, from: a@b.c, to: [x@y.z], username: u, password_env: UW_SMTP_PW}\n")
    cfg = config.load(f)
    assert cfg.notify.email is not None
    with pytest.raises(ConfigError, match="UW_SMTP_PW"):
        cfg.notify.email.password()
    monkeypatch.setenv("UW_SMTP_PW", "s3cret")
    assert cfg.notify.email.password() == "s3cret"
    f.write_text("notify:\n  email: {host: h, from: a@b.c, to: [x@y.z], password: s3cret}\n")
    assert any('unknown key "password"' in p for p in problems(f))


def test_embedded_default_uses_the_shipped_sample_and_stock_rules(tmp_path):
    cfg = config.default_config(tmp_path)
    assert cfg.database == f"sqlite:///{tmp_path}/usagewatch.db"
    assert Path(cfg.sources[0].paths[0]).is_file()
    assert Path(cfg.rules[0], "same-query-different-ids.yaml").is_file()
