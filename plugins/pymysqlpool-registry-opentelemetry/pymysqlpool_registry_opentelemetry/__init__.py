"""OpenTelemetry metrics for pymysqlpool-registry pools, under the semantic conventions'
``db.client.connection.*`` names, through ``opentelemetry-api`` only.

The application brings the SDK and an exporter; without them every instrument is the API's
no-op. Counts are read from each pool's ``stats()`` when the SDK collects (observable
instruments: no work on a loan); the histograms and the timeout counter are recorded by the
pool's event hooks.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from pymysqlpool_registry import hookimpl

if TYPE_CHECKING:
    from pymysqlpool_registry import ConnectionPool

__all__ = ["ENDPOINT", "POOL_NAME", "OpenTelemetryMetrics", "plugin"]

#: The attribute every instrument carries (semantic conventions).
POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
#: The attribute of the per-endpoint instruments: the endpoint as ``host:port``.
ENDPOINT = "pymysqlpool.endpoint"
ROLE = "pymysqlpool.endpoint.role"

try:
    _VERSION = version("pymysqlpool-registry-opentelemetry")
except PackageNotFoundError:  # pragma: no cover - run from a checkout without metadata
    _VERSION = "0"

#: Bucket boundaries (seconds) for the time histograms: sub-millisecond loans to slow connects.
_BOUNDARIES = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)


class OpenTelemetryMetrics:
    """The pool instruments of OpenTelemetry's database client conventions, on one meter.

    ``meter_provider`` defaults to the global one: until the application sets an SDK provider
    that is the API's proxy, whose instruments start recording once it is set.
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        self._pools: weakref.WeakValueDictionary[str, ConnectionPool] = (
            weakref.WeakValueDictionary()
        )
        provider = meter_provider or metrics.get_meter_provider()  # a proxy until an SDK is set
        meter = provider.get_meter("pymysqlpool_registry_opentelemetry", _VERSION)
        observed = [
            ("db.client.connection.count", "{connection}", self._count, "Connections by state"),
            ("db.client.connection.idle.max", "{connection}", self._limit("max_size"),
             "The maximum number of idle open connections allowed"),
            ("db.client.connection.idle.min", "{connection}", self._limit("min_size"),
             "The minimum number of idle open connections allowed"),
            ("db.client.connection.max", "{connection}", self._limit("max_size"),
             "The maximum number of open connections allowed"),
            ("db.client.connection.pending_requests", "{request}", self._waiting,
             "The number of pending requests for an open connection"),
            ("pymysqlpool.endpoint.connection.count", "{connection}", self._endpoints("open"),
             "Connections open to an endpoint"),
            ("pymysqlpool.endpoint.ejected", "1", self._endpoints("ejected"),
             "1 while the pool skips an endpoint after failures"),
        ]  # fmt: skip
        for name, unit, callback, description in observed:
            meter.create_observable_up_down_counter(
                name, callbacks=[callback], unit=unit, description=description
            )
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            unit="{timeout}",
            description="Borrowers that got no connection from the pool in time",
        )
        self.create_time = self._histogram(meter, "create_time", "Time to open a connection")
        self.wait_time = self._histogram(meter, "wait_time", "Time to obtain a connection")
        self.use_time = self._histogram(meter, "use_time", "Time from borrowing to returning")

    @staticmethod
    def _histogram(meter: Meter, key: str, description: str) -> Histogram:
        return meter.create_histogram(
            f"db.client.connection.{key}",
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=list(_BOUNDARIES),
        )

    def _seen(self, pool: ConnectionPool) -> dict[str, str]:
        """Remember *pool* for the observable instruments; its attributes."""
        if self._pools.get(pool.name) is not pool:  # new, or a pool replaced under that name
            self._pools[pool.name] = pool
        return {POOL_NAME: pool.name}

    # --- observable callbacks: read at collection time ---

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, pool in list(self._pools.items()):
            stats = pool.stats()
            yield Observation(stats["idle"], {POOL_NAME: name, STATE: "idle"})
            yield Observation(stats["in_use"], {POOL_NAME: name, STATE: "used"})

    def _waiting(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, pool in list(self._pools.items()):
            yield Observation(pool.stats()["waiting"], {POOL_NAME: name})

    def _limit(self, key: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for name, pool in list(self._pools.items()):
                yield Observation(getattr(pool.config, key), {POOL_NAME: name})

        return observe

    def _endpoints(self, key: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for name, pool in list(self._pools.items()):
                for endpoint in pool.endpoint_stats():
                    value = endpoint["open"] if key == "open" else int(endpoint["ejected_for"] > 0)
                    attributes = {
                        POOL_NAME: name,
                        ENDPOINT: endpoint["endpoint"],
                        ROLE: endpoint["role"],
                    }
                    yield Observation(value, attributes)

        return observe

    # --- the pool's events ---

    @hookimpl
    def pymysqlpool_on_connect(self, pool: ConnectionPool, duration: float) -> None:
        """A new connection: its create time."""
        self.create_time.record(duration, self._seen(pool))

    @hookimpl
    def pymysqlpool_on_checkout(self, pool: ConnectionPool, wait: float) -> None:
        """A loan starts: how long the borrower waited."""
        self.wait_time.record(wait, self._seen(pool))

    @hookimpl
    def pymysqlpool_on_checkin(self, pool: ConnectionPool, usage: float) -> None:
        """A loan ends: how long it lasted."""
        self.use_time.record(usage, self._seen(pool))

    @hookimpl
    def pymysqlpool_on_timeout(self, pool: ConnectionPool) -> None:
        """A borrower got no connection in time."""
        self.timeouts.add(1, self._seen(pool))


#: The instance the entry point loads, reporting to the global meter provider.
plugin = OpenTelemetryMetrics()
