"""An overrides file tunes stock rules without editing them; its mistakes are located in it."""

from __future__ import annotations

import pytest

from tests.helpers.configs import STORY_RULES
from tests.helpers.events import run
from usagewatch.errors import ConfigError
from usagewatch.rules import RuleEngine, load_rules


def test_overrides_merge_params_add_exclusions_and_disable(tmp_path):
    f = tmp_path / "overrides.yaml"
    f.write_text("""overrides:
  - rule: same-query-different-ids
    params: {min_runs: 30, min_distinct: 30}
    filter: {allow: [svc_*]}
    severity: high
  - rule: same-query-rep*
    enabled: false
""")
    rules = load_rules(STORY_RULES, [str(f)])
    assert [r.id for r in rules] == ["same-query-different-ids"]
    r = rules[0]
    assert (r.spec.severity, r.kind.params.min_runs, r.spec.filter.allow) == ("high", 30, ["svc_*"])
    assert r.spec.filter.statements == ["select"]  # what the override did not mention is kept
    e = RuleEngine(rules)
    assert e.updates(e.feed_all([run("kim", m, str(m)) for m in range(29)])) == []
    assert e.updates(e.feed_all([run("svc_etl", m, str(m)) for m in range(40)])) == []
    assert [u.count for u in e.updates(e.feed_all([run("kim", 29, "x")]))] == [30]


def test_override_mistakes_are_reported_where_they_are(tmp_path):
    f = tmp_path / "overrides.yaml"
    f.write_text("""overrides:
  - rule: same-query-diferent-ids
    severity: high
  - rule: same-query-repeated
    params: {min_runz: 3}
    colour: red
""")
    with pytest.raises(ConfigError) as info:
        load_rules(STORY_RULES, [str(f)])
    got = [str(p) for p in info.value.problems]
    assert got == [f'{f}:6:5: unknown key "colour" in overrides[1]. Valid names: cooldown, enabled, filter, '
                   'howto, intervention, params, rule, severity, title.']  # nothing of it applied: no more noise
    f.write_text("""overrides:
  - rule: same-query-diferent-ids
    severity: high
  - rule: same-query-repeated
    params: {min_runz: 3}
""")
    with pytest.raises(ConfigError) as info:
        load_rules(STORY_RULES, [str(f)])
    got = [str(p) for p in info.value.problems]
    assert any('unknown key "min_runz"' in g and f"with overrides from {f}:4" in g for g in got)
    assert f'{f}:2:11: override for rule "same-query-diferent-ids" matches no rule. ' \
           'Did you mean "same-query-different-ids"?' in got


def test_include_lists_replace_and_exclusions_add_up(tmp_path):
    f = tmp_path / "overrides.yaml"
    f.write_text("""overrides:
  - rule: same-query-different-ids
    filter: {statements: [select, insert], exclude_users: [svc_a]}
  - rule: same-query-*
    filter: {exclude_users: [svc_b]}
""")
    r = load_rules(STORY_RULES[:1], [str(f)])[0]
    assert r.spec.filter.statements == ["select", "insert"]
    assert r.spec.filter.exclude_users == ["svc_a", "svc_b"]
