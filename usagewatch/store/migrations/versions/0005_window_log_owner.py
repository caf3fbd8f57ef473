"""Logged window events belong to the daemon that wrote them (schema_version 9).

- rule_window_log.owner: the source names (a JSON list) of the daemon that logged the events. A
  daemon restores, drains and drops only rows that share a source with it (and rows written before
  this revision, owner ''), so daemons with disjoint sources sharing one store no longer delete each
  other's recent events: a daemon whose event clock ran two windows ahead of another's (a live
  daemon beside a backfill, say) deleted the other's rows by rule and time alone, and the other,
  restarted, lost those windows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from usagewatch.store.migrations.helpers import set_schema_version

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rule_window_log", sa.Column("owner", sa.Text, nullable=False, server_default=""))
    set_schema_version("9")


def downgrade() -> None:
    with op.batch_alter_table("rule_window_log") as batch:  # SQLite before 3.35 cannot drop a column
        batch.drop_column("owner")
    set_schema_version("8")
