"""Rule windows saved as an append log (schema_version 8).

- rule_window_log: per commit and windowed rule, the events that commit added to the rule's windows
  (JSON), with the newest event time, so a whole row is deleted once every event in it has drained.
  ``rule_windows`` keeps only the keys that need more than their events: an episode (a firing
  finding's count and values) or a non-windowed kind's state.

Before this, every commit rewrote the whole window of every key it touched: about one row per query
on a realistic log (a fifth of a replay's time) and millions of rows per hour on a busy warehouse.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_meta = sa.table("usagewatch_meta", sa.column("name", sa.String), sa.column("value", sa.String))


def _schema_version(value: str) -> None:
    # kept for releases before Alembic: they compare it and refuse a database newer than themselves
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value=value))


def upgrade() -> None:
    op.create_table(
        "rule_window_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("logic", sa.String(64), nullable=False),
        sa.Column("newest_ts", sa.Float, nullable=False),
        sa.Column("entries", sa.Text, nullable=False),
    )
    op.create_index("rule_window_log_drain", "rule_window_log", ["rule", "newest_ts"])
    _schema_version("8")


def downgrade() -> None:
    op.drop_index("rule_window_log_drain", table_name="rule_window_log")
    op.drop_table("rule_window_log")
    _schema_version("7")
