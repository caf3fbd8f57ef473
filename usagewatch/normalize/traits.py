"""Shape traits: named facts about a parsed query that rules match on (``traits: [no_where]``).

``analyze(root)`` runs once per statement on a cache *miss*, on the tree as parsed (literal values
still in place), before ``shape.py`` replaces the literals. What it finds is stored with the cached
shape, so a cache hit costs nothing extra - except for the few traits that depend on a literal's
*value* (a LIKE pattern, a date-looking string): those come back as **checks** (trait, literal node,
test); ``shape.py`` turns the node into its slot number, and ``resolve`` decides them from the slot
values, the same way on a fresh parse and on a hit, so both always agree.

The traits (exactly what counts; "level" = one SELECT/UPDATE/DELETE, CTE bodies and subqueries each
being their own level; "comparison" = ``= <> < <= > >= <=> LIKE ILIKE IN BETWEEN``):
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from usagewatch.model import Literal

#: one line each: what makes the trait present (this table is also the documentation ``explain`` shows)
TRAITS: dict[str, str] = {
    "select_star": "SELECT * or t.* in the select list of the statement's outermost query (each UNION "
                   "branch; the query of INSERT/CREATE ... AS SELECT); not count(*), not inside EXISTS or subqueries.",
    "distinct_star": "SELECT DISTINCT * (or DISTINCT t.*) at any level; DISTINCT ON (...) * does not count.",
    "no_where": "a level that reads a table (FROM/JOIN/USING/UPDATE/DELETE target; not a CTE name, subquery, "
                "VALUES or table function) and has no WHERE at all; JOIN ... ON, GROUP BY, HAVING, QUALIFY "
                "and LIMIT are not filters. Those tables go to unfiltered_tables.",
    "cartesian_join": "a join with no ON/USING (comma join, JOIN without ON, explicit CROSS JOIN; not NATURAL, "
                      "UNNEST, LATERAL or a table function) unless the level's WHERE has a comparison whose two "
                      "sides reference the joined table and an earlier one (unqualified columns may be either).",
    "order_by_without_limit": "a statement that returns rows (a query at the top) with ORDER BY on the outermost "
                              "query and no LIMIT/FETCH/TOP; ORDER BY in windows, aggregates and subqueries does not count.",
    "leading_wildcard_like": "LIKE/ILIKE whose pattern is a string literal (or a || / CONCAT chain starting with "
                             "one) that starts with % or _; bound parameters and columns never count.",
    "function_on_filtered_column": "in a WHERE or JOIN ... ON, a comparison with a function or cast of a column "
                                   "on one side: date(x) = .., lower(x) LIKE .., extract(year from x) = .., x::date = .., "
                                   "coalesce(x, 0) > ..; arithmetic (x + 1) does not count.",
    "not_in_subquery": "x NOT IN (SELECT ...) anywhere.",
    "union_not_all": "UNION without ALL (UNION DISTINCT too) anywhere; INTERSECT/EXCEPT do not count.",
    "unbounded_date_range": "at one level's WHERE, a column with a lower bound (> or >= a value without columns) "
                            "and no upper bound (<, <=, =, BETWEEN, IN) on the same column, where the column looks "
                            "like a date (see date_like_column) or a lower bound is a date/time expression "
                            "(now(), current_date, a DATE/TIMESTAMP literal or cast, date arithmetic) or a string "
                            "literal written like a date ('2024-01-31...').",
}

__doc__ = (__doc__ or "") + "\n".join(f"* ``{k}``: {v}" for k, v in TRAITS.items()) + "\n"

_CMP_BINARY: tuple[type, ...] = tuple(
    c for c in (getattr(exp, n, None) for n in (
        "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "NullSafeEQ", "NullSafeNEQ", "Like", "ILike", "SimilarTo",
    )) if isinstance(c, type)
)
_LOWER: dict[type, bool] = {exp.GT: True, exp.GTE: True, exp.LT: False, exp.LTE: False}  # col OP value: lower bound?
_TEMPORAL_FUNCS: tuple[type, ...] = tuple(
    c for c in (getattr(exp, n, None) for n in (
        "CurrentDate", "CurrentTimestamp", "CurrentTime", "CurrentDatetime", "Localtimestamp", "Localtime",
        "DateAdd", "DateSub", "DateTrunc", "TimestampTrunc", "TimestampAdd", "TimestampSub", "DatetimeAdd",
        "DatetimeSub", "TsOrDsToDate", "StrToDate", "StrToTime", "TimeStrToTime", "UnixToTime", "Interval",
    )) if isinstance(c, type)
)
_TEMPORAL_NAMES = {"now", "getdate", "sysdate", "systimestamp", "sysdatetime", "current_timestamp", "current_date",
                   "getutcdate", "utc_timestamp", "today"}
_NOT_CARTESIAN = (exp.Unnest, exp.Lateral)
_DATE_TOKENS = {"date", "time", "ts", "day", "created", "updated", "timestamp", "datetime"}
_TOKEN_SPLIT = re.compile(r"[^a-z]+")
_DATE_VALUE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?:[ T].*)?", re.S)

_NAMES: dict[type, str] = {}
_DISPATCH: dict[type, str] = {
    exp.Select: "level", exp.Update: "level", exp.Delete: "level", exp.Where: "where", exp.Join: "join",
    exp.CTE: "cte", exp.Like: "like", exp.ILike: "like", exp.In: "in", exp.Union: "union", exp.Neg: "neg",
    exp.Between: "cmp", exp.Table: "table", **{c: "cmp" for c in _CMP_BINARY if c not in (exp.Like, exp.ILike)},
}



def date_like_column(name: str) -> bool:
    """A column name that looks like a date/time: one of its words (split at ``_``, digits, ...) is
    date, time, ts, day, created, updated, timestamp or datetime, or ends in date/time/stamp
    (``birthdate``), or the name ends in ``_at`` (``created_at``, ``shipped_at``)."""
    name = name.lower()
    if name.endswith("_at"):
        return True
    for word in _TOKEN_SPLIT.split(name):
        if word in _DATE_TOKENS or word.endswith(("date", "time", "stamp")):
            return True
    return False


def leading_wildcard(value: str | None) -> bool:
    return bool(value) and value[0] in "%_"  # type: ignore[index]


def date_value(value: str | None) -> bool:
    return value is not None and _DATE_VALUE.fullmatch(value.strip()) is not None


TESTS = {"leading_wildcard": leading_wildcard, "date_value": date_value}


@dataclass(slots=True)
class Found:
    """What ``analyze`` found in one statement."""

    traits: set[str] = field(default_factory=set)
    expressions: set[str] = field(default_factory=set)
    unfiltered: set[str] = field(default_factory=set)
    checks: list[tuple[str, exp.Expression, str]] = field(default_factory=list)  # (trait, literal node, test)
    tables: set[str] = field(default_factory=set)  # the tables read or written, CTE names left out


def resolve(traits: frozenset[str], checks: Sequence[tuple[str, int, str]], literals: Sequence[Literal]) -> frozenset[str]:
    """The traits of one run: the shape's fixed ``traits`` plus each check that holds for the slot values."""
    if not checks:
        return traits
    extra = {t for t, slot, test in checks if t not in traits and slot < len(literals) and TESTS[test](literals[slot].value)}
    return traits | extra if extra else traits


