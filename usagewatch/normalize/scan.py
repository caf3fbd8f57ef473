"""The cheap literal-stripping scan: one compiled regex over the raw SQL text, no parser.

It owns two jobs:

* the **cache key** (`Scanner.scan`): the text with every string/number literal replaced by a marker,
  comments dropped and whitespace collapsed, plus the literal values it removed ("items") with their
  character offsets. Runs of a query that differ only in literal values get the same key, so the
  expensive sqlglot parse happens once per shape (see ``cache.py`` for how the items are mapped to
  slots and when a key is refused).
* the **token fingerprint** (`fallback`) for SQL that sqlglot cannot parse: the same stripped text,
  keywords lower-cased, hashed.

A parenthesised list made only of literals - ``(1, 2, 3)`` or a run of them ``(1,'a'),(2,'b')`` as in
multi-row ``VALUES`` - becomes ONE item (a "group": a list of rows), so an ``IN`` list of 3 or of 300
IDs gives one key. Whether a group really is an IN list or VALUES rows is only known after the parse;
``cache.py`` records that per key.

Why the scan is deliberately *conservative*: a key must never make two texts look alike that sqlglot
would parse into different trees. So the scan only recognises the plainest literal forms and keeps
everything else verbatim in the key (``1e5x``, ``0x1F``, ``$1``, ``E'..'`` prefixes, ...), and it
refuses to produce a usable key at all (``Scan.safe`` False -> parse every time) when the text holds
constructs whose quoting rules a regex cannot follow reliably: backslashes (escape rules differ per
dialect and setting), dollar-quoted strings and triple-quoted strings.

Two entry points share the one regex, so they always give the same key and the same items in the same
order: ``Scanner.quick`` (every call: the key and the bare values, no offsets; a group's values come
from one ``findall`` instead of one Python step per value) and ``Scanner.scan`` (only when a new shape
is stored: every value with its character offset, which ``cache.build_entry`` matches to the parse).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

from usagewatch.model import Literal

NUM_MARK = "\x01"
STR_MARK = "\x02"
GROUP_MARK = "\x03"

# An item is either an atom ``(start, value)`` or a group ``[[(start, value), ...], ...]`` (rows).
Atom = tuple[int, str]
Group = list[list[Atom]]
Item = Atom | Group
# ``quick`` items: the same without offsets, an atom's value or a group's rows of values.
Value = str | list[list[str]]

_NUM = r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
_UNSAFE = re.compile(r"\\|\$[A-Za-z_]*\$|'''|\"\"\"")
_DOLLAR_QUOTE = re.compile(r"\$[A-Za-z_]*\$")
_WORD = re.compile(r"\"(?:[^\"]|\"\")*\"|`[^`]*`|[A-Za-z_][\w$]*")
_PARAM = re.compile(r"\$(\d+)")


def _quote_re(q: str, doubled: bool = True) -> str:
    """A quoted token; ``doubled``: a doubled quote inside is an escaped quote (not two tokens)."""
    e = re.escape(q)
    return f"{e}(?:[^{e}]|{e}{e})*{e}" if doubled else f"{e}[^{e}]*{e}"


@dataclass(slots=True)
class Scan:
    """What the scan saw: the cache ``key``, the literal ``items`` in text order, and ``safe``."""

    key: str
    items: list[Item]
    safe: bool


class Scanner:
    """A literal-stripping scanner for one dialect's quoting and comment rules.

    The rules come from sqlglot's own tokenizer class for the dialect (quote characters, identifier
    delimiters, comment starts), so the scan and the parser agree on what is a string, a quoted
    identifier or a comment.
    """

    def __init__(
        self, quotes: Sequence[str], identifiers: Sequence[str], comments: Sequence[str], escapes: Sequence[str] = ("'",)
    ):
        str_quotes = [q for q in quotes if len(q) == 1]
        id_quotes = [q for q in identifiers if len(q) == 1 and q not in str_quotes]
        string = "|".join(_quote_re(q, q in escapes) for q in str_quotes) or r"(?!x)x"
        line_comments = sorted({c for c in comments if c not in ("/*",)}, key=len, reverse=True)
        atom = rf"(?:-?{_NUM}|{string})"
        row = rf"\(\s*{atom}(?:\s*,\s*{atom})*\s*\)"
        self._strings = str_quotes
        # Every token (c: comment, g: group of rows, s: string, i: quoted identifier, n: number) starts
        # with one of a few characters. The pattern consumes that character first, with one class, and
        # each alternative then checks (lookbehind) which one it was before matching the rest; an empty
        # group at the end of each alternative names the token kind (``lastgroup``). Leading with a
        # plain class lets the regex engine skip the (many) characters that cannot start a token in its
        # own fast loop instead of trying the alternatives there: ~2.4x faster than a lookahead
        # ``(?=[...])`` in front of whole-token alternatives, with the same matches
        # (``tests/normalize/test_scan.py`` checks it against that plainer form).
        starts = {c[0] for c in line_comments} | {"/", "("} | set(str_quotes) | set(id_quotes)
        first = "".join(re.escape(c) for c in sorted(starts)) + "0-9"

        def after(c: str) -> str:
            return f"(?<={re.escape(c)})"

        comment_rest = "|".join([after(c[0]) + re.escape(c[1:]) + r"[^\n]*" for c in line_comments]
                                + [after("/") + r"\*(?!\+).*?\*/"])
        string_rest = "|".join(after(q) + _quote_re(q, q in escapes)[len(re.escape(q)):] for q in str_quotes) or r"(?!x)x"
        ident_rest = "|".join(after(q) + _quote_re(q)[len(re.escape(q)):] for q in id_quotes) or r"(?!x)x"
        row_rest = rf"\s*{atom}(?:\s*,\s*{atom})*\s*\)"
        self._main = re.compile(
            rf"[{first}](?:(?:{comment_rest})(?P<c>)|{after('(')}{row_rest}(?:\s*,\s*{row})*(?P<g>)"
            rf"|(?:{string_rest})(?P<s>)|(?:{ident_rest})(?P<i>)"
            rf"|(?<![\w$.][0-9])(?<=[0-9])\d*(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])(?P<n>))",
            re.S,
        )
        self._inner = re.compile(rf"(?P<o>\()|(?P<m>-?)(?P<n>{_NUM})|(?P<s>{string})")
        # the same tokens as ``_inner`` as bare strings: "(" opens a row, a string keeps its quotes
        self._tokens = re.compile(rf"\(|-?{_NUM}|{string}")
        self._quote_chars = "".join(str_quotes)

    @classmethod
    def for_tokenizer(cls, tokenizer: type) -> Scanner:
        quotes = [q if isinstance(q, str) else q[0] for q in getattr(tokenizer, "QUOTES", ["'"])]
        idents = [i if isinstance(i, str) else i[0] for i in getattr(tokenizer, "IDENTIFIERS", ['"'])]
        comments = [c if isinstance(c, str) else c[0] for c in getattr(tokenizer, "COMMENTS", ["--"])]
        escapes = [e for e in getattr(tokenizer, "STRING_ESCAPES", ["'"]) if isinstance(e, str)]
        return cls(quotes, idents, comments, escapes)

    @staticmethod
    def _unquote(text: str) -> str:
        q = text[0]
        return text[1:-1].replace(q + q, q)  # no doubled quote survives the regex unless it is an escape

    def _group(self, sql: str, start: int, end: int) -> Group:
        rows: Group = []
        unquote = self._unquote
        for m in self._inner.finditer(sql, start, end):
            if m.lastgroup == "o":
                rows.append([])
            elif m.lastgroup == "s":
                rows[-1].append((m.start(), unquote(m.group())))
            else:
                rows[-1].append((m.start("n"), m.group("m") + m.group("n")))
        return rows

    def scan(self, sql: str) -> Scan:
        """The key and literal items of ``sql``; never raises."""
        items: list[Item] = []
        append = items.append
        unquote = self._unquote

        def repl(m: re.Match[str]) -> str:
            kind = m.lastgroup
            if kind == "n":
                append((m.start(), m.group()))
                return NUM_MARK
            if kind == "s":
                append((m.start(), unquote(m.group())))
                return STR_MARK
            if kind == "g":
                append(self._group(sql, m.start(), m.end()))
                return GROUP_MARK
            if kind == "c":
                return " "
            text = m.group()  # quoted identifier: verbatim, but whitespace inside must survive split()
            return re.sub(r"\s", lambda w: f"\x00{ord(w.group())}\x00", text) if " " in text or "\t" in text or "\n" in text else text

        key = " ".join(self._main.sub(repl, sql).split())
        return Scan(key, items, _UNSAFE.search(sql) is None)

    def located(self, sql: str) -> list[Item]:
        """``scan``'s items alone (each value with its offset), without making the key again."""
        items: list[Item] = []
        append = items.append
        unquote = self._unquote
        for m in self._main.finditer(sql):
            kind = m.lastgroup
            if kind == "n":
                append((m.start(), m[0]))
            elif kind == "s":
                append((m.start(), unquote(m[0])))
            elif kind == "g":
                append(self._group(sql, m.start(), m.end()))
        return items

    def _rows(self, text: str) -> list[list[str]]:
        """A group's rows of values (as ``_group`` gives them, without the offsets)."""
        quotes = self._quote_chars
        if text.count("(") == 1 and text.isascii() and text.isprintable() and (
                quotes not in text if len(quotes) == 1 else not any(q in text for q in quotes)):
            # one row of numbers (the common IN list of ids): the regex matched "(", numbers and
            # commas with spaces around them only (printable ASCII has no other whitespace)
            return [text[1:-1].replace(" ", "").split(",")]
        tokens = self._tokens.findall(text)
        if tokens.count("(") == 1:  # one row, the common IN list: tokens[0] is its "("
            del tokens[0]
            if len(quotes) == 1:
                if quotes in text:
                    pair = quotes + quotes
                    tokens = [t[1:-1].replace(pair, quotes) if t[0] == quotes else t for t in tokens]
            elif any(q in text for q in quotes):
                tokens = [t[1:-1].replace(t[0] + t[0], t[0]) if t[0] in quotes else t for t in tokens]
            return [tokens]
        rows: list[list[str]] = []
        row: list[str] = []
        for t in tokens:
            if t == "(":
                row = []
                rows.append(row)
            elif t[0] in quotes:
                row.append(t[1:-1].replace(t[0] + t[0], t[0]))
            else:
                row.append(t)
        return rows

    def quick(self, sql: str) -> tuple[str, list[Value], bool]:
        """``scan`` without the offsets: (key, values, safe), the key and the item order exactly
        ``scan``'s. What every ``normalize`` call runs, so it is kept lean."""
        values: list[Value] = []
        append = values.append
        rows = self._rows

        def repl(m: re.Match[str]) -> str:
            kind = m.lastgroup
            if kind == "n":
                append(m[0])
                return NUM_MARK
            if kind == "s":
                text = m[0]
                q = text[0]
                append(text[1:-1].replace(q + q, q))
                return STR_MARK
            if kind == "g":
                append(rows(m[0]))
                return GROUP_MARK
            if kind == "c":
                return " "
            text = m[0]  # quoted identifier, as in ``scan``
            return re.sub(r"\s", lambda w: f"\x00{ord(w.group())}\x00", text) if " " in text or "\t" in text or "\n" in text else text

        key = self._main.sub(repl, sql)
        # collapse whitespace as ``scan`` does, unless it is collapsed already: printable ASCII has no
        # whitespace but " ", so then only doubled, leading or trailing spaces need the split (~1/5)
        printable = sql.isascii() and sql.isprintable()
        if not (printable and "  " not in key and key[:1] != " " and key[-1:] != " "):
            key = " ".join(key.split())
        safe = "\\" not in sql and "'''" not in sql and '"""' not in sql and ("$" not in sql or _DOLLAR_QUOTE.search(sql) is None)
        if safe and not printable:
            # a text holding the marks the key uses for values could share a key with another
            # text: never served from (or stored in) the cache
            safe = NUM_MARK not in sql and STR_MARK not in sql and GROUP_MARK not in sql
        return key, values, safe


