"""Usage statistics (schema_version 7).

- usage_queries: queries, errors, time, the slowest, rows, bytes and a duration histogram (h00..h27) per time
  bucket (hour, or day once rolled up), user and fingerprint;
- usage_tables: queries, errors and time per time bucket, table and user;
- usage_shapes: the normalized SQL of each fingerprint the two tables name.

Written out column by column rather than from ``tables.metadata``: a revision must not change when
the tables change later.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)  # tables.UTCDateTime stores as this
_meta = sa.table("usagewatch_meta", sa.column("name", sa.String), sa.column("value", sa.String))


def _schema_version(value: str) -> None:
    # kept for releases before Alembic: they compare it and refuse a database newer than themselves
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value=value))


def upgrade() -> None:
    op.create_table(
        "usage_queries",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket", UTC, primary_key=True),
        sa.Column("user", sa.String(200), primary_key=True),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("queries", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("timed", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("max_ms", sa.Float, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        *(sa.Column(f"h{i:02d}", sa.Integer, nullable=False) for i in range(28)),
    )
    op.create_index("usage_queries_user", "usage_queries", ["user"])
    op.create_index("usage_queries_fingerprint", "usage_queries", ["fingerprint"])
    op.create_table(
        "usage_tables",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket", UTC, primary_key=True),
        sa.Column("table", sa.String(300), primary_key=True),
        sa.Column("user", sa.String(200), primary_key=True),
        sa.Column("queries", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
    )
    op.create_table(
        "usage_shapes",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("normalized_sql", sa.Text, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
    )
    _schema_version("7")


def downgrade() -> None:
    op.drop_table("usage_shapes")
    op.drop_table("usage_tables")
    op.drop_index("usage_queries_fingerprint", table_name="usage_queries")
    op.drop_index("usage_queries_user", table_name="usage_queries")
    op.drop_table("usage_queries")
    _schema_version("6")