def _unparen(node: exp.Expression | None) -> exp.Expression | None:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _walk_level(node: exp.Expression | None) -> Iterator[exp.Expression]:
    """``node`` and its descendants, not entering nested queries (they are levels of their own)."""
    if node is None:
        return
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(c for c in n.iter_expressions() if not isinstance(c, (exp.Query, exp.Subquery)))


def _has_column(node: exp.Expression) -> bool:
    return any(isinstance(n, exp.Column) and not isinstance(n.this, exp.Star) for n in _walk_level(node))


def _qualifiers(node: exp.Expression) -> set[str | None]:
    """The table qualifiers of the columns in ``node`` (None for an unqualified column)."""
    out: set[str | None] = set()
    for n in _walk_level(node):
        if isinstance(n, exp.Column) and not isinstance(n.this, exp.Star):
            out.add(n.table.lower() or None)
    return out


def _table_name(t: exp.Table) -> str | None:
    parts = [p.name.lower() for p in t.parts if p.name]
    return ".".join(parts) if parts and t.name else None


def _source_names(src: exp.Expression) -> set[str]:
    names = {src.alias_or_name.lower()} if src.alias_or_name else set()
    if isinstance(src, exp.Table) and src.name:
        names.add(src.name.lower())
    return names


def _from_sources(node: exp.Expression) -> list[exp.Expression]:
    frm = node.args.get("from_") or node.args.get("from")
    out = [frm.this] if isinstance(frm, exp.From) and frm.this is not None else []
    return out + [j.this for j in node.args.get("joins") or [] if j.this is not None]


def _level_tables(level: exp.Expression) -> list[exp.Expression]:
    if isinstance(level, exp.Select):
        return _from_sources(level)
    out: list[exp.Expression] = [level.this] if isinstance(level.this, exp.Table) else []
    out += _from_sources(level)
    using = level.args.get("using")
    if isinstance(using, list):
        out += using
    return out


def _func_of_column(node: exp.Expression | None) -> bool:
    node = _unparen(node)
    return isinstance(node, exp.Func) and _has_column(node)


