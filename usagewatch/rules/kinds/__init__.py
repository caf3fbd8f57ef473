"""Rule kinds, one module each; importing this package registers them all."""

from usagewatch.rules.kinds import (  # noqa: F401  (importing registers them)
    query_pattern,
    repeated_identical,
    spike,
    threshold,
    varying_literals,
)
from usagewatch.rules.kinds.base import RuleKind, kinds

__all__ = ["RuleKind", "kinds"]
