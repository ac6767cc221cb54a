"""The workloads W1, per-op overhead, W2, W3 and W4, each run over interleaved rounds."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import bench_adapters as ad
import pymysql
from bench_load import Load, LoadResult

from pymysqlpool_registry.throwaway import ThrowawayServer

monotonic = time.monotonic
process_time = time.process_time
perf_counter = time.perf_counter

USER_PASSWORD = "bench"  # a throwaway server's benchmark users


@dataclass(frozen=True)
class Settings:
    """Durations, counts and rounds of one benchmark mode (full or smoke)."""

    w1_rounds: int
    w1_duration: float  # seconds per sample
    w1_max_cycles: int
    rt_cycles: int  # cycles counted for server round trips
    ov_rounds: int
    ov_ops: int  # ops per quantity per round, split into blocks
    ov_blocks: int  # blocks per quantity per round (cycle, held, raw alternate block by block)
    w2_rounds: int
    w2_duration: float
    w2_threads: tuple[int, ...]
    w3_rounds: int
    w3_duration: float
    w4_rounds: int
    w4_before: float  # load before the restart
    w4_after: float  # load after the server answers again
    w4_acquire_timeout: float
    max_ops: int = 2_000_000  # per timed run, all threads together
    join_grace: float = 15.0  # seconds past a run's end before workers count as stuck


FULL = Settings(
    w1_rounds=15,
    w1_duration=0.05,
    w1_max_cycles=200_000,
    rt_cycles=1000,
    ov_rounds=7,
    ov_ops=1000,
    ov_blocks=20,
    w2_rounds=5,
    w2_duration=0.3,
    w2_threads=(1, 4, 16, 64),
    w3_rounds=3,
    w3_duration=1.5,
    w4_rounds=3,
    w4_before=0.3,
    w4_after=1.0,
    w4_acquire_timeout=5.0,
)
SMOKE = Settings(
    w1_rounds=1,
    w1_duration=0.01,
    w1_max_cycles=2000,
    rt_cycles=20,
    ov_rounds=1,
    ov_ops=40,
    ov_blocks=2,
    w2_rounds=1,
    w2_duration=0.05,
    w2_threads=(1, 4, 16, 64),
    w3_rounds=1,
    w3_duration=0.2,
    w4_rounds=1,
    w4_before=0.1,
    w4_after=0.2,
    w4_acquire_timeout=3.0,
)


def orders(keys: Sequence[str], rounds: int) -> Iterator[tuple[int, list[str]]]:
    """Round r runs the contenders in order, round r+1 in reverse: drift cancels."""
    for r in range(rounds):
        yield r, list(keys) if r % 2 == 0 else list(reversed(keys))


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


# --- the server side: users, status counters, processlist ---


class Env:
    """The throwaway server and one MySQL user per contender (so processlist tells them apart)."""

    def __init__(self, server: ThrowawayServer) -> None:
        self.server = server
        self.users = {key: f"bench_{key}" for key in (*ad.ALL, "raw", "probe")}
        admin = server.admin()
        try:
            with admin.cursor() as cur:
                for user in self.users.values():
                    cur.execute(
                        f"CREATE USER IF NOT EXISTS '{user}'@'%%' IDENTIFIED BY %s",
                        (USER_PASSWORD,),
                    )
                    cur.execute(f"GRANT ALL ON test.* TO '{user}'@'%'")
                cur.execute("SELECT VERSION()")
                row = cur.fetchone()
                self.version = str(row[0]) if row else "?"
        finally:
            admin.close()

    def kwargs(self, key: str) -> dict[str, Any]:
        """pymysql.connect() arguments for contender *key* (TLS off, bounded timeouts)."""
        return self.server.connect_kwargs(user=self.users[key], password=USER_PASSWORD)

    def connects(self) -> int:
        """Connections the server has accepted so far (its ``Connections`` status; reading
        it opens one more)."""
        return int(self.server.query("SHOW GLOBAL STATUS LIKE 'Connections'")[0][1])

    def counters(self, admin: Any) -> tuple[int, int]:
        """(sum of every Com_% global status counter, Questions)."""
        with admin.cursor() as cur:
            cur.execute(
                "SHOW GLOBAL STATUS WHERE Variable_name LIKE 'Com\\_%%' "
                "OR Variable_name = 'Questions'"
            )
            rows = cur.fetchall()
        com = sum(int(v) for k, v in rows if k.startswith("Com_"))
        questions = sum(int(v) for k, v in rows if k == "Questions")
        return com, questions

    def processlist(self, key: str) -> int:
        """Connections the server has open for contender *key*'s user."""
        admin = self.server.admin()
        try:
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s",
                    (self.users[key],),
                )
                row = cur.fetchone()
        finally:
            admin.close()
        return int(row[0]) if row else -1


