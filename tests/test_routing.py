"""Read/write routing and endpoint vetting: roles, the check_endpoint hook, EJECT_ENDPOINT.

Two real servers of this module's own; "read-only" is the server's real ``read_only`` flag
(root may still write, so the tests look at where connections go, not at write errors).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pymysql
import pytest

from pymysqlpool_registry import (
    ConnectionPool,
    GetConnectionFromPoolError,
    PoolConfig,
    Registry,
    Verdict,
    hookimpl,
)
from pymysqlpool_registry.default_plugins.reusability import pymysqlpool_classify_error
from pymysqlpool_registry.endpoints import Endpoint
from pymysqlpool_registry.testing import scalar, started_servers, wait_until
from pymysqlpool_registry.throwaway import ThrowawayServer


@pytest.fixture(scope="module")
def pair() -> Iterator[list[ThrowawayServer]]:
    with started_servers(2) as servers:
        yield servers


@pytest.fixture
def read_only(pair: list[ThrowawayServer]) -> Iterator[ThrowawayServer]:
    """The first server, with read_only=ON for the test."""
    pair[0].query("SET GLOBAL read_only = ON")
    yield pair[0]
    pair[0].query("SET GLOBAL read_only = OFF")


def roles(pair: list[ThrowawayServer], first: str, second: str) -> dict[str, Any]:
    return {
        **pair[0].connect_kwargs(),
        "endpoints": [
            {"host": "127.0.0.1", "port": pair[0].port, "role": first},
            {"host": "127.0.0.1", "port": pair[1].port, "role": second},
        ],
    }


def port_of(pool: ConnectionPool) -> int:
    with pool.connection(timeout=5) as conn:
        return int(scalar(conn, "SELECT @@port"))


def test_registry_routes_reads_to_readers_and_writes_to_the_writer(
    pair: list[ThrowawayServer],
) -> None:
    registry = Registry(load_entrypoints=False)
    registry.register("orders", **roles(pair, "writer", "reader"), max_size=2)
    try:
        reader, writer = registry.get("orders", role="read"), registry.get("orders", role="write")
        assert (reader.name, writer.name) == ("orders[read]", "orders[write]")
        assert registry.get("orders", role="read") is reader
        assert (port_of(reader), port_of(writer)) == (pair[1].port, pair[0].port)
        with pytest.raises(ValueError, match="role must be 'read' or 'write'"):
            registry.get("orders", role="admin")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"cannot contain '\['"):
            registry.register("orders[read]", host="db")
        registry.remove("orders")  # closes every pool the name stands for
        assert reader.stats()["total"] == writer.stats()["total"] == 0
    finally:
        registry.close_all()


def test_reads_fall_back_to_the_writer_but_writes_never_to_a_reader(
    pair: list[ThrowawayServer], read_only: ThrowawayServer
) -> None:
    # the reader endpoint is down (a closed port); the writer is pair[1]; pair[0] is read-only
    dead = {"host": "127.0.0.1", "port": 1, "role": "reader"}
    config = PoolConfig(
        **{
            **pair[0].connect_kwargs(),
            "endpoints": [dead, {"host": "127.0.0.1", "port": pair[1].port, "role": "writer"}],
        },
        max_size=2,
    )
    reader = ConnectionPool(config.updated(role="reader"), name="r")
    try:
        assert port_of(reader) == pair[1].port  # a read goes to the writer
    finally:
        reader.close()
    # a writer pool whose only endpoints are a read-only server: refused, fast, named
    writer = ConnectionPool(
        PoolConfig(**roles(pair, "reader", "reader"), role="writer", max_size=2, min_size=0),
        name="w",
    )
    try:
        pair[1].query("SET GLOBAL read_only = ON")
        started = time.monotonic()
        with pytest.raises(GetConnectionFromPoolError) as raised:
            writer.get_connection(timeout=5)
        assert str(raised.value).startswith("can't get connection from pool(w): no usable endpoint")
        assert time.monotonic() - started < 2  # an answer, not a wait for the deadline
        assert str(raised.value).count("read-only") == 2
        assert writer.stats()["total"] == 0
    finally:
        pair[1].query("SET GLOBAL read_only = OFF")
        writer.close()


def test_writer_pool_finds_the_writable_endpoint(
    pair: list[ThrowawayServer], read_only: ThrowawayServer
) -> None:
    pool = ConnectionPool(
        PoolConfig(**roles(pair, "writer", "any"), role="writer", max_size=2), name="w"
    )
    try:
        assert port_of(pool) == pair[1].port  # the "writer" endpoint is read-only: skipped
        stats = {e["endpoint"]: e for e in pool.endpoint_stats()}
        assert "read-only" in stats[f"127.0.0.1:{read_only.port}"]["last_error"]
        # each endpoint's current role as the check found it
        assert stats[f"127.0.0.1:{read_only.port}"]["check"] == "read-only"
        assert stats[f"127.0.0.1:{pair[1].port}"]["check"] == "ok"
    finally:
        pool.close()


def test_1290_in_a_writer_pool_ejects_its_endpoint(pair: list[ThrowawayServer]) -> None:
    """The writer turns read-only under the pool (a failover): a write's 1290 retires every
    connection to it and the pool carries on at the endpoint that can write."""
    pair[0].query("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app-secret'")
    pair[0].query("GRANT ALL ON test.* TO 'app'@'%'")
    pair[0].query("CREATE TABLE IF NOT EXISTS test.t1290 (id INT)")
    kwargs = roles(pair, "writer", "writer")
    kwargs.update(user="app", password="app-secret")
    pair[1].query("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app-secret'")
    pair[1].query("GRANT ALL ON test.* TO 'app'@'%'")
    pair[1].query("CREATE TABLE IF NOT EXISTS test.t1290 (id INT)")
    pool = ConnectionPool(PoolConfig(**kwargs, role="writer", max_size=3, min_size=2), name="w")
    try:
        held = [pool.get_connection(timeout=5) for _ in range(2)]
        assert {int(scalar(c, "SELECT @@port")) for c in held} == {pair[0].port}
        held[1].close()  # idle, to the old writer
        pair[0].query("SET GLOBAL read_only = ON")
        with pytest.raises(pymysql.err.OperationalError) as raised, held[0] as conn:
            conn.execute("INSERT INTO t1290 VALUES (1)")
        assert raised.value.args[0] == 1290
        with pool.connection(timeout=5) as conn:
            conn.execute("INSERT INTO t1290 VALUES (1)")
            assert int(scalar(conn, "SELECT @@port")) == pair[1].port
        assert pool.stats()["discarded"] >= 2  # the one that failed and the idle one
    finally:
        pair[0].query("SET GLOBAL read_only = OFF")
        pool.close()


class Maintenance:
    """A plugin that takes one endpoint out of service."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.checked: list[int] = []

    @hookimpl
    def pymysqlpool_check_endpoint(self, endpoint: Endpoint) -> str | None:
        self.checked.append(endpoint.port)
        return "in maintenance" if endpoint.port == self.port else None