def _temporal(node: exp.Expression) -> bool:
    for n in _walk_level(node):
        if isinstance(n, _TEMPORAL_FUNCS):
            return True
        if isinstance(n, exp.Anonymous) and isinstance(n.this, str) and n.this.lower() in _TEMPORAL_NAMES:
            return True
        if isinstance(n, (exp.Cast, exp.TryCast)) and isinstance(n.to, exp.DataType) and n.to.is_type(*exp.DataType.TEMPORAL_TYPES):
            return True
    return False


def _column_key(node: exp.Expression | None) -> tuple[str, str] | None:
    """(qualified name, column name) of a plain column, possibly in parentheses or a cast."""
    while isinstance(node, (exp.Paren, exp.Cast, exp.TryCast)):
        node = node.this
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        name = node.name.lower()
        return (f"{node.table.lower()}.{name}" if node.table else name), name
    return None


def _pattern_literal(node: exp.Expression | None) -> exp.Expression | None:
    """The string literal a LIKE pattern starts with, if it is one (or a concatenation starting with one)."""
    node = _unparen(node)
    while True:
        if isinstance(node, exp.DPipe):
            node = _unparen(node.this)
        elif isinstance(node, exp.Concat) and node.expressions:
            node = _unparen(node.expressions[0])
        else:
            break
    return node if (isinstance(node, exp.Literal) and node.is_string) or _is_bind(node) else None


def _is_bind(node: exp.Expression | None) -> bool:
    """A bind parameter ($1, ?, %s): its value arrives with each execution (JDBC, DBeaver and
    psycopg send LIKE patterns and dates this way), so its trait is checked per value like a literal's."""
    return isinstance(node, exp.Parameter) or (isinstance(node, exp.Placeholder) and node.this is None)


def analyze(root: exp.Expression) -> Found:
    """Traits, expression type names, unfiltered tables and value checks of one parsed statement."""
    found = Found()
    names = found.expressions
    traits = found.traits
    levels: list[exp.Expression] = []
    comparisons: list[exp.Expression] = []
    ctes: set[str] = set()
    tables: list[exp.Table] = []
    stack = [root]
    pop, extend = stack.pop, stack.extend
    dispatch = _DISPATCH
    while stack:
        node = pop()
        cls = type(node)
        name = _NAMES.get(cls)
        if name is None:
            name = _NAMES[cls] = cls.__name__.lower()
        role = dispatch.get(cls)
        if role is None:
            names.add(name)
        elif role == "level":
            names.add(name)
            levels.append(node)
        elif role == "cmp":
            names.add(name)
            comparisons.append(node)
        elif role == "table":
            names.add(name)
            tables.append(node)  # type: ignore[arg-type]
        elif role == "cte":
            names.add(name)
            ctes.add(node.alias_or_name.lower())
        elif role == "like":
            names.add(name)
            comparisons.append(node)
            lit = _pattern_literal(node.expression)
            if lit is not None:
                found.checks.append(("leading_wildcard_like", lit, "leading_wildcard"))
        elif role == "in":
            names.add(name)
            comparisons.append(node)
            if node.args.get("query") is not None and isinstance(_up(node), exp.Not):
                traits.add("not_in_subquery")
        elif role == "union":
            names.add(name)
            if node.args.get("distinct"):
                traits.add("union_not_all")
        elif not isinstance(node.this, exp.Literal):  # "neg": -5 is one literal, as in shape.py
            names.add(name)
        extend(node.iter_expressions())

    for t in tables:  # as shape.py has always named them: CTE names are not tables
        parts = [p.name.lower() for p in t.parts if p.name]
        if parts and t.name and not (len(parts) == 1 and parts[0] in ctes):
            found.tables.add(".".join(parts))
    _top(root, traits)
    by_where: dict[int, list[exp.Expression]] = {}
    for cmp in comparisons:
        where = _condition_of(cmp)
        if where is None:
            continue
        if "function_on_filtered_column" not in traits and (
            _func_of_column(cmp.this) or (isinstance(cmp, _CMP_BINARY) and _func_of_column(cmp.expression))
        ):
            traits.add("function_on_filtered_column")
        if isinstance(where, exp.Where):
            by_where.setdefault(id(where), []).append(cmp)
    for level in levels:
        _level(level, ctes, found, by_where)
    return found


def _condition_of(node: exp.Expression) -> exp.Expr | None:
    """The WHERE (or the JOIN whose ON) ``node`` is part of at its own level, or None (select list,
    HAVING, QUALIFY, ...)."""
    child: exp.Expr = node
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.Where):
            return parent
        if isinstance(parent, exp.Join):
            return parent if child is parent.args.get("on") else None
        if isinstance(parent, (exp.Query, exp.Subquery)):
            return None
        child, parent = parent, parent.parent
    return None


