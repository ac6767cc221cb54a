"""The failover pack against a real read-only server: error 1290 invalidates the pool."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pymysql
import pytest
from pymysqlpool_registry_failover import PACK, READ_ONLY_ERRNOS, FailoverPolicy

from pymysqlpool_registry import ConnectionPool, PolicyManager, PoolConfig, Registry, Verdict
from pymysqlpool_registry.throwaway import ThrowawayServer

USER = "ro"
PASSWORD = "x"
TABLE = "test.failover_t"
IDLE = 3


@pytest.fixture
def writer_user(server: ThrowawayServer) -> Iterator[dict[str, Any]]:
    """Connect settings of a user without SUPER (read_only applies to it), and its table."""
    for sql in (
        f"DROP USER IF EXISTS '{USER}'@'127.0.0.1'",
        f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'",
        f"GRANT SELECT, INSERT, CREATE ON test.* TO '{USER}'@'127.0.0.1'",
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id INT PRIMARY KEY AUTO_INCREMENT)",
    ):
        server.query(sql)
    yield server.connect_kwargs(user=USER, password=PASSWORD)
    server.query(f"DROP TABLE IF EXISTS {TABLE}")
    server.query(f"DROP USER IF EXISTS '{USER}'@'127.0.0.1'")


@pytest.fixture
def read_only(server: ThrowawayServer, writer_user: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """writer_user's settings, the server read-only meanwhile; always writable again after."""
    server.query("SET GLOBAL read_only=1")
    try:
        yield writer_user
    finally:
        server.query("SET GLOBAL read_only=0")
    assert server.query("SELECT @@GLOBAL.read_only") == ((0,),)


def pool_of(registry: Registry, settings: dict[str, Any]) -> ConnectionPool:
    """A pool holding IDLE idle connections, with min_size 0 so nothing refills behind us."""
    registry.register("writer", **settings, max_size=IDLE)
    pool = registry.get("writer")
    held = [pool.get_connection() for _ in range(IDLE)]
    for conn in held:
        conn.close()
    assert pool.stats()["idle"] == IDLE
    return pool


def insert(pool: ConnectionPool) -> None:
    with pool.get_connection() as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {TABLE} () VALUES ()")


def insert_fails_read_only(pool: ConnectionPool) -> None:
    """INSERT in a loan: the server refuses it with 1290, and the error leaves the block."""
    with pytest.raises(pymysql.err.OperationalError) as info:
        insert(pool)
    assert info.value.args[0] == 1290


def sessions_of(server: ThrowawayServer, user: str) -> int:
    rows = server.query(
        f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
    )
    return int(rows[0][0])


def wait_for_sessions(server: ThrowawayServer, user: str, expected: int) -> int:
    """The user's session count once it reaches *expected*, or the last one seen (bounded)."""
    count = sessions_of(server, user)
    for _ in range(200):
        if count == expected:
            break
        time.sleep(0.01)
        count = sessions_of(server, user)
    return count


@pytest.fixture
def registries() -> Iterator[list[Registry]]:
    made: list[Registry] = []
    yield made
    for registry in made:
        registry.close_all()


def test_read_only_error_invalidates_the_pool(
    read_only: dict[str, Any], registries: list[Registry], server: ThrowawayServer
) -> None:
    registry = Registry(packs=["failover"])
    registries.append(registry)
    pool = pool_of(registry, read_only)
    assert wait_for_sessions(server, USER, IDLE) == IDLE
    insert_fails_read_only(pool)
    stats = pool.stats()
    assert stats["idle"] == 0
    assert stats["total"] == 0
    assert stats["discarded"] == IDLE
    assert stats["resets"] == 0
    assert wait_for_sessions(server, USER, 0) == 0
    with pool.connection() as conn, conn.cursor() as cur:  # reads still work, on a new connection
        cur.execute(f"SELECT COUNT(*) FROM {TABLE}")
        assert cur.fetchone() == (0,)
    assert pool.stats()["created"] == IDLE + 1


def test_without_the_pack_the_error_only_resets(
    read_only: dict[str, Any], registries: list[Registry], server: ThrowawayServer
) -> None:
    registry = Registry()
    registries.append(registry)
    pool = pool_of(registry, read_only)
    insert_fails_read_only(pool)
    stats = pool.stats()
    assert stats["idle"] == IDLE
    assert stats["discarded"] == 0
    assert stats["resets"] == 1
    assert stats["created"] == IDLE
    assert wait_for_sessions(server, USER, IDLE) == IDLE


def test_writable_again_after_read_only(
    writer_user: dict[str, Any], registries: list[Registry]
) -> None:
    registry = Registry(packs=["failover"])
    registries.append(registry)
    pool = pool_of(registry, writer_user)
    insert(pool)
    assert pool.stats()["discarded"] == 0
    assert pool.stats()["idle"] == IDLE


def test_pack_defaults_show_in_the_config() -> None:
    registry = Registry(packs=["failover"])
    config = registry.register("a", host="db1", ping_timeout=2.5)
    assert config.connect_timeout == 2.0
    assert config.ping_interval == 0.5
    assert config.ping_timeout == 2.5  # set by the registration: the pack does not touch it
    assert registry.config("a") == config
    assert registry.manager.packs == [PACK]


def test_pack_classifies_only_read_only_errors() -> None:
    assert isinstance(PACK.plugin, FailoverPolicy)
    hook = FailoverPolicy().pymysqlpool_classify_error
    for errno in sorted(READ_ONLY_ERRNOS):
        error = pymysql.err.OperationalError(errno, "read only")
        assert hook(pool=None, error=error) is Verdict.INVALIDATE_POOL
    assert hook(pool=None, error=pymysql.err.OperationalError(1213, "deadlock")) is None
    assert hook(pool=None, error=ValueError("not SQL")) is None


def test_the_pack_wins_over_the_default_in_a_writer_pool() -> None:
    """README: with the pack, 1290 invalidates the pool; without, a writer pool ejects the
    endpoint (the pack's hook runs first)."""
    writer = SimpleNamespace(config=PoolConfig(role="writer"), name="w")
    connection = SimpleNamespace(socket_open=True)
    error = pymysql.err.OperationalError(1290, "read-only")
    plain = PolicyManager(load_entrypoints=False)
    assert plain.classify_error(pool=writer, connection=connection, error=error) is (
        Verdict.EJECT_ENDPOINT
    )
    with_pack = PolicyManager(load_entrypoints=False)
    with_pack.add_pack(PACK)
    verdict = with_pack.classify_error(pool=writer, connection=connection, error=error)
    assert verdict is Verdict.INVALIDATE_POOL