def build(
    env: Env, keys: Sequence[str], *, size: int, autocommit: bool, acquire_timeout: float = 30.0
) -> dict[str, ad.Contender]:
    built: dict[str, ad.Contender] = {}
    try:
        for key in keys:
            built[key] = ad.make(
                key,
                env.kwargs(key),
                size=size,
                autocommit=autocommit,
                acquire_timeout=acquire_timeout,
            )
    except BaseException:
        close_all(built)
        raise
    return built


def close_all(adapters: dict[str, ad.Contender]) -> None:
    for adapter in adapters.values():
        try:
            adapter.close()
        except Exception as exc:  # noqa: BLE001 - report and go on closing the others
            print(f"  warning: closing {adapter.label} failed: {exc!r}", flush=True)


def cap(adapter: ad.Contender, wanted: int) -> int:
    return min(wanted, adapter.max_ops) if adapter.max_ops is not None else wanted


# --- W1: acquire + release, no query, one thread ---


def cycles_sample(adapter: ad.Contender, duration: float, max_cycles: int) -> float:
    """Seconds per acquire+release cycle, over at most *duration* s and *max_cycles* cycles."""
    acquire, release = adapter.acquire, adapter.release
    batch = max(1, min(100, max_cycles))
    n = 0
    started = perf_counter()
    while True:
        for _ in range(batch):
            release(acquire())
        n += batch
        elapsed = perf_counter() - started
        if elapsed >= duration or n + batch > max_cycles:
            return elapsed / n


def round_trips(env: Env, adapter: ad.Contender, cycles: int) -> tuple[float, float]:
    """Server round trips per cycle: (Com_% sum, Questions), less the measuring's own counts."""
    acquire, release = adapter.acquire, adapter.release
    admin = env.server.admin()
    try:
        for _ in range(10):
            release(acquire())  # warm: a first-use ping or reconnect is not per cycle
        c0, q0 = env.counters(admin)
        c1, q1 = env.counters(admin)  # zero cycles: what the status query itself adds
        for _ in range(cycles):
            release(acquire())
        c2, q2 = env.counters(admin)
    finally:
        admin.close()
    own_c, own_q = c1 - c0, q1 - q0
    return (c2 - c1 - own_c) / cycles, (q2 - q1 - own_q) / cycles


@dataclass
class W1Result:
    us: dict[str, list[float]] = field(default_factory=dict)  # per contender, per round
    com: dict[str, float] = field(default_factory=dict)
    questions: dict[str, float] = field(default_factory=dict)


