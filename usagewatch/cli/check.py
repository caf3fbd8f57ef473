"""``usagewatch check``: validate the config and every rule file; exit 0 when valid."""

from __future__ import annotations

import click

from usagewatch.cli import cli, config_option, load_config
from usagewatch.rules import load_rules


def check(config_path: str | None) -> str:
    """A one-line description of what is valid; raises ConfigError listing every problem."""
    cfg = load_config(config_path)
    rules = load_rules(cfg.rules, cfg.rule_overrides)
    return f"{cfg.path}: OK ({len(cfg.sources)} sources, {len(rules)} rules: {', '.join(r.id for r in rules)})"


@cli.command("check")
@config_option
def check_cmd(config_path: str | None) -> None:
    """Validate the config and rules; print path:line: message for every problem."""
    click.echo(check(config_path))
