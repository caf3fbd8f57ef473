"""The shape cache: scan key -> what a parse of that shape said, plus how to refill its slots.

Why this is safe. Texts with one scan key have the same tokens except literal values, so sqlglot
builds the same tree for them - with three exceptions this module has to guard against:

1. a literal the parser *reinterprets* (``INTERVAL '1 day'`` -> ``'1'`` + unit, ``DATE_TRUNC('day')``
   -> unit DAY, JSON paths, time formats, type parameters ``VARCHAR(10)``): its value decides the tree.
   Every scanned literal that no slot takes its value from becomes a **constraint**: a later text hits
   only if that literal has exactly the value seen at parse time; otherwise it is parsed.
2. a scanned group (a parenthesised literal list) is an IN list (any length, one row), multi-row VALUES
   (any number of rows of a fixed width) or something else (``f(1, 2)``): its **signature** is checked.
3. the scan and the parse disagree (a literal the scan did not see where the parser found one, values
   that differ, a scanned literal used twice ...): the shape is stored as **not cacheable** and
   parsed every time. Never wrong, only slower.

How it is built. Each slot member found by the parse carries the source offset of its token; the
scan items carry theirs. Members are matched to items by offset, and the *values* are compared too;
any mismatch means case 3. The resulting recipe says, per slot, which scan item(s) (or which bind
parameter) its value comes from, so a hit rebuilds exactly the literals a fresh parse would give.
The recipes index the items by position only, so a hit (``fill``) takes its values from
``Scanner.quick``, which gives the same items without the offsets; the entry is only stored when the
two scans of the text agree.
"""

from __future__ import annotations

import dataclasses
import types
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

from usagewatch.model import Literal, NormalizedQuery
from usagewatch.normalize.scan import Item, Value, join_values
from usagewatch.normalize.shape import Shape
from usagewatch.normalize.traits import resolve

# Recipe members: ("a", item, row, col, neg) scanned atom (row -1 for a plain atom); ("p", index) bind
# parameter; ("c", value) constant; ("g", item) a whole one-row group; ("v", item, col) a group column.
Ref = tuple
UNCACHEABLE = object()


@dataclass(slots=True, frozen=True)
class Entry:
    """One cached shape: a template NormalizedQuery minus literals, and how to fill them from the
    values of ``Scanner.quick`` (items by index: an atom's value, or a group's rows of values).

    The traits, expression types and unfiltered tables are the shape's (computed once at parse time);
    ``checks`` are the traits a slot's value decides, and ``in_list_max`` is ``in_list_base`` or the
    member count of the longest IN-list slot as filled, so it follows the length of the list scanned.

    The slot recipes are sorted by how a slot gets its value, one tuple per way, each member ending in
    (column, slot number), so a hit runs a few tight loops and no per-slot dispatch: ``atoms``
    (item, neg, ...), ``params`` (bind index, ...), ``lists`` (item, counts for in_list_max, ...): a
    whole one-row group, ``columns`` (item, col, ...): one column of multi-row VALUES, ``cells``
    (item, row, col, ...): one value of a group whose arity is structure, ``mixed`` (refs, ...): a list
    slot made of several refs, and ``consts``: ready Literals (a value the parse decided).
    """

    fingerprint: str
    normalized_sql: str
    kind: str
    tables: tuple[str, ...]
    size: int  # number of slots
    atoms: tuple[tuple[int, bool, str | None, int], ...]
    params: tuple[tuple[int, str | None, int], ...]
    lists: tuple[tuple[int, bool, str | None, int], ...]
    columns: tuple[tuple[int, int, str | None, int], ...]
    cells: tuple[tuple[int, int, int, str | None, int], ...]
    mixed: tuple[tuple[tuple[Ref, ...], str | None, int], ...]
    consts: tuple[Literal, ...]
    # constraints on the scanned values, checked before anything is built
    one_row: tuple[int, ...]  # groups that must have exactly one row (an IN list of any length)
    widths: tuple[tuple[int, int], ...]  # (item, width): multi-row VALUES, every row this wide
    exact: tuple[tuple[int, tuple[int, ...]], ...]  # (item, row widths): a group whose arity is structure
    fixed: tuple[tuple[int, str], ...]  # (item, value): an atom whose value decides the tree
    fixed_cells: tuple[tuple[int, int, int, str], ...]  # (item, row, col, value): the same in a group
    traits: frozenset[str] = frozenset()
    checks: tuple[tuple[str, int, str], ...] = ()
    expressions: frozenset[str] = frozenset()
    unfiltered: tuple[str, ...] = ()
    in_list_base: int = 0  # in_list_fixed and the member count of fixed-length IN-list slots


