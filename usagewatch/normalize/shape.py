"""The sqlglot walk: from one parsed statement list to its shape.

It owns what the rest of the product sees of a parsed query: literal values replaced by ``?``
(normalized SQL, fingerprint), the slots in their stable order with the column each value is
compared with or assigned to, the statement kind and the tables.

Conventions (they are the product's contract, so they live here in one place):

* Every ``Literal`` (string or number, a negative number counts as one literal ``-5``) and every bind
  placeholder (``$1``, ``?``, ``%s``) is one slot. ``TRUE``/``FALSE``/``NULL`` are structure, so are
  literals inside type parameters (``VARCHAR(10)``) and anything sqlglot turned into structure
  (``DATE_TRUNC('day', ..)`` -> unit DAY, JSON paths).
* An ``IN (...)`` list or ``ARRAY[...]`` made only of literals/placeholders is ONE slot rendered
  ``?...``; its value joins the items with "," in the order written (not sorted: the order is the
  user's, and sorting would hide nothing a rule needs). Multi-row ``VALUES`` made only of literals
  collapse to one row of slots, one per column, each joining that column's values over the rows.
  So list length / row count never changes the fingerprint.
* Slots are numbered in text order of the literals (source offsets from the tokenizer; nodes without
  an offset take the position of the literal before them in tree order), so ``?`` number k in
  ``normalized_sql`` is slot k for ordinary queries, and two runs of one shape align slot by slot.
* ``$n`` takes ``params[n-1]``; positional ``?``/``%s`` take params in tree order (text order except
  for odd cases like MySQL ``LIMIT ?, ?``); named ``:x`` placeholders get None.
* Unquoted identifiers are lower-cased (they are case-insensitive in SQL), quoted ones kept, so
  ``SELECT A FROM T`` and ``select a from t`` share a fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from usagewatch.normalize import traits as traits_mod
from usagewatch.normalize.scan import digest

_LIST_MARK = "?..."
_COMPARISONS: tuple[type, ...] = tuple(
    c for c in (getattr(exp, n, None) for n in (
        "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Like", "ILike", "NullSafeEQ", "NullSafeNEQ",
        "SimilarTo", "RegexpLike", "RegexpILike", "Glob", "LikeAny", "ILikeAny", "PropertyEQ",
    )) if isinstance(c, type)
)
_CLIMB = (exp.Neg, exp.Paren, exp.Cast, exp.TryCast, exp.Array, exp.Any, exp.All)
_UNWRAP = (exp.Paren, exp.Cast, exp.TryCast, exp.Lower, exp.Upper, exp.Trim)
_KINDS: tuple[tuple[type, str], ...] = (
    (exp.Query, "select"), (exp.Insert, "insert"), (exp.Update, "update"), (exp.Delete, "delete"),
    (exp.Merge, "merge"), (exp.Create, "create"), (exp.Drop, "drop"), (exp.Alter, "alter"),
    (exp.Set, "set"), (exp.Show, "show"), (exp.Transaction, "transaction"), (exp.Commit, "transaction"),
    (exp.Rollback, "transaction"),
)


@dataclass(slots=True)
class Member:
    """One value in a slot. ``start`` is the source offset of the literal token (None if sqlglot made
    the node up); ``param`` the 0-based bind index; ``const`` True if the value must not be taken
    from the scan (its token was reinterpreted by the parser, e.g. an INTERVAL string)."""

    value: str | None
    start: int | None = None
    neg: bool = False
    param: int | None = None
    const: bool = False


@dataclass(slots=True)
class Slot:
    members: list[Member]
    column: str | None
    is_list: bool
    order: tuple[int, int] = (0, 0)
    values_group: bool = False  # a collapsed multi-row VALUES column
    in_list: bool = False  # a collapsed IN (...) list (counts for ``in_list_max``)


@dataclass(slots=True)
class Shape:
    fingerprint: str
    normalized_sql: str
    kind: str
    tables: tuple[str, ...]
    slots: list[Slot] = field(default_factory=list)
    traits: frozenset[str] = frozenset()  # the traits that hold whatever the literal values
    checks: tuple[tuple[str, int, str], ...] = ()  # (trait, slot, test): traits decided by a slot's value
    expressions: frozenset[str] = frozenset()
    unfiltered: tuple[str, ...] = ()
    in_list_fixed: int = 0  # longest IN list that is not one slot (mixed items: its length is structure)
    cacheable: bool = True

    def in_list_max(self) -> int:
        return max([self.in_list_fixed, *(len(s.members) for s in self.slots if s.in_list)])


def _placeholder(text: str = "?") -> exp.Expression:
    return exp.Var(this=text)


def _is_value(node: exp.Expression) -> bool:
    if isinstance(node, exp.Literal):
        return True
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    return isinstance(node, exp.Placeholder) or (
        isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal) and node.this.is_int
    )


# What ``_Walker.visit`` does with a node, by its class (the isinstance tests it has always made, in
# that order, made once per class): most nodes are none of these and cost one dict lookup.
_OTHER, _IDENT, _SKIP, _VALUE, _MAYBE_VALUE, _INTERVAL, _LIST, _VALUES, _ANONYMOUS = range(9)
_ROLES: dict[type, int] = {}


def _role(cls: type, values: bool = True) -> int:
    """``values``: the value tests too (False: what the node is if ``_is_value`` said no)."""
    if issubclass(cls, exp.Identifier):
        return _IDENT
    if issubclass(cls, exp.DataType):
        return _SKIP
    if values and (issubclass(cls, exp.Literal) or (issubclass(cls, exp.Placeholder) and not issubclass(cls, exp.Neg))):
        return _VALUE
    if values and issubclass(cls, (exp.Neg, exp.Parameter)):
        return _MAYBE_VALUE  # a value only with a (non-string / integer) literal inside: see _is_value
    if issubclass(cls, exp.Interval):
        return _INTERVAL
    if issubclass(cls, (exp.In, exp.Array)):
        return _LIST
    if issubclass(cls, exp.Values):
        return _VALUES
    if issubclass(cls, exp.Anonymous):
        return _ANONYMOUS
    return _OTHER


def _name(node: exp.Expression | None) -> str | None:
    while isinstance(node, _UNWRAP):
        node = node.this
    if isinstance(node, exp.Column):
        ident = node.args.get("this")
        if isinstance(ident, exp.Identifier):
            return ident.this if ident.quoted else ident.this.lower()
    return None


def column_of(node: exp.Expression) -> str | None:
    """The column ``node`` (a value) is compared with or assigned to, or None."""
    child, parent = node, node.parent
    while isinstance(parent, _CLIMB):
        child, parent = parent, parent.parent
    if parent is None:
        return None
    if isinstance(parent, (exp.In, exp.Between)):
        return None if child is parent.this else _name(parent.this)
    if isinstance(parent, _COMPARISONS):
        return _name(parent.this if child is parent.args.get("expression") else parent.args.get("expression"))
    if isinstance(parent, exp.Tuple) and isinstance(parent.parent, exp.Values):
        return _insert_column(parent.parent, child.index)
    return None


def _insert_column(values: exp.Values, index: int | None) -> str | None:
    insert = values.parent
    if not isinstance(insert, exp.Insert) or index is None:
        return None
    schema = insert.this
    if isinstance(schema, exp.Schema) and index < len(schema.expressions):
        col = schema.expressions[index]
        if isinstance(col, exp.Identifier):
            return col.this if col.quoted else col.this.lower()
        return _name(col)
    return None


class _Walker:
    def __init__(self, params: tuple[str | None, ...]):
        self.params = params
        self.positional = 0
        self.slots: list[Slot] = []
        self.dfs = 0
        self.last_pos = -1
        self.watch: dict[int, Slot | None] = {}  # id(literal node) a trait check needs -> its slot
        self.in_list_fixed = 0

    def member(self, node: exp.Expression, const: bool = False) -> Member:
        if isinstance(node, exp.Neg):
            lit = node.this
            return Member("-" + lit.this, lit.meta.get("start"), True, None, const)
        if isinstance(node, exp.Literal):
            return Member(node.this, node.meta.get("start"), False, None, const)
        if isinstance(node, exp.Parameter):
            n = int(node.this.this) - 1
            return Member(self._param(n), None, False, n, False)
        if node.this is not None:  # named placeholder :x
            return Member(None, None, False, None, True)
        n = self.positional
        self.positional += 1
        return Member(self._param(n), None, False, n, False)

    def _param(self, n: int) -> str | None:
        return self.params[n] if 0 <= n < len(self.params) else None

    def add(self, members: list[Member], column: str | None, is_list: bool, group: bool = False,
            in_list: bool = False) -> Slot:
        starts = [m.start for m in members if m.start is not None]
        if starts:
            self.last_pos = min(starts)
        self.dfs += 1
        slot = Slot(members, column, is_list, (self.last_pos, self.dfs), group, in_list)
        self.slots.append(slot)
        return slot

    def visit(self, node: exp.Expression) -> bool:
        """Handle ``node``; True if its subtree is done."""
        cls = node.__class__
        role = _ROLES.get(cls)
        if role is None:
            role = _ROLES[cls] = _role(cls)
        if role == _OTHER:
            return False
        if role == _IDENT:
            if not node.quoted and isinstance(node.this, str):  # type: ignore[attr-defined]
                node.set("this", node.this.lower())
            return True
        if role == _SKIP:
            return True
        if role == _VALUE or (role == _MAYBE_VALUE and _is_value(node)):
            slot = self.add([self.member(node)], column_of(node), False)
            if id(node) in self.watch:
                self.watch[id(node)] = slot
            node.replace(_placeholder())
            return True
        if role == _MAYBE_VALUE:
            role = _role(cls, values=False)
        if role == _INTERVAL:  # sqlglot reinterprets the string: '1 day' -> '1' DAY
            for lit in list(node.find_all(exp.Literal)):
                self.add([self.member(lit, const=True)], column_of(node), False)
                lit.replace(_placeholder())
            return True
        if role == _LIST:
            items = node.expressions
            if items and all(_is_value(i) for i in items):
                self.add([self.member(i) for i in items], column_of(items[0]), True, in_list=isinstance(node, exp.In))
                node.set("expressions", [_placeholder(_LIST_MARK)])
            elif isinstance(node, exp.In) and len(items) > self.in_list_fixed:
                self.in_list_fixed = len(items)
        elif role == _VALUES:
            self._values(node)  # type: ignore[arg-type]
        elif role == _ANONYMOUS and isinstance(node.this, str):
            node.set("this", node.this.lower())
        return False

    def _values(self, node: exp.Values) -> None:
        rows = node.expressions
        if not rows or not all(isinstance(r, exp.Tuple) for r in rows):
            return
        width = len(rows[0].expressions)
        if not width or any(len(r.expressions) != width or not all(_is_value(i) for i in r.expressions) for r in rows):
            return
        for j in range(width):
            members = [self.member(r.expressions[j]) for r in rows]
            self.add(members, _insert_column(node, j), True, group=True)
        node.set("expressions", [exp.Tuple(expressions=[_placeholder() for _ in range(width)])])


def kind_of(root: exp.Expression) -> str:
    for cls, kind in _KINDS:
        if isinstance(root, cls):
            return kind
    return "other"


def build(statements: Sequence[exp.Expression], generate: Callable[[exp.Expression], str],
          params: tuple[str | None, ...]) -> Shape:
    """The shape of parsed ``statements`` (mutated in place: literals become placeholders);
    ``generate`` renders one statement as SQL (without comments)."""
    walker = _Walker(params)
    tables: set[str] = set()
    sqls: list[str] = []
    traits: set[str] = set()
    expressions: set[str] = set()
    unfiltered: set[str] = set()
    pending: list[tuple[str, exp.Expression, str]] = []
    for root in statements:
        found = traits_mod.analyze(root)  # before the walk: it needs the literal values
        tables |= found.tables
        traits |= found.traits
        expressions |= found.expressions
        unfiltered |= found.unfiltered
        pending += found.checks
        for _, node, _ in found.checks:
            walker.watch[id(node)] = None
        stack = [root]
        while stack:
            node = stack.pop()
            if not walker.visit(node):
                stack.extend(reversed(list(node.iter_expressions())))
        sqls.append(generate(root))
    sql = "; ".join(sqls)
    walker.slots.sort(key=lambda s: s.order)
    index = {id(slot): i for i, slot in enumerate(walker.slots)}
    checks: list[tuple[str, int, str]] = []
    cacheable = True
    for trait, node, test in pending:
        slot = walker.watch.get(id(node))
        if slot is not None and not slot.is_list:  # a literal's or a bind parameter's value
            checks.append((trait, index[id(slot)], test))
        elif node.is_string and traits_mod.TESTS[test](node.this):  # not a slot of its own: decide now, never cache
            traits.add(trait)
            cacheable = False
    return Shape(digest(sql), sql, kind_of(statements[0]), tuple(sorted(tables)), walker.slots,
                 frozenset(traits), tuple(sorted(set(checks))), frozenset(expressions), tuple(sorted(unfiltered)),
                 walker.in_list_fixed, cacheable)
