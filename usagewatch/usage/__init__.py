"""Usage statistics: compact aggregates of the query stream (``aggregate``), the usage report built
from them (``report``) and its HTML rendering (``html``). See docs/usage.md."""
