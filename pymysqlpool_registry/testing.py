"""A pytest plugin for this project and for plugin authors: a throwaway MariaDB per test session.

Enable it with ``pytest_plugins = ["pymysqlpool_registry.testing"]`` in a top-level conftest.py.
It also sets ``PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD=1`` so that installed plugins do not leak into
every test's registry; a test of entry-point loading removes it with ``monkeypatch.delenv``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from .throwaway import ServerNotFound, ThrowawayServer

os.environ["PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD"] = "1"


@pytest.fixture(scope="session")
def server() -> Iterator[ThrowawayServer]:
    """A started ThrowawayServer shared by the session; closed at the end."""
    try:
        srv = ThrowawayServer()
    except ServerNotFound as exc:  # CI installs mariadb-server: missing binaries are a failure
        pytest.fail(str(exc), pytrace=False)
    with srv:
        yield srv


@pytest.fixture
def connect_kwargs(server: ThrowawayServer) -> dict[str, Any]:
    """Keyword arguments for pymysql.connect() to the session server."""
    return server.connect_kwargs()
