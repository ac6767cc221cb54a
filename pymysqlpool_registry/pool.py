"""ConnectionPool: lends connections to threads, first come first served, under one deadline."""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections import deque
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
from .endpoints import EndpointSet, EndpointState
from .entry import Held
from .errnos import error_number
from .errors import (
    ConnectFailedError,
    ConnectionReturnedError,
    NoEndpointError,
    PluginError,
    PoolClosedError,
    PoolTimeout,
)
from .verdicts import Reason, Verdict
from .waiting import Line, Waiter

logger = logging.getLogger("pymysqlpool_registry")
monotonic = time.monotonic
current_thread = threading.current_thread
IDLE, CHECKOUT, LENT = Held.IDLE, Held.CHECKOUT, Held.LENT
_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
_ROLLBACK_WARNING_INTERVAL = 10.0  # seconds between "uncommitted work rolled back" warnings


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
        self._lock = threading.Lock()
        self._idle: deque[Connection] = deque()
        self._take_idle = self._idle.pop if config.lifo else self._idle.popleft
        self._lent: set[Connection] = set()  # lent to borrowers or held by maintenance
        self._line = Line(self._lock, config.max_size)  # slots, waiters and the connect gate
        self._generation = 0  # bumped by invalidate(); older connections are not reused
        self._endpoints = EndpointSet(self._lock, config)
        self._closed = False
        self._counts = dict.fromkeys(
            (
                "requests",
                "waited",
                "timeouts",
                "created",
                "connect_errors",
                "closed",
                "discarded",
                "resets",
                "leaks",
            ),
            0,
        )
        self._wait_time = 0.0
        self._all_back = threading.Event()  # set when the pool is closed and nothing is lent
        self._rollback_warned_until = 0.0
        self._rollbacks_unreported = 0
        self._connector = Connector(self)
        for conn in self._connector.fill(config.min_size):
            conn._entry.held = IDLE
            self._idle.append(conn)
        self._line.total = len(self._idle)
        self._maintenance = Maintenance(self)
        if self._idle:
            self._maintenance.start()  # else with the first connection a borrower opens
        _POOLS.add(self)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} idle={len(self._idle)} "
            f"lent={len(self._lent)} max_size={self.config.max_size}>"
        )

    # --- public API ---

    def size(self) -> int:
        """Number of idle connections ready to lend."""
        return len(self._idle)

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Each endpoint's open connections, connect failures in a row, ejection and the
        check_endpoint verdict on its last new connection (``"read-only"`` where a writer pool
        found a replica, ``"ok"`` where it can write)."""
        return self._endpoints.describe(monotonic())

    def stats(self) -> dict[str, float]:
        """A snapshot of the pool's state and counters since it was created.

        ``in_use`` counts loans to borrowers; a connection the maintenance thread holds for a
        moment (a ping, a check, reading a reply) counts as idle.
        """
        with self._lock:
            held = sum(1 for conn in self._lent if conn._entry.held is Held.MAINTENANCE)
            return {
                "idle": len(self._idle) + held,
                "in_use": len(self._lent) - held,
                "total": self._line.total,
                "waiting": len(self._line.waiters),
                "min_size": self.config.min_size,
                "max_size": self.config.max_size,
                **self._counts,
                "wait_time": self._wait_time,
            }

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
            conn = self._checkout(first)
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
            self._discard(conn, unfit)
            if monotonic() >= deadline:  # dead connections (a hung server) used up the time
                raise self._request_failed(waiter or Waiter(started, deadline, timeout, retry_num))
        self._lend(conn, now, started)
        return conn

    @property
    def available_num(self) -> int:
        """Idle connections ready to lend (pymysql-pool 0.5's name for :meth:`size`)."""
        return len(self._idle)

    @property
    def total_num(self) -> int:
        """Connections open or being opened, lent and idle together (pymysql-pool 0.5)."""
        return self._line.total

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Connection]:
        """``with pool.connection() as conn:`` lends a connection for the block."""
        conn = self.get_connection(timeout)
        with conn:
            yield conn

    def invalidate(self) -> None:
        """Close every idle connection now and every lent one when it comes back."""
        with self._lock:
            self._generation += 1
            idle = self._take_all_idle()
        for conn in idle:
            self._close(conn, Reason.INVALIDATED)

    def close(self, timeout: float | None = None) -> bool:
        """Close the pool: idle connections now, lent ones as they come back.

        With *timeout*, wait up to that many seconds for the lent ones; returns True if no
        connection is still open.
        """
        with self._lock:
            self._closed = True
            idle = self._take_all_idle()
            self._line.close(PoolClosedError(0, f"pool({self.name}) was closed"))
            if self._line.total == 0:
                self._all_back.set()
        self._maintenance.stop()
        for conn in idle:
            self._close(conn, Reason.POOL_CLOSED)
        return self._all_back.wait(timeout) if timeout else self._all_back.is_set()

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
        line = self._line
        surplus = []
        with self._lock:
            self.config = config
            line.max_size = config.max_size
            while line.total > config.max_size and self._idle:
                surplus.append(self._idle.popleft())
                line.total -= 1
            line.grant()
        for conn in surplus:
            self._close(conn, Reason.RESIZED)
        self._maintenance.wake()

    # --- lending: take idle / wait / open -> check fitness -> lend ---

    def _checkout(self, first: bool) -> Connection | None:
        """Take an idle connection for the calling thread, or None if there is none."""
        with self._lock:
            if self._closed:
                raise PoolClosedError(0, f"pool({self.name}) is closed")
            if first:
                self._counts["requests"] += 1
            if self._idle:
                conn = self._take_idle()
                self._mark(conn, CHECKOUT)
                return conn
        return None

    def _obtain(self, waiter: Waiter) -> tuple[Connection, bool]:
        """No connection was idle: take one that came back since, or open one in a free
        slot, or wait in line for either. Returns it and whether it is new.

        A connect that failed in a way a retry may fix puts the borrower back at the head
        of the line, where it takes a connection that comes back, or its turn to connect
        when the gate allows one.
        """
        with self._lock:
            if self._closed:
                raise PoolClosedError(0, f"pool({self.name}) is closed")
            if self._idle:
                conn = self._take_idle()
                self._mark(conn, CHECKOUT)
                return conn, False
            slot = self._line.reserve(monotonic())
            if not slot:
                self._counts["waited"] += 1
                if waiter.timeout > 0:
                    self._line.join(waiter)
        if not slot and waiter.timeout == 0:
            raise self._request_failed(waiter)  # timeout=0 and no slot: no waiting
        while True:
            if not slot:
                handed = self._wait(waiter)
                if handed is not None:
                    return handed, False
            opened = self._open_in_slot(waiter)
            if opened is not None:
                return opened, True
            slot = False  # back in line

    def _wait(self, waiter: Waiter) -> Connection | None:
        """Wait in line for a hand-off; None means a slot to open a connection in."""
        waiting_since = monotonic()
        try:
            answer = self._line.wait(waiter)
        except BaseException:  # a signal handler raised (KeyboardInterrupt): leave the line
            self._leave_line(waiter)
            raise
        with self._lock:
            self._wait_time += monotonic() - waiting_since
        if answer is not None:
            raise self._request_failed(waiter, answer, answered=True) from answer
        if waiter.error is not None:
            raise waiter.error
        if not waiter.handed:
            raise self._request_failed(waiter)
        return waiter.conn

    def _leave_line(self, waiter: Waiter) -> None:
        """Give back whatever an interrupted waiter was or is about to be handed."""
        with self._lock:
            queued = self._line.leave(waiter)
        if queued:
            return
        if waiter.conn is not None:
            self._put(waiter.conn, monotonic(), False)
        elif waiter.slot:
            self._release_slot()

    def _open_in_slot(self, waiter: Waiter) -> Connection | None:
        """Open a connection in a slot this thread holds, trying each endpoint once.

        A failure the classify_connect_error hooks call RETRY, with time left, frees the slot
        and puts the borrower back at the head of the line (None); any other fails it.
        """
        limit = min(self.config.connect_timeout, max(waiter.deadline - monotonic(), 0.001))
        try:
            conn = self._connector.open("grow", limit)
        except PluginError:
            self._connect_abandoned()
            raise
        except Exception as exc:
            retry = self._connect_failed(exc)
            if retry and waiter.timeout > 0 and monotonic() < waiter.deadline:
                with self._lock:
                    if not self._closed:
                        self._line.requeue(waiter)
                        return None
            self._release_slot()
            answered = isinstance(exc, NoEndpointError) or not retry  # an answer, not a wait
            raise self._request_failed(waiter, exc, answered) from exc
        except BaseException:
            self._connect_abandoned()
            raise
        self._maintenance.start()  # a no-op once it runs
        with self._lock:
            if not self._closed:
                self._mark(conn, CHECKOUT)
                return conn
        self._discard(conn, Reason.POOL_CLOSED)
        raise PoolClosedError(0, f"pool({self.name}) is closed")

    def _connect_failed(self, error: Exception) -> bool:
        """Tell the line about a failed connect; True if a retry may fix it.

        NoEndpointError (every endpoint failed) closes the gate too, so that the borrowers
        after it get the same answer at once instead of each trying every endpoint again.
        """
        retry = isinstance(error, NoEndpointError) or self._connector.retryable(error)
        with self._lock:
            if retry:
                self._line.failed(error, monotonic())
            else:
                self._line.abandoned()
        return retry and not isinstance(error, NoEndpointError)

    def _connect_abandoned(self) -> None:
        with self._lock:
            self._line.abandoned()
        self._release_slot()

    def _connected(self, state: EndpointState, epoch: int) -> bool:
        """Count a new connection to *state*'s endpoint, opened at *epoch*; False if the
        endpoint failed meanwhile (then it must not be used). A success ends an outage."""
        with self._lock:
            if state.epoch != epoch:
                return False
            self._counts["created"] += 1
            self._endpoints.joined(state)
            self._line.succeeded()
            return True

    def _mark(self, conn: Connection, held: Held) -> None:
        """Under the lock: *conn*, just opened or taken out of the idle ones, is the calling
        thread's now (a borrower's being checked out, or the maintenance thread's)."""
        conn._entry.held = held
        conn._lent = True
        conn._borrower = current_thread()
        self._lent.add(conn)

    def _take_all_idle(self) -> list[Connection]:
        """Under the lock: empty the idle ones (their slots are freed) and return them."""
        idle = list(self._idle)
        self._idle.clear()
        self._line.total -= len(idle)
        return idle

    def _unfit(
        self, conn: Connection, now: float, deadline: float, ping: bool = False
    ) -> Reason | None:
        """Why an idle connection must not be lent (Reason.EXPIRED, DEAD, ...), or None.

        A pre-ping may take ``ping_timeout``, less if the deadline is nearer (but 0.1 s at
        least, so a connection handed over at the last moment is not failed for want of time).
        *ping* asks the pre_ping hooks for a ping whatever the idle time (``idle`` is inf).
        """
        entry = conn._entry
        spent = entry.spent(now)  # never lend one that expired, or whose endpoint fails
        if spent is not None:
            return spent
        pre_ping = self._hooks.pre_ping
        if pre_ping is None:
            return None
        limit = min(self.config.ping_timeout, max(deadline - now, 0.1))
        idle = float("inf") if ping else now - entry.idle_since
        try:
            fit = pre_ping(pool=self, connection=conn, idle=idle, timeout=limit)
        except BaseException:
            self._discard(conn, Reason.DEAD)
            raise
        if fit is False:
            return Reason.DEAD
        if entry.condemned():
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
        """Count a failed request and build its error: a PoolTimeout in the old pymysql-pool's
        wording after a wait, or a ConnectFailedError, without "within", when the request
        ended early on an *answered* cause."""
        with self._lock:
            self._counts["timeouts"] += 1
        if self._hooks.on_timeout is not None:
            self._hooks.on_timeout(pool=self, waited=monotonic() - waiter.started)
        if cause is None:
            cause = self._line.gate.error  # waited while connects failed: that is why
        message = f"can't get connection from pool({self.name})"
        if not answered:
            message += f" within {waiter.timeout:g}*{waiter.retry_num + 1} second(s)"
        if cause is not None:
            message += f": {cause}"
        # the connect error's number, so that code checking e.args[0] (2003...) still works
        kind = ConnectFailedError if answered else PoolTimeout
        error = kind(error_number(cause) or 0 if cause else 0, message)
        error.__cause__ = cause
        return error

    def _take_back(self, conn: Connection) -> None:
        """Lend *conn* again if it is idle here; the context manager of a returned connection."""
        with self._lock:
            idle = not self._closed and conn in self._idle
            if idle:
                self._idle.remove(conn)
                self._mark(conn, CHECKOUT)
                self._counts["requests"] += 1
        if not idle:
            raise ConnectionReturnedError(
                0,
                f"this connection was returned to pool({self.name}) and is no longer idle "
                "there; take another with get_connection()",
            )
        now = monotonic()
        unfit = self._unfit(conn, now, now + self.config.ping_timeout)
        if unfit is not None:
            self._discard(conn, unfit)
            raise ConnectionReturnedError(
                0, f"this connection was returned to pool({self.name}) and has since died"
            )
        self._lend(conn, now, now)

    # --- returning: classify -> reset -> hand over or idle -> retire ---

    def _give_back(self, conn: Connection, error: BaseException | None) -> None:
        """Take *conn* back: classify *error*, reset the session, then re-lend or discard."""
        conn._check_borrower()
        conn._blocks = 0
        entry = conn._entry
        now = monotonic()
        usage = now - entry.lent_at
        open_transaction = not conn._pending_reply and bool(conn.server_status & _IN_TRANS)
        if open_transaction and error is None:
            self._warn_rolled_back(now)
        conn._shared_cursor = None  # dropped, not closed: closing a streamed cursor drains it
        raised = conn._last_error  # a server error during the loan, even if it was caught
        if raised is not None:
            conn._last_error = None
            error = error or raised
        verdict = Verdict.REUSE if error is None else self._classify(conn, error)
        reason = None
        reset = False
        if verdict is Verdict.EJECT_ENDPOINT:
            reason = Reason.ENDPOINT_FAILED
            if not entry.condemned():  # else already counted
                self._connector.endpoint_failed(
                    entry.endpoint, error or RuntimeError("eject"), health=True
                )
        elif verdict is not Verdict.REUSE and verdict is not Verdict.RESET:
            reason = Reason.ERROR
        elif not conn.socket_open:
            reason = Reason.BROKEN
        elif conn.has_unread_result:
            reason = Reason.UNREAD_RESULT  # reading the rest could take long; a new one won't
        elif entry.generation != self._generation:
            reason = Reason.INVALIDATED
        else:
            reason = entry.spent(now)
            if reason is None:
                try:
                    reset = conn.end_loan(self.config, force=verdict is Verdict.RESET)
                except Exception:  # noqa: BLE001 - whatever broke the reset, the connection goes
                    reason = Reason.RESET_FAILED
                except BaseException:  # interrupted mid-reset: the session state is unknown
                    self._discard(conn, Reason.RESET_FAILED)
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
                self._discard(conn, reason)
            else:
                self._put(conn if conn._check_owner else self._renewed(conn), now, reset)

    def _renewed(self, conn: Connection) -> Connection:
        """With check_owner_thread off: move *conn* into a new object, leaving the returned
        handle closed, so that a stale reference can neither use nor return the next loan."""
        with self._lock:
            renewed = conn._move()
            self._lent.discard(conn)
            self._lent.add(renewed)
        return renewed

    def _warn_rolled_back(self, now: float) -> None:
        """Log that a loan ended with uncommitted writes, at most once per
        ``_ROLLBACK_WARNING_INTERVAL`` seconds (with how many more since)."""
        if now < self._rollback_warned_until:
            self._rollbacks_unreported += 1
            return
        more, self._rollbacks_unreported = self._rollbacks_unreported, 0
        self._rollback_warned_until = now + _ROLLBACK_WARNING_INTERVAL
        logger.warning(
            "Connection given back to pool(%s) with a transaction open: its uncommitted work "
            "was rolled back (commit() before giving it back)%s",
            self.name,
            f"; {more} more since the last such warning" if more else "",
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

    def _put(self, conn: Connection, now: float, reset: bool) -> None:
        """Hand *conn* to the first waiter, or make it idle (idle since *now*)."""
        entry = conn._entry
        entry.idle_since = now
        with self._lock:
            if reset:
                self._counts["resets"] += 1
            current = entry.generation == self._generation  # else invalidated meanwhile
            line = self._line
            if current and not self._closed and line.total <= line.max_size:
                if line.waiters:
                    waiter = line.waiters.popleft()
                    entry.held = CHECKOUT
                    conn._borrower = waiter.thread
                    waiter.hand(conn)
                    return
                entry.held = IDLE
                conn._lent = False
                self._lent.discard(conn)
                self._idle.append(conn)
                return
        if self._closed:
            self._discard(conn, Reason.POOL_CLOSED)
        else:
            self._discard(conn, Reason.RESIZED if current else Reason.INVALIDATED)

    def _discard(self, conn: Connection, reason: Reason) -> None:
        """Close a lent *conn* and free its slot."""
        with self._lock:
            self._lent.discard(conn)
        try:
            self._close(conn, reason)
        finally:
            self._release_slot()

    def _release_slot(self, wake: bool = True) -> None:
        """Free a slot: the first waiter gets it (and opens a connection in it) if the gate
        lets a connect start. Dropping below min_size wakes the maintenance thread to refill
        (*wake*)."""
        with self._lock:
            self._line.release()
            total = self._line.total
            if self._closed and total == 0:
                self._all_back.set()
            refill = wake and total < self.config.min_size and not self._closed
        if refill:
            self._maintenance.wake()

    def _close(self, conn: Connection, reason: Reason) -> None:
        """Close *conn*, whose slot is already accounted for, and report it."""
        conn.discard()
        with self._lock:
            self._counts["closed"] += 1
            conn._entry.endpoint.open -= 1
            if reason != Reason.POOL_CLOSED:
                self._counts["discarded"] += 1
        if self._hooks.on_discard is not None:
            self._hooks.on_discard(pool=self, connection=conn, reason=reason)

    # --- fork safety ---

    def _after_fork(self) -> None:
        """In a forked child: drop the parent's connections without touching their sockets'
        server sessions, and start afresh (a lent one becomes a plain closed connection)."""
        self._lock = threading.Lock()
        for conn in (*self._idle, *self._lent):
            conn._pool = None
            conn._lent = False
            conn._force_close()
        self._idle.clear()
        self._lent.clear()
        self._line = Line(self._lock, self.config.max_size)
        self._endpoints.after_fork(self._lock)
        self._generation += 1
        if not self._closed:
            self._maintenance = Maintenance(self)
            self._maintenance.start()
