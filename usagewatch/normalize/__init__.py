"""Normalize: SQL text (+ bind values) -> NormalizedQuery. The only place in usagewatch that imports
sqlglot, so a sqlglot upgrade or a switch to the compiled ``sqlglotc`` build touches this package only.

    n = Normalizer(dialect="postgres", cache_size=20000)
    q = n.normalize("SELECT * FROM orders WHERE company_id = 42")
    q.fingerprint, q.normalized_sql, q.literals, q.kind, q.tables, q.parsed
    q.traits, q.expressions, q.in_list_max, q.unfiltered_tables  # see traits.py (TRAITS says what counts)
    n.stats  # hits, misses, uncached, unparsed

Flow per call: cheap regex scan (``scan.py``) -> cache key; a hit refills the cached shape's slots
from the scanned values (``cache.py``); a miss parses with sqlglot and walks the tree (``shape.py``),
then stores how the scan's values map to the slots. Text sqlglot cannot parse (or only parses into
its ``Command`` fallback) gets a token-based fingerprint with ``parsed=False``. ``normalize`` never
raises: any exception from sqlglot ends in the token-based path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, Dialects
from sqlglot.helper import name_sequence

from usagewatch.model import NormalizedQuery
from usagewatch.normalize.cache import UNCACHEABLE, Entry, ShapeCache, build_entry, fill, new_literal, new_query
from usagewatch.normalize.scan import Scanner, Value, bare, fallback, join_values
from usagewatch.normalize.shape import build
from usagewatch.normalize.traits import TRAITS, resolve
from usagewatch.registry import did_you_mean

# sqlglot warns once per unsupported statement it falls back on; we count those as parsed=False
# (the replay summary and stats show them), so its warnings would only be noise in the daemon's log.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

__all__ = ["TRAITS", "Normalizer", "NormalizerStats", "known_dialects"]

_UNPARSED = object()
_PLAIN_TEXTS = 4096  # texts without literals remembered (then forgotten all at once)


def _strs(params: tuple[object, ...]) -> tuple[str | None, ...]:
    return tuple([None if p is None else str(p) for p in params])


def known_dialects() -> list[str]:
    """The dialect names sqlglot knows."""
    return sorted(d.value for d in Dialects if d.value)


@dataclass(slots=True)
class NormalizerStats:
    """Counters since the Normalizer was made.

    ``hits``: answered from the cache without parsing. ``misses``: parsed, result cached.
    ``uncached``: parsed because the shape may not be cached (scan and parse disagreed, a constrained
    literal changed, or the text holds quoting the scan does not follow). ``unparsed``: results with
    ``parsed=False`` (parse failures and empty text; cached ones included). ``parse_errors``: parse
    attempts that failed.
    """

    hits: int = 0
    misses: int = 0
    uncached: int = 0
    unparsed: int = 0
    parse_errors: int = 0
    cache_entries: int = 0

    @property
    def calls(self) -> int:
        return self.hits + self.misses + self.uncached


class Normalizer:
    """Normalizes queries of one SQL dialect, caching shapes (bounded LRU of ``cache_size``)."""

    def __init__(self, dialect: str = "postgres", cache_size: int = 20000):
        name = (dialect or "").strip().lower()
        known = known_dialects()
        if name.split(",")[0].strip() not in known:
            raise ValueError(f'unknown SQL dialect "{dialect}".' + did_you_mean(name, known))
        self.dialect_name = name
        self._dialect = Dialect.get_or_raise(name)
        self._scanner = Scanner.for_tokenizer(self._dialect.tokenizer_class)
        # one tokenizer, parser and generator for all parses (each resets itself per call; making them
        # anew per query, as Dialect.parse/generate do, was ~8% of a parse)
        self._tokenizer = self._dialect.tokenizer()
        self._parser = self._dialect.parser()
        self._generator = self._dialect.generator(comments=False)
        self._cache = ShapeCache(cache_size)
        self._cache_data = self._cache._data
        # texts without an inline literal -> (key, safe): a prepared statement's text (bind values
        # apart) is the same at every execution, so its scan is done once (~2/5 of a typical log)
        self._plain_texts: dict[str, tuple[str, bool]] = {}
        self._stats = NormalizerStats()

    @property
    def stats(self) -> NormalizerStats:
        self._stats.cache_entries = len(self._cache)
        return self._stats

    def normalize(self, sql: str, params: Sequence[str | None] = ()) -> NormalizedQuery:
        """The NormalizedQuery of ``sql``; ``params[0]`` is the value of ``$1`` (or the first ``?``)."""
        if not isinstance(sql, str):
            sql = "" if sql is None else str(sql)
        if params.__class__ is not tuple:
            params = tuple(params)
        stats = self._stats
        known = self._plain_texts.get(sql)
        if known is not None:
            key, safe = known
            items: list[Value] = []
        else:
            try:
                key, items, safe = self._scanner.quick(sql)
            except Exception:  # pragma: no cover - a regex over a str; belt and braces
                key, items, safe = " ".join(sql.split()), [], False
            if not items:
                if len(self._plain_texts) >= _PLAIN_TEXTS:
                    self._plain_texts.clear()
                self._plain_texts[sql] = (key, safe)
        if safe:  # ShapeCache.get, inlined: this runs for every query
            entry = self._cache_data.get(key)
            if entry is not None:
                self._cache_data.move_to_end(key)
        else:
            entry = UNCACHEABLE
        if entry.__class__ is Entry:
            try:
                query = fill(entry, items, params)  # type: ignore[arg-type]
            except Exception:  # a text the key cannot tell apart from the cached shape: parse it
                query = None
            if query is not None:
                stats.hits += 1
                return query
            stats.uncached += 1
            return self._parse(sql, key, items, _strs(params), store=False)
        if entry is _UNPARSED:
            stats.hits += 1
            return self._unparsed(key, items, _strs(params))
        if entry is None:
            stats.misses += 1
            return self._parse(sql, key, items, _strs(params), store=True)
        stats.uncached += 1
        return self._parse(sql, key, items, _strs(params), store=False)

    def _parse(self, sql: str, key: str, items: list[Value], params: tuple[str | None, ...], store: bool) -> NormalizedQuery:
        try:
            statements = [s for s in self._parser.parse(self._tokenizer.tokenize(sql), sql) if s is not None]
            if not statements or any(isinstance(s, exp.Command) for s in statements):
                raise ValueError("not parsed")
            shape = build(statements, self._generate, params)  # type: ignore[arg-type]  # sqlglot 30 types parse() as Expr
        except Exception:
            if sql.strip():
                self._stats.parse_errors += 1
            if store:
                self._cache.put(key, _UNPARSED)
            return self._unparsed(key, items, params)
        if store:
            try:
                located = self._scanner.located(sql)  # the same items, with the offsets build_entry matches
                self._cache.put(key, build_entry(shape, located) if bare(located) == items else UNCACHEABLE)
            except Exception:  # a mapping bug must cost speed, never a wrong or missing answer
                self._cache.put(key, UNCACHEABLE)
        literals = tuple(
            new_literal(i, join_values([m.value for m in slot.members]) if slot.is_list else slot.members[0].value, slot.column)
            for i, slot in enumerate(shape.slots)
        )
        return new_query(shape.fingerprint, shape.normalized_sql, shape.kind, shape.tables, literals, True,
                         resolve(shape.traits, shape.checks, literals), shape.expressions, shape.in_list_max(),
                         shape.unfiltered)

    def _generate(self, root: exp.Expression) -> str:
        """``Dialect.generate(root, copy=False, comments=False)`` with the kept generator."""
        generator = self._generator
        generator._next_name = name_sequence("_t")  # the aliases it makes up start at _t0 per statement
        try:
            return generator.generate(root, copy=False)
        except Exception:
            self._generator = self._dialect.generator(comments=False)  # no state left half-way
            raise

    def _unparsed(self, key: str, items: list[Value], params: tuple[str | None, ...]) -> NormalizedQuery:
        self._stats.unparsed += 1
        fingerprint, text, kind, literals = fallback(key, items, params)
        return NormalizedQuery(fingerprint, text, kind, (), literals, False)

