"""Several endpoints in one pool: choice policies, ejection with backoff, recovery (real servers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pymysqlpool_registry import (
    ConnectionPool,
    GetConnectionFromPoolError,
    PoolConfig,
    Registry,
    hookimpl,
)
from pymysqlpool_registry.endpoints import Endpoint, EndpointState
from pymysqlpool_registry.testing import scalar, started_servers, wait_until
from pymysqlpool_registry.throwaway import ThrowawayServer


@pytest.fixture(scope="module")
def trio() -> Iterator[list[ThrowawayServer]]:
    """Three servers of this module's own (one gets stopped and started again)."""
    with started_servers(3) as servers:
        yield servers


@pytest.fixture
def pools() -> Iterator[list[ConnectionPool]]:
    made: list[ConnectionPool] = []
    yield made
    for pool in made:
        pool.close()


def make(
    pools: list[ConnectionPool], servers: list[ThrowawayServer], **settings: Any
) -> ConnectionPool:
    base = servers[0].connect_kwargs()
    endpoints = [f"127.0.0.1:{server.port}" for server in servers]
    pool = ConnectionPool(PoolConfig(**{**base, "endpoints": endpoints, **settings}))
    pools.append(pool)
    return pool


def port_of(conn: Any) -> int:
    return int(scalar(conn, "SELECT @@port"))


def open_by_port(pool: ConnectionPool) -> dict[int, int]:
    return {int(e["endpoint"].rsplit(":", 1)[1]): e["open"] for e in pool.endpoint_stats()}


def hold(pool: ConnectionPool, count: int) -> list[Any]:
    return [pool.get_connection(timeout=5) for _ in range(count)]


def test_endpoint_settings_parse_and_validate() -> None:
    config = PoolConfig(
        endpoints=["db1", "db2:3307", {"host": "db3", "weight": 2, "role": "reader"}]
    )
    assert [str(e) for e in config.endpoints] == ["db1:3306", "db2:3307", "db3:3306"]
    assert config.endpoints[2] == Endpoint(host="db3", weight=2, role="reader")
    with pytest.raises(ValueError, match="port must be a number"):
        PoolConfig(endpoints=["db1:x"])
    with pytest.raises(ValueError, match="weight"):
        PoolConfig(endpoints=[{"host": "db1", "weight": 0}])
    with pytest.raises(ValueError, match="'endpoints' or 'unix_socket'"):
        PoolConfig(endpoints=["db1"], unix_socket="/tmp/x.sock")
    with pytest.raises(ValueError, match="endpoint_policy"):
        PoolConfig(endpoint_policy="random")


def test_failover_uses_the_first_usable_endpoint(
    trio: list[ThrowawayServer], pools: list[ConnectionPool]
) -> None:
    pool = make(pools, trio, max_size=4)
    conns = hold(pool, 3)
    assert {port_of(conn) for conn in conns} == {trio[0].port}
    for conn in conns:
        conn.close()


def test_round_robin_spreads_by_weight(
    trio: list[ThrowawayServer], pools: list[ConnectionPool]
) -> None:
    pool = make(pools, trio, max_size=6, endpoint_policy="round-robin")
    conns = hold(pool, 6)
    assert sorted(port_of(conn) for conn in conns) == sorted(s.port for s in trio for _ in range(2))
    assert set(open_by_port(pool).values()) == {2}
    for conn in conns:
        conn.close()


def test_least_in_use_follows_weights(
    trio: list[ThrowawayServer], pools: list[ConnectionPool]
) -> None:
    base = trio[0].connect_kwargs()
    endpoints = [
        {"host": "127.0.0.1", "port": trio[0].port, "weight": 2},
        {"host": "127.0.0.1", "port": trio[1].port},
    ]
    pool = ConnectionPool(
        PoolConfig(
            **{**base, "endpoints": endpoints, "max_size": 6, "endpoint_policy": "least-in-use"}
        )
    )
    pools.append(pool)
    conns = hold(pool, 6)
    assert open_by_port(pool) == {trio[0].port: 4, trio[1].port: 2}
    conns[0].close()  # frees one on the weight-2 server...
    conns.pop(0)
    conns.append(pool.get_connection(timeout=5))  # ...which the next new connection refills
    assert open_by_port(pool)[trio[0].port] == 4
    for conn in conns:
        conn.close()


