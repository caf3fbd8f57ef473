"""The store tests run against SQLite and PostgreSQL: ``store_url`` (tests/helpers/stores.py) is
imported here until tests/conftest.py registers that module as a plugin."""

from tests.helpers.stores import postgres_url, store_url  # noqa: F401