def test_hook_pymysqlpool_check_endpoint_refuses_an_endpoint(
    pair: list[ThrowawayServer],
) -> None:
    plugin = Maintenance(pair[0].port)
    registry = Registry(plugins=[plugin], load_entrypoints=False)
    endpoints = [f"127.0.0.1:{server.port}" for server in pair]
    registry.register("p", **pair[0].connect_kwargs(), endpoints=endpoints, max_size=2)
    try:
        pool = registry.get("p")
        assert port_of(pool) == pair[1].port
        assert plugin.checked[:2] == [pair[0].port, pair[1].port]
        refused = pool.endpoint_stats()[0]
        assert refused["ejected_for"] > 0 and "in maintenance" in refused["last_error"]
        assert pool.stats()["total"] == 1  # the refused connection was closed, not kept
    finally:
        registry.close_all()


def test_default_verdicts_for_failover_errors(pair: list[ThrowawayServer]) -> None:
    read_only = pymysql.err.OperationalError(1290, "running with --read-only")
    not_ready = pymysql.err.OperationalError(1047, "WSREP has not yet prepared node")

    pool = ConnectionPool(PoolConfig(**pair[0].connect_kwargs(), min_size=0))

    def verdict(error: BaseException, **settings: Any) -> Verdict:
        """The default plugin's verdict for a pool configured with *settings*."""
        configured: Any = SimpleNamespace(config=PoolConfig(**settings))
        with pool.connection(timeout=5) as conn:
            return pymysqlpool_classify_error(pool=configured, connection=conn, error=error)

    assert verdict(read_only, role="writer") is Verdict.EJECT_ENDPOINT
    assert verdict(read_only) is Verdict.RESET  # a plain pool: an error like any other
    assert verdict(not_ready, cluster="galera") is Verdict.EJECT_ENDPOINT
    assert verdict(not_ready) is Verdict.RESET
    pool.close()


def test_role_and_cluster_settings_validate() -> None:
    with pytest.raises(ValueError, match="'role' must be in"):
        PoolConfig(role="primary")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'cluster' must be in"):
        PoolConfig(cluster="ndb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_replica_lag"):
        PoolConfig(max_replica_lag=-1)


def test_a_full_server_is_skipped_without_retiring_its_connections(
    pair: list[ThrowawayServer],
) -> None:
    """max_connections exhausted on the first endpoint: a new connection goes to the second,
    and the connection already open to the first stays in use (the server is full, not down)."""
    first = pair[0]
    # the sessions of earlier tests' pools close asynchronously; let them go first
    wait_until(lambda: first.status("Threads_connected") == 1, "earlier sessions to close")
    pool = ConnectionPool(
        PoolConfig(**roles(pair, "any", "any"), min_size=1, max_size=4), name="full"
    )
    fillers: list[Any] = []
    try:
        held = pool.get_connection(timeout=5)
        assert held.port == first.port
        first.query("SET GLOBAL max_connections = 10")
        for _ in range(50):  # bounded: 10 plus the one extra a SUPER user gets
            try:
                fillers.append(pymysql.connect(**first.connect_kwargs()))
            except pymysql.err.OperationalError as exc:
                assert exc.args[0] == 1040
                break
        else:
            pytest.fail("max_connections never ran out")
        with pool.connection(timeout=5) as other:
            assert other.port == pair[1].port
            states = {e["endpoint"]: e for e in pool.endpoint_stats()}
            assert states[f"127.0.0.1:{first.port}"]["ejected_for"] > 0
            assert "1040" in states[f"127.0.0.1:{first.port}"]["last_error"]
            held.close()
            with pool.connection(timeout=5) as again:  # the only idle one: not retired
                assert again is held
    finally:
        for conn in fillers:
            conn.close()
        first.query("SET GLOBAL max_connections = 151")
        pool.close()