def _up(node: exp.Expression) -> exp.Expr | None:
    parent = node.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    return parent


def _top(root: exp.Expression, traits: set[str]) -> None:
    query: exp.Expr | None = root if isinstance(root, exp.Query) else None
    if query is None and isinstance(root, (exp.Insert, exp.Create)) and isinstance(root.expression, exp.Query):
        query = root.expression
    if query is None:
        return
    if query is root and query.args.get("order") is not None and query.args.get("limit") is None \
            and query.args.get("fetch") is None:
        traits.add("order_by_without_limit")
    stack: list[exp.Expr] = [query]
    while stack:
        q = stack.pop()
        if isinstance(q, exp.Subquery):
            stack.append(q.this)
        elif isinstance(q, exp.SetOperation):
            stack += [q.this, q.expression]
        elif isinstance(q, exp.Select) and any(_is_star(e) for e in q.expressions):
            traits.add("select_star")


def _is_star(e: exp.Expression) -> bool:
    return isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))


def _level(level: exp.Expression, ctes: set[str], found: Found, by_where: dict[int, list[exp.Expression]]) -> None:
    traits = found.traits
    where = level.args.get("where")
    cond = where.this if isinstance(where, exp.Where) else None
    if isinstance(level, exp.Select):
        distinct = level.args.get("distinct")
        if isinstance(distinct, exp.Distinct) and distinct.args.get("on") is None and any(_is_star(e) for e in level.expressions):
            traits.add("distinct_star")
        _cartesian(level, cond, traits)
    if cond is None:
        for src in _level_tables(level):
            if isinstance(src, exp.Table):
                name = _table_name(src)
                if name and not ("." not in name and name in ctes):
                    found.unfiltered.add(name)
                    traits.add("no_where")
        return
    _date_range(by_where.get(id(where), ()), found)


def _cartesian(select: exp.Select, cond: exp.Expression | None, traits: set[str]) -> None:
    joins = select.args.get("joins") or []
    if not joins or "cartesian_join" in traits:
        return
    sources = _from_sources(select)
    left: set[str] = set()
    if sources and len(sources) > len(joins):
        left |= _source_names(sources[0])
    for join in joins:
        right = join.this
        names = _source_names(right) if right is not None else set()
        conditionless = join.args.get("on") is None and not join.args.get("using") \
            and str(join.args.get("method") or "").upper() != "NATURAL"
        lateral = isinstance(right, _NOT_CARTESIAN) or (isinstance(right, exp.Table) and not right.name)
        if conditionless and not lateral and not _linked(cond, names, left):
            traits.add("cartesian_join")
            return
        left |= names


def _linked(cond: exp.Expression | None, right: set[str], left: set[str]) -> bool:
    """Whether ``cond`` holds a comparison with one side on ``right`` and the other on ``left``."""
    if cond is None:
        return False
    for n in _walk_level(cond):
        if isinstance(n, _CMP_BINARY) and n.this is not None and n.expression is not None:
            a, b = _qualifiers(n.this), _qualifiers(n.expression)
            if not a or not b:
                continue
            a_right, a_left = None in a or bool(a & right), None in a or bool(a & left)
            b_right, b_left = None in b or bool(b & right), None in b or bool(b & left)
            if (a_right and b_left) or (a_left and b_right):
                return True
    return False


def _date_range(comparisons: Sequence[exp.Expression], found: Found) -> None:
    lower: dict[str, list[exp.Expression]] = {}
    upper: set[str] = set()
    column_names: dict[str, str] = {}
    for n in comparisons:
        if isinstance(n, (exp.Between, exp.In)) or type(n) is exp.EQ:
            key = _column_key(n.this)
            if key is None and type(n) is exp.EQ:
                key = _column_key(n.expression)
            if key:
                upper.add(key[0])
            continue
        is_lower = _LOWER.get(type(n))
        if is_lower is None:
            continue
        for col_side, value_side, lower_bound in ((n.this, n.expression, is_lower), (n.expression, n.this, not is_lower)):
            key = _column_key(col_side)
            if key is None or value_side is None or _has_column(value_side):
                continue
            column_names[key[0]] = key[1]
            if lower_bound:
                lower.setdefault(key[0], []).append(value_side)
            else:
                upper.add(key[0])
    for col, values in lower.items():
        if col in upper:
            continue
        if date_like_column(column_names[col]) or any(_temporal(v) for v in values):
            found.traits.add("unbounded_date_range")
            return
        for v in values:
            v = _unparen(v)  # type: ignore[assignment]
            if (isinstance(v, exp.Literal) and v.is_string) or _is_bind(v):
                found.checks.append(("unbounded_date_range", v, "date_value"))
