"""What a metrics plugin costs per loan: acquire + release (no query) with the default
plugins only, and with each metrics plugin added.

    python benchmarks/plugin_cost.py            # 15 interleaved rounds of 20,000 cycles
    python benchmarks/plugin_cost.py --smoke    # 1 round of 500 (CI: it runs, no timing checked)

Contenders: the defaults; OpenTelemetry with no SDK (the API's no-op, what an application
without one pays); OpenTelemetry with the SDK and an in-memory reader; Prometheus (a private
collector registry). Median µs per cycle over the rounds, and the difference to the defaults.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

os.environ["PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugins given below
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from pymysqlpool_registry_opentelemetry import OpenTelemetryMetrics
from pymysqlpool_registry_prometheus import PrometheusMetrics

from pymysqlpool_registry import Registry
from pymysqlpool_registry.throwaway import ThrowawayServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 round of 500 cycles (CI)")
    args = parser.parse_args()
    rounds, cycles = (1, 500) if args.smoke else (15, 20_000)
    plugins: dict[str, list[object]] = {
        "defaults only": [],
        "+ OpenTelemetry, no SDK (API no-op)": [OpenTelemetryMetrics()],
        "+ OpenTelemetry, SDK in-memory reader": [
            OpenTelemetryMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        ],
        "+ Prometheus": [PrometheusMetrics(registry=CollectorRegistry())],
    }
    with ThrowawayServer() as server:
        registries = {name: Registry(plugins=given) for name, given in plugins.items()}
        loops: dict[str, Callable[[], None]] = {}
        for name, registry in registries.items():
            registry.register("bench", **server.connect_kwargs(), min_size=1, max_size=1)
            get = registry.get("bench").get_connection

            def loop(get: Callable[[], object] = get) -> None:
                for _ in range(cycles):
                    get().close()  # type: ignore[attr-defined]

            loop()  # warm up
            loops[name] = loop
        times: dict[str, list[float]] = {name: [] for name in loops}
        for round_ in range(rounds):
            order = list(loops.items())
            for name, loop in order if round_ % 2 else reversed(order):
                started = time.perf_counter()
                loop()
                times[name].append((time.perf_counter() - started) / cycles * 1e6)
        for registry in registries.values():
            registry.close_all()
    base = statistics.median(times["defaults only"])
    print("# Metrics plugins: cost per loan")
    print(
        f"- command: `python benchmarks/plugin_cost.py{' --smoke' if args.smoke else ''}`; "
        f"{datetime.date.today()}; {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores; {rounds} rounds of {cycles} cycles"
    )
    print("\n| contender | µs per acquire + release (median) | added per loan |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median - base:+.2f} µs |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
