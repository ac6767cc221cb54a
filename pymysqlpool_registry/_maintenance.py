"""A pool's periodic work: its maintenance thread, one round of it, and fork safety for all
pools."""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import weakref
from collections import deque
from typing import TYPE_CHECKING, Protocol

from .connector import Connector, Owner
from .entry import Held
from .errors import EndpointRefusedError
from .verdicts import Reason

if TYPE_CHECKING:
    from .connection import Connection
    from .endpoints import EndpointState
    from .waiting import Line


class MaintainedPool(Owner, Protocol):
    """What the maintenance round uses of its pool: the Connector's view, and the idle and
    lent connections with the primitives that move them."""

    @property
    def _closed(self) -> bool: ...
    @property
    def _idle(self) -> deque[Connection]: ...
    @property
    def _lent(self) -> set[Connection]: ...
    @property
    def _line(self) -> Line: ...
    @property
    def _connector(self) -> Connector: ...
    def _after_fork(self) -> None: ...
    def _mark(self, conn: Connection, held: Held) -> None: ...
    def _put(self, conn: Connection, now: float, reset: bool) -> None: ...
    def _discard(self, conn: Connection, reason: Reason) -> None: ...
    def _close(self, conn: Connection, reason: Reason) -> None: ...
    def _release_slot(self, wake: bool = True) -> None: ...
    def _connect_abandoned(self) -> None: ...


monotonic = time.monotonic
current_thread = threading.current_thread
_MIN_ROUND = 0.01  # seconds: the shortest wait between two maintenance rounds

logger = logging.getLogger("pymysqlpool_registry")

#: Every pool alive in this process, so a forked child can make them forget their sockets.
_POOLS: weakref.WeakSet[MaintainedPool] = weakref.WeakSet()


class Maintenance:
    """A daemon thread running :func:`run_round` for its pool until the pool is closed or
    collected.

    It starts with the pool's first connection (:meth:`start`), or when woken: a pool that
    has none has nothing to maintain, so a process can build thousands of pools (``pymysqlpool
    stats`` on a large config file) without a thread each. It holds the pool only through a
    weak reference, so a pool nobody uses any more can go. A round returns how long to sleep;
    :meth:`wake` cuts the sleep short.
    """

    def __init__(self, pool: MaintainedPool) -> None:
        self._pool = weakref.ref(pool)
        self._wakeup = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def start(self) -> None:
        """Start the thread unless it runs already (or the pool was stopped)."""
        if self._thread is not None or self._stopped:
            return
        with self._starting:
            pool = self._pool()
            if self._thread is None and not self._stopped and pool is not None:
                self._thread = threading.Thread(
                    target=self._run, name=f"pymysqlpool-maintenance({pool.name})", daemon=True
                )
                self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for the thread to end; True if it is not running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def wake(self) -> None:
        """Run the next round now."""
        self.start()
        self._wakeup.set()

    def stop(self) -> None:
        """End the thread after its current round."""
        self._stopped = True
        self._wakeup.set()

    def _run(self) -> None:
        while not self._stopped:
            pool = self._pool()
            if pool is None:
                return
            try:
                delay = run_round(pool)
            except Exception:
                logger.exception("maintenance of pool(%s) failed", pool.name)
                delay = 1.0
            del pool
            if delay is None:
                return
            self._wakeup.wait(delay)
            self._wakeup.clear()


def run_round(pool: MaintainedPool) -> float | None:
    """One round of a pool's periodic work; returns seconds until the next (None: stop).

    Under the pool's lock it takes what is due (retired, answered, keepalive and check
    connections, the leak candidates, the slots to refill); then, outside it, acts.
    """
    config = pool.config
    line = pool._line
    now = monotonic()
    with pool._lock:
        if pool._closed:
            return None
        retired = _take_retired(pool, now)
        answered = _hold(
            pool, [conn for conn in pool._idle if conn._pending_reply and conn.readable()]
        )
        stale = _take_for_keepalive(pool, now)
        probes = _take_for_endpoint_check(pool, now)
        lent = list(pool._lent)
        missing = max(config.min_size - line.total, 0)
        if missing and line.gate.failing:  # one attempt, when the gate allows it
            missing = 1 if line.gate.try_start(now) else 0
        line.total += missing
    for conn, reason in retired:
        pool._close(conn, reason)
    for conn in answered:  # read a pipelined ROLLBACK's reply; a killed session is found
        if conn.server_closed():
            pool._discard(conn, Reason.DEAD)
        else:
            pool._put(conn, conn._entry.idle_since, False)
    for conn in stale:
        try:
            conn.ping_within(config.ping_timeout)
        except Exception:  # noqa: BLE001 - any failure means the connection is gone
            pool._discard(conn, Reason.DEAD)
        else:
            pool._put(conn, monotonic(), False)
    for conn in probes:
        _recheck(pool, conn)
    _check_leaks(pool, lent, now)
    if missing:
        _refill(pool, missing)
    periods = (
        config.max_idle,
        config.keepalive_interval,
        config.leak_threshold,
        config.endpoint_check_interval if pool._endpoints.rechecks else None,
    )
    wait = min([1.0, *(p / 4 for p in periods if p is not None)])
    with pool._lock:
        if line.gate.failing and line.total < config.min_size:
            wait = min(wait, line.gate.next_at - monotonic())
    return max(wait, _MIN_ROUND)


