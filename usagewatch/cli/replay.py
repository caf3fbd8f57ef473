"""``usagewatch replay``: the daemon's pipeline over existing logs, read to their end, then exit."""

from __future__ import annotations

import fnmatch
import os
import sys

import click
from pydantic import ValidationError

from usagewatch.cli import cli, config_option, load_config, open_store
from usagewatch.config import Config
from usagewatch.errors import UsagewatchError
from usagewatch.parallel import jobs_of, replay_jobs
from usagewatch.pipeline import REPLAY_GROUP_EVENTS, Pipeline, Stats, make_source, tune_gc
from usagewatch.sources import Source
from usagewatch.sources.files import FileSource
from usagewatch.sources.formats import formats

EXTENSION_FORMATS = {".csv": "postgres-csvlog", ".json": "postgres-jsonlog", ".jsonl": "postgres-jsonlog"}


def sources_for(cfg: Config, paths: tuple[str, ...], fmt: str | None) -> list[Source]:
    """The configured sources, or, when paths are given, one source per path: the configured source
    whose globs match it (so its checkpoint is shared with the daemon), else an ad-hoc one."""
    f = cfg.follow
    if not paths:
        return [make_source(s, f) for s in cfg.sources]
    out: list[Source] = []
    for p in paths:
        full = os.path.abspath(p)
        if not os.path.exists(full):
            raise UsagewatchError(f"{p}: no such file.")
        match = next((s for s in cfg.sources if s.type == "file" and any(fnmatch.fnmatch(full, g) for g in s.paths)), None)
        if match is not None and fmt is None:
            out.append(FileSource(match.name, match.make_format(), [full], [], f.batch_bytes, f.max_record_bytes))
            continue
        name = fmt or EXTENSION_FORMATS.get(os.path.splitext(p)[1].lower())
        if name is None:
            raise UsagewatchError(f"{p}: cannot tell its log format; pass --format (one of {', '.join(formats.names())}).")
        try:
            cls = formats.get(name)
            fmt_obj = cls(cls.Options())
        except KeyError as exc:
            raise UsagewatchError(exc.args[0]) from None
        except ValidationError:
            raise UsagewatchError(f"the {name} format needs options (e.g. a field mapping); "
                                  "configure a source with them instead of --format") from None
        out.append(FileSource("replay", fmt_obj, [full], [], f.batch_bytes, f.max_record_bytes))
    return out


def replay(cfg: Config, paths: tuple[str, ...] = (), fmt: str | None = None, progress: bool = False,
           jobs: int = 1) -> Stats:
    """Run the pipeline over the files to their end; returns the counters. ``jobs`` > 1 spreads the
    work over that many processes (``usagewatch.parallel``; 0 = one per CPU) with identical results."""
    jobs = jobs_of(jobs)
    tune_gc()
    store = open_store(cfg)
    try:
        pipeline = Pipeline(cfg, store, sources_for(cfg, paths, fmt))
        if not progress:
            if jobs == 1:
                pipeline.poll(at_eof=True, group_events=REPLAY_GROUP_EVENTS)
            else:
                replay_jobs(pipeline, jobs, group_events=REPLAY_GROUP_EVENTS)
            return pipeline.stats
        files = [p for src in pipeline.sources for p in src.paths() if os.path.isfile(p)]
        total = sum(os.path.getsize(p) for p in files)
        with click.progressbar(length=total, label="Replaying", file=sys.stderr, show_pos=False,
                               show_percent=True, show_eta=True) as bar:
            if jobs == 1:
                pipeline.poll(at_eof=True, group_events=REPLAY_GROUP_EVENTS, on_chunk=lambda c: bar.update(c.bytes_read))
            else:
                replay_jobs(pipeline, jobs, bar.update, REPLAY_GROUP_EVENTS)
        return pipeline.stats
    finally:
        store.close()


@cli.command("replay")
@config_option
@click.option("--format", "fmt", metavar="NAME", help="Log format of the PATHs when no configured source matches them.")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="Spread the work over N processes (0: one per CPU); the findings are the same.")
@click.argument("paths", nargs=-1, type=click.Path())
def replay_cmd(config_path: str | None, fmt: str | None, jobs: int, paths: tuple[str, ...]) -> None:
    """Read existing logs (the configured sources, or PATHs) to their end through the full pipeline.

    Files already read are not read again (their position is saved), so a replay can be repeated
    or followed by `usagewatch run` without counting a query twice. Notifications are queued in
    the outbox for the daemon to send.
    """
    cfg = load_config(config_path)
    stats = replay(cfg, paths, fmt, progress=sys.stderr.isatty(), jobs=jobs)
    click.echo(f"Replayed {stats.summary()}.")
