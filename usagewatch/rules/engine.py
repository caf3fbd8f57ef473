"""``RuleEngine``: normalized events in, finding updates out. Pure: no I/O, no wall clock.

The engine also hands the store the window state of every key it touched (``take_state``) so the
pipeline can commit it in the same transaction as the checkpoint: windows survive restarts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable

from usagewatch.model import FindingUpdate, NormalizedEvent, NormalizedQuery, QueryEvent
from usagewatch.rules.kinds.base import ts_of
from usagewatch.rules.loader import Rule

SWEEP_EVERY = 10_000  # events between sweeps of drained windows
MAX_PLANS = 50_000  # shapes whose plan is kept; all-unique workloads would otherwise grow it forever

#: per rule that may see a shape: (rule id, the per-event filter or None, the kind's observe)
Plan = tuple[tuple[str, Callable[[QueryEvent], bool] | None, Callable[[NormalizedEvent], str | None]], ...]


class RuleEngine:
    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self._by_id = {r.id: r for r in rules}
        self._max_ts = 0.0
        self._since_sweep = 0
        self.evaluations_by_rule: Counter[str] = Counter()  # read and cleared by the pipeline's metrics
        self._forget: dict[tuple[str, str], None] = {}
        self._plans: dict[tuple[Any, ...], Plan] = {}

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
        self._plans.clear()
        return report

    def plan(self, q: NormalizedQuery) -> Plan:
        """The rules that can count an event of this shape, in rule order, with what is left to
        check per event. Most rules are decided by the shape alone (statement kind, tables,
        traits), so a shape seen before costs one dictionary lookup instead of a filter per rule."""
        key = (q.fingerprint, q.kind, q.tables, q.traits, q.expressions, q.in_list_max, q.unfiltered_tables)
        plan = self._plans.get(key)
        if plan is None:
            plan = tuple((r.id, r.accepts.event_check(), r.kind.observe) for r in self.rules
                         if r.accepts.shape_ok(q) and r.kind.shape_matches(q))
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def feed(self, ne: NormalizedEvent) -> list[tuple[str, str]]:
        """The (rule id, key) of every active pattern this event advanced (usually none).

        Building the finding update is left to ``updates``, once per key and batch: a key that
        is firing may see thousands of events in one batch."""
        out = []
        ev = ne.event
        counts = self.evaluations_by_rule
        for rule_id, check, observe in self.plan(ne.query):
            if check is not None and not check(ev):
                continue
            counts[rule_id] += 1
            key = observe(ne)
            if key is not None:
                out.append((rule_id, key))
        self.tick(ev)
        return out

    def tick(self, ev: QueryEvent) -> None:
        """Advance the event-time clock by one event without evaluating it: windows drain (sweep)
        after the same events whether or not this engine saw them (``replay -j``'s workers tick for
        the events of other workers' users)."""
        ts = ts_of(ev.ts)
        if ts > self._max_ts:
            self._max_ts = ts
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self.sweep()

    def feed_all(self, events: Iterable[NormalizedEvent]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for ne in events:
            out.extend(self.feed(ne))
        return out

    def updates(self, touched: Iterable[tuple[str, str]]) -> list[FindingUpdate]:
        """One rendered update per touched (rule id, key), in first-touched order, after the final
        updates of episodes that ended in the meantime."""
        out: list[FindingUpdate] = []
        for rule in self.rules:
            for ended in rule.kind.take_ended():
                rule.render(ended)
                out.append(ended)
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
            rid = rule.id
            for key, state in rule.kind.take_dirty().items():
                if state is not None:
                    state["logic"] = logic  # to_state() built this dict for us: no copy per window
                out[(rid, key)] = state
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
