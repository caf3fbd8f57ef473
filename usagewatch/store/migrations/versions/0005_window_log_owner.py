"""Logged window events belong to the daemon that wrote them (schema_version 9).

- rule_window_log.owner: which daemon's sources the events came from (``window_owner``: the
  daemon's source names). A daemon restores, drains and drops only its own rows (and rows written
  before this revision, owner ''), so daemons sharing one store no longer delete each other's
  recent events: a daemon whose event clock ran two windows ahead of another's (a live daemon
  beside a backfill, say) deleted the other's rows by rule and time alone, and the other, restarted,
  lost those windows.

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
    with op.batch_alter_table("rule_window_log") as batch:
        batch.add_column(sa.Column("owner", sa.String(200), nullable=False, server_default=""))
        batch.drop_index("rule_window_log_drain")
        batch.create_index("rule_window_log_drain", ["owner", "rule", "newest_ts"])
    set_schema_version("9")


def downgrade() -> None:
    with op.batch_alter_table("rule_window_log") as batch:
        batch.drop_index("rule_window_log_drain")
        batch.create_index("rule_window_log_drain", ["rule", "newest_ts"])
        batch.drop_column("owner")
    set_schema_version("8")
