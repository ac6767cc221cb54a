"""Waiting for a connection: a borrower in line (Waiter) and the gate that spaces out connect
attempts while they fail (ConnectGate)."""

from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection

current_thread = threading.current_thread

#: Seconds before the next attempt after a failed one: doubling from the first to the cap,
#: each drawn between half and all of it (jitter), so a pool sends at most a few connects a
#: second to a server that refuses them.
BACKOFF_FIRST, BACKOFF_MAX = 0.01, 1.0


class ConnectGate:
    """While connects succeed, anyone may connect. After one fails in a way a retry may fix,
    one attempt at a time, each after a jittered, doubling delay, until one succeeds.

    Used under the pool's lock.
    """

    __slots__ = (
        "cap",
        "delay",
        "error",
        "failing_since",
        "failures",
        "first",
        "next_at",
        "probing",
        "reported",
    )

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX) -> None:
        self.first, self.cap = first, cap
        self.error: BaseException | None = None  # the last failure, while failing
        self.failing_since: float | None = None
        self.delay = 0.0
        self.next_at = 0.0  # monotonic time the next attempt may start
        self.probing = False  # an attempt is in flight while failing
        self.reported = False  # the outage was reported (on_reconnect_failed)
        self.failures = 0  # failed attempts ever: tells a waiter that one ended since it came

    @property
    def failing(self) -> bool:
        return self.error is not None

    def try_start(self, now: float) -> bool:
        """True if an attempt may start now (and it then counts as started)."""
        if self.error is None:
            return True
        if self.probing or now < self.next_at:
            return False
        self.probing = True
        return True

    def wake_at(self, deadline: float) -> float:
        """When a borrower waiting until *deadline* should look for a turn to connect."""
        if self.error is None or self.probing:
            return deadline  # a hand-off, or the attempt in flight ending, wakes it
        return min(deadline, self.next_at)

    def succeeded(self) -> bool:
        """An attempt succeeded; True if that ended an outage."""
        was_failing = self.error is not None
        self.error = self.failing_since = None
        self.delay = 0.0
        self.probing = self.reported = False
        return was_failing

    def failed(self, error: BaseException, now: float) -> None:
        """An attempt failed in a way a retry may fix."""
        if self.error is None:
            self.failing_since = now
        self.error = error
        self.failures += 1
        self.delay = min(max(self.delay * 2, self.first), self.cap)
        self.next_at = now + self.delay * random.uniform(0.5, 1.0)
        self.probing = False

    def abandoned(self) -> None:
        """An attempt that started ended without an answer (interrupted, or a plugin failed)."""
        self.probing = False


class Waiter:
    """A borrower waiting in line. Under the pool's lock the pool hands it a connection, a
    slot to open one in, or an error, or only wakes it to look again (a connect may start)."""

    __slots__ = ("conn", "error", "failures", "lock", "slot", "thread", "woken")

    def __init__(self, failures: int) -> None:
        self.failures = failures  # the gate's failed attempts when it came: later ones answer it
        self.thread = current_thread()
        self.lock = threading.Lock()
        self.lock.acquire()
        self.conn: Connection | None = None
        self.slot = False
        self.error: BaseException | None = None
        self.woken = False

    @property
    def handed(self) -> bool:
        return self.conn is not None or self.slot or self.error is not None

    def wake(self) -> None:
        """Under the pool's lock: end the waiter's sleep (at most one wake is pending)."""
        if not self.woken:
            self.woken = True
            self.lock.release()

    def hand(
        self, conn: Connection | None = None, slot: bool = False, error: BaseException | None = None
    ) -> None:
        """Under the pool's lock: give the waiter what it waits for, and wake it."""
        self.conn, self.slot, self.error = conn, slot, error
        self.wake()

    def sleep(self, timeout: float) -> None:
        """Sleep until woken or for *timeout* seconds (outside the pool's lock)."""
        if timeout > 0:
            self.lock.acquire(timeout=timeout)

    def settle(self) -> None:
        """Under the pool's lock, after a sleep: take back a wake that came in meanwhile."""
        if self.woken:
            self.lock.acquire(blocking=False)  # held again whether or not sleep took it
            self.woken = False
