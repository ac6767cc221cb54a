"""ConnectGate: how a pool spaces out its connect attempts while they fail."""

from __future__ import annotations

import random

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

    def failed(self, error: BaseException, now: float) -> bool:
        """An attempt failed in a way a retry may fix; True if that began an outage."""
        began = self.error is None
        if began:
            self.failing_since = now
        self.error = error
        self.failures += 1
        self.delay = min(max(self.delay * 2, self.first), self.cap)
        self.next_at = now + self.delay * random.uniform(0.5, 1.0)
        self.probing = False
        return began

    def abandoned(self) -> None:
        """An attempt that started ended without an answer (interrupted, or a plugin failed)."""
        self.probing = False
