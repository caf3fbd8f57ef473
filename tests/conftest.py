"""Shared fixtures. Server fixtures live in tests/helpers/ and are registered here as plugins."""

pytest_plugins = [
    "tests.helpers.servers",
    "tests.helpers.postgres",
    "tests.helpers.mariadb",
    "tests.helpers.smtp",
    "tests.helpers.http",
    "tests.helpers.stores",
]
