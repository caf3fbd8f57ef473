"""The literal-stripping scan: its fast regex matches exactly what the plain form of the same rules
matches, and ``Scanner.quick`` (every call) agrees with ``Scanner.scan`` (the offsets, on a miss)."""

from __future__ import annotations

import random
import re

import pytest
from sqlglot.dialects.dialect import Dialect

from usagewatch.normalize.scan import _NUM, Scanner, _quote_re

DIALECTS = ["postgres", "mysql", "bigquery", "snowflake", "clickhouse", "tsql", "trino", "duckdb"]

# pieces random texts are made of: every character class the scan treats specially, and near misses
PIECES = [
    " ", "  ", "\n", "\t", ",", ", ", "(", ")", "((", "))", "'", "''", '"', '""', "`", "-", "--", "/", "/*", "*/",
    "/*+", "#", "$", "$1", ".", "e", "E", "+", "1", "42", "-7", "3.25", "1e5", "2E-3", "1.", "x1", "t.5", "_9",
    "'a'", "'it''s'", "'a,b'", "'(x)'", "'-- no'", '"Col"', '"a b"', "`c`", "NULL", "IN", "VALUES", "select",
    "a", "id", "ü", "\u00a0", "٣", "\\",
    "(1, 2)", "( -4 )", "('a', -3)", "(1,'x'),(2,'y')", "), (", "(5,\n6)", "('a''b', '')", "(1e3, 'p(q')",
]


def _reference(scanner: Scanner, quotes: list[str], idents: list[str], comments: list[str], escapes: list[str]) -> re.Pattern[str]:
    """The scan's regex in its plain form (a lookahead, then whole-token alternatives)."""
    str_quotes = [q for q in quotes if len(q) == 1]
    id_quotes = [q for q in idents if len(q) == 1 and q not in str_quotes]
    string = "|".join(_quote_re(q, q in escapes) for q in str_quotes) or r"(?!x)x"
    ident = "|".join(_quote_re(q) for q in id_quotes) or r"(?!x)x"
    line_comments = sorted({c for c in comments if c not in ("/*",)}, key=len, reverse=True)
    comment = "|".join([re.escape(c) + r"[^\n]*" for c in line_comments] + [r"/\*(?!\+).*?\*/"])
    atom = rf"(?:-?{_NUM}|{string})"
    row = rf"\(\s*{atom}(?:\s*,\s*{atom})*\s*\)"
    starts = {c[0] for c in line_comments} | {"/", "("} | set(str_quotes) | set(id_quotes)
    first = "".join(re.escape(c) for c in sorted(starts)) + "0-9"
    return re.compile(
        rf"(?=[{first}])(?:(?P<c>{comment})|(?P<g>{row}(?:\s*,\s*{row})*)|(?P<s>{string})|(?P<i>{ident})"
        rf"|(?P<n>(?<![\w$.]){_NUM}(?![\w.])))",
        re.S,
    )


def _rules(dialect: str) -> tuple[list[str], list[str], list[str], list[str]]:
    tokenizer = Dialect.get_or_raise(dialect).tokenizer_class
    quotes = [q if isinstance(q, str) else q[0] for q in getattr(tokenizer, "QUOTES", ["'"])]
    idents = [i if isinstance(i, str) else i[0] for i in getattr(tokenizer, "IDENTIFIERS", ['"'])]
    comments = [c if isinstance(c, str) else c[0] for c in getattr(tokenizer, "COMMENTS", ["--"])]
    escapes = [e for e in getattr(tokenizer, "STRING_ESCAPES", ["'"]) if isinstance(e, str)]
    return quotes, idents, comments, escapes


def _texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 30))) for _ in range(count)]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_fast_regex_matches_the_plain_form(dialect: str) -> None:
    rules = _rules(dialect)
    scanner = Scanner(*rules)
    plain = _reference(scanner, *rules)
    for text in _texts(136, 3000) + ["SELECT * FROM t WHERE id IN (1, -2, 'a''b', 3.5e2) -- x", "(1,'a'),(2,'b')"]:
        fast = [(m.lastgroup, m.span()) for m in scanner._main.finditer(text)]
        ref = [(m.lastgroup, m.span()) for m in plain.finditer(text)]
        assert fast == ref, text


@pytest.mark.parametrize("dialect", DIALECTS)
def test_quick_agrees_with_scan(dialect: str) -> None:
    scanner = Scanner.for_tokenizer(Dialect.get_or_raise(dialect).tokenizer_class)
    for text in _texts(7, 3000):
        key, values, safe = scanner.quick(text)
        scan = scanner.scan(text)
        assert (key, safe) == (scan.key, scan.safe), text
        assert values == [item[1] if isinstance(item, tuple) else [[v for _, v in row] for row in item]
                          for item in scan.items], text


def test_groups_keep_rows_and_unquote_values() -> None:
    scanner = Scanner.for_tokenizer(Dialect.get_or_raise("postgres").tokenizer_class)
    key, values, _ = scanner.quick("SELECT * FROM t WHERE a IN (1, -2, 'x,y', 'it''s', '(z)') AND (b, c) IN ((1, 'p'), (2, 'q'))")
    assert values == [[["1", "-2", "x,y", "it's", "(z)"]], [["1", "p"], ["2", "q"]]]
    assert key.count("\x03") == 2
