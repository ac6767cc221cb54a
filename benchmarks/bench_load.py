"""Worker threads that run acquire → SELECT 1 → release, bounded in time and in count."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench_adapters import Contender

monotonic = time.monotonic
_START_TIMEOUT = 60.0  # seconds for all workers to reach the start line
_ERROR_PAUSE = 0.001  # after a failed op, so a refused connect does not spin


@dataclass
class OpRecord:
    """One op of a recorded run: when it started and ended, and its error (None: success)."""

    start: float
    end: float
    error: str | None


@dataclass
class LoadResult:
    threads: int
    started: float
    elapsed: float  # from the start line to the last worker's last op
    counts: list[int]  # successful ops per thread
    errors: int
    stuck: int  # workers still running when the join timed out
    waits: list[float] = field(default_factory=list)  # acquire durations (record_waits)
    records: list[OpRecord] = field(default_factory=list)  # every op (record_ops)
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def ops(self) -> int:
        return sum(self.counts)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed if self.elapsed > 0 else 0.0


def describe(error: BaseException) -> str:
    """A short name for an error: its class and, for PyMySQL errors, the error number."""
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    return type(error).__name__ + (f"({code})" if code is not None else "")


class Load:
    """*threads* workers looping over acquire → query → release until stopped.

    Each worker stops at the deadline, after ``max_ops`` ops (its share of the run's cap) or
    when :meth:`stop` is called; :meth:`join` waits a bounded time and counts stuck workers.
    """

    def __init__(
        self,
        adapter: Contender,
        threads: int,
        *,
        duration: float | None,
        max_ops: int,
        record_waits: bool = False,
        record_ops: bool = False,
    ) -> None:
        self.adapter = adapter
        self.threads = threads
        self.duration = duration
        self.max_ops = max(1, max_ops // threads)
        self.record_waits = record_waits
        self.record_ops = record_ops
        self.stopped = False
        self.started = 0.0
        self.deadline = float("inf")
        self._counts = [0] * threads
        self._errors = [0] * threads
        self._ends = [0.0] * threads
        self._waits: list[list[float]] = [[] for _ in range(threads)]
        self._records: list[list[OpRecord]] = [[] for _ in range(threads)]
        self._kinds: list[dict[str, int]] = [{} for _ in range(threads)]
        self._barrier = threading.Barrier(threads + 1, action=self._on_start)
        self._workers = [
            threading.Thread(target=self._work, args=(i,), name=f"bench-{i}", daemon=True)
            for i in range(threads)
        ]

    def _on_start(self) -> None:
        self.started = monotonic()
        if self.duration is not None:
            self.deadline = self.started + self.duration

    def start(self) -> float:
        for worker in self._workers:
            worker.start()
        self._barrier.wait(_START_TIMEOUT)
        return self.started

    def stop(self) -> None:
        self.stopped = True

    def join(self, timeout: float) -> LoadResult:
        """Wait up to *timeout* seconds in all for the workers; stop them first if untimed."""
        end = monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, end - monotonic()))
        stuck = sum(worker.is_alive() for worker in self._workers)
        self.stopped = True
        finished = [e for e in self._ends if e > 0]
        last = max(finished) if finished else monotonic()
        kinds: dict[str, int] = {}
        for per_thread in self._kinds:
            for name, n in per_thread.items():
                kinds[name] = kinds.get(name, 0) + n
        return LoadResult(
            threads=self.threads,
            started=self.started,
            elapsed=last - self.started,
            counts=list(self._counts),
            errors=sum(self._errors),
            stuck=stuck,
            waits=[w for per_thread in self._waits for w in per_thread],
            records=[r for per_thread in self._records for r in per_thread],
            error_kinds=kinds,
        )

    def run(self, join_timeout: float) -> LoadResult:
        """Start, let the workers run to their deadline, join."""
        self.start()
        if self.duration is not None:
            time.sleep(self.duration)
        return self.join(join_timeout)

    def _fail(self, i: int, started: float, error: BaseException) -> None:
        name = describe(error)
        kinds = self._kinds[i]
        kinds[name] = kinds.get(name, 0) + 1
        self._errors[i] += 1
        if self.record_ops:
            self._records[i].append(OpRecord(started, monotonic(), name))
        time.sleep(_ERROR_PAUSE)

    def _work(self, i: int) -> None:
        adapter = self.adapter
        acquire, query, release = adapter.acquire, adapter.query, adapter.release
        waits: list[float] | None = self._waits[i] if self.record_waits else None
        records: list[OpRecord] | None = self._records[i] if self.record_ops else None
        max_ops = self.max_ops
        try:
            self._barrier.wait(_START_TIMEOUT)
        except threading.BrokenBarrierError:
            return
        deadline = self.deadline
        done = failed = 0
        try:
            while done + failed < max_ops and not self.stopped:
                t0 = monotonic()
                if t0 >= deadline:
                    break
                try:
                    conn: Any = acquire()
                except Exception as exc:  # noqa: BLE001 - counted and recorded
                    failed += 1
                    self._fail(i, t0, exc)
                    continue
                t1 = monotonic()
                try:
                    query(conn)
                except Exception as exc:  # noqa: BLE001 - counted and recorded
                    failed += 1
                    with contextlib.suppress(Exception):  # the op failed already
                        release(conn, exc)
                    self._fail(i, t0, exc)
                    continue
                try:
                    release(conn)
                except Exception as exc:  # noqa: BLE001 - counted and recorded
                    failed += 1
                    self._fail(i, t0, exc)
                    continue
                done += 1
                if waits is not None:
                    waits.append(t1 - t0)
                if records is not None:
                    records.append(OpRecord(t0, monotonic(), None))
        finally:
            self._counts[i] = done
            self._ends[i] = monotonic()
