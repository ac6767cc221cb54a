"""PrometheusMetrics on real pools of the session server, read back from a private registry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymysqlpool_registry_prometheus import PrometheusMetrics

from pymysqlpool_registry import (
    Connection,
    ConnectionPool,
    Endpoint,
    GetConnectionFromPoolError,
    Registry,
    hookimpl,
)
from pymysqlpool_registry.throwaway import ThrowawayServer

PREFIX = "pymysqlpool"


@pytest.fixture
def metrics_registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def registry(metrics_registry: CollectorRegistry) -> Iterator[Registry]:
    pools = Registry(plugins=[PrometheusMetrics(registry=metrics_registry)])
    yield pools
    pools.close_all()


def sample(metrics: CollectorRegistry, name: str, pool: str, **labels: str) -> float | None:
    return metrics.get_sample_value(f"{PREFIX}_{name}", {"pool": pool, **labels})


def gauges(metrics: CollectorRegistry, pool: str) -> dict[str, float | None]:
    return {
        state: sample(metrics, "connections", pool, state=state)
        for state in ("idle", "in_use", "total", "max_size")
    }


def loan(pool: ConnectionPool) -> None:
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")


def kill(server: ThrowawayServer, conn: Connection) -> None:
    """KILL an idle pooled connection and wait (bounded) until its socket shows it."""
    server.query(f"KILL {conn.thread_id()}")
    for _ in range(200):
        if conn.server_closed():
            return
        time.sleep(0.01)
    pytest.fail("the killed connection's socket never became readable")


def test_metrics_of_loans_a_timeout_and_a_dead_connection(
    registry: Registry,
    metrics_registry: CollectorRegistry,
    connect_kwargs: dict[str, Any],
    server: ThrowawayServer,
) -> None:
    registry.register("prom", **connect_kwargs, max_size=2)
    pool = registry.get("prom")
    for _ in range(3):
        loan(pool)
    assert sample(metrics_registry, "connections_created_total", "prom") == 1
    assert sample(metrics_registry, "acquire_wait_seconds_count", "prom") == 3
    assert sample(metrics_registry, "usage_seconds_count", "prom") == 3
    assert gauges(metrics_registry, "prom") == {"idle": 1, "in_use": 0, "total": 1, "max_size": 2}

    with pool.connection() as idle:
        pass
    kill(server, idle)
    first = pool.get_connection()  # the killed one fails its pre-ping: discarded as "dead"
    assert first is not idle
    assert sample(metrics_registry, "discards_total", "prom", reason="dead") == 1
    assert sample(metrics_registry, "discards_total", "prom", reason="error") is None
    second = pool.get_connection()
    with pytest.raises(GetConnectionFromPoolError):
        pool.get_connection(timeout=0)
    assert sample(metrics_registry, "timeouts_total", "prom") == 1
    assert gauges(metrics_registry, "prom") == {"idle": 0, "in_use": 2, "total": 2, "max_size": 2}

    second.close()
    assert gauges(metrics_registry, "prom") == {"idle": 1, "in_use": 1, "total": 2, "max_size": 2}
    first.close()
    assert sample(metrics_registry, "connections_created_total", "prom") == 3
    assert sample(metrics_registry, "acquire_wait_seconds_count", "prom") == 6
    assert sample(metrics_registry, "usage_seconds_count", "prom") == 6
    assert sample(metrics_registry, "acquire_wait_seconds_sum", "prom") >= 0
    assert sample(metrics_registry, "usage_seconds_sum", "prom") > 0


def test_metrics_are_labelled_by_pool(
    registry: Registry, metrics_registry: CollectorRegistry, connect_kwargs: dict[str, Any]
) -> None:
    registry.register("one", **connect_kwargs, min_size=2)
    registry.register("two", **connect_kwargs)
    loan(registry.get("one"))
    loan(registry.get("two"))
    loan(registry.get("two"))
    assert sample(metrics_registry, "connections_created_total", "one") == 2
    assert sample(metrics_registry, "connections_created_total", "two") == 1
    assert sample(metrics_registry, "acquire_wait_seconds_count", "one") == 1
    assert sample(metrics_registry, "acquire_wait_seconds_count", "two") == 2
    assert sample(metrics_registry, "connections", "one", state="idle") == 2
    assert sample(metrics_registry, "connections", "two", state="idle") == 1


def test_pool_closed_discards_are_counted(
    registry: Registry, metrics_registry: CollectorRegistry, connect_kwargs: dict[str, Any]
) -> None:
    registry.register("closing", **connect_kwargs, min_size=2)
    loan(registry.get("closing"))
    registry.close_all()
    assert sample(metrics_registry, "discards_total", "closing", reason="pool-closed") == 2


def test_gauges_follow_a_replaced_pool(
    registry: Registry, metrics_registry: CollectorRegistry, connect_kwargs: dict[str, Any]
) -> None:
    registry.register("swap", **connect_kwargs)
    with registry.get("swap").connection() as lent:  # still lent while the pool is replaced
        registry.register("swap", **connect_kwargs, min_size=3, max_size=4, replace=True)
        loan(registry.get("swap"))
        assert gauges(metrics_registry, "swap") == {
            "idle": 3,
            "in_use": 0,
            "total": 3,
            "max_size": 4,
        }
    assert not lent.socket_open  # it came back to the closed old pool, which closed it


def test_entry_point_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYMYSQLPOOL_DISABLE_PLUGINS", raising=False)
    described = {entry["name"]: entry for entry in Registry().manager.describe()}
    assert "prometheus" in described
    assert described["prometheus"]["kind"].startswith("entry point")
    assert "pymysqlpool_on_checkout" in described["prometheus"]["hooks"]


def test_entry_point_off_by_default_in_tests() -> None:
    assert "prometheus" not in Registry().manager.names()


def test_endpoint_gauges(
    registry: Registry, metrics_registry: CollectorRegistry, connect_kwargs: dict[str, Any]
) -> None:
    """Per endpoint: open connections, failures in a row and ejection (a closed port here)."""
    live = f"127.0.0.1:{connect_kwargs['port']}"
    registry.register("multi", **connect_kwargs, endpoints=["127.0.0.1:1", live], min_size=2)
    loan(registry.get("multi"))
    down = {"endpoint": "127.0.0.1:1", "role": "any"}
    up = {"endpoint": live, "role": "any"}
    assert sample(metrics_registry, "endpoint_connections", "multi", **up) == 2
    assert sample(metrics_registry, "endpoint_connections", "multi", **down) == 0
    assert sample(metrics_registry, "endpoint_failures", "multi", **down) == 1
    assert sample(metrics_registry, "endpoint_ejected", "multi", **down) == 1
    assert sample(metrics_registry, "endpoint_ejected", "multi", **up) == 0


class RefuseLocalhost:
    """A check_endpoint plugin that refuses the endpoint named "localhost"."""

    @hookimpl
    def pymysqlpool_check_endpoint(self, endpoint: Endpoint) -> str | None:
        return "maintenance" if endpoint.host == "localhost" else None


def test_endpoint_refused_gauge(
    metrics_registry: CollectorRegistry, connect_kwargs: dict[str, Any]
) -> None:
    """An endpoint the check hooks refuse shows 1; one they accept shows 0."""
    port = connect_kwargs["port"]
    pools = Registry(
        plugins=[PrometheusMetrics(registry=metrics_registry), RefuseLocalhost()],
        load_entrypoints=False,
    )
    try:
        pools.register(
            "checked", **connect_kwargs, endpoints=[f"localhost:{port}", f"127.0.0.1:{port}"]
        )
        loan(pools.get("checked"))
        refused = {"endpoint": f"localhost:{port}", "role": "any"}
        accepted = {"endpoint": f"127.0.0.1:{port}", "role": "any"}
        assert sample(metrics_registry, "endpoint_refused", "checked", **refused) == 1
        assert sample(metrics_registry, "endpoint_refused", "checked", **accepted) == 0
    finally:
        pools.close_all()
