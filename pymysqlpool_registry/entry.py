"""PoolEntry: a pool's record of one of its connections."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from .verdicts import Reason

if TYPE_CHECKING:
    from .endpoints import EndpointState


class Held(enum.Enum):
    """Who has a pooled connection now."""

    IDLE = "idle"  # in the pool, ready to lend
    CHECKOUT = "checkout"  # a borrower's, being checked (a pre-ping) before its loan starts
    LENT = "lent"  # a borrower's, from the start of its loan until it comes back
    MAINTENANCE = "maintenance"  # the maintenance thread's, for a ping, a check or a reply


class PoolEntry:
    """What the pool knows of one connection and the connection itself never reads: who has
    it, since when, when it expires, and the endpoint and generation it was opened in.

    The pool changes it under its lock; :meth:`spent` and :meth:`condemned` are the rules for
    retiring a connection (the lending and return paths inline them, marked as such: a call
    there costs as much as the check).
    """

    __slots__ = (
        "endpoint",
        "epoch",
        "expires_at",
        "generation",
        "held",
        "idle_since",
        "leak_reported",
        "lent_at",
        "taken_at",
    )

    def __init__(
        self, endpoint: EndpointState, epoch: int, generation: int, now: float, expires_at: float
    ) -> None:
        self.endpoint = endpoint  # where it is connected
        self.epoch = epoch  # the endpoint's epoch then: a later one means it failed since
        self.generation = generation  # the pool's then: invalidate() starts a new one
        self.expires_at = expires_at  # monotonic time after which it is closed (inf: never)
        self.held = Held.MAINTENANCE  # until the pool lends it or makes it idle
        self.idle_since = now
        self.lent_at = 0.0
        self.taken_at: Any = None  # where it was lent (a StackSummary), with leak detection
        self.leak_reported = -1.0  # the lent_at of the loan last reported as a leak

    def condemned(self) -> bool:
        """True if its endpoint failed since it connected: it must not be lent again."""
        return self.endpoint.epoch != self.epoch

    def spent(self, now: float) -> Reason | None:
        """Why it must be closed rather than lent at *now* (EXPIRED, ENDPOINT_FAILED), or None."""
        if now >= self.expires_at:
            return Reason.EXPIRED
        if self.endpoint.epoch != self.epoch:  # condemned()
            return Reason.ENDPOINT_FAILED
        return None
