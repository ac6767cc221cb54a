"""A pytest plugin for this project and for plugin authors: a throwaway MariaDB per test session.

Enable it with ``pytest_plugins = ["pymysqlpool_registry.testing"]`` in a top-level conftest.py.
When pytest loads it, it sets ``PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD=1`` so that installed plugins
do not leak into every test's registry; a test of entry-point loading removes it with
``monkeypatch.delenv``. Importing it changes nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest

from .connection import Connection
from .entry import PoolEntry
from .pool import ConnectionPool
from .throwaway import ServerNotFound, ThrowawayServer


def pytest_configure(config: pytest.Config) -> None:
    """Keep installed plugins out of every test's registry (set when pytest loads this plugin,
    not when the module is imported)."""
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


@contextmanager
def started_servers(count: int) -> Iterator[list[ThrowawayServer]]:
    """*count* started ThrowawayServers of the caller's own (a module's fixture), closed after."""
    servers = [ThrowawayServer() for _ in range(count)]
    try:
        for srv in servers:
            srv.start()
        yield servers
    finally:
        for srv in servers:
            srv.close()


# --- what a pool holds, for tests ---


@attrs.frozen
class PoolSnapshot:
    """A pool's connections at one moment: idle (in lending order) and lent."""

    idle: tuple[Connection, ...]
    lent: frozenset[Connection]
    waiting: int
    total: int


def snapshot(pool: ConnectionPool) -> PoolSnapshot:
    """What *pool* holds now, read under its lock (the one place tests look inside a pool)."""
    inventory = pool._inventory
    with inventory.lock:
        line = inventory.line
        return PoolSnapshot(
            tuple(inventory.idle), frozenset(inventory.lent), len(line.waiters), line.total
        )


def entry(conn: Connection) -> PoolEntry:
    """The pool's record of *conn*: who holds it, since when, its endpoint and lifetime."""
    return conn._entry


# --- helpers for tests that talk to a real server from several threads ---

#: Seconds any bounded poll or join in a test may take before the test fails.
WAIT_LIMIT = 15.0


def scalar(conn: Any, sql: str, args: Any = None) -> Any:
    """The first column of the first row of *sql* on *conn*."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    return None if row is None else row[0]


def connection_id(conn: Any) -> int:
    """The server's id of *conn*'s session."""
    return int(scalar(conn, "SELECT CONNECTION_ID()"))


def wait_until(predicate: Callable[[], object], what: str, limit: float = WAIT_LIMIT) -> None:
    """Poll *predicate* until it holds; fail the test after *limit* seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit} s waiting for {what}")
        time.sleep(0.002)


class Worker(threading.Thread):
    """A thread that keeps its target's result or exception for the test thread."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self._call = (target, args)
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        target, args = self._call
        try:
            self.result = target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by finish()
            self.error = exc

    def finish(self, limit: float = WAIT_LIMIT) -> Any:
        """Join within *limit* seconds and re-raise what the target raised."""
        self.join(limit)
        assert not self.is_alive(), f"thread {self.name} still running after {limit} s"
        if self.error is not None:
            raise self.error
        return self.result


def start_thread(target: Callable[..., Any], *args: Any) -> Worker:
    """Run ``target(*args)`` in a started :class:`Worker`."""
    worker = Worker(target, *args)
    worker.start()
    return worker
