"""``usagewatch outbox list|retry``: where each notification went (or is stuck), and a second
chance for the ones that gave up once the cause is fixed."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import click

from usagewatch.cli import cli, config_option, store_of
from usagewatch.cli.output import aligned
from usagewatch.errors import UsagewatchError
from usagewatch.store import deliveries as dq


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def as_json(d: dict[str, Any]) -> dict[str, Any]:
    return {"id": d["id"], "finding": d["finding_id"], "event": d["event"], "route": d["route"],
            "channel": d["channel"], "status": d["status"], "attempts": d["attempts"],
            "next_attempt": _when(d["next_attempt_at"]) if d["status"] == "pending" else None,
            "last_error": d["last_error"], "message_id": d["message_id"], "created_at": _when(d["created_at"]),
            "sent_at": _when(d["sent_at"])}


def table(rows: list[dict[str, Any]]) -> str:
    head = ("ID", "FINDING", "ROUTE", "CHANNEL", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR")
    body = [(str(d["id"]), str(d["finding"]), d["route"], d["channel"], d["status"], str(d["attempts"]),
             (d["next_attempt"] or "-")[:19].replace("T", " "), d["last_error"] or "-") for d in rows]
    return aligned(head, body)


@cli.group("outbox")
def outbox_group() -> None:
    """Notification deliveries: list them, retry the ones that gave up."""


@outbox_group.command("list")
@config_option
@click.option("--status", type=click.Choice(dq.STATUSES), help="Only deliveries with this status.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_cmd(config_path: str | None, status: str | None, fmt: str) -> None:
    """List deliveries, oldest first (one per notification, route and channel)."""
    store = store_of(config_path)
    rows = [as_json(d) for d in dq.listing(store, status)]
    unrouted = dq.unrouted_count(store)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(table(rows) if rows else "No deliveries.")
    if unrouted:
        click.echo(f"{unrouted} notification(s) not routed yet: the running daemon routes them.")


@outbox_group.command("retry")
@config_option
@click.argument("ids", type=int, nargs=-1)
@click.option("--all-dead", is_flag=True, help="Retry every dead delivery.")
def retry_cmd(config_path: str | None, ids: tuple[int, ...], all_dead: bool) -> None:
    """Send dead (or pending) deliveries again now; attempts and the last error are kept."""
    if bool(ids) == all_dead:
        raise click.UsageError("give delivery IDs or --all-dead (one of them).")
    done = dq.retry(store_of(config_path), None if all_dead else list(ids), datetime.now(timezone.utc))
    if not done:
        raise UsagewatchError("there are no dead deliveries. `usagewatch outbox list` shows them all.")
    click.echo(f"Retrying {len(done)} deliver{'y' if len(done) == 1 else 'ies'} ({', '.join(map(str, done))}); "
               "the running daemon sends them within seconds.")
