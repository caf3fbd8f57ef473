"""``RuleEngine``: normalized events in, finding updates out. Pure: no I/O, no wall clock.

The engine also hands the store the window state of every key it touched (``take_state``) so the
pipeline can commit it in the same transaction as the checkpoint: windows survive restarts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from usagewatch.model import FindingUpdate, NormalizedEvent
from usagewatch.rules.kinds.base import ts_of
from usagewatch.rules.loader import Rule

SWEEP_EVERY = 10_000  # events between sweeps of drained windows


class RuleEngine:
    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self._by_id = {r.id: r for r in rules}
        self._max_ts = 0.0
        self._since_sweep = 0
        self.evaluations = 0
        self.evaluations_by_rule: Counter[str] = Counter()  # read and cleared by the pipeline's metrics
        self._forget: dict[tuple[str, str], None] = {}

    def replace(self, rules: list[Rule]) -> dict[str, list[str]]:
        """Swap in newly loaded rules (live reload). A rule whose matching logic is unchanged keeps
        its windows; a changed or removed rule's saved windows are deleted with the next commit.
        Returns the ids kept, changed, added and removed."""
        old = self._by_id
        report: dict[str, list[str]] = {"kept": [], "changed": [], "added": [], "removed": []}
        for r in rules:
            o = old.get(r.id)
            if o is None:
                report["added"].append(r.id)
            elif o.logic == r.logic:
                o.kind.spec = r.spec  # new wording/severity, same windows
                r.kind = o.kind
                report["kept"].append(r.id)
            else:
                self._forget.update({(o.id, k): None for k in o.kind.state_keys()})
                report["changed"].append(r.id)
        new_ids = {r.id for r in rules}
        for rid, o in old.items():
            if rid not in new_ids:
                self._forget.update({(rid, k): None for k in o.kind.state_keys()})
                report["removed"].append(rid)
        self.rules = rules
        self._by_id = {r.id: r for r in rules}
        return report

    def feed(self, ne: NormalizedEvent) -> list[tuple[str, str]]:
        """The (rule id, key) of every active pattern this event advanced (usually none).

        Building the finding update is left to ``updates``, once per key and batch: a key that
        is firing may see thousands of events in one batch."""
        out = []
        for rule in self.rules:
            if not rule.accepts(ne):
                continue
            self.evaluations += 1
            self.evaluations_by_rule[rule.id] += 1
            key = rule.kind.observe(ne)
            if key is not None:
                out.append((rule.id, key))
        ts = ts_of(ne.event.ts)
        if ts > self._max_ts:
            self._max_ts = ts
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self.sweep()
        return out

    def feed_all(self, events: Iterable[NormalizedEvent]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for ne in events:
            out.extend(self.feed(ne))
        return out

    def updates(self, touched: Iterable[tuple[str, str]]) -> list[FindingUpdate]:
        """One rendered update per touched (rule id, key), in first-touched order."""
        out = []
        for rule_id, key in dict.fromkeys(touched):
            rule = self._by_id[rule_id]
            update = rule.kind.update(key)
            if update is not None:
                rule.render(update)
                out.append(update)
        return out

    def sweep(self) -> None:
        self._since_sweep = 0
        for rule in self.rules:
            rule.kind.sweep(self._max_ts)

    def take_state(self) -> dict[tuple[str, str], dict[str, Any] | None]:
        """Window state changed since the last call, keyed by (rule id, key); None = delete."""
        out: dict[tuple[str, str], dict[str, Any] | None] = dict(self._forget)
        self._forget.clear()
        for rule in self.rules:
            logic = rule.logic
            for key, state in rule.kind.take_dirty().items():
                out[(rule.id, key)] = None if state is None else {**state, "logic": logic}
        return out

    def restore(self, states: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        """Load persisted windows; state of rules no longer configured, or whose matching logic
        changed while usagewatch was stopped, is ignored (and replaced at the next commit)."""
        logic = {r.id: r.logic for r in self.rules}
        for rule_id, key, state in states:
            rule = self._by_id.get(rule_id)
            if rule is not None and state.get("logic", logic[rule_id]) == logic[rule_id]:
                rule.kind.restore(key, state)
                self._max_ts = max(self._max_ts, state.get("last_ts", 0.0))
