"""``python -m pymysqlpool_registry demo``: a threaded workload through a registry pool."""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Sequence

from . import Registry
from .throwaway import ServerNotFound, ThrowawayServer


def demo(threads: int, seconds: float, max_size: int) -> int:
    """Start a throwaway MariaDB, run *threads* workers for *seconds*, print the pool's stats."""
    try:
        server = ThrowawayServer()
    except ServerNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with server:
        registry = Registry()
        registry.register("demo", max_size=max_size, **server.connect_kwargs(autocommit=True))
        pool = registry.get("demo")
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE hits (id INT AUTO_INCREMENT PRIMARY KEY, worker INT)")
        latencies: list[list[float]] = [[] for _ in range(threads)]
        stop_at = time.monotonic() + seconds

        def work(worker: int) -> None:
            mine = latencies[worker]
            while time.monotonic() < stop_at and len(mine) < 1_000_000:
                started = time.perf_counter()
                with registry.get("demo").connection() as conn, conn.cursor() as cur:
                    cur.execute("INSERT INTO hits (worker) VALUES (%s)", (worker,))
                    cur.execute("SELECT COUNT(*) FROM hits WHERE worker = %s", (worker,))
                mine.append(time.perf_counter() - started)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(seconds + 30)
        every = sorted(t for mine in latencies for t in mine)
        stats = pool.stats()
        print(
            f"{threads} threads, pool max_size {max_size}, {seconds:g} s on {server.host}:{server.port}"
        )
        print(f"operations   {len(every)} ({len(every) / seconds:.0f}/s)")
        if every:
            cuts = statistics.quantiles(every, n=100)
            print(
                f"latency ms   p50 {cuts[49] * 1e3:.2f}  p99 {cuts[98] * 1e3:.2f}  max {every[-1] * 1e3:.2f}"
            )
        for key, value in stats.items():
            print(f"{key:<12} {value:g}")
        registry.close_all()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m pymysqlpool_registry")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="run a threaded workload against a throwaway MariaDB")
    run.add_argument("--threads", type=int, default=16)
    run.add_argument("--seconds", type=float, default=3.0)
    run.add_argument("--max-size", type=int, default=4)
    args = parser.parse_args(argv)
    return demo(args.threads, args.seconds, args.max_size)


if __name__ == "__main__":
    sys.exit(main())
