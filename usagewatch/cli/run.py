"""``usagewatch run``: the daemon."""

from __future__ import annotations

import click

from usagewatch.cli import cli, config_option, load_config
from usagewatch.daemon import Daemon
from usagewatch.logs import setup_logging


@cli.command("run")
@config_option
@click.pass_context
def run_cmd(ctx: click.Context, config_path: str | None) -> None:
    """Follow the configured logs and notify the support team when a rule fires."""
    cfg = load_config(config_path)
    setup_logging(cfg.log.format, "debug" if ctx.obj.get("debug") else cfg.log.level)
    Daemon(cfg).run()
