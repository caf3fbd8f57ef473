"""Store databases for tests, on SQLite and on PostgreSQL: the fixture ``store_url``.

``store_url`` is parametrized over ``sqlite`` (a file in the test's temp dir) and ``postgresql`` (a
fresh database per test, ``uw_test_<random>``, on the local server, dropped afterwards), so a test
that takes it runs against both. The server is ``127.0.0.1:5432`` as user ``postgres`` with trust
auth, or the libpq connection string in ``USAGEWATCH_TEST_POSTGRES`` (e.g.
``host=/run/postgresql port=5433 user=me``). When it cannot be reached the PostgreSQL case calls
``need_server``: a skip locally, a failure in CI.

A pytest plugin module: register it in ``tests/conftest.py`` (``pytest_plugins``) or import the
fixture where it is used.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import need_server

POSTGRES_ENV = "USAGEWATCH_TEST_POSTGRES"
DEFAULT_POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
BACKENDS = ("sqlite", "postgresql")


def _admin_conninfo() -> str:
    return os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES


def _url_for(conninfo: str, dbname: str) -> str:
    """A SQLAlchemy URL (psycopg 3) for ``dbname`` on the server of the libpq ``conninfo``."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    host = params.pop("host", None)
    port = params.pop("port", None)
    url = URL.create("postgresql+psycopg", username=params.pop("user", None), password=params.pop("password", None),
                     host=host if host and not host.startswith("/") else None,
                     port=int(port) if port else None, database=dbname)
    params.pop("dbname", None)
    if host and host.startswith("/"):
        params["host"] = host  # a unix socket directory goes in the query string
    return url.update_query_dict(params).render_as_string(hide_password=False)


def postgres_database() -> Iterator[str]:
    """Create a fresh database on the test server, yield its URL, drop it (closing any sessions)."""
    import psycopg

    conninfo = _admin_conninfo()
    try:
        admin = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        problem = (str(exc).strip() or exc.__class__.__name__).splitlines()[0]
        admin = None
    if admin is None:
        need_server(f"PostgreSQL is not reachable ({conninfo!r}; set {POSTGRES_ENV} for another server): {problem}")
        return  # need_server skipped or failed the test
    name = f"uw_test_{secrets.token_hex(6)}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _url_for(conninfo, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty store database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/uw.db"
    else:
        yield from postgres_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (for tests that are about PostgreSQL only)."""
    yield from postgres_database()
