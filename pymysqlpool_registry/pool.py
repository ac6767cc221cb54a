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

from ._checks import check_wait
from ._maintenance import _POOLS, Maintenance, run_round
from ._manager import PolicyManager
from .config import PoolConfig
from .connection import Connection
from .connector import Connector
from .endpoints import EndpointSet, EndpointState
from .errnos import error_number
from .errors import (
    ConnectFailedError,
    ConnectionReturnedError,
    NoEndpointError,
    PluginError,
    PoolClosedError,
    PoolTimeout,
)
from .hookspecs import Reason, Verdict
from .waiting import ConnectGate, Waiter

logger = logging.getLogger("pymysqlpool_registry")
monotonic = time.monotonic
current_thread = threading.current_thread
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
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
        self._waiters: deque[Waiter] = deque()
        self._lent: set[Connection] = set()
        self._total = 0  # open connections plus slots being opened
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
        self._gate = ConnectGate()  # spaces out connect attempts while they fail
        self._rollback_warned_until = 0.0
        self._rollbacks_unreported = 0
        self._connector = Connector(self)
        self._idle.extend(self._connector.fill(config.min_size))
        self._total = len(self._idle)
        self._maintenance = Maintenance(self)
        if self._total:
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
            held = sum(1 for conn in self._lent if not conn.on_loan)
            return {
                "idle": len(self._idle) + held,
                "in_use": len(self._lent) - held,
                "total": self._total,
                "waiting": len(self._waiters),
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
        if timeout is None and retry_num is None and retry_interval is None:
            timeout, retry_num = self.config.timeout, self.config.retry_num
        else:
            timeout, retry_num = self._wait_arguments(timeout, retry_num, retry_interval)
        started = monotonic()
        budget = timeout * (retry_num + 1)
        deadline = started + (budget if budget > 0 else self.config.connect_timeout)
        first = True
        while True:
            conn, fresh = self._checkout(started, timeout, retry_num, first)
            first = False
            now = monotonic()
            unfit = None if fresh else self._unfit(conn, now, deadline, pre_ping)
            if unfit is None:
                break
            self._discard(conn, unfit)
            if monotonic() >= deadline:  # dead connections (a hung server) used up the time
                raise self._request_failed(timeout, retry_num, started)
        self._lend(conn, now, started)
        return conn

    def _wait_arguments(
        self, timeout: float | None, retry_num: int | None, retry_interval: float | None
    ) -> tuple[float, int]:
        """The checked timeout and retry_num of a get_connection call, defaults filled in."""
        name = "timeout"
        if timeout is None and retry_interval is not None:
            timeout, name = retry_interval, "retry_interval"
        elif timeout is None:
            timeout = self.config.timeout
        if retry_num is None:
            retry_num = self.config.retry_num
        check_wait(timeout, retry_num, (name, "retry_num"))
        return timeout, retry_num

    @property
    def available_num(self) -> int:
        """Idle connections ready to lend (pymysql-pool 0.5's name for :meth:`size`)."""
        return len(self._idle)

    @property
    def total_num(self) -> int:
        """Connections open or being opened, lent and idle together (pymysql-pool 0.5)."""
        return self._total

    def _lend(self, conn: Connection, now: float, started: float) -> None:
        conn._lent_at = now
        if self.config.leak_threshold is not None:
            conn._taken_at = traceback.extract_stack(sys._getframe(2), limit=16)
        if self._hooks.on_checkout is not None:
            self._hooks.on_checkout(pool=self, connection=conn, wait=now - started)

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
            idle = list(self._idle)
            self._idle.clear()
            self._total -= len(idle)
        for conn in idle:
            self._close(conn, Reason.INVALIDATED)

    def close(self, timeout: float | None = None) -> bool:
        """Close the pool: idle connections now, lent ones as they come back.

        With *timeout*, wait up to that many seconds for the lent ones; returns True if no
        connection is still open.
        """
        with self._lock:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            self._total -= len(idle)
            for waiter in self._waiters:
                waiter.hand(error=PoolClosedError(0, f"pool({self.name}) was closed"))
            self._waiters.clear()
            if self._total == 0:
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
        surplus = []
        with self._lock:
            self.config = config
            while self._total > config.max_size and self._idle:
                surplus.append(self._idle.popleft())
                self._total -= 1
            self._grant_slots()
        for conn in surplus:
            self._close(conn, Reason.RESIZED)
        self._maintenance.wake()

    # --- lending ---

    def _checkout(
        self, started: float, timeout: float, retry_num: int, first: bool
    ) -> tuple[Connection, bool]:
        """Take an idle connection, or open one in a free slot, or wait in line for either.

        Returns the connection and whether it is new. A connect that failed in a way a
        retry may fix puts the borrower back at the head of the line, where it takes a
        connection that comes back, or its turn to connect when the gate allows one.
        """
        with self._lock:
            if self._closed:
                raise PoolClosedError(0, f"pool({self.name}) is closed")
            if first:
                self._counts["requests"] += 1
            if self._idle:
                conn = self._take_idle()
                conn._lent = True
                conn._borrower = current_thread()
                self._lent.add(conn)
                return conn, False
            waiter = None
            if self._total < self.config.max_size and self._gate.try_start(monotonic()):
                self._total += 1
            else:
                waiter = Waiter(self._gate.failures)
                self._waiters.append(waiter)
                self._counts["waited"] += 1
        deadline = started + timeout * (retry_num + 1)
        while True:
            if waiter is not None:
                handed = self._wait(waiter, deadline, timeout, retry_num, started)
                if handed is not None:
                    return handed, False
            opened = self._open_in_slot(deadline, timeout, retry_num, started)
            if isinstance(opened, Connection):
                return opened, True
            waiter = opened

    def _wait(
        self, waiter: Waiter, deadline: float, timeout: float, retry_num: int, started: float
    ) -> Connection | None:
        """Wait in line for a hand-off; None means a slot to open a connection in."""
        waiting_since = monotonic()
        gate = self._gate
        answer = None
        wake = gate.wake_at(deadline)  # a read without the lock: at worst one early look
        try:
            while True:
                waiter.sleep(wake - monotonic())
                with self._lock:
                    waiter.settle()
                    if waiter.handed:
                        break
                    now = monotonic()
                    if isinstance(gate.error, NoEndpointError) and gate.failures != waiter.failures:
                        answer = gate.error  # every endpoint failed since it came: an answer
                        self._waiters.remove(waiter)
                        break
                    if now >= deadline:
                        self._waiters.remove(waiter)
                        break
                    free = self._total < self.config.max_size
                    if free and gate.try_start(now):
                        self._waiters.remove(waiter)  # its turn to try a connect
                        self._total += 1
                        waiter.slot = True
                        break
                    wake = gate.wake_at(deadline) if free else deadline
        except BaseException:  # a signal handler raised (KeyboardInterrupt): leave the line
            self._leave_line(waiter)
            raise
        with self._lock:
            self._wait_time += monotonic() - waiting_since
        if answer is not None:
            raise self._request_failed(timeout, retry_num, started, answer, True) from answer
        if waiter.error is not None:
            raise waiter.error
        if not waiter.handed:
            raise self._request_failed(timeout, retry_num, started)
        return waiter.conn

    def _leave_line(self, waiter: Waiter) -> None:
        """Give back whatever an interrupted waiter was or is about to be handed."""
        with self._lock:
            queued = waiter in self._waiters
            if queued:
                self._waiters.remove(waiter)
        if queued:
            return
        if waiter.conn is not None:
            self._put(waiter.conn, monotonic(), False)
        elif waiter.slot:
            self._release_slot()

    def _open_in_slot(
        self, deadline: float, timeout: float, retry_num: int, started: float
    ) -> Connection | Waiter:
        """Open a connection in a slot this thread holds, trying each endpoint once.

        A failure the classify_connect_error hooks call RETRY, with time left, frees the slot
        and returns this borrower's new place at the head of the line; any other fails it.
        """
        limit = self.config.connect_timeout
        if timeout > 0:
            limit = min(limit, max(deadline - monotonic(), 0.001))
        try:
            conn = self._connector.open("grow", limit)
        except PluginError:
            self._connect_abandoned()
            raise
        except Exception as exc:
            retry = self._connect_failed(exc)
            if retry and timeout > 0 and monotonic() < deadline:
                return self._requeue()
            self._release_slot()
            if isinstance(exc, NoEndpointError) or not retry:  # an answer, not a wait
                raise self._request_failed(timeout, retry_num, started, exc, True) from exc
            raise self._request_failed(timeout, retry_num, started, exc) from exc
        except BaseException:
            self._connect_abandoned()
            raise
        self._maintenance.start()  # a no-op once it runs
        with self._lock:
            if not self._closed:
                self._lent.add(conn)
                conn._lent = True
                conn._borrower = current_thread()
                return conn
        self._discard(conn, Reason.POOL_CLOSED)
        raise PoolClosedError(0, f"pool({self.name}) is closed")

    def _connect_failed(self, error: Exception) -> bool:
        """Tell the gate about a failed connect; True if a retry may fix it.

        NoEndpointError (every endpoint failed) closes the gate too, so that the borrowers
        after it get the same answer at once instead of each trying every endpoint again.
        """
        retry = isinstance(error, NoEndpointError) or self._connector.retryable(error)
        with self._lock:
            if retry:
                self._gate.failed(error, monotonic())
            else:
                self._gate.abandoned()
            self._wake_waiters()
        return retry and not isinstance(error, NoEndpointError)

    def _connect_abandoned(self) -> None:
        with self._lock:
            self._gate.abandoned()
            self._wake_waiters()
        self._release_slot()

    def _wake_waiters(self) -> None:
        """Under the lock, while connects fail: an attempt ended, so every waiter looks again
        for its turn to connect (the gate says when)."""
        if self._gate.failing:
            for waiter in self._waiters:
                waiter.wake()

    def _connected(self, state: EndpointState, epoch: int) -> bool:
        """Count a new connection to *state*'s endpoint, opened at *epoch*; False if the
        endpoint failed meanwhile (then it must not be used). A success ends an outage."""
        with self._lock:
            if state.epoch != epoch:
                return False
            self._counts["created"] += 1
            self._endpoints.joined(state)
            if self._gate.succeeded():  # the outage is over: waiters may connect again
                self._grant_slots()
            return True

    def _requeue(self) -> Waiter:
        """Free this borrower's slot and put it back at the head of the line."""
        with self._lock:
            waiter = Waiter(self._gate.failures)
            self._total -= 1
            self._waiters.appendleft(waiter)
            if self._closed:
                self._waiters.remove(waiter)
                raise PoolClosedError(0, f"pool({self.name}) is closed")
        return waiter

    def _grant_slots(self) -> None:
        """Under the lock: hand free slots to waiters while the gate lets connects start; if
        it does not yet, wake the first waiter to wait for the gate instead."""
        now = monotonic()
        while self._waiters and self._total < self.config.max_size and not self._closed:
            if not self._gate.try_start(now):
                self._waiters[0].wake()
                return
            self._total += 1
            self._waiters.popleft().hand(slot=True)

    def _unfit(
        self, conn: Connection, now: float, deadline: float, ping: bool = False
    ) -> Reason | None:
        """Why an idle connection must not be lent (Reason.EXPIRED, DEAD, ...), or None.

        A pre-ping may take ``ping_timeout``, less if the deadline is nearer (but 0.1 s at
        least, so a connection handed over at the last moment is not failed for want of time).
        *ping* asks the pre_ping hooks for a ping whatever the idle time (``idle`` is inf).
        """
        if now >= conn._expires_at:
            return Reason.EXPIRED
        endpoint = conn._endpoint
        if endpoint is not None and endpoint.epoch != conn._endpoint_epoch:
            return Reason.ENDPOINT_FAILED  # never lend a connection to an endpoint that fails
        pre_ping = self._hooks.pre_ping
        if pre_ping is None:
            return None
        limit = min(self.config.ping_timeout, max(deadline - now, 0.1))
        idle = float("inf") if ping else now - conn._idle_since
        try:
            fit = pre_ping(pool=self, connection=conn, idle=idle, timeout=limit)
        except BaseException:
            self._discard(conn, Reason.DEAD)
            raise
        if fit is False:
            return Reason.DEAD
        if endpoint is not None and endpoint.epoch != conn._endpoint_epoch:
            return Reason.ENDPOINT_FAILED  # it failed during the ping
        return None

    def _request_failed(
        self,
        timeout: float,
        retry_num: int,
        started: float,
        cause: BaseException | None = None,
        answered: bool = False,
    ) -> PoolTimeout | ConnectFailedError:
        """Count a failed request and build its error: a PoolTimeout in the old pymysql-pool's
        wording after a wait, or a ConnectFailedError, without "within", when the request
        ended early on an *answered* cause."""
        with self._lock:
            self._counts["timeouts"] += 1
        if self._hooks.on_timeout is not None:
            self._hooks.on_timeout(pool=self, waited=monotonic() - started)
        if cause is None:
            cause = self._gate.error  # waited while connects failed: that is why
        message = f"can't get connection from pool({self.name})"
        if not answered:
            message += f" within {timeout:g}*{retry_num + 1} second(s)"
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
                conn._lent = True
                conn._borrower = current_thread()
                self._lent.add(conn)
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

    # --- returning ---

    def _give_back(self, conn: Connection, error: BaseException | None) -> None:
        """Take *conn* back: classify *error*, reset the session, then re-lend or discard."""
        conn._check_borrower()
        conn._blocks = 0
        now = monotonic()
        usage = now - conn._lent_at
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
        if verdict is Verdict.EJECT_ENDPOINT and conn._endpoint is not None:
            reason = Reason.ENDPOINT_FAILED
            if conn._endpoint_epoch == conn._endpoint.epoch:  # else already counted
                self._connector.endpoint_failed(
                    conn._endpoint, error or RuntimeError("eject"), health=True
                )
        elif verdict is not Verdict.REUSE and verdict is not Verdict.RESET:
            reason = Reason.ERROR
        elif not conn.socket_open:
            reason = Reason.BROKEN
        elif conn.has_unread_result:
            reason = Reason.UNREAD_RESULT  # reading the rest could take long; a new one won't
        elif conn._generation != self._generation:
            reason = Reason.INVALIDATED
        elif conn._endpoint is not None and conn._endpoint.epoch != conn._endpoint_epoch:
            reason = Reason.ENDPOINT_FAILED
        elif now >= conn._expires_at:
            reason = Reason.EXPIRED
        else:
            try:
                reset = self._reset(conn, force=verdict is Verdict.RESET)
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

    def _reset(self, conn: Connection, force: bool) -> bool:
        """End what the borrower left open; True if it took a round trip."""
        config = self.config
        if config.reset == "session":
            if not (force or conn._used):  # _dirty is cleared by a COMMIT; session state isn't
                return False
            with conn.bounded(config.ping_timeout):
                conn.reset_session(config)
            return True
        if conn._pending_reply:
            return False  # no command since the last borrower's ROLLBACK was sent
        did = False
        if force or conn.in_transaction:
            conn.send_rollback()
            did = True
        if bool(conn.server_status & _AUTOCOMMIT) is not config.autocommit:
            with conn.bounded(config.ping_timeout):
                conn.autocommit(config.autocommit)
            conn._dirty = False
            did = True
        return did

    def _put(self, conn: Connection, now: float, reset: bool) -> None:
        """Hand *conn* to the first waiter, or make it idle."""
        conn._idle_since = now
        with self._lock:
            if reset:
                self._counts["resets"] += 1
            current = conn._generation == self._generation  # else invalidated meanwhile
            if current and not self._closed and self._total <= self.config.max_size:
                if self._waiters:
                    waiter = self._waiters.popleft()
                    conn._borrower = waiter.thread
                    waiter.hand(conn)
                    return
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
        """Free a slot: hand it to the first waiter (who opens a connection in it) if the
        gate lets a connect start, or drop it.

        Dropping it below min_size wakes the maintenance thread to refill (*wake*).
        """
        with self._lock:
            self._total -= 1
            self._grant_slots()
            if self._closed and self._total == 0:
                self._all_back.set()
            refill = wake and self._total < self.config.min_size and not self._closed
        if refill:
            self._maintenance.wake()

    def _close(self, conn: Connection, reason: Reason) -> None:
        """Close *conn*, whose slot is already accounted for, and report it."""
        conn.discard()
        with self._lock:
            self._counts["closed"] += 1
            if conn._endpoint is not None:
                conn._endpoint.open -= 1
            if reason != Reason.POOL_CLOSED:
                self._counts["discarded"] += 1
        if self._hooks.on_discard is not None:
            self._hooks.on_discard(pool=self, connection=conn, reason=reason)

    # --- maintenance (the pool's own thread) and fork safety ---

    def _maintain(self) -> float | None:
        """One maintenance round (see _maintenance.run_round); seconds until the next."""
        return run_round(self)

    def _hold_idle(self, conns: list[Connection]) -> list[Connection]:
        """Under the lock: take *conns* out of the idle ones, lent to this (maintenance)
        thread until it gives them back with _put or closes them; returns *conns*."""
        for conn in conns:
            self._idle.remove(conn)
            conn._lent = True
            conn._borrower = current_thread()
            self._lent.add(conn)
        return conns

    def _after_fork(self) -> None:
        """In a forked child: drop the parent's connections without touching their sockets'
        server sessions, and start afresh (a lent one becomes a plain closed connection)."""
        self._lock = threading.Lock()
        self._gate = ConnectGate()
        for conn in (*self._idle, *self._lent):
            conn._pool = None
            conn._lent = False
            conn._force_close()
        self._idle.clear()
        self._lent.clear()
        self._waiters.clear()
        self._total = 0
        self._endpoints.after_fork(self._lock)
        self._generation += 1
        if not self._closed:
            self._maintenance = Maintenance(self)
            self._maintenance.start()
