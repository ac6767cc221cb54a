"""ConnectionPool: lends connections to threads, first come first served, under one deadline.

Reading order: the public API, then the checkout chain (take an idle connection, or wait in
line, or open one -> check its fitness -> lend it), then the return chain (classify an error
-> end the session -> hand over or make idle -> retire). What the pool holds and the moves
between are its Inventory's; opening connections is its Connector's.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from pymysql.constants import SERVER_STATUS

from ._checks import wait_arguments
from ._maintenance import _POOLS, Maintenance
from ._manager import PolicyManager
from .config import PoolConfig
from .connection import Connection
from .connector import Connector
from .endpoints import EndpointSet
from .entry import Held
from .errors import (
    ConnectFailedError,
    ConnectionReturnedError,
    PoolClosedError,
    PoolTimeout,
    request_failed,
)
from .inventory import Inventory
from .verdicts import Reason, Verdict
from .waiting import Waiter

logger = logging.getLogger("pymysqlpool_registry")
monotonic = time.monotonic
CHECKOUT, LENT = Held.CHECKOUT, Held.LENT
_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS


class ConnectionPool:
    """A pool of PyMySQL connections shared by threads.

    Build it from a :class:`PoolConfig`, or the old way with PyMySQL's keyword arguments::

        pool = ConnectionPool(size=2, name="pool1", host="db", user="app", password="...")

    A connection leaves with :meth:`get_connection` (or :meth:`connection`, a context manager)
    and comes back with its ``close()`` or at the end of ``with conn:``.
    """

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        name: str | None = None,
        manager: PolicyManager | None = None,
        **kwargs: Any,
    ) -> None:
        if config is None:
            config = PoolConfig.from_kwargs(**kwargs)
        elif kwargs:
            raise TypeError("pass either a PoolConfig or keyword arguments, not both")
        self.config = config
        self.name = name or f"{config.host}:{config.port}/{config.database or ''}"
        self._hooks = manager if manager is not None else PolicyManager()
        self._inventory = inventory = Inventory(self, config)
        self._endpoints = EndpointSet(inventory.lock, config)
        self._rollback_warnings = _RollbackWarnings()
        self._connector = Connector(self)
        self._maintenance = Maintenance(self)
        for conn in self._connector.fill(config.min_size):
            conn._entry.held = Held.IDLE
            inventory.idle.append(conn)
            inventory.line.total += 1
        if inventory.idle:
            self._maintenance.start()  # else with the first connection a borrower opens
        _POOLS.add(self)

    def __repr__(self) -> str:
        inventory = self._inventory
        return (
            f"<{type(self).__name__} {self.name!r} idle={len(inventory.idle)} "
            f"lent={len(inventory.lent)} max_size={self.config.max_size}>"
        )

    # --- public API ---

    def size(self) -> int:
        """Number of idle connections ready to lend."""
        return len(self._inventory.idle)

    @property
    def available_num(self) -> int:
        """Idle connections ready to lend (pymysql-pool 0.5's name for :meth:`size`)."""
        return len(self._inventory.idle)

    @property
    def total_num(self) -> int:
        """Connections open or being opened, lent and idle together (pymysql-pool 0.5)."""
        return self._inventory.line.total

    def stats(self) -> dict[str, float]:
        """A snapshot of the pool's state and counters since it was created.

        ``in_use`` counts loans to borrowers; a connection the maintenance thread holds for a
        moment (a ping, a check, reading a reply) counts as idle.
        """
        with self._inventory.lock:
            return self._inventory.stats()

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Each endpoint's open connections, connect failures in a row, ejection and the
        check_endpoint verdict on its last new connection (``"read-only"`` where a writer pool
        found a replica, ``"ok"`` where it can write)."""
        return self._endpoints.describe(monotonic())

    def get_connection(
        self,
        timeout: float | None = None,
        retry_num: int | None = None,
        retry_interval: float | None = None,
        pre_ping: bool = False,
    ) -> Connection:
        """Lend a connection, waiting up to *timeout* seconds per try, *retry_num* more tries.

        Defaults come from the config; ``timeout=0`` does not wait for a connection to come
        back (opening a new one below ``max_size`` is still allowed). *retry_interval*
        (pymysql-pool 0.5) stands in for *timeout* when that is not given; *pre_ping* pings
        an idle connection before lending it whatever its idle time. Raises
        :class:`GetConnectionFromPoolError` when none could be had in time.
        """
        config = self.config
        if timeout is None and retry_num is None and retry_interval is None:
            timeout, retry_num = config.timeout, config.retry_num
        else:
            defaults = config.timeout, config.retry_num
            timeout, retry_num = wait_arguments(timeout, retry_num, retry_interval, defaults)
        started = monotonic()
        budget = timeout * (retry_num + 1)
        # the request's one deadline, for waiting, connecting and pinging; with timeout=0
        # nothing waits, but a connect may take its connect_timeout
        deadline = started + (budget if budget > 0 else config.connect_timeout)
        waiter = None
        first = True
        while True:
            conn = self._inventory.checkout(first)
            fresh = False
            if conn is None:
                if waiter is None:
                    waiter = Waiter(started, deadline, timeout, retry_num)
                conn, fresh = self._obtain(waiter)
            first = False
            now = monotonic()
            unfit = None if fresh else self._unfit(conn, now, deadline, pre_ping)
            if unfit is None:
                break
            self._inventory.discard(conn, unfit)
            if monotonic() >= deadline:  # dead connections (a hung server) used up the time
                raise self._request_failed(waiter or Waiter(started, deadline, timeout, retry_num))
        self._lend(conn, now, started)
        return conn

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Connection]:
        """``with pool.connection() as conn:`` lends a connection for the block."""
        conn = self.get_connection(timeout)
        with conn:
            yield conn

    def invalidate(self) -> None:
        """Close every idle connection now and every lent one when it comes back."""
        self._inventory.invalidate()

    def close(self, timeout: float | None = None) -> bool:
        """Close the pool: idle connections now, lent ones as they come back.

        With *timeout*, wait up to that many seconds for the lent ones; returns True if no
        connection is still open.
        """
        self._maintenance.stop()
        all_back = self._inventory.shut(PoolClosedError(0, f"pool({self.name}) was closed"))
        return all_back.wait(timeout) if timeout else all_back.is_set()

    def set_endpoints(self, endpoints: Any) -> None:
        """Replace the endpoints at run time (what the ``endpoints`` setting takes), e.g. from
        DNS or a cloud API. Endpoints kept keep their state and connections; connections to
        the others are closed as they come back or idle."""
        config = attrs.evolve(self.config, endpoints=endpoints)  # validated like the config
        self._endpoints.replace(config)
        self.config = config
        self._maintenance.wake()

    def resize(self, min_size: int | None = None, max_size: int | None = None) -> None:
        """Change the pool's size limits at run time (validated like the config)."""
        config = attrs.evolve(
            self.config,
            min_size=self.config.min_size if min_size is None else min_size,
            max_size=self.config.max_size if max_size is None else max_size,
        )
        self.config = config
        self._inventory.resize(config.max_size)
        self._maintenance.wake()

    # --- lending: take idle / wait / open -> check fitness -> lend ---

    def _obtain(self, waiter: Waiter) -> tuple[Connection, bool]:
        """No connection was idle: take one that came back since, or open one in a free
        slot, or wait in line for either. Returns it and whether it is new.

        A connect that failed in a way a retry may fix puts the borrower back at the head
        of the line (the Connector does), where it takes a connection that comes back, or
        its turn to connect when the gate allows one.
        """
        inventory = self._inventory
        with inventory.lock:
            conn = inventory.take()
            if conn is not None:
                return conn, False
            slot = inventory.line.reserve(monotonic())
            if not slot:
                inventory.counts["waited"] += 1
                if waiter.timeout > 0:
                    inventory.line.join(waiter)
        if not slot and waiter.timeout == 0:
            raise self._request_failed(waiter)  # no waiting with timeout=0
        while True:
            if not slot:
                handed = self._wait(waiter)
                if handed is not None:
                    return handed, False
            opened = self._connector.open_in_slot(waiter)
            if opened is not None:
                return opened, True
            slot = False  # back in line

    def _wait(self, waiter: Waiter) -> Connection | None:
        """Wait in line for a hand-off; None means a slot to open a connection in."""
        inventory = self._inventory
        waiting_since = monotonic()
        try:
            answer = inventory.line.wait(waiter)
        except BaseException:  # a signal handler raised (KeyboardInterrupt): leave the line
            inventory.leave_line(waiter)
            raise
        with inventory.lock:
            inventory.wait_time += monotonic() - waiting_since
        if answer is not None:
            raise self._request_failed(waiter, answer, answered=True) from answer
        if waiter.error is not None:
            raise waiter.error
        if not waiter.handed:
            raise self._request_failed(waiter)
        return waiter.conn

    def _unfit(
        self, conn: Connection, now: float, deadline: float, ping: bool = False
    ) -> Reason | None:
        """Why an idle connection must not be lent (Reason.EXPIRED, DEAD, ...), or None.

        A pre-ping may take ``ping_timeout``, less if the deadline is nearer (but 0.1 s at
        least, so a connection handed over at the last moment is not failed for want of time).
        *ping* asks the pre_ping hooks for a ping whatever the idle time (``idle`` is inf).
        """
        entry = conn._entry
        # PoolEntry.spent(now), inlined (a call costs as much as the rest of this check):
        # never lend one that expired, or whose endpoint failed since it connected
        if now >= entry.expires_at:
            return Reason.EXPIRED
        if entry.endpoint.epoch != entry.epoch:
            return Reason.ENDPOINT_FAILED
        pre_ping = self._hooks.pre_ping
        if pre_ping is None:
            return None
        limit = min(self.config.ping_timeout, max(deadline - now, 0.1))
        idle = float("inf") if ping else now - entry.idle_since
        try:
            fit = pre_ping(pool=self, connection=conn, idle=idle, timeout=limit)
        except BaseException:
            self._inventory.discard(conn, Reason.DEAD)
            raise
        if fit is False:
            return Reason.DEAD
        if entry.endpoint.epoch != entry.epoch:  # PoolEntry.condemned(), inlined
            return Reason.ENDPOINT_FAILED  # it failed during the ping
        return None

    def _lend(self, conn: Connection, now: float, started: float) -> None:
        """The loan starts: record when (and where from, with leak detection on)."""
        entry = conn._entry
        entry.held = LENT
        entry.lent_at = now
        if self.config.leak_threshold is not None:
            entry.taken_at = traceback.extract_stack(sys._getframe(2), limit=16)
        if self._hooks.on_checkout is not None:
            self._hooks.on_checkout(pool=self, connection=conn, wait=now - started)

    def _request_failed(
        self, waiter: Waiter, cause: BaseException | None = None, answered: bool = False
    ) -> PoolTimeout | ConnectFailedError:
        """Count a failed request and build its error (see errors.request_failed); after a
        wait while connects failed, the last connect error is the cause."""
        inventory = self._inventory
        with inventory.lock:
            inventory.counts["timeouts"] += 1
        if self._hooks.on_timeout is not None:
            self._hooks.on_timeout(pool=self, waited=monotonic() - waiter.started)
        if cause is None:
            cause = inventory.line.gate.error
        return request_failed(self.name, waiter.timeout, waiter.retry_num, cause, answered)

    def _take_back(self, conn: Connection) -> None:
        """Lend *conn* again if it is idle here; the context manager of a returned connection."""
        inventory = self._inventory
        if not inventory.take_back(conn):
            raise ConnectionReturnedError(
                0,
                f"this connection was returned to pool({self.name}) and is no longer idle "
                "there; take another with get_connection()",
            )
        now = monotonic()
        unfit = self._unfit(conn, now, now + self.config.ping_timeout)
        if unfit is not None:
            inventory.discard(conn, unfit)
            raise ConnectionReturnedError(
                0, f"this connection was returned to pool({self.name}) and has since died"
            )
        self._lend(conn, now, now)

    # --- returning: classify -> end the session -> hand over or idle -> retire ---

    def _give_back(self, conn: Connection, error: BaseException | None) -> None:
        """Take *conn* back: classify *error*, reset the session, then re-lend or discard."""
        conn._check_borrower()
        conn._blocks = 0
        entry = conn._entry
        now = monotonic()
        usage = now - entry.lent_at
        open_transaction = not conn._rollback and bool(conn.server_status & _IN_TRANS)
        if open_transaction and error is None:
            self._rollback_warnings.warn(now, self.name)
        conn._shared_cursor = None  # dropped, not closed: closing a streamed cursor drains it
        raised = conn._last_error  # a server error during the loan, even if it was caught
        if raised is not None:
            conn._last_error = None
            error = error or raised
        verdict = Verdict.REUSE if error is None else self._classify(conn, error)
        if verdict is Verdict.EJECT_ENDPOINT and not entry.condemned():  # else counted already
            self._connector.endpoint_failed(
                entry.endpoint, error or RuntimeError("eject"), health=True
            )
        reset = False
        if verdict is Verdict.EJECT_ENDPOINT:
            reason: Reason | None = Reason.ENDPOINT_FAILED
        elif verdict is not Verdict.REUSE and verdict is not Verdict.RESET:
            reason = Reason.ERROR
        elif not conn.socket_open:
            reason = Reason.BROKEN
        elif conn.has_unread_result:
            reason = Reason.UNREAD_RESULT  # reading the rest could take long; a new one won't
        elif entry.generation != self._inventory.generation:
            reason = Reason.INVALIDATED
        elif now >= entry.expires_at:  # PoolEntry.spent(now), inlined as in _unfit
            reason = Reason.EXPIRED
        elif entry.endpoint.epoch != entry.epoch:
            reason = Reason.ENDPOINT_FAILED
        else:
            reason = None
            try:
                reset = conn.end_loan(self.config, force=verdict is Verdict.RESET)
            except Exception:  # noqa: BLE001 - whatever broke the reset, the connection goes
                reason = Reason.RESET_FAILED
            except BaseException:  # interrupted mid-reset: the session state is unknown
                self._inventory.discard(conn, Reason.RESET_FAILED)
                raise
        try:
            if self._hooks.on_checkin is not None:
                self._hooks.on_checkin(
                    pool=self, connection=conn, usage=usage, open_transaction=open_transaction
                )
        finally:
            if verdict is Verdict.INVALIDATE_POOL:
                self.invalidate()
            if reason is not None:
                self._inventory.discard(conn, reason)
            else:
                self._inventory.put(
                    conn if conn._check_owner else self._inventory.renew(conn), now, reset
                )

    def _classify(self, conn: Connection, error: BaseException) -> Verdict:
        """The classify_error hooks' verdict; DISCARD when none answers or one fails."""
        classify = self._hooks.classify_error
        try:
            verdict = (
                None if classify is None else classify(pool=self, connection=conn, error=error)
            )
        except Exception:
            logger.exception("classify_error hook failed in pool(%s); discarding", self.name)
            return Verdict.DISCARD
        return verdict if isinstance(verdict, Verdict) else Verdict.DISCARD

    # --- fork safety ---

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's connections and start afresh."""
        inventory = self._inventory
        inventory.forget()
        self._endpoints.after_fork(inventory.lock)
        if not inventory.closed:
            self._maintenance = Maintenance(self)
            self._maintenance.start()


class _RollbackWarnings:
    """Logs that a loan ended with uncommitted writes, at most once per ``INTERVAL`` seconds
    (with how many more there were since)."""

    INTERVAL = 10.0

    def __init__(self) -> None:
        self.quiet_until = 0.0
        self.unreported = 0

    def warn(self, now: float, pool_name: str) -> None:
        if now < self.quiet_until:
            self.unreported += 1
            return
        more, self.unreported = self.unreported, 0
        self.quiet_until = now + self.INTERVAL
        logger.warning(
            "Connection given back to pool(%s) with a transaction open: its uncommitted work "
            "was rolled back (commit() before giving it back)%s",
            pool_name,
            f"; {more} more since the last such warning" if more else "",
        )
