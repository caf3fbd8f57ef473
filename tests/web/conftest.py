"""A real SQLite store with one finding, and the http config whose secret is in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.test_store import update
from usagewatch.config import HttpConfig
from usagewatch.store import Batch, Store

SECRET = "test-signing-key-0123456789abcdef"
SECRET_ENV = "USAGEWATCH_TEST_LINK_SECRET"


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> HttpConfig:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return HttpConfig(listen="127.0.0.1:0", public_url="https://uw.example.com/", secret_env=SECRET_ENV)


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/uw.db", "https://wiki.example.com/howto/")
    s.commit(Batch([update(136)]))
    yield s
    s.close()
