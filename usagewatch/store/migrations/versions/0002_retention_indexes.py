"""Indexes for retention (schema_version 6).

Retention deletes closed findings resolved before a cut-off, sent deliveries sent before one, and
daily run counts older than one; without these indexes each of those is a full scan of the
biggest tables, every run.

- findings(status, resolved_at)
- deliveries(status, sent_at)
- finding_days(day) (its primary key starts with finding_id, so it cannot serve a scan by day)

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_meta = sa.table("usagewatch_meta", sa.column("name", sa.String), sa.column("value", sa.String))


def _schema_version(value: str) -> None:
    # kept for releases before Alembic: they compare it and refuse a database newer than themselves
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value=value))


def upgrade() -> None:
    op.create_index("findings_closed", "findings", ["status", "resolved_at"])
    op.create_index("deliveries_sent", "deliveries", ["status", "sent_at"])
    op.create_index("finding_days_day", "finding_days", ["day"])
    _schema_version("6")


def downgrade() -> None:
    op.drop_index("finding_days_day", table_name="finding_days")
    op.drop_index("deliveries_sent", table_name="deliveries")
    op.drop_index("findings_closed", table_name="findings")
    _schema_version("5")
