"""``usagewatch status``: the numbers of the metrics endpoint, for a person, read from the store
(works whether or not a daemon runs): how far behind each source is, findings and deliveries by
status, dead deliveries called out, and the notification waiting longest."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import click

from usagewatch.cli import cli, config_option, load_config, open_store
from usagewatch.cli.sources import source_rows
from usagewatch.config import Config
from usagewatch.metrics import store_counts
from usagewatch.store import Store


def age(seconds: float) -> str:
    """``45s``, ``12m``, ``3h 12m``, ``2d 4h``."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _ts(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def status_data(cfg: Config, store: Store, now: datetime | None = None) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (the JSON output)."""
    now = now or datetime.now(timezone.utc)
    rows = source_rows(cfg, store)
    sources = []
    for sc in cfg.sources:
        mine = [r for r in rows if r["source"] == sc.name]
        bad: Counter[str] = Counter()
        for r in mine:
            bad.update(r["bad"])
        last = max((r["last_query"] for r in mine if r["last_query"]), default=None)
        last_ts = _ts(last)
        sources.append({
            "source": sc.name, "format": sc.format, "type": sc.type,
            "files": sum(1 for r in mine if r["state"] in ("following", "new")),
            "behind": sum(r["behind"] for r in mine if r["behind"] is not None),
            "records": sum(r["records"] for r in mine), "bad": sum(bad.values()), "bad_by_reason": dict(bad),
            "last_query": last_ts.isoformat() if last_ts else None,
            "last_query_age_seconds": round((now - last_ts).total_seconds(), 3) if last_ts else None,
            "rows": mine,
        })
    counts = store_counts(store)
    oldest = counts.oldest_pending
    if oldest is not None:
        since = _ts(oldest["since"])
        assert since is not None
        oldest = {**oldest, "since": since.isoformat(), "age_seconds": round((now - since).total_seconds(), 3)}
    return {"sources": sources, "findings": counts.findings, "deliveries": counts.deliveries,
            "unrouted": counts.unrouted, "oldest_pending": oldest}


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def render(data: dict[str, Any]) -> str:
    lines = []
    for s in data["sources"]:
        last = "no query read yet"
        if s["last_query"]:
            when = s["last_query"][:19].replace("T", " ")
            last = f"last query {age(s['last_query_age_seconds'])} ago ({when} UTC)"
        what = (f"{_plural(s['files'], 'file')}, {s['behind']:,} bytes behind, " if s["type"] == "file" else "polled, ")
        bad = _plural(s["bad"], "bad record")
        if s["bad"]:
            bad += " (" + ", ".join(f"{k} {v:,}" for k, v in sorted(s["bad_by_reason"].items())) + ")"
        lines.append(f"source {s['source']} ({s['format']}): {what}{_plural(s['records'], 'record')} read, {bad}, {last}")
        for r in s["rows"]:
            behind = "-" if r["behind"] is None else f"{r['behind']:,} bytes behind"
            lines.append(f"  {r['file']}: {r['state']}, {behind}, {_plural(r['records'], 'record')}")
    if not data["sources"]:
        lines.append("sources: none configured")
    f = data["findings"]
    lines.append("findings: " + ", ".join(f"{n:,} {s}" for s, n in f.items()))
    d = data["deliveries"]
    lines.append("deliveries: " + ", ".join(f"{n:,} {s}" for s, n in d.items()))
    if data["unrouted"]:
        lines.append(f"not routed yet: {_plural(data['unrouted'], 'notification')}")
    if d.get("dead"):
        lines.append(f"DEAD: {_plural(d['dead'], 'delivery')} gave up; `usagewatch outbox list --status dead` "
                     "shows why, `usagewatch outbox retry --all-dead` sends them again")
    o = data["oldest_pending"]
    if o is None:
        lines.append("oldest pending notification: none")
    else:
        since = o["since"][:16].replace("T", " ")
        what = (f"delivery {o['id']} (finding {o['finding_id']}, {o['channel']})" if o["kind"] == "delivery"
                else f"notification {o['id']} (finding {o['finding_id']}, not routed yet)")
        tail = f", {_plural(o['attempts'], 'attempt')}" if o["attempts"] else ""
        if o.get("last_error"):
            tail += f", last error: {o['last_error']}"
        lines.append(f"oldest pending notification: {what}, waiting {age(o['age_seconds'])} (since {since} UTC){tail}")
    return "\n".join(lines)


@cli.command("status")
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status_cmd(config_path: str | None, fmt: str) -> None:
    """How far behind each source is, findings and deliveries by status, and what waits longest."""
    cfg = load_config(config_path)
    store = open_store(cfg)
    try:
        data = status_data(cfg, store)
    finally:
        store.close()
    click.echo(json.dumps(data, indent=2, default=str) if fmt == "json" else render(data))
