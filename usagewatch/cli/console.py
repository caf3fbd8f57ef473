"""``usagewatch console add-user``: people who may log in to the web console (mode: login)."""

from __future__ import annotations

import sys

import click

from usagewatch.cli import cli, config_option, load_config
from usagewatch.errors import UsagewatchError
from usagewatch.web.console.auth import write_user

MIN_PASSWORD = 10


@cli.group("console")
def console_group() -> None:
    """The web console's users (see docs/console.md)."""


@console_group.command("add-user")
@config_option
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.argument("name")
def add_user_cmd(config_path: str | None, password_stdin: bool, name: str) -> None:
    """Add a console user to http.auth.users_file, or set a new password for one (ends their sessions)."""
    cfg = load_config(config_path)
    auth = cfg.http.auth if cfg.http is not None else None
    if auth is None or auth.mode != "login" or not auth.users_file:
        raise UsagewatchError("console users need http.auth with mode: login and users_file; see docs/console.md.")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise UsagewatchError(f"the password is too short: use at least {MIN_PASSWORD} characters.")
    new = write_user(auth.users_file, name, password)
    click.echo(f"{'Added' if new else 'Changed the password of'} {name} in {auth.users_file}.")
