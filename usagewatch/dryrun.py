"""A store-less evaluation: events -> normalize -> a fresh ``RuleEngine`` -> the findings that WOULD be made.

Why a second composition root next to ``pipeline.py``: ``usagewatch rules test`` (and the YAML rule
unit tests) must never touch the store, move a file's saved position or queue a notification; they
answer "what would these rules say about these queries?" and nothing else. ``Pipeline`` is built
around a ``Store`` (it restores windows and cursors from it and commits every batch), so reusing it
would mean a throwaway database and the risk of pointing at the real one. This module wires only the
pure stages: sources (read to their end, cursors kept in memory), the normalizer, the rule engine.

Finding updates are merged the way the store merges them: per (rule, key) the last update is the
final state, and when a key's pattern stops and comes back (a new episode) the counts add up, like
an open finding that gets a new episode.
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterable

from pydantic import ValidationError

from usagewatch.config import Config
from usagewatch.errors import UsagewatchError
from usagewatch.model import FindingUpdate, NormalizedEvent, QueryEvent
from usagewatch.normalize import Normalizer
from usagewatch.rules import RuleEngine
from usagewatch.rules.loader import Rule
from usagewatch.sources.files import FileSource
from usagewatch.sources.formats import LogFormat, formats

#: formats guessed from a file's extension when neither --format nor a configured source says
EXTENSION_FORMATS = {".csv": "postgres-csvlog", ".json": "postgres-jsonlog", ".jsonl": "postgres-jsonlog"}


@dataclass
class DryRun:
    """What a dry run found: one merged update per (rule, key), the engine (for ``explain``), counters."""

    findings: list[FindingUpdate]
    engine: RuleEngine
    events: int = 0
    unparsed: int = 0
    episodes: dict[tuple[str, str], int] = field(default_factory=dict)


def evaluate(rules: list[Rule], events: Iterable[QueryEvent]) -> DryRun:
    """Run ``rules`` over ``events`` (in the given order) with a fresh engine; nothing is stored."""
    # fresh kind objects: a kind holds its keys' windows, and a dry run starts from nothing
    engine = RuleEngine([replace(r, kind=type(r.kind)(r.spec, r.kind.params)) for r in rules])
    normalizers: dict[str, Normalizer] = {}
    merged: dict[tuple[str, str], FindingUpdate] = {}
    base: dict[tuple[str, str], tuple[int, int]] = {}  # counts of the key's earlier episodes
    episodes: dict[tuple[str, str], int] = {}
    n = unparsed = 0
    for ev in events:
        norm = normalizers.get(ev.dialect)
        if norm is None:
            norm = normalizers[ev.dialect] = Normalizer(dialect=ev.dialect)
        q = norm.normalize(ev.sql, ev.params)
        n += 1
        unparsed += not q.parsed
        touched = engine.feed(NormalizedEvent(ev, q))
        if not touched:
            continue
        for u in engine.updates(touched):
            k = (u.rule, u.key)
            prev = merged.get(k)
            if prev is None or prev.episode != u.episode:
                episodes[k] = episodes.get(k, 0) + 1
                if prev is not None:  # the pattern came back: the earlier episodes count too
                    base[k] = (prev.count, prev.distinct_values)
            b = base.get(k, (0, 0))
            merged[k] = replace(u, count=b[0] + u.count, distinct_values=b[1] + u.distinct_values)
    return DryRun(list(merged.values()), engine, n, unparsed, episodes)


def log_format(path: str, fmt: str | None, config: Config | None) -> tuple[str, LogFormat]:
    """The source name and format to read ``path`` with.

    ``fmt`` wins; its options come from a configured source of that format when there is one. Without
    ``fmt``: the configured file source whose globs match the path, else a guess from the extension.
    """
    sources = [s for s in (config.sources if config else []) if s.type == "file"]
    full = os.path.abspath(path)
    if fmt is None:
        match = next((s for s in sources if any(fnmatch.fnmatch(full, g) for g in s.paths)), None)
        if match is not None:
            return match.name, match.make_format()
        fmt = EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower())
        if fmt is None:
            raise UsagewatchError(f"{path}: cannot tell its log format; pass --format "
                                  f"(one of {', '.join(formats.names())}).")
    configured = next((s for s in sources if s.format == fmt), None)
    if configured is not None:
        return configured.name, configured.make_format()
    try:
        cls = formats.get(fmt)
        return "dry-run", cls(cls.Options())
    except KeyError as exc:
        raise UsagewatchError(exc.args[0]) from None
    except ValidationError:
        raise UsagewatchError(f"the {fmt} format needs options (e.g. a field mapping); give --config with "
                              "a source of that format and its options.") from None


def read_logs(paths: Iterable[str], fmt: str | None = None, config: Config | None = None,
              stats: Counter[str] | None = None) -> Iterable[QueryEvent]:
    """Every query event of the files, each read to its end (held-back statements flushed).
    ``stats`` (when given) counts ``records``, ``bad`` (malformed) and ``skipped`` (not queries).

    Nothing is saved: positions live only in this generator's sources."""
    for path in paths:
        if not os.path.isfile(path):
            raise UsagewatchError(f"{path}: no such file.")
        name, log_fmt = log_format(path, fmt, config)
        src = FileSource(name, log_fmt, [os.path.abspath(path)])
        try:
            for chunk in src.read(os.path.abspath(path), at_eof=True):
                if stats is not None:
                    stats.update(records=chunk.records, bad=sum(chunk.bad.values()), skipped=sum(chunk.skipped.values()))
                yield from chunk.events
        finally:
            src.close()
