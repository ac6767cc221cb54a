"""Inventory: what a pool holds and the moves between, each under the pool's one lock."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

from .connection import OWED, ROLLBACK_WITHIN
from .entry import Held
from .errors import PoolClosedError
from .hookspecs import PoolView
from .verdicts import Reason
from .waiting import Line, Waiter

if TYPE_CHECKING:
    from ._manager import PolicyManager
    from .config import PoolConfig
    from .connection import Connection

#: The counters of ``ConnectionPool.stats()``.
COUNTERS = (
    "requests",
    "waited",
    "timeouts",
    "created",
    "connect_errors",
    "closed",
    "discarded",
    "resets",
    "leaks",
)
IDLE, CHECKOUT = Held.IDLE, Held.CHECKOUT
current_thread = threading.current_thread
monotonic = time.monotonic


class Maintained(Protocol):
    def start(self) -> None: ...
    def wake(self) -> None: ...
    def due_by(self, when: float) -> None: ...


class Keeper(PoolView, Protocol):
    """What an Inventory uses of its pool: what hooks see, the hooks, the maintenance thread."""

    @property
    def _hooks(self) -> PolicyManager: ...
    @property
    def _maintenance(self) -> Maintained: ...


class Inventory:
    """A pool's connections and slots: the idle ones (in lending order), the lent ones (to
    borrowers, or held for a moment by the maintenance thread), and the slots and waiters of
    its :class:`Line`, with the counters of what happened to them.

    Fields change under :attr:`lock`; the methods that take the lock themselves say so.
    """

    def __init__(self, pool: Keeper, config: PoolConfig) -> None:
        self._pool = pool
        self.lock = threading.Lock()
        self.idle: deque[Connection] = deque()
        self.take_idle = self.idle.pop if config.lifo else self.idle.popleft
        self.lent: set[Connection] = set()
        self.line = Line(self.lock, config.max_size)
        self.generation = 0  # bumped by invalidate(); older connections are not reused
        self.closed = False
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.wait_time = 0.0
        self.all_back = threading.Event()  # set when the pool is closed and nothing is lent

    def checkout(self, first: bool) -> Connection | None:
        """Take an idle connection for the calling thread (None if there is none), counting
        the request if it is its *first* try. Takes the lock.

        :meth:`take` with :meth:`mark`, inlined: this runs on every loan.
        """
        with self.lock:
            if self.closed:
                raise PoolClosedError(0, f"pool({self._pool.name}) is closed")
            if first:
                self.counts["requests"] += 1
            if self.idle:
                conn = self.take_idle()
                conn._entry.held = CHECKOUT
                conn._lent = True
                conn._borrower = current_thread()
                self.lent.add(conn)
                return conn
        return None

    def take(self) -> Connection | None:
        """Under the lock: what :meth:`checkout` does on a later try (no request counted)."""
        if self.closed:
            raise PoolClosedError(0, f"pool({self._pool.name}) is closed")
        if self.idle:
            conn = self.take_idle()
            self.mark(conn, CHECKOUT)
            return conn
        return None

    def take_back(self, conn: Connection) -> bool:
        """Take *conn* out of the idle ones for the calling thread, as a new request; False
        if it is not idle here. Takes the lock."""
        with self.lock:
            idle = not self.closed and conn in self.idle
            if idle:
                self.idle.remove(conn)
                self.mark(conn, CHECKOUT)
                self.counts["requests"] += 1
        return idle

    def leave_line(self, waiter: Waiter) -> None:
        """An interrupted waiter leaves the line, giving back what it was or is about to be
        handed. Takes the lock."""
        with self.lock:
            queued = self.line.leave(waiter)
        if queued:
            return
        if waiter.conn is not None:
            self.put(waiter.conn, monotonic(), False)
        elif waiter.slot:
            self.release_slot()

    def mark(self, conn: Connection, held: Held) -> None:
        """Under the lock: *conn*, just opened or taken out of the idle ones, is the calling
        thread's now (a borrower's being checked out, or the maintenance thread's)."""
        conn._entry.held = held
        conn._lent = True
        conn._borrower = current_thread()
        self.lent.add(conn)

    def empty(self) -> list[Connection]:
        """Under the lock: take out every idle connection (their slots are freed)."""
        idle = list(self.idle)
        self.idle.clear()
        self.line.total -= len(idle)
        return idle

    def renew(self, conn: Connection) -> Connection:
        """With check_owner_thread off: move a lent *conn* into a new object, leaving the
        returned handle closed, so that a stale reference can neither use nor return the
        next loan. Takes the lock."""
        with self.lock:
            renewed = conn._move()
            self.lent.discard(conn)
            self.lent.add(renewed)
        return renewed

    def put(self, conn: Connection, now: float, reset: bool) -> None:
        """Hand a lent *conn* to the first waiter, or make it idle (idle since *now*); close
        it if the pool was closed, invalidated or shrunk meanwhile. Takes the lock."""
        entry = conn._entry
        entry.idle_since = now
        with self.lock:
            if reset:
                self.counts["resets"] += 1
            current = entry.generation == self.generation  # else invalidated meanwhile
            line = self.line
            kept = current and not self.closed and line.total <= line.max_size
            if kept:
                if line.waiters:
                    waiter = line.waiters.popleft()
                    entry.held = CHECKOUT
                    conn._borrower = waiter.thread
                    waiter.hand(conn)
                    return
                entry.held = IDLE
                conn._lent = False
                self.lent.discard(conn)
                self.idle.append(conn)
        if not kept:
            reason = Reason.RESIZED if current else Reason.INVALIDATED
            self.discard(conn, Reason.POOL_CLOSED if self.closed else reason)
        elif conn._rollback == OWED:  # its transaction ends within ROLLBACK_WITHIN seconds,
            self._pool._maintenance.due_by(now + ROLLBACK_WITHIN)  # or when a borrower takes it

    def discard(self, conn: Connection, reason: Reason) -> None:
        """Close a lent *conn* and free its slot. Takes the lock."""
        with self.lock:
            self.lent.discard(conn)
        try:
            self.retire(conn, reason)
        finally:
            self.release_slot()

    def release_slot(self, wake: bool = True) -> None:
        """Free a slot: the first waiter gets it (and opens a connection in it) if the gate
        lets a connect start. Dropping below min_size wakes the maintenance thread to refill
        (*wake*). Takes the lock."""
        with self.lock:
            self.line.release()
            total = self.line.total
            if self.closed and total == 0:
                self.all_back.set()
            refill = wake and total < self._pool.config.min_size and not self.closed
        if refill:
            self._pool._maintenance.wake()

    def retire(self, conn: Connection, reason: Reason) -> None:
        """Close *conn*, whose slot is already accounted for, and report it. Takes the lock."""
        conn.discard()
        with self.lock:
            self.counts["closed"] += 1
            conn._entry.endpoint.open -= 1
            if reason != Reason.POOL_CLOSED:
                self.counts["discarded"] += 1
        hook = self._pool._hooks.on_discard
        if hook is not None:
            hook(pool=self._pool, connection=conn, reason=reason)

    def invalidate(self) -> None:
        """Close the idle connections now, and the lent ones as they come back."""
        with self.lock:
            self.generation += 1
            idle = self.empty()
        for conn in idle:
            self.retire(conn, Reason.INVALIDATED)

    def shut(self, error: BaseException) -> threading.Event:
        """Close the pool: fail the waiters with *error*, close the idle connections now and
        the lent ones as they come back; returns the event set when all are closed."""
        with self.lock:
            self.closed = True
            idle = self.empty()
            self.line.close(error)
            if self.line.total == 0:
                self.all_back.set()
        for conn in idle:
            self.retire(conn, Reason.POOL_CLOSED)
        return self.all_back

    def resize(self, max_size: int) -> None:
        """Set *max_size*: close idle connections above it, or grant the slots it frees."""
        surplus = []
        line = self.line
        with self.lock:
            line.max_size = max_size
            while line.total > max_size and self.idle:
                surplus.append(self.idle.popleft())
                line.total -= 1
            line.grant()
        for conn in surplus:
            self.retire(conn, Reason.RESIZED)

    def stats(self) -> dict[str, float]:
        """Under the lock: ``ConnectionPool.stats()``."""
        held = sum(1 for conn in self.lent if conn._entry.held is Held.MAINTENANCE)
        config = self._pool.config
        return {
            "idle": len(self.idle) + held,
            "in_use": len(self.lent) - held,
            "total": self.line.total,
            "waiting": len(self.line.waiters),
            "min_size": config.min_size,
            "max_size": config.max_size,
            **self.counts,
            "wait_time": self.wait_time,
        }

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching their sockets'
        server sessions (a lent one becomes a plain closed connection), with a new lock."""
        for conn in (*self.idle, *self.lent):
            conn._pool = None
            conn._lent = False
            conn._force_close()
        self.idle.clear()
        self.lent.clear()
        self.lock = threading.Lock()
        self.line = Line(self.lock, self.line.max_size)
        self.generation += 1
