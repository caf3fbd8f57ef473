"""``usagewatch check``: exit 0 and a summary when valid; every problem as path:line when not."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from usagewatch.cli import cli
from usagewatch.config import stock_rules_dir
from usagewatch.rules import load_rules

DATA = Path(__file__).parents[1] / "data" / "config"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_valid_config_exits_zero_and_names_the_rules():
    r = invoke("check", "--config", str(DATA / "good.yaml"))
    assert r.exit_code == 0, r.output
    stock = sorted(rule.id for rule in load_rules([str(stock_rules_dir())]))
    assert len(stock) >= 2
    assert r.output == f"{DATA}/good.yaml: OK (1 sources, {len(stock)} rules: {', '.join(stock)})\n"


def test_broken_rules_are_all_reported_with_file_and_line():
    r = invoke("check", "--config", str(DATA / "with-bad-rules.yaml"))
    assert r.exit_code == 1
    rules = DATA / "bad-rules"
    assert r.stderr.splitlines() == [
        f'{rules}/broken.yaml:2:7: unknown rule kind "varying_literal". Did you mean "varying_literals"?',
        f"{rules}/syntax.yaml:4:6: invalid YAML: expected ',' or '}}', but got ':' (while parsing a flow mapping)",
        f"{rules}/template.yaml:4:11: params.window: '2 hours' is not a duration; write it like 30s, 10m, 1h or 7d",
        f'{rules}/template.yaml:6:8: title: unknown template variable "usr". Did you mean "user"?',
        f"{rules}/template.yaml:7: intervention: template syntax error: unexpected '}}'",
        "Error: 5 problems in the config or rules.",
    ]


def test_config_problems_exit_nonzero():
    r = invoke("check", "--config", str(DATA / "typos.yaml"))
    assert r.exit_code == 1
    assert "typos.yaml:4:5: unknown key \"formt\" in sources[0]. Did you mean \"format\"?" in r.stderr
    assert r.stderr.endswith("Error: 7 problems in the config or rules.\n")


def test_missing_config_file_is_one_clear_error(tmp_path):
    r = invoke("check", "--config", str(tmp_path / "missing.yaml"))
    assert r.exit_code == 1
    assert r.stderr == (f"{tmp_path}/missing.yaml: cannot read file: No such file or directory\n"
                        "Error: 1 problem in the config or rules.\n")


def test_a_rule_id_defined_twice_across_files_is_an_error():
    r = invoke("check", "--config", str(DATA / "with-dup-rules.yaml"))
    assert r.exit_code == 1
    d = DATA / "dup-rules"
    def id_line(name: str) -> int:
        return next(i for i, text in enumerate((d / name).read_text().splitlines(), 1) if text.startswith("id:"))

    assert r.stderr.splitlines()[0] == (f'{d}/b.yaml:{id_line("b.yaml")}:5: rule id "same-query-repeated" is '
                                        f"already defined at {d}/a.yaml:{id_line('a.yaml')}.")
