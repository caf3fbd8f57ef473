"""A finding as the store hands it to the notifier: the flagship case, one user, 136 company ids."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest


@pytest.fixture
def finding() -> dict[str, Any]:
    return {
        "id": 42,
        "rule": "same-query-different-ids",
        "user": "kim",
        "database": "warehouse",
        "status": "open",
        "severity": "warning",
        "count": 136,
        "distinct_values": 136,
        "first_seen": datetime(2024, 5, 2, 9, 14, tzinfo=timezone.utc),
        "last_seen": datetime(2024, 5, 2, 14, 26, 3, tzinfo=timezone.utc),
        "fingerprint": "5f2c9a0d",
        "sample_sql": "SELECT sum(amount) FROM invoices WHERE company_id = 90417",
        "normalized_sql": "SELECT sum(amount) FROM invoices WHERE company_id = ?",
        "varying": ["company_id"],
        "sample_values": ["90417", "90418", "71002", "ACME-7", "55120", "55121", "60001"],
        "howto": "howto/batch-ids-into-one-query.html",
        "title": "kim ran one query 136 times with different company_id values",
        "intervention": (
            "Show kim how to get all companies in one run:\n\n"
            "  SELECT company_id, sum(amount) FROM invoices\n"
            "  WHERE company_id IN (90417, 90418, 'ACME-7')\n"
            "  GROUP BY company_id"
        ),
        "details": {"window": "1h", "first_value": "90417"},
    }
