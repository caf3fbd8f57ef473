"""Fixtures of the stock-rule tests: each scenario driven once per session on the shared cluster."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers.postgres import PgCluster
from tests.helpers.scenarios import SCENARIOS, Scenario, drive


@pytest.fixture(scope="session")
def scenario_log(pg_cluster: PgCluster) -> Callable[[Scenario], bytes]:
    """``scenario_log(s)``: the csvlog bytes of scenario ``s``, driven on first use in a database
    of its own (``uw_sc_N``) of the session's one cluster."""
    cache: dict[str, bytes] = {}

    def get(scenario: Scenario) -> bytes:
        if scenario.id not in cache:
            cache[scenario.id] = drive(pg_cluster, scenario, f"uw_sc_{SCENARIOS.index(scenario)}")
        return cache[scenario.id]

    return get
