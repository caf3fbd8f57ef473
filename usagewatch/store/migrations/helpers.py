"""What revisions from 0005 on share (0002-0004 keep their own copies: a released revision never
changes)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_meta = sa.table("usagewatch_meta", sa.column("name", sa.String), sa.column("value", sa.String))


def set_schema_version(value: str) -> None:
    """Bump ``usagewatch_meta.schema_version``: kept for releases before Alembic, which compare it
    and refuse a database newer than themselves."""
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value=value))
