"""Schema migrations of the store, with Alembic, driven from code.

``env.py`` and ``versions/`` are an ordinary Alembic environment shipped inside the package; the
``Config`` is built here (``script_location`` points at this directory), so no ``alembic.ini`` is
needed at run time. ``Store.__init__`` calls :func:`ensure_schema`, which decides:

- an empty database: create it at the newest revision (head), by running the migrations;
- a database at an older revision (or one made by the release before migrations:
  ``usagewatch_meta.schema_version`` 5 and no ``alembic_version``, which is revision 0001):
  upgrade it to head, after copying an SQLite file aside;
- at head: nothing;
- a revision this version does not know (written by a newer usagewatch), an older schema than 5,
  or a database with other tables but no usagewatch schema: refuse with a StoreError that says so.

The check and the upgrade run in one transaction that holds a lock (a PostgreSQL advisory lock; an
SQLite ``BEGIN IMMEDIATE``), so two daemons starting together on one new database cannot both
create it, and a failed upgrade leaves the database as it was (both databases have transactional
DDL).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from usagewatch.errors import StoreError

log = logging.getLogger("usagewatch.store")

HERE = Path(__file__).resolve().parent
#: the revision a database made before migrations (schema_version 5, ``create_all``) is at
LEGACY_REVISION = "0001"
LEGACY_SCHEMA_VERSION = "5"
#: pg_advisory_xact_lock key of schema checks and upgrades ("uw" "schema" in ASCII, as a bigint)
PG_LOCK_KEY = 0x7577_7363_6865_6D61
USAGEWATCH_TABLES = frozenset({"findings", "outbox", "checkpoints", "usagewatch_meta"})


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` for the store's environment; with ``connection`` the migrations run on it."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    rev = script().get_current_head()
    assert rev is not None, "the store has no migrations"
    return rev


def known(revision: str) -> bool:
    try:
        return script().get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an unknown id
        return False


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands. ``revision`` None with ``empty`` True: a new, empty database."""

    revision: str | None
    empty: bool = False
    legacy: bool = False  # made before migrations (schema_version 5, no alembic_version)

    @property
    def at_head(self) -> bool:
        return self.revision == head()

    def describe(self) -> str:
        if self.empty:
            return "none (an empty database)"
        if self.legacy:
            return f"{self.revision} (schema {LEGACY_SCHEMA_VERSION}, made before migrations: no alembic_version yet)"
        return f"{self.revision} (head)" if self.at_head else f"{self.revision} (head is {head()})"


def inspect_schema(conn: Connection, where: str) -> SchemaState:
    """Where the database behind ``conn`` stands; StoreError when it is not one this version may use.
    ``where`` names the database in messages (a URL without its password)."""
    tables = set(sa.inspect(conn).get_table_names())
    if "alembic_version" in tables:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision is not None:
            if not known(revision):
                raise StoreError(
                    f"the database {where} was written by a newer version of usagewatch (schema revision "
                    f"{revision}, which this version does not know; the newest it knows is {head()}). "
                    "Run that newer version; this one will not touch the database.")
            return SchemaState(revision)
        tables.discard("alembic_version")
    if not tables:
        return SchemaState(None, empty=True)
    version = None
    if "usagewatch_meta" in tables:
        version = conn.execute(sa.text("SELECT value FROM usagewatch_meta WHERE name = 'schema_version'")).scalar()
    if version == LEGACY_SCHEMA_VERSION:
        return SchemaState(LEGACY_REVISION, legacy=True)
    if version is None and not tables & USAGEWATCH_TABLES:
        raise StoreError(
            f"the database {where} has tables ({', '.join(sorted(tables)[:5])}{', ...' if len(tables) > 5 else ''}) "
            "but none of usagewatch's; point `database` at an empty database (usagewatch creates its tables there)")
    if version is not None and version.isdigit() and int(version) > int(LEGACY_SCHEMA_VERSION):
        raise StoreError(
            f"the database {where} was written by a newer version of usagewatch (schema {version} without an "
            "alembic_version this version can read). Run that newer version; this one will not touch the database.")
    raise StoreError(
        f"the database {where} was written by an older version of usagewatch (schema {version or 1}) that this "
        f"version cannot upgrade: upgrades start at schema {LEGACY_SCHEMA_VERSION}. Move it aside to start a new "
        "one (positions are then re-read from the start of each log).")


def current(engine: Engine, where: str) -> SchemaState:
    with engine.connect() as conn:
        return inspect_schema(conn, where)


@dataclass(frozen=True)
class Upgraded:
    """What :func:`ensure_schema` did: ``before`` None means it created the schema in an empty database."""

    before: str | None
    after: str
    backup: Path | None = None
    legacy: bool = False  # ``before`` was a database made before migrations (schema_version 5)


def ensure_schema(engine: Engine, where: str) -> Upgraded | None:
    """Create or upgrade the schema to head when that is safe (see the module docstring); None when
    the database already was at head. Raises StoreError when the database must not be used."""
    if current(engine, where).at_head:  # the common case, without taking a lock
        return None
    with engine.begin() as conn:
        _lock(conn)
        state = inspect_schema(conn, where)  # again, under the lock: another process may have done it
        if state.at_head:
            return None
        backup = None if state.empty else _backup_sqlite(engine, state)
        if state.empty:
            log.info("creating the usagewatch schema (revision %s) in %s", head(), where)
        else:
            log.info("upgrading the database %s from schema revision %s to %s%s", where, state.revision, head(),
                     f" (the database before the upgrade is copied to {backup})" if backup else "")
        cfg = alembic_config(conn)
        try:
            if state.legacy:
                command.stamp(cfg, LEGACY_REVISION)
            command.upgrade(cfg, "head")
        except sa.exc.SQLAlchemyError as exc:  # the transaction rolls back: nothing was changed
            what = (f"create the schema (revision {head()}) in the database {where}" if state.empty else
                    f"upgrade the database {where} from revision {state.revision} to {head()}")
            raise StoreError(f"could not {what}; it is left as it was. "
                             f"{exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}") from None
    return Upgraded(state.revision, head(), backup, state.legacy)


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        # pysqlite opens a transaction only before DML: begin one now, holding the write lock, so the
        # DDL is inside it too (SQLite's DDL is transactional)
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _backup_sqlite(engine: Engine, state: SchemaState) -> Path | None:
    """Copy an SQLite database file aside before upgrading it: ``<file>.before-<head>``."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    target = Path(f"{database}.before-{head()}")
    if target.exists():
        target = Path(f"{database}.before-{head()}-from-{state.revision}")
    src = sqlite3.connect(database)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return target


def read_state(url: str) -> SchemaState:
    """Where the database at ``url`` stands, without changing anything (``usagewatch db current``)."""
    where = safe_url(url)
    try:
        engine = sa.create_engine(url)
    except Exception as exc:  # bad URL, missing driver
        raise StoreError(f"cannot open the database {where}: {exc}") from None
    try:
        return current(engine, where)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot open the database {where}: {exc.__class__.__name__}: {getattr(exc, 'orig', exc)}") from None
    finally:
        engine.dispose()


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"