def w1(env: Env, keys: Sequence[str], cfg: Settings) -> dict[bool, W1Result]:
    results: dict[bool, W1Result] = {}
    for autocommit in (False, True):
        res = results[autocommit] = W1Result()
        adapters = build(env, keys, size=8, autocommit=autocommit)
        try:
            for key, adapter in adapters.items():
                cycles = max(1, cap(adapter, cfg.rt_cycles) // (10 if adapter.max_ops else 1))
                res.com[key], res.questions[key] = round_trips(env, adapter, cycles)
                res.us[key] = []
            for _, order in orders(keys, cfg.w1_rounds):
                for key in order:
                    adapter = adapters[key]
                    limit = max(
                        1, cap(adapter, cfg.w1_max_cycles) // (10 if adapter.max_ops else 1)
                    )
                    res.us[key].append(1e6 * cycles_sample(adapter, cfg.w1_duration, limit))
        finally:
            close_all(adapters)
    return results


# --- per-op overhead: client CPU of acquire → SELECT 1 → release over raw PyMySQL ---


@dataclass
class OverheadResult:
    cycle: dict[str, list[float]] = field(default_factory=dict)  # µs CPU per pooled op
    held: dict[str, list[float]] = field(default_factory=dict)  # µs CPU per query, conn held
    raw: dict[str, list[float]] = field(default_factory=dict)  # raw PyMySQL, same slot
    overhead: dict[str, list[float]] = field(default_factory=dict)  # cycle - held, per round


def cpu_cycles(adapter: ad.Contender, n: int) -> float:
    acquire, query, release = adapter.acquire, adapter.query, adapter.release
    started = process_time()
    for _ in range(n):
        conn = acquire()
        query(conn)
        release(conn)
    return process_time() - started


def cpu_held(adapter: ad.Contender, n: int) -> float:
    query = adapter.query
    conn = adapter.acquire()
    try:
        started = process_time()
        for _ in range(n):
            query(conn)
        return process_time() - started
    finally:
        adapter.release(conn)


def cpu_raw(conn: Any, n: int) -> float:
    started = process_time()
    for _ in range(n):
        ad.select_one(conn)
    spent = process_time() - started
    if not conn.get_autocommit():
        conn.rollback()  # not timed: the baseline is the bare query
    return spent


def overhead(env: Env, keys: Sequence[str], cfg: Settings) -> dict[bool, OverheadResult]:
    results: dict[bool, OverheadResult] = {}
    for autocommit in (True, False):
        res = results[autocommit] = OverheadResult()
        for store in (res.cycle, res.held, res.raw, res.overhead):
            store.update({key: [] for key in keys})
        # A pool of one: the pooled op and the held query use the same connection, so their
        # difference is what acquire + release add. (Two connections can differ by 10-15 µs
        # of CPU per query here, by where the server runs each connection's thread.)
        adapters = build(env, keys, size=1, autocommit=autocommit)
        raw = pymysql.connect(**{**env.kwargs("raw"), "autocommit": autocommit})
        try:
            for _, order in orders(keys, cfg.ov_rounds):
                for key in order:
                    adapter = adapters[key]
                    n = max(1, cap(adapter, cfg.ov_ops) // 10 if adapter.max_ops else cfg.ov_ops)
                    block = max(1, n // cfg.ov_blocks)
                    measures: dict[str, Callable[[int], float]] = {
                        "cycle": lambda k, a=adapter: cpu_cycles(a, k),
                        "held": lambda k, a=adapter: cpu_held(a, k),
                        "raw": lambda k, c=raw: cpu_raw(c, k),
                    }
                    per_block: dict[str, list[float]] = {name: [] for name in measures}
                    for b in range(cfg.ov_blocks):
                        names = list(measures) if b % 2 == 0 else list(reversed(measures))
                        for name in names:
                            per_block[name].append(1e6 * measures[name](block) / block)
                    # Medians of short adjacent blocks: bursts of load from other processes
                    # (which inflate CPU time per op too) hit few blocks and cancel in pairs.
                    res.cycle[key].append(statistics.median(per_block["cycle"]))
                    res.held[key].append(statistics.median(per_block["held"]))
                    res.raw[key].append(statistics.median(per_block["raw"]))
                    res.overhead[key].append(
                        statistics.median(
                            c - h
                            for c, h in zip(per_block["cycle"], per_block["held"], strict=True)
                        )
                    )
        finally:
            raw.close()
            close_all(adapters)
    return results


# --- W2: throughput with 1..64 threads on a pool of 8 ---


@dataclass
class W2Result:
    ops: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # (key, T) -> ops/s
    ratio: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # / thread-local
    errors: dict[tuple[str, int], int] = field(default_factory=dict)
    kinds: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    stuck: dict[tuple[str, int], int] = field(default_factory=dict)
    opened: dict[tuple[str, int], int] = field(default_factory=dict)  # connects during runs
    cpu: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # process µs per op


def timed_run(
    adapter: ad.Contender, threads: int, duration: float, cfg: Settings, record_waits: bool = False
) -> LoadResult:
    adapter.prepare(threads)
    load = Load(
        adapter,
        threads,
        duration=duration,
        max_ops=cap(adapter, cfg.max_ops),
        record_waits=record_waits,
    )
    return load.run(cfg.join_grace)


def w2(env: Env, keys: Sequence[str], cfg: Settings) -> dict[bool, W2Result]:
    results: dict[bool, W2Result] = {}
    for autocommit in (True, False):
        res = results[autocommit] = W2Result()
        adapters = build(env, keys, size=8, autocommit=autocommit)
        try:
            for threads in cfg.w2_threads:
                for key in keys:
                    res.ops[key, threads] = []
                    res.ratio[key, threads] = []
                    res.errors[key, threads] = res.stuck[key, threads] = 0
                    res.kinds[key, threads] = {}
                for _, order in orders(keys, cfg.w2_rounds):
                    this_round: dict[str, float] = {}
                    for key in order:
                        before = env.connects()
                        cpu = time.process_time()
                        run = timed_run(adapters[key], threads, cfg.w2_duration, cfg)
                        cpu = time.process_time() - cpu
                        if run.ops:
                            res.cpu.setdefault((key, threads), []).append(cpu / run.ops * 1e6)
                        opened = env.connects() - before - 1  # less the reading's own
                        res.opened[key, threads] = res.opened.get((key, threads), 0) + opened
                        this_round[key] = run.ops_per_s
                        res.ops[key, threads].append(run.ops_per_s)
                        res.errors[key, threads] += run.errors
                        kinds = res.kinds[key, threads]
                        for kind, n in run.error_kinds.items():
                            kinds[kind] = kinds.get(kind, 0) + n
                        res.stuck[key, threads] += run.stuck
                    base = this_round.get("thread_local")
                    if base:
                        for key, value in this_round.items():
                            res.ratio[key, threads].append(value / base)
        finally:
            close_all(adapters)
    return results


# --- W3: 64 threads on 4 connections: fairness ---


@dataclass
class W3Run:
    ops_per_s: float
    p50: float
    p99: float
    max: float
    counts: list[int]
    starved: int
    jain: float
    errors: int
    stuck: int


def jain(counts: Sequence[int]) -> float:
    total = sum(counts)
    squares = sum(c * c for c in counts)
    return total * total / (len(counts) * squares) if squares else 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def w3(env: Env, keys: Sequence[str], cfg: Settings) -> dict[str, list[W3Run]]:
    threads = 64
    results: dict[str, list[W3Run]] = {key: [] for key in keys}
    adapters = build(env, keys, size=4, autocommit=True)
    try:
        for _, order in orders(keys, cfg.w3_rounds):
            for key in order:
                run = timed_run(adapters[key], threads, cfg.w3_duration, cfg, record_waits=True)
                waits = sorted(run.waits)
                mean = run.ops / threads
                results[key].append(
                    W3Run(
                        ops_per_s=run.ops_per_s,
                        p50=percentile(waits, 0.50),
                        p99=percentile(waits, 0.99),
                        max=waits[-1] if waits else float("nan"),
                        counts=run.counts,
                        starved=sum(1 for c in run.counts if c == 0 or c < 0.01 * mean),
                        jain=jain(run.counts),
                        errors=run.errors,
                        stuck=run.stuck,
                    )
                )
    finally:
        close_all(adapters)
    return results


# --- W4: the server restarts under a 16-thread load on a pool of 8 ---


class ReadinessProbe(threading.Thread):
    """Plain PyMySQL connects in a loop: notes when the server stops and starts answering."""

    def __init__(self, kwargs: dict[str, Any], timeout: float) -> None:
        super().__init__(name="bench-probe", daemon=True)
        self.kwargs = {**kwargs, "connect_timeout": 1, "read_timeout": 1, "write_timeout": 1}
        self.timeout = timeout
        self.down: float | None = None
        self.ready: float | None = None

    def _answers(self) -> bool:
        try:
            conn = pymysql.connect(**self.kwargs)
        except pymysql.err.MySQLError:
            return False
        conn.close()
        return True

    def run(self) -> None:
        end = monotonic() + self.timeout
        while monotonic() < end and self.down is None:
            if not self._answers():
                self.down = monotonic()
            else:
                time.sleep(0.002)
        while monotonic() < end and self.ready is None:
            if self._answers():
                self.ready = monotonic()
            else:
                time.sleep(0.001)


@dataclass
class W4Run:
    outage: float  # first failed probe -> first answer (s)
    ops: int
    errors: int
    errors_after: int  # among ops started after the server answered again
    failed_after: int  # ops that ended in an error after it answered (whenever they started)
    first_success_ms: float | None  # server answers -> first successful pool op
    live_server: int  # processlist rows for the contender's user after the load
    stats: str
    stuck: int
    error_kinds: dict[str, int]
    kinds_after: dict[str, int]


def w4_once(env: Env, key: str, cfg: Settings) -> W4Run:
    threads = 16
    adapter = ad.make(
        key, env.kwargs(key), size=8, autocommit=True, acquire_timeout=cfg.w4_acquire_timeout
    )
    try:
        adapter.prepare(threads)
        # Count-bounded by cfg.max_ops only: refused connects during the outage are cheap.
        load = Load(adapter, threads, duration=None, max_ops=cfg.max_ops, record_ops=True)
        load.start()
        time.sleep(cfg.w4_before)
        probe = ReadinessProbe(env.kwargs("probe"), timeout=60.0)
        probe.start()
        env.server.restart()  # the main thread started the server: keep it the restarter
        probe.join(65.0)
        restarted = monotonic()
        ready = probe.ready if probe.ready is not None else restarted
        time.sleep(max(0.0, ready + cfg.w4_after - monotonic()))
        load.stop()
        run = load.join(cfg.w4_acquire_timeout + cfg.join_grace)
        live = env.processlist(key)
        stats = adapter.stats()
    finally:
        adapter.close()
    after = [r for r in run.records if r.start >= ready]
    kinds_after: dict[str, int] = {}
    for r in after:
        if r.error is not None:
            kinds_after[r.error] = kinds_after.get(r.error, 0) + 1
    successes = [r.end for r in run.records if r.error is None and r.end >= ready]
    return W4Run(
        outage=ready - probe.down if probe.down is not None else float("nan"),
        ops=len(run.records),
        errors=run.errors,
        errors_after=sum(kinds_after.values()),
        failed_after=sum(1 for r in run.records if r.error is not None and r.end >= ready),
        first_success_ms=1e3 * (min(successes) - ready) if successes else None,
        live_server=live,
        stats=stats,
        stuck=run.stuck,
        error_kinds=run.error_kinds,
        kinds_after=kinds_after,
    )


def w4(env: Env, keys: Sequence[str], cfg: Settings) -> dict[str, list[W4Run]]:
    results: dict[str, list[W4Run]] = {key: [] for key in keys}
    for _, order in orders(keys, cfg.w4_rounds):
        for key in order:
            results[key].append(w4_once(env, key, cfg))
    return results
