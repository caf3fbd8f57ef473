"""``RuleEngine``: normalized events in, finding updates out. Pure: no I/O, no wall clock.

The engine also hands the store what changed in the windows (``take_state``: the events windowed
rules added, as an append log, and the rows of firing keys) so the pipeline can commit it in the same
transaction as the checkpoint: windows survive restarts (``restore`` replays the log).
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Any, Callable, Iterable

from usagewatch.model import FindingUpdate, NormalizedEvent, NormalizedQuery, QueryEvent, WindowChanges
from usagewatch.rules.kinds.base import EventShare, WindowedKind
from usagewatch.rules.loader import Rule

SWEEP_EVERY = 10_000  # events between sweeps of drained windows
MAX_PLANS = 50_000  # shapes whose plan is kept; all-unique workloads would otherwise grow it forever

#: per rule that may see a shape: (rule id, the per-event filter or None, the kind's observe)
Plan = tuple[tuple[str, Callable[[QueryEvent], bool] | None, Callable[[NormalizedEvent], str | None]], ...]


def _both(a: Callable[[QueryEvent], bool] | None,
          b: Callable[[QueryEvent], bool] | None) -> Callable[[QueryEvent], bool] | None:
    """The rule filter's and the kind's per-event checks as one (None: nothing to check)."""
    if a is None or b is None:
        return a or b
    return lambda ev: a(ev) and b(ev)


class RuleEngine:
    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self._by_id = {r.id: r for r in rules}
        self._max_ts = 0.0
        self._since_sweep = 0
        self.evaluations_by_rule: Counter[str] = Counter()  # read and cleared by the pipeline's metrics
        self._forget: dict[tuple[str, str], None] = {}
        self._dropped: dict[str, str | None] = {}
        #: per rule, the newest event time of each saved log row this engine knows of (a heap): a
        #: commit asks the store to delete drained rows only when one of them has drained
        self._logged: dict[str, list[float]] = {}
        self._plans: dict[tuple[Any, ...], Plan] = {}
        #: the event being fed, its time and group keys: built once, shared by the rules (memory)
        self._share = EventShare()
        self._bind(rules)

    def _bind(self, rules: list[Rule]) -> None:
        for r in rules:
            r.kind.share = self._share

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
                self._forget.update({(o.id, k): None for k in o.kind.saved_keys()})
                self._dropped[o.id] = r.logic  # the old logic's logged events go
                report["changed"].append(r.id)
        new_ids = {r.id for r in rules}
        for rid, o in old.items():
            if rid not in new_ids:
                self._forget.update({(rid, k): None for k in o.kind.saved_keys()})
                self._dropped[rid] = None
                report["removed"].append(rid)
        self.rules = rules
        self._by_id = {r.id: r for r in rules}
        self._plans.clear()
        self._bind(rules)
        return report

    def plan(self, q: NormalizedQuery) -> Plan:
        """The rules that can count an event of this shape, in rule order, with what is left to
        check per event. Most rules are decided by the shape alone (statement kind, tables,
        traits), so a shape seen before costs one dictionary lookup instead of a filter per rule."""
        key = (q.fingerprint, q.kind, q.tables, q.traits, q.expressions, q.in_list_max, q.unfiltered_tables)
        plan = self._plans.get(key)
        if plan is None:
            plan = tuple((r.id, _both(r.accepts.event_check(), r.kind.event_check()), r.kind.observe)
                         for r in self.rules if r.accepts.shape_ok(q) and r.kind.shape_matches(q))
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
        ts = ev.ts.timestamp()
        share = self._share
        share.ne, share.ts = ne, ts
        if share.keys:
            share.keys.clear()
        try:
            for rule_id, check, observe in self.plan(ne.query):
                if check is not None and not check(ev):
                    continue
                counts[rule_id] += 1
                key = observe(ne)
                if key is not None:
                    out.append((rule_id, key))
        finally:
            share.ne = None
        # ``tick_at``, inlined: this runs for every event
        if ts > self._max_ts:
            self._max_ts = ts
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self.sweep()
        return out

    def tick_at(self, ts: float) -> None:
        """Advance the event-time clock by one event at ``ts`` (``ts_of`` its time) without
        evaluating it: windows drain (sweep) after the same events whether or not this engine saw
        them (``replay -j``'s workers tick for the events of other workers' users)."""
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

    def take_state(self) -> WindowChanges:
        """What changed in the windows since the last call: per-key rows (None = delete), each
        windowed rule's logged events, and how far each rule's logged events have drained."""
        out = WindowChanges(dict(self._forget), dropped=dict(self._dropped))
        self._forget.clear()
        self._dropped.clear()
        states = out.states
        for rule in self.rules:
            logic = rule.logic
            rid = rule.id
            kind = rule.kind
            for key, state in kind.take_dirty().items():
                if state is not None:
                    state["logic"] = logic  # take_dirty() built this dict for us: no copy per row
                states[(rid, key)] = state
            entries = kind.take_log()
            logged = self._logged.setdefault(rid, [])
            if entries:
                newest = max(e[1] for e in entries)
                out.log.append((rid, logic, newest, entries))
                heapq.heappush(logged, newest)
            if isinstance(kind, WindowedKind) and logged:
                # a live key (newest event within a window of the clock) may still hold events
                # up to a window before its newest one: two windows back, every event is gone
                horizon = self._max_ts - 2 * kind.window
                if logged[0] < horizon:
                    while logged and logged[0] < horizon:
                        heapq.heappop(logged)
                    out.drained[rid] = horizon
        return out

    def restore(self, states: Iterable[tuple[str, str, dict[str, Any]]],
                log: Iterable[tuple[str, str, list[list[Any]]]] = ()) -> None:
        """Load the saved rows, then replay the logged events (oldest batch first) of every rule;
        state of rules no longer configured, or whose matching logic changed while usagewatch was
        stopped, is ignored (and replaced or deleted by the next commits)."""
        logic = {r.id: r.logic for r in self.rules}
        for rule_id, key, state in states:
            rule = self._by_id.get(rule_id)
            if rule is not None and state.get("logic", logic[rule_id]) == logic[rule_id]:
                rule.kind.restore(key, state)
                self._max_ts = max(self._max_ts, state.get("last_ts", 0.0))
        for rule_id, rule_logic, entries in log:
            rule = self._by_id.get(rule_id)
            if rule is None or rule_logic != logic[rule_id]:
                # saved by a rule since removed or changed: the next commit deletes those rows
                self._dropped[rule_id] = None if rule is None else logic[rule_id]
                continue
            if entries:
                rule.kind.replay_log(entries)
                newest = max(float(e[1]) for e in entries)
                self._max_ts = max(self._max_ts, newest)
                heapq.heappush(self._logged.setdefault(rule_id, []), newest)
        for rule in self.rules:
            rule.kind.restored()
