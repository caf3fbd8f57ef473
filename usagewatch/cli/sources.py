"""``usagewatch sources``: what each source is following, how far along it is, and what it skipped."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from usagewatch.cli import cli, config_option, load_config, open_store
from usagewatch.cli.output import aligned
from usagewatch.config import Config
from usagewatch.pipeline import make_source
from usagewatch.store import Store


def source_rows(cfg: Config, store: Store) -> list[dict[str, Any]]:
    """One row per file (or polled table) of every configured source: position, bytes behind,
    records read, bad records by reason, newest query seen. Files matched but never read show as
    behind by their whole size; files read before but gone show as gone."""
    rows = []
    for sc in cfg.sources:
        cursors = store.cursors(sc.name)
        seen = set()
        if sc.type == "file":
            for path in make_source(sc, cfg.follow).paths():
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                c = cursors.get(f"{st.st_dev}:{st.st_ino}")
                if c is not None:
                    seen.add(c.key)
                rows.append({"source": sc.name, "format": sc.format, "file": path,
                             "offset": c.offset if c else 0, "size": st.st_size,
                             "behind": max(0, st.st_size - (c.offset if c else 0)),
                             "records": c.records if c else 0, "bad": dict(c.bad) if c else {},
                             "last_query": c.last_ts if c else None, "state": "following" if c else "new"})
        for key, c in cursors.items():
            if key in seen:
                continue
            rows.append({"source": sc.name, "format": sc.format, "file": c.path, "offset": c.offset,
                         "size": None, "behind": None, "records": c.records, "bad": dict(c.bad),
                         "last_query": c.last_ts, "state": "polled" if sc.type == "query" else "gone"})
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("SOURCE", "FORMAT", "FILE", "STATE", "OFFSET", "BEHIND", "RECORDS", "BAD", "LAST QUERY")
    body = [(r["source"], r["format"], r["file"], r["state"], f"{r['offset']:,}",
             "-" if r["behind"] is None else f"{r['behind']:,}", f"{r['records']:,}",
             ", ".join(f"{k} {v}" for k, v in sorted(r["bad"].items())) or "-",
             (r["last_query"] or "-")[:19].replace("T", " ")) for r in rows]
    return aligned(head, body)


@cli.command("sources")
@config_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def sources_cmd(config_path: str | None, fmt: str) -> None:
    """Show each source's files: read position, bytes behind, records read and skipped, last query."""
    cfg = load_config(config_path)
    store = open_store(cfg)
    try:
        rows = source_rows(cfg, store)
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        click.echo(_table(rows))
    else:
        click.echo("No sources configured.")
