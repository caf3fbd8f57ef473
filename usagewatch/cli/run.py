"""``usagewatch run``: the daemon."""

from __future__ import annotations

import logging

import click

from usagewatch.cli import cli, config_option, load_config
from usagewatch.daemon import Daemon


@cli.command("run")
@config_option
@click.pass_context
def run_cmd(ctx: click.Context, config_path: str | None) -> None:
    """Follow the configured logs and notify the support team when a rule fires."""
    if not ctx.obj.get("debug"):
        logging.getLogger().setLevel(logging.INFO)
    Daemon(load_config(config_path)).run()
