"""Registry: named pools built once on first use, against the throwaway server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import pymysqlpool_registry
from pymysqlpool_registry import (
    ConnectionPool,
    PoolClosedError,
    PoolConfig,
    Registry,
    UnknownPoolError,
    hookimpl,
)

WAIT = 30.0  # seconds: the bound on every wait in this file


@pytest.fixture
def reg() -> Iterator[Registry]:
    registry = Registry()
    yield registry
    registry.close_all()


def is_closed(pool: ConnectionPool) -> bool:
    try:
        pool.get_connection(timeout=0).close()
    except PoolClosedError:
        return True
    return False


def test_get_builds_once_and_returns_the_same_pool(
    reg: Registry, connect_kwargs: dict[str, Any]
) -> None:
    config = reg.register("main", **connect_kwargs, min_size=1)
    assert isinstance(config, PoolConfig)
    pool = reg.get("main")
    assert isinstance(pool, ConnectionPool)
    assert pool.name == "main"
    assert pool.config == config
    assert reg.get("main") is pool
    assert reg.get("main") is pool
    assert pool.stats()["created"] == 1
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_register_a_config_with_overrides(reg: Registry, connect_kwargs: dict[str, Any]) -> None:
    base = PoolConfig.from_kwargs(**connect_kwargs, max_size=3)
    config = reg.register("tuned", base, max_size=7)
    assert config.max_size == 7
    assert config.host == base.host
    assert reg.config("tuned") == config
    assert reg.get("tuned").config.max_size == 7


def test_get_unknown_name_lists_registered_ones(reg: Registry) -> None:
    with pytest.raises(UnknownPoolError, match=r"'nope'.*none"):
        reg.get("nope")
    reg.register("alpha", host="db1")
    reg.register("beta", host="db2")
    with pytest.raises(UnknownPoolError) as info:
        reg.get("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert "'alpha'" in message
    assert "'beta'" in message
    assert isinstance(info.value, LookupError)


def test_register_twice_needs_replace(reg: Registry) -> None:
    reg.register("main", host="db1")
    with pytest.raises(ValueError, match=r"'main'.*replace=True"):
        reg.register("main", host="db2")
    assert reg.config("main").host == "db1"


def test_replace_closes_the_built_pool(reg: Registry, connect_kwargs: dict[str, Any]) -> None:
    reg.register("main", **connect_kwargs, min_size=1)
    old = reg.get("main")
    kept = old.get_connection()
    new_config = reg.register("main", **connect_kwargs, max_size=3, replace=True)
    assert is_closed(old)
    new = reg.get("main")
    assert new is not old
    assert new.config == new_config
    assert new.config.max_size == 3
    kept.close()  # a connection lent by the replaced pool is closed when it comes back
    assert not kept.socket_open
    with new.connection() as conn:
        assert conn.open


def test_replace_before_build_just_swaps_the_config(reg: Registry) -> None:
    reg.register("main", host="db1")
    reg.register("main", host="db2", replace=True)
    assert reg.config("main").host == "db2"
    assert reg.names() == ["main"]


def test_remove_closes_and_forgets(reg: Registry, connect_kwargs: dict[str, Any]) -> None:
    reg.register("main", **connect_kwargs, min_size=1)
    pool = reg.get("main")
    reg.remove("main")
    assert is_closed(pool)
    assert "main" not in reg
    assert reg.names() == []
    with pytest.raises(UnknownPoolError):
        reg.get("main")
    with pytest.raises(UnknownPoolError, match="'main'"):
        reg.remove("main")


def test_close_all_keeps_configs(reg: Registry, connect_kwargs: dict[str, Any]) -> None:
    reg.register("a", **connect_kwargs, min_size=1)
    reg.register("b", **connect_kwargs)
    reg.register("never-built", host="db.invalid")
    a, b = reg.get("a"), reg.get("b")
    reg.close_all()
    assert is_closed(a)
    assert is_closed(b)
    assert reg.names() == ["a", "b", "never-built"]
    assert reg.stats() == {}
    fresh = reg.get("a")
    assert fresh is not a
    assert not is_closed(fresh)


def test_names_and_contains(reg: Registry) -> None:
    assert reg.names() == []
    reg.register("zeta", host="db")
    reg.register("alpha", host="db")
    assert reg.names() == ["alpha", "zeta"]
    assert "alpha" in reg
    assert "beta" not in reg
    assert 42 not in reg


@pytest.mark.parametrize("name", ["", None, 3])
def test_register_rejects_a_bad_name(reg: Registry, name: Any) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register(name, host="db")
    assert reg.names() == []


def test_stats_of_built_pools(reg: Registry, connect_kwargs: dict[str, Any]) -> None:
    reg.register("built", **connect_kwargs, min_size=2, max_size=4)
    reg.register("lazy", **connect_kwargs)
    assert reg.stats() == {}
    pool = reg.get("built")
    with pool.connection():
        stats = reg.stats()
    assert set(stats) == {"built"}
    assert stats["built"]["created"] == 2
    assert stats["built"]["in_use"] == 1
    assert stats["built"]["idle"] == 1
    assert stats["built"]["max_size"] == 4
    assert reg.stats()["built"]["in_use"] == 0


class Marker:
    """A plugin that tags every connection a pool opens."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def pymysqlpool_on_connect(self, pool: ConnectionPool, reason: str) -> None:
        self.seen.append(f"{pool.name}:{reason}")


def test_each_registry_has_its_own_manager(connect_kwargs: dict[str, Any]) -> None:
    marker = Marker()
    one, two = Registry(plugins=[marker]), Registry()
    try:
        assert one.manager is one.manager
        assert one.manager is not two.manager
        assert one.manager.pm.is_registered(marker)
        assert not two.manager.pm.is_registered(marker)
        one.register("p1", **connect_kwargs, min_size=1)
        two.register("p2", **connect_kwargs, min_size=1)
        assert one.get("p1").stats()["created"] == 1
        assert two.get("p2").stats()["created"] == 1
        assert marker.seen == ["p1:fill"]
        late = Marker()
        two.manager.register(late)
        with two.get("p2").connection(), two.get("p2").connection():
            pass
        assert late.seen == ["p2:grow"]
        assert marker.seen == ["p1:fill"]
    finally:
        one.close_all()
        two.close_all()


def test_module_level_registry() -> None:
    assert isinstance(pymysqlpool_registry.registry, Registry)
    assert pymysqlpool_registry.registry is pymysqlpool_registry.registry


def test_concurrent_first_get_builds_one_pool(
    reg: Registry, connect_kwargs: dict[str, Any]
) -> None:
    threads_count = 32
    marker = Marker()
    reg.manager.register(marker)
    reg.register("same", **connect_kwargs, min_size=2, max_size=4)
    barrier = threading.Barrier(threads_count, timeout=WAIT)

    def worker() -> ConnectionPool:
        barrier.wait()
        return reg.get("same")

    with ThreadPoolExecutor(max_workers=threads_count) as executor:
        futures = [executor.submit(worker) for _ in range(threads_count)]
        results = [future.result(timeout=WAIT) for future in futures]
    pool = results[0]
    assert all(result is pool for result in results)
    assert reg.get("same") is pool
    assert pool.stats()["created"] == 2
    assert marker.seen == ["same:fill", "same:fill"]
