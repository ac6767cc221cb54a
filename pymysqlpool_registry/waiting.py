"""Waiting for a connection: the pool's slots and the line of borrowers waiting for one (Line),
a borrower in line (Waiter), and the gate that spaces out connect attempts while they fail
(ConnectGate)."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from .errors import NoEndpointError

if TYPE_CHECKING:
    from .connection import Connection

current_thread = threading.current_thread
monotonic = time.monotonic

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
    """A borrower who found no idle connection, with the terms of its request. Under the
    pool's lock the pool hands it a connection, a slot to open one in, or an error, or only
    wakes it to look again (a connect may start)."""

    __slots__ = (
        "conn",
        "deadline",
        "error",
        "failures",
        "lock",
        "retry_num",
        "slot",
        "started",
        "thread",
        "timeout",
        "woken",
    )

    def __init__(self, started: float, deadline: float, timeout: float, retry_num: int) -> None:
        self.started, self.deadline = started, deadline  # the request's start and end
        self.timeout, self.retry_num = timeout, retry_num  # as asked, for the error message
        self.thread = current_thread()
        self.lock = threading.Lock()
        self.lock.acquire()
        self.woken = False
        self.failures = 0
        self.conn: Connection | None = None
        self.slot = False
        self.error: BaseException | None = None

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


class Line:
    """The pool's slots (connections open or being opened, at most ``max_size``) and the
    borrowers waiting in line, first come first served, for a connection or a slot.

    While connects fail its gate decides when the next may start. Every method but
    :meth:`wait` runs under the pool's lock, which the line is given.
    """

    __slots__ = ("gate", "lock", "max_size", "total", "waiters")

    def __init__(self, lock: threading.Lock, max_size: int) -> None:
        self.lock = lock
        self.max_size = max_size
        self.total = 0  # open connections plus slots being opened
        self.waiters: deque[Waiter] = deque()
        self.gate = ConnectGate()

    def reserve(self, now: float) -> bool:
        """Take a free slot if the gate lets a connect start *now*; True if taken."""
        if self.total < self.max_size and self.gate.try_start(now):
            self.total += 1
            return True
        return False

    def join(self, waiter: Waiter, front: bool = False) -> None:
        """Put *waiter* at the end of the line, or at its head (*front*: after its connect
        failed, it keeps its turn)."""
        waiter.failures = self.gate.failures
        waiter.conn, waiter.slot, waiter.error = None, False, None
        if front:
            self.waiters.appendleft(waiter)
        else:
            self.waiters.append(waiter)

    def requeue(self, waiter: Waiter) -> None:
        """*waiter*'s connect failed: its slot is free again and it waits at the head of the
        line (the gate has just closed, so no one else gets the slot before it)."""
        self.total -= 1
        self.join(waiter, front=True)

    def leave(self, waiter: Waiter) -> bool:
        """Take *waiter* out of the line; False if it had left it (it was handed something)."""
        try:
            self.waiters.remove(waiter)
        except ValueError:
            return False
        return True

    def release(self) -> None:
        """A slot is free: grant it to the first waiter if a connect may start."""
        self.total -= 1
        self.grant()

    def grant(self) -> None:
        """Hand free slots to waiters while the gate lets connects start; if it does not yet,
        wake the first waiter to wait for the gate instead."""
        now = monotonic()
        while self.waiters and self.total < self.max_size:
            if not self.gate.try_start(now):
                self.waiters[0].wake()
                return
            self.total += 1
            self.waiters.popleft().hand(slot=True)

    def failed(self, error: BaseException, now: float) -> None:
        """A connect failed in a way a retry may fix: back off, and let every waiter look
        for its turn to connect (the gate says when)."""
        self.gate.failed(error, now)
        self.wake_all()

    def abandoned(self) -> None:
        """A connect ended without an answer (interrupted, a plugin failed, or an error no
        retry fixes): the next may start."""
        self.gate.abandoned()
        self.wake_all()

    def succeeded(self) -> None:
        """A connect succeeded; if that ended an outage, waiters may connect again."""
        if self.gate.succeeded():
            self.grant()

    def wake_all(self) -> None:
        if self.gate.failing:
            for waiter in self.waiters:
                waiter.wake()

    def close(self, error: BaseException) -> None:
        """Fail every waiter with *error* (the pool was closed)."""
        for waiter in self.waiters:
            waiter.hand(error=error)
        self.waiters.clear()

    def wait(self, waiter: Waiter) -> BaseException | None:
        """Sleep in line (without the lock) until *waiter* is handed something, takes a slot
        the gate allows, or its deadline passes; each leaves the line.

        Returns the answer when every endpoint failed since it came (NoEndpointError): that
        is what it would get if it tried them itself.
        """
        gate = self.gate
        deadline = waiter.deadline
        wake = gate.wake_at(deadline)  # a read without the lock: at worst one early look
        while True:
            waiter.sleep(wake - monotonic())
            with self.lock:
                waiter.settle()
                if waiter.handed:
                    return None
                now = monotonic()
                if isinstance(gate.error, NoEndpointError) and gate.failures != waiter.failures:
                    self.waiters.remove(waiter)
                    return gate.error
                if now >= deadline:
                    self.waiters.remove(waiter)
                    return None
                if self.total < self.max_size:
                    if gate.try_start(now):
                        self.waiters.remove(waiter)  # its turn to try a connect
                        self.total += 1
                        waiter.slot = True
                        return None
                    wake = gate.wake_at(deadline)
                else:
                    wake = deadline
