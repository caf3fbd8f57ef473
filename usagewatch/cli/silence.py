"""``usagewatch silence add|list|expire``: hold back notifications for a rule and user for a while
(a user who is already being coached; a known batch job). Findings are still recorded."""

from __future__ import annotations

import getpass
from datetime import datetime, timezone

import click

from usagewatch.cli import cli, config_option, store_of
from usagewatch.durations import parse_duration
from usagewatch.errors import UsagewatchError


@cli.group("silence")
def silence_group() -> None:
    """Silence notifications for a rule and user for a while."""


@silence_group.command("add")
@config_option
@click.option("--rule", default="*", show_default=True, help="Rule id (glob).")
@click.option("--user", default="*", show_default=True, help="User (glob).")
@click.option("--for", "duration", required=True, help="How long: 2h, 7d, ...")
@click.option("--reason", required=True, help="Why, for whoever reads the list later.")
def add_cmd(config_path: str | None, rule: str, user: str, duration: str, reason: str) -> None:
    """Add a silence."""
    if rule == "*" and user == "*":
        raise UsagewatchError("a silence needs --rule or --user (silencing everything is what disabling notify is for).")
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        raise UsagewatchError(f"--for: {exc}.") from None
    until = datetime.now(timezone.utc) + length
    sid = store_of(config_path).add_silence(rule, user, until, reason, getpass.getuser())
    click.echo(f"Silence {sid}: rule {rule}, user {user}, until {until:%Y-%m-%d %H:%M} UTC.")


@silence_group.command("list")
@config_option
@click.option("--all", "include_expired", is_flag=True, help="Include expired silences.")
def list_cmd(config_path: str | None, include_expired: bool) -> None:
    """List silences (active ones unless --all)."""
    rows = store_of(config_path).silences(include_expired)
    if not rows:
        click.echo("No silences.")
        return
    now = datetime.now(timezone.utc)
    for r in rows:
        state = "active" if r["expires_at"] > now else "expired"
        click.echo(f"{r['id']}  rule={r['rule']}  user={r['user']}  until {r['expires_at']:%Y-%m-%d %H:%M} UTC"
                   f"  ({state}, by {r['created_by']}): {r['reason']}")


@silence_group.command("expire")
@config_option
@click.argument("silence_id", type=int)
def expire_cmd(config_path: str | None, silence_id: int) -> None:
    """End a silence now."""
    store_of(config_path).expire_silence(silence_id)
    click.echo(f"Silence {silence_id} expired.")
