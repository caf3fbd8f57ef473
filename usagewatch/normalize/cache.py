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
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

from usagewatch.model import Literal, NormalizedQuery
from usagewatch.normalize.scan import Item, Scan, join_values
from usagewatch.normalize.shape import Shape
from usagewatch.normalize.traits import resolve

# Recipe members: ("a", item, row, col, neg) scanned atom (row -1 for a plain atom); ("p", index) bind
# parameter; ("c", value) constant; ("g", item) a whole one-row group; ("v", item, col) a group column.
Ref = tuple
UNCACHEABLE = object()


@dataclass(slots=True, frozen=True)
class Entry:
    """One cached shape: a template NormalizedQuery minus literals, and how to fill them.

    The traits, expression types and unfiltered tables are the shape's (computed once at parse time);
    ``checks`` are the traits a slot's value decides, and ``in_list_max`` is ``in_list_fixed`` or the
    member count of the longest IN-list slot as filled, so it follows the length of the list scanned.
    """

    fingerprint: str
    normalized_sql: str
    kind: str
    tables: tuple[str, ...]
    parsed: bool
    recipes: tuple[tuple[tuple[Ref, ...], bool, str | None, bool], ...]  # (members, is_list, column, in_list)
    fixed: tuple[tuple[int, int, int, str], ...]  # (item, row, col, value) that must match exactly
    groups: tuple[tuple[int, str, int], ...]  # (item, "in" | "values" | "exact", width or exact code)
    traits: frozenset[str] = frozenset()
    checks: tuple[tuple[str, int, str], ...] = ()
    expressions: frozenset[str] = frozenset()
    unfiltered: tuple[str, ...] = ()
    in_list_fixed: int = 0


def _value(items: list[Item], ref: Ref, params: Sequence[str | None]) -> str | None:
    tag = ref[0]
    if tag == "a":
        item = items[ref[1]]
        v = item[1] if ref[2] < 0 else item[ref[2]][ref[3]][1]  # type: ignore[index]
        return "-" + v if ref[4] else v
    if tag == "p":
        return params[ref[1]] if 0 <= ref[1] < len(params) else None
    return ref[1]


def _exact_code(group: list) -> int:
    return hash(tuple(len(r) for r in group))


def fill(entry: Entry, scan: Scan, params: Sequence[str | None]) -> NormalizedQuery | None:
    """The NormalizedQuery of ``scan``'s text from a cached entry, or None if a constraint does not hold."""
    items = scan.items
    for i, kind, width in entry.groups:
        group = items[i]
        if kind == "in":
            if len(group) != 1:
                return None
        elif kind == "values":
            for row in group:
                if len(row) != width:  # type: ignore[arg-type]
                    return None
        elif _exact_code(group) != width:  # type: ignore[arg-type]
            return None
    for i, r, c, value in entry.fixed:
        item = items[i]
        if (item[1] if r < 0 else item[r][c][1]) != value:  # type: ignore[index]
            return None
    out = []
    in_max = entry.in_list_fixed
    for slot, (refs, is_list, column, in_list) in enumerate(entry.recipes):
        values: list[str | None] = []
        for ref in refs:
            if ref[0] == "g":
                values.extend(v for _, v in items[ref[1]][0])  # type: ignore[index]
            elif ref[0] == "v":
                values.extend(row[ref[2]][1] for row in items[ref[1]])  # type: ignore[union-attr]
            else:
                values.append(_value(items, ref, params))
        if in_list and len(values) > in_max:
            in_max = len(values)
        out.append(Literal(slot, join_values(values) if is_list else values[0], column))
    literals = tuple(out)
    return NormalizedQuery(entry.fingerprint, entry.normalized_sql, entry.kind, entry.tables, literals, True,
                           resolve(entry.traits, entry.checks, literals), entry.expressions, in_max, entry.unfiltered)


def build_entry(shape: Shape, scan: Scan) -> Entry | object:
    """A cache entry for ``shape`` parsed from ``scan``'s text, or UNCACHEABLE."""
    if not shape.cacheable:
        return UNCACHEABLE
    where: dict[int, tuple[int, int, int]] = {}  # token offset -> (item, row, col)
    for i, item in enumerate(scan.items):
        if isinstance(item, tuple):
            where[item[0]] = (i, -1, -1)
        else:
            for r, row in enumerate(item):
                for c, (start, _) in enumerate(row):
                    where[start] = (i, r, c)
    used: set[tuple[int, int, int]] = set()
    group_use: dict[int, tuple[str, int]] = {}
    recipes = []
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
            item = scan.items[i]
            scanned = item[1] if r < 0 else item[r][c][1]  # type: ignore[index]
            if scanned == m.value:
                refs.append(("a", i, r, c, False))
            elif r < 0 and m.neg and "-" + scanned == m.value:  # type: ignore[operator]
                refs.append(("a", i, r, c, True))
            else:
                return UNCACHEABLE
        refs = _collapse_groups(slot, refs, scan, group_use)
        recipes.append((tuple(refs), slot.is_list, slot.column, slot.in_list))
    fixed = []
    groups = []
    for i, item in enumerate(scan.items):
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
        groups.append((i, "exact", _exact_code(item)))
        for r, row in enumerate(item):
            for c, (_, value) in enumerate(row):
                if (i, r, c) not in used:
                    fixed.append((i, r, c, value))
    return Entry(shape.fingerprint, shape.normalized_sql, shape.kind, shape.tables, True,
                 tuple(recipes), tuple(fixed), tuple(groups), shape.traits, shape.checks, shape.expressions,
                 shape.unfiltered, shape.in_list_fixed)


def _collapse_groups(slot: object, refs: list[Ref], scan: Scan, group_use: dict[int, tuple[str, int]]) -> list[Ref]:
    """Replace member refs that cover a whole scanned group (an IN list, or one column of multi-row
    VALUES) by a length-free group ref, and note how that group is used. Anything else stays as
    per-atom refs, and the group then keeps an exact-shape signature."""
    if not getattr(slot, "is_list", False) or not refs or refs[0][0] != "a" or refs[0][2] < 0:
        return refs
    i = refs[0][1]
    group = scan.items[i]
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
