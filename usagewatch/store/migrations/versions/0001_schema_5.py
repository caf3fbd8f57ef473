"""The schema of the last release before migrations (schema_version 5).

Findings with their history and daily runs, silences, the outbox and its deliveries, digests,
source checkpoints and rule windows.

A database made by that release (``create_all``, no ``alembic_version``) is exactly this revision:
the store stamps it 0001 and upgrades it from here. Written out table by table rather than from
``tables.metadata``, because a revision must not change when the tables change later.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)  # tables.UTCDateTime stores as this
ACTIVE = "status IN ('open', 'acknowledged', 'coached')"


def upgrade() -> None:
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("episode", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("user", sa.String(200)),
        sa.Column("database", sa.String(200)),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("distinct_values", sa.Integer, nullable=False),
        sa.Column("base_count", sa.Integer, nullable=False),
        sa.Column("base_distinct", sa.Integer, nullable=False),
        sa.Column("first_seen", UTC, nullable=False),
        sa.Column("last_seen", UTC, nullable=False),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("sample_sql", sa.Text),
        sa.Column("normalized_sql", sa.Text),
        sa.Column("varying", sa.JSON, nullable=False),
        sa.Column("sample_values", sa.JSON, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("intervention", sa.Text, nullable=False),
        sa.Column("howto", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("resolved_at", UTC),
        sa.Column("silenced_by", sa.Integer),
        sa.Column("acknowledged_at", UTC),
        sa.Column("coached_at", UTC),
        sa.Column("count_at_coaching", sa.Integer),
    )
    op.create_index("findings_rule_key", "findings", ["rule", "key"])
    op.create_index("findings_one_open_per_rule_key", "findings", ["rule", "key"], unique=True,
                    sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("message_id", sa.Text),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC),
    )
    op.create_index("outbox_due", "outbox", ["status", "next_attempt_at"])

    op.create_table(
        "checkpoints",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("dev", sa.BigInteger, nullable=False),
        sa.Column("inode", sa.BigInteger, nullable=False),
        sa.Column("head_len", sa.Integer, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("mark_hash", sa.String(64), nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("bad", sa.JSON, nullable=False),
        sa.Column("last_ts", sa.String(40)),
        sa.Column("updated_at", UTC, nullable=False),
    )

    meta = op.create_table(
        "usagewatch_meta",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.bulk_insert(meta, [{"name": "schema_version", "value": "5"}])

    op.create_table(
        "finding_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_finding_events_finding_id", "finding_events", ["finding_id"])

    op.create_table(
        "finding_days",
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("runs", sa.Integer, nullable=False),
    )

    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
    )

    op.create_table(
        "rule_windows",
        sa.Column("rule", sa.String(200), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("state", sa.JSON, nullable=False),
    )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id"), nullable=False),
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(220), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("message_id", sa.Text),
        sa.Column("digest_id", sa.Integer),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC),
        sa.UniqueConstraint("outbox_id", "route", "channel", name="deliveries_one_per_route_channel"),
    )
    op.create_index("ix_deliveries_finding_id", "deliveries", ["finding_id"])
    op.create_index("deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("deliveries_route", "deliveries", ["route", "channel", "status"])

    op.create_table(
        "digests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(220), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("sent_at", UTC, nullable=False),
        sa.UniqueConstraint("route", "channel", "seq", name="digests_one_per_seq"),
    )

    op.create_table(
        "digest_items",
        sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id"), primary_key=True),
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), primary_key=True),
        sa.Column("change", sa.String(20), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("distinct_values", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("digest_items", "digests", "deliveries", "rule_windows", "silences", "finding_days",
                  "finding_events", "usagewatch_meta", "checkpoints", "outbox", "findings"):
        op.drop_table(table)
