"""Rules: YAML rule files -> rule objects -> ``RuleEngine.feed(event) -> FindingUpdate``s.

Pure: no I/O besides loading the files, no wall clock (windows use the queries' own timestamps).
"""

from usagewatch.rules.engine import RuleEngine
from usagewatch.rules.loader import load_rules

__all__ = ["RuleEngine", "load_rules"]
