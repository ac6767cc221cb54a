"""Endpoint health under concurrency: ejection races, bounded checks, re-checks, fallbacks.

Two endpoints naming the session server twice (``127.0.0.1:port`` and ``localhost:port``)
stand for two servers; plugins refuse one of them, or stall a borrower at a chosen moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pymysql
import pytest

from pymysqlpool_registry import (
    ConnectionPool,
    Endpoint,
    GetConnectionFromPoolError,
    PluginError,
    PoolClosedError,
    PoolConfig,
    Registry,
    hookimpl,
)
from pymysqlpool_registry.testing import WAIT_LIMIT, entry, wait_until
from pymysqlpool_registry.throwaway import ThrowawayServer

READ_ONLY_ERROR = pymysql.err.OperationalError(1290, "The server is running with --read-only")


@pytest.fixture
def twice(server: ThrowawayServer) -> dict[str, Any]:
    """The session server as two endpoints: "127.0.0.1" first, then "localhost"."""
    return {
        **server.connect_kwargs(),
        "endpoints": [f"127.0.0.1:{server.port}", f"localhost:{server.port}"],
    }


@pytest.fixture
def registry() -> Iterator[Registry]:
    pools = Registry(load_entrypoints=False)
    yield pools
    pools.close_all()


def host_of(conn: Any) -> str:
    return str(entry(conn).endpoint.endpoint.host)


def by_host(pool: ConnectionPool) -> dict[str, dict[str, Any]]:
    return {e["endpoint"].split(":")[0]: e for e in pool.endpoint_stats()}


class Refuse:
    """Refuses the endpoints whose host is in ``hosts`` (a maintenance flag, say)."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = set(hosts)

    @hookimpl(tryfirst=True)
    def pymysqlpool_check_endpoint(self, endpoint: Endpoint) -> str | None:
        return "maintenance" if endpoint.host in self.hosts else None


def test_a_connection_opened_while_its_endpoint_fails_is_not_lent(
    registry: Registry, twice: dict[str, Any]
) -> None:
    """Thread A's connect to 127.0.0.1 passes its check; before A adopts it, a write there
    meets 1290 and ejects the endpoint. A must not get that connection, nor end the ejection."""
    checked, go_on = threading.Event(), threading.Event()

    class StallA:
        @hookimpl(hookwrapper=True)
        def pymysqlpool_check_endpoint(self) -> Generator[None, Any, None]:
            yield
            if threading.current_thread().name == "A":
                checked.set()
                go_on.wait(10)

    registry.manager.register(StallA())
    registry.register("orders", **twice, min_size=0, check_owner_thread=False)
    pool = registry.get("orders", role="write")
    got: dict[str, Any] = {}
    thread_a = threading.Thread(
        target=lambda: got.update(conn=pool.get_connection(timeout=5)), name="A"
    )
    thread_a.start()
    try:
        assert checked.wait(5)
        with pytest.raises(pymysql.err.OperationalError), pool.get_connection(timeout=5) as conn:
            assert host_of(conn) == "127.0.0.1"
            raise READ_ONLY_ERROR  # the default classifies it EJECT_ENDPOINT in a writer pool
        assert by_host(pool)["127.0.0.1"]["ejected_for"] > 0
    finally:
        go_on.set()
        thread_a.join(10)
    assert host_of(got["conn"]) == "localhost"  # A moved on to the other endpoint
    stats = by_host(pool)
    assert stats["127.0.0.1"]["ejected_for"] > 0 and stats["127.0.0.1"]["open"] == 0
    got["conn"].close()


def test_many_reports_of_one_failure_eject_once(registry: Registry, twice: dict[str, Any]) -> None:
    """Five writes in flight on a demoted writer all get 1290: one ejection of eject_backoff
    seconds, not five doublings."""
    registry.register("orders", **twice, eject_backoff=1.0, max_size=8, check_owner_thread=False)
    pool = registry.get("orders", role="write")
    held = [pool.get_connection(timeout=5) for _ in range(5)]
    assert {host_of(conn) for conn in held} == {"127.0.0.1"}
    for conn in held:
        with pytest.raises(pymysql.err.OperationalError), conn:
            raise READ_ONLY_ERROR
    stats = by_host(pool)["127.0.0.1"]
    assert stats["failures"] == 1
    assert 0 < stats["ejected_for"] <= 1.0
    assert pool.stats()["total"] == 0


