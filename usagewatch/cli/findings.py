"""``usagewatch findings list|show``."""

from __future__ import annotations

import getpass
import json

import click

from usagewatch.cli import cli, config_option, store_of
from usagewatch.cli.output import aligned
from usagewatch.errors import UsagewatchError

CONTRACT_FIELDS = ("id", "rule", "user", "status", "count", "distinct_values", "first_seen", "last_seen",
                   "fingerprint", "sample_sql", "varying", "howto")



def table(rows: list[dict]) -> str:
    """A plain aligned table for a terminal."""
    head = ("ID", "RULE", "USER", "STATUS", "RUNS", "DISTINCT", "VARYING", "LAST SEEN")
    body = [(str(f["id"]), f["rule"], f["user"] or "", f["status"], str(f["count"]), str(f["distinct_values"]),
             ",".join(f["varying"]) or "-", f["last_seen"][:19].replace("T", " ")) for f in rows]
    return aligned(head, body)


@cli.group("findings")
def findings_group() -> None:
    """List and inspect findings."""


@findings_group.command("list")
@config_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--status", help="Only findings with this status (open, acknowledged, coached, resolved, dismissed).")
@click.option("--rule", help="Only findings of this rule.")
def list_cmd(config_path: str | None, fmt: str, status: str | None, rule: str | None) -> None:
    """List findings, oldest first."""
    rows = store_of(config_path).findings(status=status, rule=rule)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        click.echo(table(rows))
    else:
        click.echo("No findings.")


def describe(f: dict) -> str:
    lines = [
        f"Finding {f['id']}: {f['title']}",
        f"  rule:      {f['rule']} ({f['severity']})",
        f"  status:    {f['status']}",
        f"  user:      {f['user']}    database: {f['database']}",
        f"  runs:      {f['count']}    distinct values: {f['distinct_values']}",
        f"  varying:   {', '.join(f['varying']) or '-'}" + (f"  (e.g. {', '.join(f['sample_values'])})" if f['sample_values'] else ""),
        f"  seen:      {f['first_seen']} .. {f['last_seen']}",
        f"  shape:     {f['fingerprint']}",
        "",
        "  Normalized query:",
        *("    " + line for line in (f["normalized_sql"] or "").splitlines()),
        "",
        "  Suggested intervention:",
        *("    " + line for line in f["intervention"].splitlines()),
        "",
        f"  How-to: {f['howto']}",
    ]
    eff = f.get("effectiveness")
    if eff:
        lines += ["", f"  After coaching: {eff['summary']}" + (" (it recurred)" if eff["recurred"] else " (it stopped)")]
    if f.get("history"):
        lines += ["", "  History:"]
        lines += [f"    {h['at'][:19].replace('T', ' ')}  {h['action']:<12} {h['actor']}" + (f": {h['note']}" if h["note"] else "")
                  for h in f["history"]]
    return "\n".join(lines)


@findings_group.command("show")
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("finding_id", type=int)
def show_cmd(config_path: str | None, fmt: str, finding_id: int) -> None:
    """Show one finding in full."""
    store = store_of(config_path)
    f = store.finding(finding_id)
    if f is None:
        raise UsagewatchError(f"there is no finding {finding_id}. `usagewatch findings list` shows them.")
    f["history"] = store.history(finding_id)
    f["effectiveness"] = store.effectiveness(f)
    click.echo(json.dumps(f, indent=2) if fmt == "json" else describe(f))


def _transition(config_path: str | None, finding_id: int, action: str, note: str | None) -> None:
    store = store_of(config_path)
    f = store.transition(finding_id, action, getpass.getuser(), note)
    click.echo(f"Finding {f['id']} ({f['rule']}, {f['user']}) is now {f['status']}.")


def _transition_command(name: str, action: str, help_text: str) -> None:
    @findings_group.command(name, help=help_text)
    @config_option
    @click.option("--note", help="Why, or what was said; kept in the finding's history.")
    @click.argument("finding_id", type=int)
    def command(config_path: str | None, note: str | None, finding_id: int) -> None:
        _transition(config_path, finding_id, action, note)


_transition_command("ack", "acknowledged", "Acknowledge a finding: someone is on it.")
_transition_command("coached", "coached",
                    "Mark a finding as coached: the user was shown a better way; usagewatch keeps watching.")
_transition_command("resolve", "resolved",
                    "Resolve a finding. If the pattern comes back after the rule's cooldown it is reopened.")
_transition_command("dismiss", "dismissed", "Dismiss a finding as not useful (a false positive); counted per rule.")
