"""Alembic's environment for the usagewatch store.

Run from code (``usagewatch.store.migrate``): the caller passes an open connection in
``config.attributes["connection"]``, so the upgrade runs on the very connection (and PostgreSQL
advisory lock) the store holds. ``sqlalchemy.url`` is used only when there is none (offline SQL
generation, or a developer running Alembic by hand).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from usagewatch.store.tables import metadata

config = context.config


def _configure(**kw: object) -> None:
    context.configure(
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: autogenerate batch (copy-and-move) ops
        compare_type=True,
        **kw,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