def test_an_endpoint_check_on_a_stalled_server_is_bounded(
    registry: Registry, server: ThrowawayServer
) -> None:
    """The server stops answering between the handshake and the writer check: the borrower
    gets its error within the connect timeout instead of waiting for the server."""

    resume = threading.Timer(6.0, server.resume)  # a stall that ends by itself

    class PauseBeforeCheck:
        @hookimpl(hookwrapper=True)
        def pymysqlpool_check_endpoint(self) -> Generator[None, Any, None]:
            server.pause()
            resume.start()
            yield

    registry.manager.register(PauseBeforeCheck())
    kwargs = server.connect_kwargs(connect_timeout=1.0)
    registry.register("orders", **kwargs, role="writer", min_size=0)
    pool = registry.get("orders")
    started = time.monotonic()
    try:
        with pytest.raises(GetConnectionFromPoolError):
            pool.get_connection(timeout=1)
        assert time.monotonic() - started < 4  # unbounded, it would wait the 6 s pause out
    finally:
        resume.cancel()
        server.resume()
    assert pool.stats()["total"] == 0


def test_a_failing_select_hook_fails_the_request_once(
    registry: Registry, twice: dict[str, Any]
) -> None:
    class Broken:
        calls = 0

        @hookimpl(tryfirst=True)
        def pymysqlpool_select_endpoint(self) -> None:
            Broken.calls += 1
            raise LookupError("service registry unreachable")

    registry.manager.register(Broken())
    registry.register("orders", **twice, min_size=0)
    pool = registry.get("orders")
    with pytest.raises(PluginError, match="service registry unreachable"):
        pool.get_connection(timeout=0)
    assert Broken.calls == 1  # no spinning
    assert pool.stats()["total"] == 0 and pool.stats()["connect_errors"] == 0


def test_idle_endpoints_are_rechecked_and_a_refused_one_is_ejected(
    registry: Registry, twice: dict[str, Any]
) -> None:
    refuse = Refuse()
    registry.manager.register(refuse)
    registry.register("orders", **twice, min_size=2, endpoint_check_interval=0.1)
    pool = registry.get("orders")
    assert by_host(pool)["127.0.0.1"]["open"] == 2  # failover: all on the first endpoint
    refuse.hosts.add("127.0.0.1")  # goes into maintenance while its connections are idle
    wait_until(lambda: by_host(pool)["127.0.0.1"]["check"] == "maintenance", "a re-check")
    wait_until(lambda: by_host(pool)["127.0.0.1"]["open"] == 0, "its idle connections retired")
    with pool.connection(timeout=5) as conn:
        assert host_of(conn) == "localhost"


def test_a_fallback_connection_is_kept_only_briefly(
    registry: Registry, server: ThrowawayServer
) -> None:
    """A reader pool reading from the writer (its reader was down) goes back to the reader
    within 30 s, not after max_lifetime."""
    registry.register(
        "orders",
        **server.connect_kwargs(),
        endpoints=[
            {"host": "127.0.0.1", "port": server.port, "role": "writer"},
            {"host": "127.0.0.1", "port": 1, "role": "reader"},  # a closed port
        ],
        min_size=0,
        max_lifetime=3600.0,
    )
    reader, writer = registry.get("orders", role="read"), registry.get("orders", role="write")
    with reader.connection(timeout=5) as fallback, writer.connection(timeout=5) as preferred:
        assert fallback.port == preferred.port == server.port
        now = time.monotonic()
        assert entry(fallback).expires_at - now <= 30.0
        assert entry(preferred).expires_at - now > 3000.0


def test_round_robin_does_not_pile_onto_a_rejoining_endpoint(
    registry: Registry, twice: dict[str, Any]
) -> None:
    refuse = Refuse("localhost")
    registry.manager.register(refuse)
    registry.register(
        "orders",
        **twice,
        endpoint_policy="round-robin",
        min_size=0,
        max_size=12,
        eject_backoff=0.1,
        check_owner_thread=False,
    )
    pool = registry.get("orders")
    held = [pool.get_connection(timeout=5) for _ in range(8)]
    assert {host_of(conn) for conn in held} == {"127.0.0.1"}
    for conn in held:
        conn.close()
    pool.invalidate()
    refuse.hosts.clear()  # back after maintenance
    wait_until(lambda: by_host(pool)["localhost"]["ejected_for"] == 0, "the ejection to end")
    held = [pool.get_connection(timeout=5) for _ in range(4)]
    hosts = sorted(host_of(conn) for conn in held)
    assert hosts == ["127.0.0.1", "127.0.0.1", "localhost", "localhost"]
    for conn in held:
        conn.close()


