"""Connector: how a pool opens a connection, vets it and makes it the pool's own."""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any, Protocol

from .connection import Connection
from .entry import Held, PoolEntry
from .errors import EndpointRefusedError, NoEndpointError, PluginError, PoolClosedError
from .inventory import Keeper
from .verdicts import ConnectVerdict, Reason

if TYPE_CHECKING:
    from .endpoints import EndpointSet, EndpointState
    from .inventory import Inventory
    from .waiting import Waiter

logger = logging.getLogger("pymysqlpool_registry")
monotonic = time.monotonic
_LIFETIME_JITTER = 0.1  # a lifetime is cut by up to this much, so connections expire apart
#: Seconds a connection opened on a fallback endpoint (a reader pool's writer) is kept, so the
#: pool goes back to the preferred endpoints once they recover.
_FALLBACK_LIFETIME = 30.0


class Owner(Keeper, Protocol):
    """What a Connector uses of its pool."""

    @property
    def _endpoints(self) -> EndpointSet: ...
    @property
    def _inventory(self) -> Inventory: ...
    def _request_failed(
        self, waiter: Waiter, cause: BaseException | None = None, answered: bool = False
    ) -> Exception: ...
    def _give_back(self, conn: Connection, error: BaseException | None) -> None: ...
    def _take_back(self, conn: Connection) -> None: ...


