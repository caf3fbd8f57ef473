"""``usagewatch serve``: the console and the action links over a store, without reading any log.

For a store that daemons elsewhere fill (several log hosts, one PostgreSQL store), or to look at
an SQLite store after a replay. The daemon serves the same pages itself when ``http:`` is set.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from usagewatch.cli import cli, config_option, load_config, open_store
from usagewatch.errors import UsagewatchError
from usagewatch.logs import setup_logging
from usagewatch.web.server import start_server

log = logging.getLogger(__name__)


@cli.command("serve")
@config_option
@click.option("--listen", metavar="HOST:PORT", help="Listen here instead of http.listen.")
@click.pass_context
def serve_cmd(ctx: click.Context, config_path: str | None, listen: str | None) -> None:
    """Serve the web console and the action links over the store, until stopped (Ctrl-C, SIGTERM)."""
    cfg = load_config(config_path)
    if cfg.http is None:
        raise UsagewatchError("usagewatch serve needs the http: section (listen, public_url, auth); see docs/console.md.")
    http = cfg.http.model_copy(update={"listen": listen}) if listen else cfg.http
    setup_logging(cfg.log.format, "debug" if ctx.obj.get("debug") else cfg.log.level)
    store = open_store(cfg)
    running = start_server(http, store, redact_values=cfg.notify.redact_values, config=lambda: cfg)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    where = f"{http.public_url.rstrip('/')}/console/" if http.auth else f"{http.public_url.rstrip('/')}/a/..."
    click.echo(f"Serving {'the console at ' + where if http.auth else 'the action links'} "
               f"(listening on {running.url}); Ctrl-C stops.", err=True)
    if http.auth is None:
        click.echo("The console is off: it needs http.auth (see docs/console.md).", err=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        running.stop()
        store.close()
