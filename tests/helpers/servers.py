"""How a test that needs a real server behaves when that server is missing.

Locally it skips with the reason. CI sets USAGEWATCH_REQUIRE_SERVERS=1 (see .ci/run), which turns
that skip into a failure, so CI always runs the server tests.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ENV = "USAGEWATCH_REQUIRE_SERVERS"


def need_server(reason: str) -> None:
    """Skip (locally) or fail (CI) because a server this test needs is not available."""
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this is a failure, not a skip)")
    pytest.skip(reason)
