"""Prometheus metrics for pymysqlpool-registry pools, as a plugin of its metrics hooks."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pymysqlpool_registry import hookimpl

if TYPE_CHECKING:
    from pymysqlpool_registry import ConnectionPool

__all__ = ["PrometheusMetrics", "plugin"]

_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
_GAUGE_STATES = ("idle", "in_use", "total", "waiting", "max_size")


class _PoolGauges(Collector):
    """Reads each known pool's stats() at scrape time (no work on the pool's hot path)."""

    def __init__(self, pools: weakref.WeakValueDictionary[str, ConnectionPool], prefix: str):
        self._pools = pools
        self._prefix = prefix

    def collect(self) -> Iterator[GaugeMetricFamily]:
        prefix = self._prefix
        family = GaugeMetricFamily(
            f"{prefix}_connections", "Connections of a pool by state", labels=["pool", "state"]
        )
        labels = ["pool", "endpoint", "role"]
        endpoint_open = GaugeMetricFamily(
            f"{prefix}_endpoint_connections", "Connections open to an endpoint", labels=labels
        )
        failures = GaugeMetricFamily(
            f"{prefix}_endpoint_failures", "An endpoint's failures in a row", labels=labels
        )
        ejected = GaugeMetricFamily(
            f"{prefix}_endpoint_ejected", "1 while an endpoint is skipped", labels=labels
        )
        refused = GaugeMetricFamily(
            f"{prefix}_endpoint_refused",
            "1 while the check_endpoint hooks refuse an endpoint (read-only, no quorum, lag)",
            labels=labels,
        )
        for name, pool in sorted(self._pools.items()):
            stats = pool.stats()
            for state in _GAUGE_STATES:
                family.add_metric([name, state], stats[state])
            for endpoint in pool.endpoint_stats():
                values = [name, endpoint["endpoint"], endpoint["role"]]
                endpoint_open.add_metric(values, endpoint["open"])
                failures.add_metric(values, endpoint["failures"])
                ejected.add_metric(values, 1 if endpoint["ejected_for"] > 0 else 0)
                refused.add_metric(values, 0 if endpoint["check"] in ("", "ok") else 1)
        yield from (family, endpoint_open, failures, ejected, refused)


class PrometheusMetrics:
    """Pool metrics in a prometheus_client registry, labelled by pool name."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, prefix: str = "pymysqlpool") -> None:
        self._pools: weakref.WeakValueDictionary[str, ConnectionPool] = (
            weakref.WeakValueDictionary()
        )
        self.acquire_wait = Histogram(
            f"{prefix}_acquire_wait_seconds",
            "Time a borrower waited for a connection",
            ["pool"],
            registry=registry,
            buckets=_WAIT_BUCKETS,
        )
        self.usage = Histogram(
            f"{prefix}_usage_seconds",
            "Time a connection stayed lent",
            ["pool"],
            registry=registry,
            buckets=_WAIT_BUCKETS,
        )
        self.created = Counter(
            f"{prefix}_connections_created", "Connections opened", ["pool"], registry=registry
        )
        self.timeouts = Counter(
            f"{prefix}_timeouts",
            "Borrowers that got no connection in time",
            ["pool"],
            registry=registry,
        )
        self.discards = Counter(
            f"{prefix}_discards",
            "Connections closed, by reason",
            ["pool", "reason"],
            registry=registry,
        )
        registry.register(_PoolGauges(self._pools, prefix))

    def _seen(self, pool: ConnectionPool) -> str:
        if self._pools.get(pool.name) is not pool:  # new, or a pool replaced under that name
            self._pools[pool.name] = pool
        return pool.name

    @hookimpl
    def pymysqlpool_on_checkout(self, pool: ConnectionPool, wait: float) -> None:
        """Observe the acquire wait."""
        self.acquire_wait.labels(self._seen(pool)).observe(wait)

    @hookimpl
    def pymysqlpool_on_checkin(self, pool: ConnectionPool, usage: float) -> None:
        """Observe how long the connection was lent."""
        self.usage.labels(pool.name).observe(usage)

    @hookimpl
    def pymysqlpool_on_connect(self, pool: ConnectionPool) -> None:
        """Count a new connection."""
        self.created.labels(self._seen(pool)).inc()

    @hookimpl
    def pymysqlpool_on_timeout(self, pool: ConnectionPool) -> None:
        """Count a borrower that gave up."""
        self.timeouts.labels(self._seen(pool)).inc()

    @hookimpl
    def pymysqlpool_on_discard(self, pool: ConnectionPool, reason: str) -> None:
        """Count a closed connection by reason."""
        self.discards.labels(pool.name, reason).inc()


#: The instance the entry point loads, reporting to prometheus_client's default registry.
plugin = PrometheusMetrics()
