"""A pool's periodic work: its maintenance thread, one round of it, and fork safety for all
pools."""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Protocol

from . import connection
from .connection import OWED, SENT
from .connector import Connector, Owner
from .entry import Held
from .errors import EndpointRefusedError
from .verdicts import Reason

if TYPE_CHECKING:
    from .connection import Connection
    from .endpoints import EndpointState
    from .inventory import Inventory


class MaintainedPool(Owner, Protocol):
    """What the maintenance round uses of its pool: the Connector's view, and the Connector."""

    @property
    def _connector(self) -> Connector: ...
    def _after_fork(self) -> None: ...


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
        self._next = float("inf")  # monotonic time it wakes next (inf: it is awake)
        self._scheduling = threading.Lock()
        self._full = False  # wake() asked for a full round now

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
        """Run a full round now."""
        self.start()
        self._full = True
        self.due_by(0.0)

    def due_by(self, when: float) -> None:
        """Send owed ROLLBACKs (sweep_owed) no later than *when* (monotonic time); cheap when
        the thread wakes sooner anyway."""
        if when >= self._next:  # read without the lock: a round comes soon enough
            return
        with self._scheduling:
            if when < self._next:
                self._next = when
                self._wakeup.set()

    def stop(self) -> None:
        """End the thread after its current round."""
        self._stopped = True
        self._wakeup.set()

    def _run(self) -> None:
        round_at = 0.0  # when the next full round is due
        while not self._stopped:
            pool = self._pool()
            if pool is None:
                return
            with self._scheduling:
                self._next = float("inf")  # awake: due_by() meanwhile lowers it
            try:
                if self._full or monotonic() >= round_at:
                    self._full = False
                    delay = run_round(pool)
                    if delay is None:
                        return
                    round_at = monotonic() + delay
                owed_at = sweep_owed(pool)
            except Exception:
                logger.exception("maintenance of pool(%s) failed", pool.name)
                round_at, owed_at = monotonic() + 1.0, float("inf")
            del pool
            with self._scheduling:
                self._next = min(self._next, round_at, owed_at)
            while not self._stopped:
                remaining = self._next - monotonic()
                if remaining <= 0:
                    break
                self._wakeup.wait(remaining)
                self._wakeup.clear()


def run_round(pool: MaintainedPool) -> float | None:
    """One round of a pool's periodic work; returns seconds until the next (None: stop).

    Under the pool's lock it takes what is due (retired, answered, keepalive and check
    connections, the leak candidates, the slots to refill); then, outside it, acts.
    """
    config = pool.config
    inventory = pool._inventory
    line = inventory.line
    now = monotonic()
    with inventory.lock:
        if inventory.closed:
            return None
        retired = _take_retired(inventory, config.max_idle, config.min_size, now)
        answered = _hold(
            inventory,
            [conn for conn in inventory.idle if conn._rollback == SENT and conn.readable()],
        )
        stale = _take_for_keepalive(inventory, config.keepalive_interval, now)
        probes = _take_for_endpoint_check(pool, now)
        lent = list(inventory.lent)
        missing = max(config.min_size - line.total, 0)
        if missing and line.gate.failing:  # one attempt, when the gate allows it
            missing = 1 if line.gate.try_start(now) else 0
        line.total += missing
    for conn, reason in retired:
        inventory.retire(conn, reason)
    for conn in answered:  # read a pipelined ROLLBACK's reply; a killed session is found
        if conn.server_closed():
            inventory.discard(conn, Reason.DEAD)
        else:
            inventory.put(conn, conn._entry.idle_since, False)
    for conn in stale:
        try:
            conn.ping_within(config.ping_timeout)
        except Exception:  # noqa: BLE001 - any failure means the connection is gone
            inventory.discard(conn, Reason.DEAD)
        else:
            inventory.put(conn, monotonic(), False)
    for conn in probes:
        _recheck(pool, conn)
    _check_leaks(pool, lent, now)
    if missing:
        pool._connector.refill(missing)
    periods = (
        config.max_idle,
        config.keepalive_interval,
        config.leak_threshold,
        config.endpoint_check_interval if pool._endpoints.rechecks else None,
    )
    wait = min([1.0, *(p / 4 for p in periods if p is not None)])
    with inventory.lock:
        if line.gate.failing and line.total < config.min_size:
            wait = min(wait, line.gate.next_at - monotonic())
    return max(wait, _MIN_ROUND)


def sweep_owed(pool: MaintainedPool) -> float:
    """Send the ROLLBACK that idle connections owe once they idled ROLLBACK_WITHIN seconds
    (a borrower that takes one sooner sends it with its first command); returns when the
    next falls due (inf: none is owed). Cheap: the thread runs it on each wake."""
    inventory = pool._inventory
    within = connection.ROLLBACK_WITHIN
    now = monotonic()
    due, later = [], float("inf")
    with inventory.lock:
        if inventory.closed:
            return later
        for conn in inventory.idle:
            if conn._rollback == OWED:
                idle_since = conn._entry.idle_since
                if idle_since <= now - within:
                    due.append(conn)
                else:
                    later = min(later, idle_since + within)
        _hold(inventory, due)
    for conn in due:
        try:
            conn.send_owed_rollback()
        except Exception:  # noqa: BLE001 - the socket is gone
            inventory.discard(conn, Reason.DEAD)
        else:
            inventory.put(conn, conn._entry.idle_since, False)
    return later