def test_a_dead_endpoint_is_ejected_then_tried_again(
    trio: list[ThrowawayServer], pools: list[ConnectionPool]
) -> None:
    first = trio[0]
    pool = make(pools, trio, max_size=4, eject_backoff=0.5)
    first.stop()
    try:
        with pool.connection(timeout=5) as conn:  # fails over to the second endpoint
            assert port_of(conn) == trio[1].port
        states = {e["endpoint"]: e for e in pool.endpoint_stats()}
        dead = states[f"127.0.0.1:{first.port}"]
        assert dead["failures"] == 1
        assert dead["ejected_for"] > 0
        assert "Can't connect" in dead["last_error"]
        held = hold(pool, 2)  # while ejected, new connections skip it at once
        assert {port_of(conn) for conn in held} == {trio[1].port}
        assert pool.stats()["connect_errors"] == 1
    finally:
        first.start()
    # after the ejection ends, failover prefers the first endpoint again
    wait_until(lambda: pool.endpoint_stats()[0]["ejected_for"] == 0, "the ejection to end")
    with pool.connection(timeout=5) as conn:
        assert port_of(conn) == first.port
    assert pool.endpoint_stats()[0]["failures"] == 0
    for conn in held:
        conn.close()


def test_idle_connections_of_an_ejected_endpoint_are_not_lent(
    trio: list[ThrowawayServer], pools: list[ConnectionPool]
) -> None:
    pool = make(pools, trio[:2], max_size=4, eject_backoff=30.0)
    pool.get_connection().close()  # an idle connection to the first endpoint
    pool._connector.endpoint_failed(
        pool._endpoints.states[0], OSError("down")
    )  # as if a connect failed
    with pool.connection(timeout=5) as conn:
        assert port_of(conn) == trio[1].port
    assert pool.stats()["discarded"] == 1


def test_every_endpoint_down_fails_in_time_naming_the_cause(
    trio: list[ThrowawayServer], pools: list[ConnectionPool]
) -> None:
    free_ports = [1, 2]  # nothing listens on these privileged ports on loopback
    pool = ConnectionPool(
        PoolConfig(
            **{**trio[0].connect_kwargs(), "endpoints": [f"127.0.0.1:{p}" for p in free_ports]},
            max_size=2,
        )
    )
    pools.append(pool)
    with pytest.raises(GetConnectionFromPoolError, match="Can't connect") as raised:
        pool.get_connection(timeout=0.5)
    assert raised.value.__cause__ is not None
    assert pool.stats()["total"] == 0
    assert all(e["failures"] >= 1 for e in pool.endpoint_stats())


class LastCandidate:
    """A plugin that always picks the last endpoint offered."""

    def __init__(self) -> None:
        self.offered: list[list[str]] = []

    @hookimpl
    def pymysqlpool_select_endpoint(self, candidates: list[EndpointState]) -> EndpointState:
        self.offered.append([str(state.endpoint) for state in candidates])
        return candidates[-1]


def test_hook_pymysqlpool_select_endpoint_plugin_chooses(trio: list[ThrowawayServer]) -> None:
    plugin = LastCandidate()
    registry = Registry(plugins=[plugin], load_entrypoints=False)
    endpoints = [f"127.0.0.1:{server.port}" for server in trio]
    registry.register("p", **trio[0].connect_kwargs(), endpoints=endpoints)
    try:
        with registry.get("p").connection() as conn:
            assert port_of(conn) == trio[2].port
        assert plugin.offered == [[f"127.0.0.1:{s.port}" for s in trio]]
    finally:
        registry.close_all()
