"""Connector: how a pool opens a connection, vets it and makes it the pool's own."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from .connection import Connection
from .entry import PoolEntry
from .errors import EndpointRefusedError, NoEndpointError, PluginError
from .verdicts import ConnectVerdict

if TYPE_CHECKING:
    from ._manager import PolicyManager
    from .config import PoolConfig
    from .endpoints import EndpointSet, EndpointState

logger = logging.getLogger("pymysqlpool_registry")
monotonic = time.monotonic
_LIFETIME_JITTER = 0.1  # a lifetime is cut by up to this much, so connections expire apart
#: Seconds a connection opened on a fallback endpoint (a reader pool's writer) is kept, so the
#: pool goes back to the preferred endpoints once they recover.
_FALLBACK_LIFETIME = 30.0


class Owner(Protocol):
    """What a Connector uses of its pool."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> PoolConfig: ...
    @property
    def _lock(self) -> threading.Lock: ...
    @property
    def _hooks(self) -> PolicyManager: ...
    @property
    def _endpoints(self) -> EndpointSet: ...
    @property
    def _counts(self) -> dict[str, int]: ...
    @property
    def _generation(self) -> int: ...
    def _connected(self, state: EndpointState, epoch: int) -> bool: ...
    def stats(self) -> dict[str, float]: ...
    def endpoint_stats(self) -> list[dict[str, Any]]: ...
    def _give_back(self, conn: Connection, error: BaseException | None) -> None: ...
    def _take_back(self, conn: Connection) -> None: ...


class Connector:
    """Opens connections for one pool: chooses the endpoint, calls the create_connection
    hooks, vets the new connection with the check_endpoint hooks, counts failures against
    the endpoint, and adopts the connection (its pool, endpoint, epoch and lifetime).

    Whether to try again, and when, is the pool's (its connect gate); whether an error is
    worth a retry, the classify_connect_error hooks'.
    """

    def __init__(self, pool: Owner) -> None:
        self._pool = pool

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
        with pool._lock:
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
        with pool._lock:
            if connecting:
                pool._counts["connect_errors"] += 1
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
        generation = pool._generation  # an invalidate() during the connect makes it stale
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
        if not pool._connected(state, epoch):
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