def test_endpoints_from_one_comma_separated_string() -> None:
    config = PoolConfig(endpoints="db1:3307, db2 ,[::1]:3308")
    assert [str(e) for e in config.endpoints] == ["db1:3307", "db2:3306", "::1:3308"]


class HoldFirstConnect:
    """Plugin: the first connect any pool makes waits until released, so a test can act
    while a registry is building a pool (min_size=1 connects during the build)."""

    def __init__(self) -> None:
        self.building = threading.Event()
        self.release = threading.Event()
        self.pools: list[ConnectionPool] = []

    @hookimpl(tryfirst=True)
    def pymysqlpool_create_connection(self, pool: ConnectionPool) -> None:
        self.pools.append(pool)
        if len(self.pools) == 1:
            self.building.set()
            assert self.release.wait(WAIT_LIMIT)
        # returning None: the default plugin connects


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run *call* in a started thread; the list gets its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_registry_get_builds_from_the_settings_current_when_it_builds(
    server: ThrowawayServer,
) -> None:
    """A register(replace=True) while one thread builds the pool and another waits for it:
    both get the pool built from the new settings; the one built from the old is closed."""
    hold = HoldFirstConnect()
    registry = Registry(plugins=[hold], load_entrypoints=False)
    try:
        registry.register("orders", **server.connect_kwargs(), min_size=1)
        first, first_got = in_thread(lambda: registry.get("orders", role="write"))
        assert hold.building.wait(WAIT_LIMIT)  # the first thread is building the pool
        second, second_got = in_thread(lambda: registry.get("orders", role="write"))
        time.sleep(0.2)  # the second thread waits for that build
        kwargs = server.connect_kwargs(database="test")
        registry.register("orders", **kwargs, min_size=1, replace=True)
        hold.release.set()
        first.join(WAIT_LIMIT)
        second.join(WAIT_LIMIT)
        [pool], [again] = first_got, second_got
        assert pool is again is registry.get("orders", role="write")
        assert pool.config.database == "test"
        old = hold.pools[0]
        assert old is not pool
        with pytest.raises(PoolClosedError):
            old.get_connection(timeout=0)
    finally:
        hold.release.set()
        registry.close_all()


def test_registry_get_of_a_name_removed_meanwhile_says_unknown(server: ThrowawayServer) -> None:
    hold = HoldFirstConnect()
    registry = Registry(plugins=[hold], load_entrypoints=False)
    try:
        registry.register("orders", **server.connect_kwargs(), min_size=1)
        first, first_got = in_thread(lambda: registry.get("orders", role="read"))
        assert hold.building.wait(WAIT_LIMIT)
        second, second_got = in_thread(lambda: registry.get("orders", role="read"))
        time.sleep(0.2)
        registry.remove("orders")
        hold.release.set()
        first.join(WAIT_LIMIT)
        second.join(WAIT_LIMIT)
        assert [type(e).__name__ for e in (*first_got, *second_got)] == ["UnknownPoolError"] * 2
        assert registry.stats() == {}
        with pytest.raises(PoolClosedError):
            hold.pools[0].get_connection(timeout=0)
    finally:
        hold.release.set()
        registry.close_all()


def test_set_endpoints_replaces_the_list_at_run_time(
    registry: Registry, server: ThrowawayServer
) -> None:
    """As a cloud plugin would after asking its API: the endpoint that stays keeps its state,
    connections to the one removed are closed (idle now, lent when they come back)."""
    first, second = f"127.0.0.1:{server.port}", f"localhost:{server.port}"
    registry.register("orders", **server.connect_kwargs(), endpoints=[first], min_size=2)
    pool = registry.get("orders")
    lent = pool.get_connection(timeout=5)
    pool.set_endpoints(f"{second}, 127.0.0.1:1")
    assert [e["endpoint"] for e in pool.endpoint_stats()] == [second, "127.0.0.1:1"]
    assert [str(e) for e in pool.config.endpoints] == [second, "127.0.0.1:1"]
    with pool.connection(timeout=5) as conn:
        assert host_of(conn) == "localhost"  # the idle one to 127.0.0.1 was not lent
    lent.close()  # closed, not kept: its endpoint is gone
    assert pool.stats()["in_use"] == 0
    wait_until(lambda: pool.endpoint_stats()[0]["open"] == 2, "the refill to min_size")
    assert pool.stats()["total"] == 2
    pool.set_endpoints([second])  # kept: same state, same connections
    assert pool.endpoint_stats()[0]["open"] == 2
    with pytest.raises(ValueError, match="port"):
        pool.set_endpoints(["db:notaport"])
