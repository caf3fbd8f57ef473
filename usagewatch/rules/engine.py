"""``RuleEngine``: normalized events in, finding updates out. Pure: no I/O, no wall clock.

The engine also hands the store the window state of every key it touched (``take_state``) so the
pipeline can commit it in the same transaction as the checkpoint: windows survive restarts.
"""

from __future__ import annotations

from typing import Any, Iterable

from usagewatch.model import FindingUpdate, NormalizedEvent
from usagewatch.rules.kinds.base import ts_of
from usagewatch.rules.loader import Rule

SWEEP_EVERY = 10_000  # events between sweeps of drained windows


def merge_updates(updates: list[FindingUpdate]) -> list[FindingUpdate]:
    """The last update per (rule, key): updates of one episode are cumulative, so it says it all."""
    last: dict[tuple[str, str], FindingUpdate] = {}
    for u in updates:
        last[(u.rule, u.key)] = u
    return list(last.values())


class RuleEngine:
    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self._by_id = {r.id: r for r in rules}
        self._max_ts = 0.0
        self._since_sweep = 0
        self.evaluations = 0

    def feed(self, ne: NormalizedEvent) -> list[FindingUpdate]:
        """Updates for every rule this event advances (usually none)."""
        out = []
        for rule in self.rules:
            if not rule.accepts(ne):
                continue
            self.evaluations += 1
            update = rule.kind.observe(ne)
            if update is not None:
                out.append(update)
        ts = ts_of(ne.event.ts)
        if ts > self._max_ts:
            self._max_ts = ts
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self.sweep()
        return out

    def feed_all(self, events: Iterable[NormalizedEvent]) -> list[FindingUpdate]:
        out: list[FindingUpdate] = []
        for ne in events:
            out.extend(self.feed(ne))
        return out

    def sweep(self) -> None:
        self._since_sweep = 0
        for rule in self.rules:
            rule.kind.sweep(self._max_ts)

    def render(self, update: FindingUpdate) -> None:
        self._by_id[update.rule].render(update)

    def take_state(self) -> dict[tuple[str, str], dict[str, Any] | None]:
        """Window state changed since the last call, keyed by (rule id, key); None = delete."""
        out: dict[tuple[str, str], dict[str, Any] | None] = {}
        for rule in self.rules:
            for key, state in rule.kind.take_dirty().items():
                out[(rule.id, key)] = state
        return out

    def restore(self, states: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        """Load persisted windows; state of rules no longer configured is ignored."""
        for rule_id, key, state in states:
            rule = self._by_id.get(rule_id)
            if rule is not None:
                rule.kind.restore(key, state)
                self._max_ts = max(self._max_ts, state.get("last_ts", 0.0))
