"""OpenTelemetryMetrics on real pools of the session server, read back with the SDK's
in-memory metric reader."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pymysqlpool_registry_opentelemetry import ENDPOINT, POOL_NAME, OpenTelemetryMetrics

from pymysqlpool_registry import GetConnectionFromPoolError, Registry

Points = dict[tuple[str, frozenset[tuple[str, Any]]], Any]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def registry(reader: InMemoryMetricReader) -> Iterator[Registry]:
    plugin = OpenTelemetryMetrics(meter_provider=MeterProvider(metric_readers=[reader]))
    pools = Registry(plugins=[plugin], load_entrypoints=False)
    yield pools
    pools.close_all()


def collect(reader: InMemoryMetricReader) -> Points:
    """Each data point by (instrument, attributes): a number, or (count, sum) of a histogram."""
    points: Points = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset(point.attributes.items()))
                    value = getattr(point, "value", None)
                    points[key] = (point.count, point.sum) if value is None else value
    return points


def at(points: Points, name: str, **attributes: Any) -> Any:
    return points.get((name, frozenset(attributes.items())))


def test_counts_match_stats_and_histograms_get_one_value_per_loan(
    registry: Registry, reader: InMemoryMetricReader, connect_kwargs: dict[str, Any]
) -> None:
    registry.register("otel", **connect_kwargs, min_size=1, max_size=2)
    pool = registry.get("otel")
    for _ in range(5):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    held = [pool.get_connection(), pool.get_connection()]
    with pytest.raises(GetConnectionFromPoolError):
        pool.get_connection(timeout=0.05)
    points = collect(reader)
    stats = pool.stats()
    name = {POOL_NAME: "otel"}
    count = "db.client.connection.count"
    assert at(points, count, **name, **{"db.client.connection.state": "idle"}) == stats["idle"]
    assert at(points, count, **name, **{"db.client.connection.state": "used"}) == 2
    assert stats["in_use"] == 2
    assert at(points, "db.client.connection.max", **name) == 2
    assert at(points, "db.client.connection.idle.max", **name) == 2
    assert at(points, "db.client.connection.idle.min", **name) == 1
    assert at(points, "db.client.connection.pending_requests", **name) == 0
    assert at(points, "db.client.connection.timeouts", **name) == stats["timeouts"] == 1
    assert at(points, "db.client.connection.wait_time", **name)[0] == 7  # 5 loans + 2 held
    assert at(points, "db.client.connection.use_time", **name)[0] == 5  # the 5 returned
    created = at(points, "db.client.connection.create_time", **name)
    assert created[0] == stats["created"] == 2
    assert created[1] > 0
    for conn in held:
        conn.close()
    points = collect(reader)
    assert at(points, count, **name, **{"db.client.connection.state": "used"}) == 0
    assert at(points, "db.client.connection.use_time", **name)[0] == 7


def test_endpoint_figures(
    registry: Registry, reader: InMemoryMetricReader, connect_kwargs: dict[str, Any]
) -> None:
    registry.register("ends", **connect_kwargs, min_size=2, max_size=2)
    pool = registry.get("ends")
    with pool.connection():
        pass
    points = collect(reader)
    [endpoint] = pool.endpoint_stats()
    attributes = {
        POOL_NAME: "ends",
        ENDPOINT: endpoint["endpoint"],
        "pymysqlpool.endpoint.role": endpoint["role"],
    }
    assert at(points, "pymysqlpool.endpoint.connection.count", **attributes) == 2
    assert at(points, "pymysqlpool.endpoint.ejected", **attributes) == 0


def test_without_an_sdk_the_pool_works_and_records_nothing(connect_kwargs: dict[str, Any]) -> None:
    pools = Registry(plugins=[OpenTelemetryMetrics()], load_entrypoints=False)  # global: no-op
    try:
        pools.register("bare", **connect_kwargs, max_size=1)
        with pools.get("bare").connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        assert pools.get("bare").stats()["requests"] == 1
    finally:
        pools.close_all()


def test_the_entry_point_names_the_plugin() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pymysqlpool_registry")}
    assert found["opentelemetry"] == "pymysqlpool_registry_opentelemetry:plugin"
