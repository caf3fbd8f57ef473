"""Rule kinds, one module each; importing this package registers them all."""

from usagewatch.rules.kinds import repeated_identical, varying_literals  # noqa: F401
from usagewatch.rules.kinds.base import RuleKind, kinds

__all__ = ["RuleKind", "kinds"]
