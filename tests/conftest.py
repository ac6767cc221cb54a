"""Shared fixtures: one throwaway MariaDB server for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pymysqlpool_registry.throwaway import ServerNotFound, ThrowawayServer


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
