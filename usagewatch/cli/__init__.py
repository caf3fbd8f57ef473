"""The ``usagewatch`` command: a thin click shell over library calls, with ONE error handler.

Every verb lives in its own module and calls library functions that tests call directly. Errors
print as ``Error: <sentence>`` (config problems as ``path:line:col: message`` lines) and exit 1;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from usagewatch import __version__
from usagewatch import config as config_mod
from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.logs import setup_logging
from usagewatch.store import Store


def load_config(path: str | None) -> config_mod.Config:
    """The config named by --config (or $USAGEWATCH_CONFIG), else the embedded default."""
    path = path or os.environ.get("USAGEWATCH_CONFIG")
    if path:
        return config_mod.load(path)
    click.echo("Using the embedded default config (sample PostgreSQL log, stock rules, ./usagewatch.db); "
               "pass --config FILE for yours.", err=True)
    return config_mod.default_config(Path.cwd())


def open_store(cfg: config_mod.Config) -> Store:
    """The configured store: the one place the CLI opens it."""
    return Store(cfg.database, cfg.notify.howto_base_url)


def store_of(config_path: str | None) -> Store:
    """The store of the config named by --config (or the default config)."""
    return open_store(load_config(config_path))


config_option = click.option("--config", "-c", "config_path", metavar="FILE", envvar="USAGEWATCH_CONFIG",
                             help="Config file (default: $USAGEWATCH_CONFIG, else the embedded default).")


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            for p in exc.problems:
                click.echo(str(p), err=True)
            n = len(exc.problems)
            click.echo(f"Error: {n} problem{'s' if n != 1 else ''} in the config or rules.", err=True)
            ctx.exit(1)
        except UsagewatchError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="usagewatch")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Watch a data warehouse's query logs and tell the support team who could use a hand."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    setup_logging("text", "debug" if debug else "warning")  # `run` switches to the config's log: format


def main() -> None:
    cli(prog_name="usagewatch")


# the verbs register themselves on ``cli`` when imported
from usagewatch.cli import check, console, db, explain, findings, notify, outbox, replay, report, rules, run, serve, silence, sources, status  # noqa: E402,F401