def _hold(pool: MaintainedPool, conns: list[Connection]) -> list[Connection]:
    """Under the lock: take *conns* out of the idle ones, held by this (maintenance) thread
    until it gives them back with _put or closes them; returns *conns*."""
    for conn in conns:
        pool._idle.remove(conn)
        pool._mark(conn, Held.MAINTENANCE)
    return conns


def _take_retired(pool: MaintainedPool, now: float) -> list[tuple[Connection, Reason]]:
    """Under the lock: remove idle connections that expired, died, or idled too long."""
    max_idle = pool.config.max_idle
    surplus = pool._line.total - pool.config.min_size
    retired = []
    for conn in pool._idle:
        entry = conn._entry
        reason = entry.spent(now)
        if reason is not None:
            retired.append((conn, reason))
        elif not conn._pending_reply and conn.server_closed():
            # dropped while idle; one with a reply pending is taken out of the idle ones and
            # read outside the lock (run_round's "answered"), so no socket is read under it
            retired.append((conn, Reason.DEAD))
        elif max_idle is not None and surplus > 0 and now - entry.idle_since > max_idle:
            retired.append((conn, Reason.IDLE))
            surplus -= 1
    for conn, _ in retired:
        pool._idle.remove(conn)
    pool._line.total -= len(retired)
    return retired


def _take_for_keepalive(pool: MaintainedPool, now: float) -> list[Connection]:
    """Under the lock: lend to this thread the idle connections due for a keepalive ping."""
    interval = pool.config.keepalive_interval
    if interval is None:
        return []
    return _hold(pool, [conn for conn in pool._idle if now - conn._entry.idle_since >= interval])


def _take_for_endpoint_check(pool: MaintainedPool, now: float) -> list[Connection]:
    """Under the lock: lend to this thread one idle connection of each endpoint not
    checked for ``endpoint_check_interval`` seconds (a new connection is a check)."""
    interval = pool.config.endpoint_check_interval
    if interval is None or not pool._endpoints.rechecks:
        return []
    picked: dict[EndpointState, Connection] = {}
    for conn in pool._idle:
        entry = conn._entry
        state = entry.endpoint
        if state not in picked and not entry.condemned() and now - state.checked_at >= interval:
            picked[state] = conn
    return _hold(pool, list(picked.values()))


def _recheck(pool: MaintainedPool, conn: Connection) -> None:
    """Run the check_endpoint hooks on an idle *conn*: a refusal ejects its endpoint (and
    so retires its connections); a failure closes *conn*; else it goes back as it was."""
    state = conn._entry.endpoint
    try:
        pool._connector.vet(conn, state, pool.config.ping_timeout)
    except EndpointRefusedError as exc:
        pool._connector.endpoint_failed(state, exc, health=True)
        pool._discard(conn, Reason.ENDPOINT_FAILED)
    except Exception:  # noqa: BLE001 - any failure means the connection is gone
        pool._discard(conn, Reason.DEAD)
    else:
        pool._put(conn, conn._entry.idle_since, False)  # a check is not a loan: idle time stays


def _check_leaks(pool: MaintainedPool, lent: list[Connection], now: float) -> None:
    """Report connections lent too long, or whose borrower thread died; close the latter
    where only the borrower may return them (check_owner_thread)."""
    threshold = pool.config.leak_threshold
    for conn in lent:
        entry = conn._entry
        if entry.held is not Held.LENT:
            continue  # held for a ping, a check or a reply, or being checked out
        borrower = conn._borrower
        with pool._lock:  # re-checked under the lock: it may have been returned meanwhile
            orphaned = (
                conn in pool._lent
                and borrower is not None
                and conn._borrower is borrower
                and not borrower.is_alive()
            )
            abandoned = orphaned and conn._check_owner
            if abandoned:
                pool._lent.discard(conn)  # nobody can return it now; _discard below closes it
        held = now - entry.lent_at
        overdue = threshold is not None and held > threshold
        reported = entry.leak_reported == entry.lent_at  # for this loan already
        if not (abandoned or ((overdue or orphaned) and not reported)):
            continue
        entry.leak_reported = entry.lent_at
        with pool._lock:
            pool._counts["leaks"] += 1
        if pool._hooks.on_leak is not None:
            stack = "".join(traceback.format_list(entry.taken_at or []))
            pool._hooks.on_leak(
                pool=pool, connection=conn, held=held, stack=stack, abandoned=abandoned
            )
        if abandoned:
            pool._discard(conn, Reason.ABANDONED)


def _refill(pool: MaintainedPool, missing: int) -> None:
    """Open *missing* connections in slots already reserved; stop at the first failure
    (the gate spaces out the next attempts)."""
    for opened in range(missing):
        if pool._closed:
            for _ in range(missing - opened):
                pool._release_slot(wake=False)
            return
        try:
            conn = pool._connector.open("fill", pool.config.connect_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure: retry later with backoff
            now = monotonic()
            with pool._lock:
                gate = pool._line.gate
                pool._line.failed(exc, now)
                since = gate.failing_since or now
                report = now - since >= pool.config.reconnect_timeout and not gate.reported
                gate.reported |= report
            for _ in range(missing - opened):
                pool._release_slot(wake=False)
            if report and pool._hooks.on_reconnect_failed is not None:
                pool._hooks.on_reconnect_failed(pool=pool, error=exc, elapsed=now - since)
            return
        except BaseException:
            pool._connect_abandoned()
            raise
        with pool._lock:
            pool._mark(conn, Held.MAINTENANCE)
        pool._put(conn, monotonic(), False)


def _forget_parent_connections() -> None:
    for pool in list(_POOLS):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_connections)