def _plain_slots(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``cls`` is a slots dataclass whose fields are exactly ``names``, each stored in a slot,
    with nothing else run on construction: then storing each field through its slot builds the same
    instance as ``cls(...)``."""
    fields = dataclasses.fields(cls)
    return tuple(f.name for f in fields) == names and "__slots__" in cls.__dict__ \
        and not hasattr(cls, "__post_init__") \
        and all(isinstance(cls.__dict__.get(name), types.MemberDescriptorType) for name in names)


_LITERAL_FIELDS = ("slot", "value", "column")
_QUERY_FIELDS = ("fingerprint", "normalized_sql", "kind", "tables", "literals", "parsed", "traits", "expressions",
                 "in_list_max", "unfiltered_tables")
_new = object.__new__


def _setter(cls: type, name: str) -> Callable[[object, object], None]:
    descriptor = cls.__dict__.get(name)
    if isinstance(descriptor, types.MemberDescriptorType):
        return descriptor.__set__
    return lambda obj, value: None  # never called: _plain_slots is False for this class


_l_slot, _l_value, _l_column = (_setter(Literal, name) for name in _LITERAL_FIELDS)
_q_fp, _q_sql, _q_kind, _q_tables, _q_literals, _q_parsed, _q_traits, _q_exprs, _q_in_max, _q_unfiltered = (
    _setter(NormalizedQuery, name) for name in _QUERY_FIELDS)


def _make_literal(slot: int, value: str | None, column: str | None) -> Literal:
    lit = _new(Literal)
    _l_slot(lit, slot)
    _l_value(lit, value)
    _l_column(lit, column)
    return lit  # type: ignore[no-any-return]


def _make_query(fingerprint: str, normalized_sql: str, kind: str, tables: tuple[str, ...],
                literals: tuple[Literal, ...], parsed: bool, traits: frozenset[str], expressions: frozenset[str],
                in_list_max: int, unfiltered_tables: tuple[str, ...]) -> NormalizedQuery:
    q = _new(NormalizedQuery)
    _q_fp(q, fingerprint)
    _q_sql(q, normalized_sql)
    _q_kind(q, kind)
    _q_tables(q, tables)
    _q_literals(q, literals)
    _q_parsed(q, parsed)
    _q_traits(q, traits)
    _q_exprs(q, expressions)
    _q_in_max(q, in_list_max)
    _q_unfiltered(q, unfiltered_tables)
    return q  # type: ignore[no-any-return]


# A hit builds 1 NormalizedQuery and ~2 Literals; the dataclass __init__ of a frozen class stores each
# field through object.__setattr__, and that was ~1/4 of a hit. The two functions above store through
# the slots directly (same instances, ~2x faster); if the model ever stops being plain frozen slots
# dataclasses with exactly these fields, the classes themselves are used.
new_literal: Callable[[int, str | None, str | None], Literal] = (
    _make_literal if _plain_slots(Literal, _LITERAL_FIELDS) else Literal)
new_query: Callable[..., NormalizedQuery] = (
    _make_query if _plain_slots(NormalizedQuery, _QUERY_FIELDS) else NormalizedQuery)


def _param(params: Sequence[str | None], index: int) -> str | None:
    value = params[index] if index < len(params) else None
    return value if value is None or value.__class__ is str else str(value)


def _ref_value(items: Sequence[Value], ref: Ref, params: Sequence[str | None]) -> str | None:
    tag = ref[0]
    if tag == "a":
        item = items[ref[1]]
        v: str = item if ref[2] < 0 else item[ref[2]][ref[3]]  # type: ignore[assignment,index]
        return "-" + v if ref[4] else v
    if tag == "p":
        return _param(params, ref[1]) if ref[1] >= 0 else None
    return ref[1]  # type: ignore[no-any-return]


def fill(entry: Entry, items: Sequence[Value], params: Sequence[str | None]) -> NormalizedQuery | None:
    """The NormalizedQuery of a text with ``quick`` values ``items`` (and bind ``params``) from a cached
    entry, or None if a constraint does not hold."""
    for i in entry.one_row:
        if len(items[i]) != 1:
            return None
    for i, width in entry.widths:
        for row in items[i]:
            if len(row) != width:
                return None
    for i, widths in entry.exact:
        if tuple(map(len, items[i])) != widths:
            return None
    for i, fixed in entry.fixed:
        if items[i] != fixed:
            return None
    for i, r, c, fixed in entry.fixed_cells:
        if items[i][r][c] != fixed:  # type: ignore[index]
            return None
    out: list[Literal | None] = [None] * entry.size
    _literal_ = new_literal
    for i, neg, column, slot in entry.atoms:
        out[slot] = _literal_(slot, "-" + items[i] if neg else items[i], column)  # type: ignore[operator,arg-type]
    n = len(params)
    for i, column, slot in entry.params:
        value = params[i] if i < n else None
        if value is not None and value.__class__ is not str:
            value = str(value)
        out[slot] = _literal_(slot, value, column)
    in_max = entry.in_list_base
    for i, in_list, column, slot in entry.lists:
        values = items[i][0]
        k = len(values)
        if in_list and k > in_max:
            in_max = k
        out[slot] = _literal_(slot, values[0] if k == 1 else ",".join(values), column)  # type: ignore[arg-type]
    for i, c, column, slot in entry.columns:
        group = items[i]
        out[slot] = _literal_(slot, group[0][c] if len(group) == 1 else ",".join([row[c] for row in group]), column)  # type: ignore[index,misc]
    for i, r, c, column, slot in entry.cells:
        out[slot] = _literal_(slot, items[i][r][c], column)  # type: ignore[index,arg-type]
    for refs, column, slot in entry.mixed:
        out[slot] = _literal_(slot, join_values([_ref_value(items, ref, params) for ref in refs]), column)
    for lit in entry.consts:
        out[lit.slot] = lit
    literals: tuple[Literal, ...] = tuple(out)  # type: ignore[arg-type]
    traits = entry.traits if not entry.checks else resolve(entry.traits, entry.checks, literals)
    return new_query(entry.fingerprint, entry.normalized_sql, entry.kind, entry.tables, literals, True,
                     traits, entry.expressions, in_max, entry.unfiltered)


def build_entry(shape: Shape, items: list[Item]) -> Entry | object:
    """A cache entry for ``shape`` parsed from a text with (located) scan ``items``, or UNCACHEABLE."""
    if not shape.cacheable:
        return UNCACHEABLE
    where: dict[int, tuple[int, int, int]] = {}  # token offset -> (item, row, col)
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            where[item[0]] = (i, -1, -1)
        else:
            for r, row in enumerate(item):
                for c, (start, _) in enumerate(row):
                    where[start] = (i, r, c)
    used: set[tuple[int, int, int]] = set()
    group_use: dict[int, tuple[str, int]] = {}
    recipes: list[tuple[tuple[Ref, ...], bool, str | None, bool]] = []
    for slot in shape.slots:
        refs: list[Ref] = []
        for m in slot.members:
            if m.param is not None:
                refs.append(("p", m.param))
                continue
            pos = where.get(m.start) if m.start is not None else None
            if m.const or pos is None:
                if m.start is not None and not m.const:
                    return UNCACHEABLE  # the parser saw a literal token the scan did not
                refs.append(("c", m.value))
                continue
            if pos in used:
                return UNCACHEABLE
            used.add(pos)
            i, r, c = pos
            item = items[i]
            scanned = item[1] if r < 0 else item[r][c][1]  # type: ignore[index]
            if scanned == m.value:
                refs.append(("a", i, r, c, False))
            elif r < 0 and m.neg and "-" + scanned == m.value:  # type: ignore[operator]
                refs.append(("a", i, r, c, True))
            else:
                return UNCACHEABLE
        refs = _collapse_groups(slot, refs, items, group_use)
        recipes.append((tuple(refs), slot.is_list, slot.column, slot.in_list))
    fixed: list[tuple[int, int, int, str]] = []
    groups: list[tuple[int, str, object]] = []
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            if (i, -1, -1) not in used:
                fixed.append((i, -1, -1, item[1]))
            continue
        if i in group_use:
            kind, width = group_use[i]
            if kind == "values" and any(ref[0] == "a" and ref[1] == i for refs, _, _, _ in recipes for ref in refs):
                return UNCACHEABLE  # only some columns collapsed: row count would not be free
            groups.append((i, kind, width))
            continue
        groups.append((i, "exact", tuple(len(r) for r in item)))
        for r, row in enumerate(item):
            for c, (_, value) in enumerate(row):
                if (i, r, c) not in used:
                    fixed.append((i, r, c, value))
    return _compile(shape, recipes, fixed, groups)


def _compile(shape: Shape, recipes: list[tuple[tuple[Ref, ...], bool, str | None, bool]],
             fixed: list[tuple[int, int, int, str]], groups: list[tuple[int, str, object]]) -> Entry:
    """Sort the slot recipes by how each slot gets its value (see ``Entry``)."""
    atoms, params, lists, columns, cells, mixed, consts = [], [], [], [], [], [], []
    in_base = shape.in_list_fixed
    for slot, (refs, _, column, in_list) in enumerate(recipes):
        ref = refs[0]
        if len(refs) == 1 and ref[0] == "g":
            lists.append((ref[1], in_list, column, slot))
            continue
        if len(refs) == 1 and ref[0] == "v":
            columns.append((ref[1], ref[2], column, slot))
            continue
        if in_list:  # a fixed number of members (groups only ever come as the one ref of a slot)
            in_base = max(in_base, len(refs))
        if len(refs) > 1:
            mixed.append((refs, column, slot))
        elif ref[0] == "a" and ref[2] < 0:
            atoms.append((ref[1], ref[4], column, slot))
        elif ref[0] == "a":
            cells.append((ref[1], ref[2], ref[3], column, slot))
        elif ref[0] == "p" and ref[1] >= 0:
            params.append((ref[1], column, slot))
        elif ref[0] == "p":
            consts.append(Literal(slot, None, column))
        else:
            consts.append(Literal(slot, ref[1], column))
    return Entry(
        shape.fingerprint, shape.normalized_sql, shape.kind, shape.tables, len(recipes),
        tuple(atoms), tuple(params), tuple(lists), tuple(columns), tuple(cells), tuple(mixed), tuple(consts),
        tuple(i for i, kind, _ in groups if kind == "in"),
        tuple((i, width) for i, kind, width in groups if kind == "values"),  # type: ignore[misc]
        tuple((i, code) for i, kind, code in groups if kind == "exact"),  # type: ignore[misc]
        tuple((i, value) for i, r, _, value in fixed if r < 0),
        tuple(f for f in fixed if f[1] >= 0),
        shape.traits, shape.checks, shape.expressions, shape.unfiltered, in_base,
    )


def _collapse_groups(slot: object, refs: list[Ref], items: list[Item], group_use: dict[int, tuple[str, int]]) -> list[Ref]:
    """Replace member refs that cover a whole scanned group (an IN list, or one column of multi-row
    VALUES) by a length-free group ref, and note how that group is used. Anything else stays as
    per-atom refs, and the group then keeps an exact-shape signature."""
    if not getattr(slot, "is_list", False) or not refs or refs[0][0] != "a" or refs[0][2] < 0:
        return refs
    i = refs[0][1]
    group = items[i]
    if getattr(slot, "values_group", False):
        col = refs[0][3]
        if refs == [("a", i, r, col, False) for r in range(len(group))] and group_use.get(i, ("values",))[0] == "values":
            group_use[i] = ("values", len(group[0]))
            return [("v", i, col)]
        return refs
    if len(group) == 1 and i not in group_use and refs == [("a", i, 0, c, False) for c in range(len(group[0]))]:
        group_use[i] = ("in", 0)
        return [("g", i)]
    return refs


class ShapeCache:
    """A bounded LRU of scan key -> Entry (or UNCACHEABLE)."""

    def __init__(self, size: int):
        self.size = max(0, int(size))
        self._data: OrderedDict[str, object] = OrderedDict()

    def get(self, key: str) -> object | None:
        data = self._data
        entry = data.get(key)
        if entry is not None:
            data.move_to_end(key)
        return entry

    def put(self, key: str, entry: object) -> None:
        if not self.size:
            return
        data = self._data
        data[key] = entry
        data.move_to_end(key)
        while len(data) > self.size:
            data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