class Connector:
    """Opens connections for one pool, in slots its Line granted: chooses the endpoint, calls
    the create_connection hooks, vets the new connection with the check_endpoint hooks,
    counts failures against the endpoint, and adopts the connection (its pool, endpoint, epoch
    and lifetime). It tells the line's gate how each attempt ended, so that while connects
    fail they are spaced out; whether an error is worth a retry is the
    classify_connect_error hooks' call.
    """

    def __init__(self, pool: Owner) -> None:
        self._pool = pool

    def open_in_slot(self, waiter: Waiter) -> Connection | None:
        """Open a connection for a borrower in the slot it holds, trying each endpoint once.

        A failure the classify_connect_error hooks call RETRY, with time left, frees the slot
        and puts the borrower back at the head of the line (None); any other fails it.
        """
        pool = self._pool
        inventory = pool._inventory
        limit = min(pool.config.connect_timeout, max(waiter.deadline - monotonic(), 0.001))
        try:
            conn = self.open("grow", limit)
        except PluginError:
            self._abandoned()
            raise
        except Exception as exc:
            retry = self._failed(exc)
            if retry and waiter.timeout > 0 and monotonic() < waiter.deadline:
                with inventory.lock:
                    if not inventory.closed:
                        inventory.line.requeue(waiter)
                        return None
            inventory.release_slot()
            answered = isinstance(exc, NoEndpointError) or not retry  # an answer, not a wait
            raise pool._request_failed(waiter, exc, answered) from exc
        except BaseException:
            self._abandoned()
            raise
        pool._maintenance.start()  # a no-op once it runs
        with inventory.lock:
            if not inventory.closed:
                inventory.mark(conn, Held.CHECKOUT)
                return conn
        inventory.discard(conn, Reason.POOL_CLOSED)
        raise PoolClosedError(0, f"pool({pool.name}) is closed")

    def refill(self, missing: int) -> None:
        """Open *missing* connections in slots already reserved and make them idle; stop at
        the first failure (the gate spaces out the next attempts) and report an outage
        longer than ``reconnect_timeout`` once."""
        pool = self._pool
        inventory = pool._inventory
        for opened in range(missing):
            if inventory.closed:
                for _ in range(missing - opened):
                    inventory.release_slot(wake=False)
                return
            try:
                conn = self.open("fill", pool.config.connect_timeout)
            except Exception as exc:  # noqa: BLE001 - any failure: retry later with backoff
                now = monotonic()
                with inventory.lock:
                    gate = inventory.line.gate
                    inventory.line.failed(exc, now)
                    since = gate.failing_since or now
                    report = now - since >= pool.config.reconnect_timeout and not gate.reported
                    gate.reported |= report
                for _ in range(missing - opened):
                    inventory.release_slot(wake=False)
                if report and pool._hooks.on_reconnect_failed is not None:
                    pool._hooks.on_reconnect_failed(pool=pool, error=exc, elapsed=now - since)
                return
            except BaseException:
                self._abandoned()
                raise
            with inventory.lock:
                inventory.mark(conn, Held.MAINTENANCE)
            inventory.put(conn, monotonic(), False)

    def _failed(self, error: Exception) -> bool:
        """Tell the line about a borrower's failed connect; True if a retry may fix it.

        NoEndpointError (every endpoint failed) closes the gate too, so that the borrowers
        after it get the same answer at once instead of each trying every endpoint again.
        """
        retry = isinstance(error, NoEndpointError) or self.retryable(error)
        inventory = self._pool._inventory
        with inventory.lock:
            if retry:
                inventory.line.failed(error, monotonic())
            else:
                inventory.line.abandoned()
        return retry and not isinstance(error, NoEndpointError)

    def _abandoned(self) -> None:
        """A connect in a slot ended without an answer: the next may start; free the slot."""
        inventory = self._pool._inventory
        with inventory.lock:
            inventory.line.abandoned()
        inventory.release_slot()

    def _connected(self, state: EndpointState, epoch: int) -> bool:
        """Count a new connection to *state*'s endpoint, opened at *epoch*; False if the
        endpoint failed meanwhile (then it must not be used). A success ends an outage."""
        pool = self._pool
        inventory = pool._inventory
        with inventory.lock:
            if state.epoch != epoch:
                return False
            inventory.counts["created"] += 1
            pool._endpoints.joined(state)
            inventory.line.succeeded()
            return True

    def open(self, reason: str, limit: float) -> Connection:
        """Open a connection, trying each endpoint once. With several, raise NoEndpointError
        (caused by the last connect error) when every one failed; with one, its error."""
        endpoints = self._pool._endpoints
        tried: set[EndpointState] | None = set() if endpoints.several else None
        last: Exception | None = None
        while True:
            try:
                return self._create(reason, limit, tried)
            except NoEndpointError as exc:
                raise exc from last
            except PluginError:
                raise
            except Exception as exc:
                if tried is None:
                    raise
                last = exc

    def fill(self, count: int) -> list[Connection]:
        """Open *count* connections now (a new pool's min_size); on a failure close the ones
        opened and raise."""
        opened: list[Connection] = []
        try:
            for _ in range(count):
                opened.append(self.open("fill", self._pool.config.connect_timeout))
        except BaseException:
            for conn in opened:
                conn.discard()
            raise
        return opened

    def retryable(self, error: Exception) -> bool:
        """True if the classify_connect_error hooks say a retry may fix *error*."""
        if isinstance(error, EndpointRefusedError):
            return False  # the endpoint answered: it is not what this pool needs
        pool = self._pool
        classify = pool._hooks.classify_connect_error
        try:
            verdict = None if classify is None else classify(pool=pool, error=error)
        except Exception:
            logger.exception("classify_connect_error hook failed in pool(%s)", pool.name)
            verdict = None
        return verdict is not ConnectVerdict.FAIL

    def vet(self, conn: Any, state: EndpointState, limit: float) -> None:
        """Run the check_endpoint hooks on *conn*, each read bounded by *limit* seconds;
        close it and raise EndpointRefusedError if they refuse its endpoint."""
        pool = self._pool
        check = pool._hooks.check_endpoint
        if check is None or not isinstance(conn, Connection):
            return
        try:
            with conn.bounded(limit):
                refused = check(pool=pool, connection=conn, endpoint=state.endpoint)
                if not refused and conn.in_transaction:  # its snapshot must not reach a borrower
                    conn.rollback()
            conn._last_error = None  # errors the check caught are not a borrower's
        except BaseException:
            conn.discard()
            raise
        with pool._inventory.lock:
            pool._endpoints.checked(state, refused or "ok", monotonic())
        if refused:
            conn.discard()
            raise EndpointRefusedError(
                0, f"{state.endpoint} refused for pool({pool.name}): {refused}"
            )

    def endpoint_failed(
        self,
        state: EndpointState,
        error: BaseException,
        health: bool = False,
        connecting: bool = False,
    ) -> None:
        """Count a failure of *state*'s endpoint (and a connect error, if *connecting*);
        a failed health check (*health*) ejects it at once."""
        pool = self._pool
        inventory = pool._inventory
        with inventory.lock:
            if connecting:
                inventory.counts["connect_errors"] += 1
            pool._endpoints.failed(state, error, monotonic(), health)

    def _create(self, reason: str, limit: float, tried: set[EndpointState] | None) -> Connection:
        """Open one connection through the create_connection hook, vet and adopt it.

        With *tried*, skip the endpoints in it and add the one tried (bounded by
        failover_timeout while another is left); NoEndpointError when every one was tried.
        """
        pool = self._pool
        create = pool._hooks.create_connection
        if create is None:
            raise PluginError("no plugin implements pymysqlpool_create_connection")
        started = monotonic()
        generation = pool._inventory.generation  # an invalidate() meanwhile makes it stale
        endpoints = pool._endpoints
        state, epoch = endpoints.choose(started, tried or (), self._select)
        if tried is not None:
            tried.add(state)
            if endpoints.left_to_try(tried):  # another is left: don't hang on this one
                limit = min(limit, pool.config.failover_timeout)
        try:
            conn = create(pool=pool, reason=reason, timeout=limit, endpoint=state.endpoint)
            self.vet(conn, state, limit)
        except EndpointRefusedError as exc:
            self.endpoint_failed(state, exc, health=True, connecting=True)
            raise
        except Exception as exc:
            self.endpoint_failed(state, exc, connecting=True)
            raise
        if not isinstance(conn, Connection):
            close = getattr(conn, "close", None)
            if callable(close):
                close()
            raise PluginError(
                f"pymysqlpool_create_connection returned {type(conn).__name__}, "
                "not a pymysqlpool_registry.Connection"
            )
        if not self._connected(state, epoch):
            conn.discard()
            raise EndpointRefusedError(
                0, f"{state.endpoint} failed while pool({pool.name}) connected to it"
            )
        self._adopt(conn, state, epoch, generation)
        if pool._hooks.on_connect is not None:
            pool._hooks.on_connect(
                pool=pool, connection=conn, reason=reason, duration=conn._entry.idle_since - started
            )
        return conn

    def _adopt(self, conn: Connection, state: EndpointState, epoch: int, generation: int) -> None:
        """Make *conn* the pool's: its endpoint, generation and lifetime."""
        pool = self._pool
        config = pool.config
        now = monotonic()
        lifetime = config.max_lifetime
        if pool._endpoints.is_fallback(state):  # retry the preferred ones soon
            lifetime = min(lifetime or _FALLBACK_LIFETIME, _FALLBACK_LIFETIME)
        expires_at = float("inf")
        if lifetime is not None:
            expires_at = now + lifetime * (1 - _LIFETIME_JITTER * random.random())
        conn._entry = PoolEntry(state, epoch, generation, now, expires_at)
        conn._pool = pool
        conn._check_owner = config.check_owner_thread
        conn._dirty = conn._used = False

    def _select(self, candidates: list[EndpointState]) -> EndpointState | None:
        """The select_endpoint hooks' choice among *candidates* (None: the first)."""
        select = self._pool._hooks.select_endpoint
        return None if select is None else select(pool=self._pool, candidates=candidates)