def _hold(inventory: Inventory, conns: list[Connection]) -> list[Connection]:
    """Under the lock: take *conns* out of the idle ones, held by this (maintenance) thread
    until it puts them back or closes them; returns *conns*."""
    for conn in conns:
        inventory.idle.remove(conn)
        inventory.mark(conn, Held.MAINTENANCE)
    return conns


def _take_retired(
    inventory: Inventory, max_idle: float | None, min_size: int, now: float
) -> list[tuple[Connection, Reason]]:
    """Under the lock: remove idle connections that expired, died, or idled too long."""
    surplus = inventory.line.total - min_size
    retired = []
    for conn in inventory.idle:
        entry = conn._entry
        reason = entry.spent(now)
        if reason is not None:
            retired.append((conn, reason))
        elif conn._rollback != SENT and conn.server_closed():
            # dropped while idle; one with a reply pending is taken out of the idle ones and
            # read outside the lock (run_round's "answered"), so no socket is read under it
            retired.append((conn, Reason.DEAD))
        elif max_idle is not None and surplus > 0 and now - entry.idle_since > max_idle:
            retired.append((conn, Reason.IDLE))
            surplus -= 1
    for conn, _ in retired:
        inventory.idle.remove(conn)
    inventory.line.total -= len(retired)
    return retired


def _take_for_keepalive(
    inventory: Inventory, interval: float | None, now: float
) -> list[Connection]:
    """Under the lock: hold the idle connections due for a keepalive ping."""
    if interval is None:
        return []
    due = [conn for conn in inventory.idle if now - conn._entry.idle_since >= interval]
    return _hold(inventory, due)


def _take_for_endpoint_check(pool: MaintainedPool, now: float) -> list[Connection]:
    """Under the lock: hold one idle connection of each endpoint not checked for
    ``endpoint_check_interval`` seconds (a new connection is a check)."""
    interval = pool.config.endpoint_check_interval
    if interval is None or not pool._endpoints.rechecks:
        return []
    picked: dict[EndpointState, Connection] = {}
    for conn in pool._inventory.idle:
        entry = conn._entry
        state = entry.endpoint
        if state not in picked and not entry.condemned() and now - state.checked_at >= interval:
            picked[state] = conn
    return _hold(pool._inventory, list(picked.values()))


def _recheck(pool: MaintainedPool, conn: Connection) -> None:
    """Run the check_endpoint hooks on an idle *conn*: a refusal ejects its endpoint (and
    so retires its connections); a failure closes *conn*; else it goes back as it was."""
    state = conn._entry.endpoint
    inventory = pool._inventory
    try:
        pool._connector.vet(conn, state, pool.config.ping_timeout)
    except EndpointRefusedError as exc:
        pool._connector.endpoint_failed(state, exc, health=True)
        inventory.discard(conn, Reason.ENDPOINT_FAILED)
    except Exception:  # noqa: BLE001 - any failure means the connection is gone
        inventory.discard(conn, Reason.DEAD)
    else:
        inventory.put(conn, conn._entry.idle_since, False)  # a check is not a loan: idle time stays


def _check_leaks(pool: MaintainedPool, lent: list[Connection], now: float) -> None:
    """Report connections lent too long, or whose borrower thread died; close the latter
    where only the borrower may return them (check_owner_thread)."""
    threshold = pool.config.leak_threshold
    inventory = pool._inventory
    for conn in lent:
        entry = conn._entry
        if entry.held is not Held.LENT:
            continue  # held for a ping, a check or a reply, or being checked out
        borrower = conn._borrower
        with inventory.lock:  # re-checked under the lock: it may have been returned meanwhile
            orphaned = (
                conn in inventory.lent
                and borrower is not None
                and conn._borrower is borrower
                and not borrower.is_alive()
            )
            abandoned = orphaned and conn._check_owner
            if abandoned:
                inventory.lent.discard(conn)  # nobody can return it now; discarded below
        held = now - entry.lent_at
        overdue = threshold is not None and held > threshold
        reported = entry.leak_reported == entry.lent_at  # for this loan already
        if not (abandoned or ((overdue or orphaned) and not reported)):
            continue
        entry.leak_reported = entry.lent_at
        with inventory.lock:
            inventory.counts["leaks"] += 1
        if pool._hooks.on_leak is not None:
            stack = "".join(traceback.format_list(entry.taken_at or []))
            pool._hooks.on_leak(
                pool=pool, connection=conn, held=held, stack=stack, abandoned=abandoned
            )
        if abandoned:
            inventory.discard(conn, Reason.ABANDONED)


def _forget_parent_connections() -> None:
    for pool in list(_POOLS):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_connections)