def bare(items: Sequence[Item]) -> list[Value]:
    """``scan`` items without their offsets: what ``quick`` gives for the same text."""
    return [item[1] if isinstance(item, tuple) else [[v for _, v in row] for row in item] for item in items]


def digest(text: str) -> str:
    """A short hex fingerprint of ``text``."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


_TRANSACTION_WORDS = {"begin", "start", "commit", "rollback", "end", "abort", "savepoint", "release"}
_KIND_WORDS = {
    "select": "select", "with": "select", "values": "select", "table": "select",
    "insert": "insert", "update": "update", "delete": "delete", "merge": "merge",
    "create": "create", "drop": "drop", "alter": "alter", "set": "set", "show": "show",
}


def kind_from_word(word: str) -> str:
    """Statement kind from the first keyword (for text sqlglot could not parse)."""
    word = word.lower()
    if word in _TRANSACTION_WORDS:
        return "transaction"
    return _KIND_WORDS.get(word, "other")


def join_values(values: Sequence[str | None]) -> str | None:
    """One slot's value from the values of its members (an IN list or a VALUES column): a single
    member keeps its value (None for a NULL bind value); several are joined with "," in the order
    written, NULL binds spelled NULL."""
    if len(values) == 1:
        return values[0]
    return ",".join("NULL" if v is None else v for v in values)


def fallback(key: str, items: Sequence[Value], params: Sequence[str | None]) -> tuple[str, str, str, tuple[Literal, ...]]:
    """Token-based (fingerprint, normalized text, kind, literals) for SQL the parser refused, from
    ``quick``'s key and values.

    Literals are the scanned items in text order (a group is one slot, its rows flattened), then one
    slot per ``$n`` bind placeholder in order of appearance; none has a column.
    """
    text = key.replace(NUM_MARK, "?").replace(STR_MARK, "?").replace(GROUP_MARK, "(?...)")
    text = _WORD.sub(lambda m: m.group() if m.group()[0] in "\"`" else m.group().lower(), text)
    first = _WORD.search(text)
    kind = kind_from_word(first.group()) if first and first.group()[0] not in "\"`" else "other"
    values: list[str | None] = []
    for item in items:
        if isinstance(item, str):
            values.append(item)
        else:
            values.append(join_values([v for row in item for v in row]))
    for m in _PARAM.finditer(key):
        n = int(m.group(1))
        values.append(params[n - 1] if 0 < n <= len(params) else None)
    literals = tuple(Literal(i, v, None) for i, v in enumerate(values))
    return digest("raw\0" + text), text, kind, literals
