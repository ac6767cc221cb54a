"""Benchmark pymysqlpool_registry against its peers on a throwaway MariaDB (issue #8).

    python benchmarks/run.py                 # the full run (a few minutes on 2 cores)
    python benchmarks/run.py --smoke         # every workload and contender, tiny durations
    python benchmarks/run.py --only W1,W2 --out results.md

Workloads: W1 (acquire + release, no query), OVERHEAD (client CPU per SELECT 1 op over raw
PyMySQL), W2 (throughput, 1-64 threads, pool of 8), W3 (64 threads on 4 connections:
fairness), W4 (server restart under load). Contenders run interleaved, in alternating order
per round, so the shared machine's drift cancels; the report gives medians over rounds and
ratios. Never fails on timing: the exit status is non-zero only if something crashed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import Counter
from typing import Any

WORKLOADS = ("W1", "OVERHEAD", "W2", "W3", "W4")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CountingHandler(logging.Handler):
    """Counts WARNING+ log records per logger (the pools log faults during W4)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.name} {record.levelname}"] += 1


class CpuMeter:
    """Cores busy on the machine during a workload: this process, the server, everyone else.

    Other processes' load makes absolute figures drift; interleaving cancels most of it, and
    this shows how much there was.
    """

    _TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.wall = time.monotonic()
        self.busy = self._machine_busy()
        self.ours = self._ours()
        self.server = self._server()

    @staticmethod
    def _machine_busy() -> float | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(x) for x in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / CpuMeter._TICK

    @staticmethod
    def _ours() -> float:
        times = os.times()
        return times.user + times.system

    def _server(self) -> float | None:
        if self.server_pid is None:
            return None
        try:
            with open(f"/proc/{self.server_pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self._TICK  # utime, stime

    def text(self, server_pid: int | None) -> str:
        wall = time.monotonic() - self.wall
        busy, ours = self._machine_busy(), self._ours()
        if busy is None or self.busy is None or wall <= 0:
            return "n/a"
        ours_cores = (ours - self.ours) / wall
        total = (busy - self.busy) / wall
        server_now = self._server() if server_pid == self.server_pid else None
        server = None
        if server_now is not None and self.server is not None:
            server = (server_now - self.server) / wall
        others = total - ours_cores - (server or 0.0)
        return (
            f"{total:.2f} cores busy: this process {ours_cores:.2f}, server "
            + ("n/a (restarted)" if server is None else f"{server:.2f}")
            + f", other processes {max(others, 0.0):.2f}"
        )


def isolate_environment() -> None:
    """Measure the package's defaults: no autoloaded plugins, packs or tracing from the env."""
    os.environ["PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    for name in (
        "PYMYSQLPOOL_PACKS",
        "PYMYSQLPOOL_DISABLE_PLUGINS",
        "PYMYSQLPOOL_TRACE_HOOKS",
        "PYMYSQLPOOL_ENV",
    ):
        os.environ.pop(name, None)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--", "pymysqlpool_registry"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"commit {head}" + (" + uncommitted changes in pymysqlpool_registry/" if dirty else "")


def load_text(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--smoke", action="store_true", help="every workload and contender with tiny durations (CI)"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated workloads to run ({', '.join(WORKLOADS)})"
    )
    parser.add_argument("--out", default=None, help="also write the Markdown results to FILE")
    args = parser.parse_args(argv)
    chosen = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    args.workloads = [w for w in WORKLOADS if w in chosen] if chosen else list(WORKLOADS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    isolate_environment()
    counting = CountingHandler()
    logging.getLogger().addHandler(counting)

    import bench_adapters as ad
    import bench_report
    import bench_workloads as wl

    from pymysqlpool_registry import Registry
    from pymysqlpool_registry.throwaway import ThrowawayServer

    missing = ad.missing_peers()
    if "pymysql_pool" not in missing:
        logging.getLogger("pymysqlpool").handlers.clear()  # the peer's own stderr handler
    everyone = [key for key in ad.ALL if key not in missing]
    pools = [key for key in ad.POOLS if key not in missing]
    cfg = wl.SMOKE if args.smoke else wl.FULL
    command = shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    started = time.monotonic()
    load_before = os.getloadavg()
    load_per_workload: list[str] = []
    report = bench_report.Report()

    print(
        f"starting a throwaway MariaDB ({'smoke' if args.smoke else 'full'} run: "
        f"{', '.join(args.workloads)})",
        flush=True,
    )
    # 64 thread-local connections + 5 pools x 8 + 64 connect-per-op: above the default 151.
    server = ThrowawayServer(extra_args=["--max-connections=400"])
    try:
        server.start()
        env = wl.Env(server)
        for name in args.workloads:
            load_at_start = load_text(os.getloadavg())
            meter = CpuMeter(server.pid)
            t0 = time.monotonic()
            print(f"{name} ...", flush=True)
            if name == "W1":
                report.w1(wl.w1(env, everyone, cfg), cfg)
            elif name == "OVERHEAD":
                report.overhead(wl.overhead(env, everyone, cfg), cfg)
            elif name == "W2":
                report.w2(wl.w2(env, everyone, cfg), cfg)
            elif name == "W3":
                report.w3(wl.w3(env, pools, cfg), cfg)
            elif name == "W4":
                report.w4(wl.w4(env, everyone, cfg), cfg)
            took = time.monotonic() - t0
            load_per_workload.append(
                f"{name}: {took:.0f} s, load average {load_at_start} at its start, "
                f"{meter.text(server.pid)}"
            )
            print(f"{name} done in {took:.1f} s", flush=True)
        server_version = env.version
    finally:
        server.close()
    report.targets_section()
    if missing:
        report.lines += [
            "## Skipped",
            "",
            *(
                f"- {ad.LABELS[key]}: `{dist}` is not installed (`pip install -e '.[bench]'`)"
                for key, dist in missing.items()
            ),
            "",
        ]
    if counting.counts:
        report.lines += [
            "## Log records at WARNING and above during the run",
            "",
            *(f"- `{name}`: {n}" for name, n in sorted(counting.counts.items())),
            "",
        ]

    plugins = Registry(load_entrypoints=False).manager.names()
    versions = ", ".join(
        f"{dist} {version(dist)}"
        for dist in ("PyMySQL", "pluggy", "pymysql-pool", "SQLAlchemy", "DBUtils")
    )
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "mode": "smoke" if args.smoke else "full",
        "took": time.monotonic() - started,
        "nproc": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)"
        if hasattr(os, "sched_getaffinity")
        else str(os.cpu_count()),
        "cpu": cpu_model(),
        "load_before": load_text(load_before),
        "load_after": load_text(os.getloadavg()),
        "load_per_workload": load_per_workload,
        "python": platform.python_version(),
        "versions": versions,
        "package": f"pymysqlpool-registry {version('pymysqlpool-registry')}, {git_describe()}",
        "server": server_version,
        "plugins_default": ", ".join(f"`{p.rsplit('.', 1)[-1]}`" for p in plugins),
    }
    markdown = report.render(meta)
    print(markdown, flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(markdown)
        print(f"results written to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
