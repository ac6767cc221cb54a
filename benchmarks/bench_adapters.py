"""One small adapter per contender, so every workload is written once.

An adapter lends a connection-like object with :meth:`Contender.acquire`, runs ``SELECT 1`` on
it with :meth:`Contender.query` and takes it back with :meth:`Contender.release` (passing the
exception, if the borrower saw one, so each contender can handle it its own documented way).
Every pool gets the same connect arguments, ``size`` connections opened up front and the
workload's autocommit.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pymysql.connections

from pymysqlpool_registry import Registry, hookimpl

# Connection errors after which a connection is gone (as the pools' own policies see it).
DISCONNECT_ERRNOS = frozenset({2003, 2006, 2013, 2014, 2045, 2055, 4031, 1927, 1053})

#: Contender keys in report order, with the labels used in tables.
LABELS: dict[str, str] = {
    "ours": "ours (defaults)",
    "ours_plugin": "ours (+1 plugin)",
    "pymysql_pool": "pymysql-pool 0.5",
    "sqlalchemy": "SQLAlchemy QueuePool",
    "dbutils": "DBUtils PooledDB",
    "thread_local": "thread-local conn",
    "connect": "connect per op",
}
POOLS = ("ours", "ours_plugin", "pymysql_pool", "sqlalchemy", "dbutils")
PEERS = ("pymysql_pool", "sqlalchemy", "dbutils")
ALL = tuple(LABELS)


def is_disconnect(error: BaseException) -> bool:
    """True for a PyMySQL error that means the connection is gone."""
    if isinstance(error, pymysql.err.InterfaceError):
        return True
    if isinstance(error, pymysql.err.OperationalError) and error.args:
        return error.args[0] in DISCONNECT_ERRNOS
    return False


def select_one(conn: Any) -> None:
    """The op every workload runs: ``SELECT 1`` through a cursor, rows read, cursor closed."""
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    cur.close()


class CheckoutCounter:
    """The "one extra plugin": a trivial pymysqlpool_on_checkout implementation."""

    def __init__(self) -> None:
        self.checkouts = 0

    @hookimpl
    def pymysqlpool_on_checkout(self, pool: Any, connection: Any, wait: float) -> None:
        self.checkouts += 1


class Contender:
    """The adapter interface (the base class is never used on its own)."""

    key = ""
    #: Most ops one timed run may do (connect-per-op is capped to spare ephemeral ports).
    max_ops: int | None = None

    def __init__(
        self,
        connect_kwargs: dict[str, Any],
        size: int,
        autocommit: bool,
        acquire_timeout: float,
    ) -> None:
        self.kwargs = {**connect_kwargs, "autocommit": autocommit}
        self.size = size
        self.autocommit = autocommit
        self.acquire_timeout = acquire_timeout

    @property
    def label(self) -> str:
        return LABELS[self.key]

    def acquire(self) -> Any:
        raise NotImplementedError

    def release(self, conn: Any, error: BaseException | None = None) -> None:
        raise NotImplementedError

    def query(self, conn: Any) -> None:
        select_one(conn)

    def prepare(self, threads: int) -> None:
        """Called before a timed run with *threads* worker threads (outside the timing)."""

    def close(self) -> None:
        raise NotImplementedError

    def stats(self) -> str:
        """The contender's own view of its connections, for the report."""
        return ""


class Ours(Contender):
    """This package: a Registry pool with min_size = max_size = size, defaults otherwise."""

    key = "ours"

    def __init__(self, *args: Any, plugin: bool = False) -> None:
        super().__init__(*args)
        if plugin:
            self.key = "ours_plugin"
        self.plugin = CheckoutCounter() if plugin else None
        self.registry = Registry(
            plugins=[self.plugin] if self.plugin is not None else [], load_entrypoints=False
        )
        kw = self.kwargs
        self.registry.register(
            "bench",
            host=kw["host"],
            port=kw["port"],
            user=kw["user"],
            password=kw["password"],
            database=kw["database"],
            autocommit=self.autocommit,
            ssl_disabled=True,
            connect_timeout=float(kw["connect_timeout"]),
            read_timeout=float(kw["read_timeout"]),
            write_timeout=float(kw["write_timeout"]),
            min_size=self.size,
            max_size=self.size,
            timeout=self.acquire_timeout,
        )
        self.pool = self.registry.get("bench")
        self.acquire = self.pool.get_connection  # type: ignore[method-assign]

    def acquire(self) -> Any:  # replaced per instance by the bound get_connection
        return self.pool.get_connection()

    def release(self, conn: Any, error: BaseException | None = None) -> None:
        if error is None:
            conn.close()
        else:  # what `with pool.connection() as conn:` does when the block raised
            conn.__exit__(type(error), error, error.__traceback__)

    def close(self) -> None:
        self.registry.close_all()

    def plugins(self) -> list[str]:
        return self.registry.manager.names()

    def stats(self) -> str:
        s = self.pool.stats()
        return (
            f"total={s['total']:.0f} idle={s['idle']:.0f} in_use={s['in_use']:.0f} "
            f"created={s['created']:.0f} discarded={s['discarded']:.0f} "
            f"connect_errors={s['connect_errors']:.0f} timeouts={s['timeouts']:.0f}"
        )


class PymysqlPool(Contender):
    """pymysql-pool 0.5.0: ConnectionPool(size, maxsize, pre_create_num); it polls when empty.

    Its get_connection() (defaults: retry_num=3, retry_interval=0.1 s) sleeps between tries
    and raises when the pool stays empty; the adapter calls it again until
    ``acquire_timeout`` (the same wait the others get). The defaults gave it more throughput
    at 16 and 64 threads than polling every 1 or 10 ms.
    """

    key = "pymysql_pool"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import pymysqlpool

        self._module = pymysqlpool
        kw = dict(self.kwargs)
        kw.pop("autocommit")
        self.pool = pymysqlpool.ConnectionPool(
            size=self.size,
            maxsize=self.size,
            pre_create_num=self.size,
            name="bench",
            autocommit=self.autocommit,
            **kw,
        )

    def acquire(self) -> Any:
        deadline = time.monotonic() + self.acquire_timeout
        while True:
            try:
                return self.pool.get_connection()
            except self._module.GetConnectionFromPoolError:
                if time.monotonic() >= deadline:
                    raise

    def release(self, conn: Any, error: BaseException | None = None) -> None:
        if error is None:
            conn.close()
        else:  # what its `with conn:` does on an exception
            conn.__exit__(type(error), error, error.__traceback__)

    def close(self) -> None:
        while True:
            try:
                conn = self.pool._pool.pop()
            except IndexError:
                break
            conn._pool = None
            with contextlib.suppress(Exception):
                conn.close()

    def stats(self) -> str:
        return f"total_num={self.pool.total_num} available_num={self.pool.available_num}"


class SQLAlchemyPool(Contender):
    """SQLAlchemy's QueuePool used directly (pool_size=size, max_overflow=0).

    A disconnect error is handled as SQLAlchemy's Engine does (``pool._invalidate``: this
    connection and every older one are replaced); any other error just returns it.
    """

    key = "sqlalchemy"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from sqlalchemy.pool import QueuePool

        kw = self.kwargs
        self.pool = QueuePool(
            lambda: pymysql.connect(**kw),
            pool_size=self.size,
            max_overflow=0,
            timeout=self.acquire_timeout,
        )
        opened = [self.pool.connect() for _ in range(self.size)]
        for fairy in opened:
            fairy.close()
        self.acquire = self.pool.connect  # type: ignore[method-assign]

    def acquire(self) -> Any:  # replaced per instance by the bound QueuePool.connect
        return self.pool.connect()

    def release(self, conn: Any, error: BaseException | None = None) -> None:
        if error is not None and is_disconnect(error):
            self.pool._invalidate(conn, error)
        else:
            conn.close()

    def close(self) -> None:
        self.pool.dispose()

    def stats(self) -> str:
        return self.pool.status()


class DBUtilsPool(Contender):
    """DBUtils PooledDB(pymysql, maxconnections=size, mincached=size, blocking=True, ping=0)."""

    key = "dbutils"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from dbutils.pooled_db import PooledDB

        self.pool = PooledDB(
            pymysql,
            maxconnections=self.size,
            mincached=self.size,
            blocking=True,
            ping=0,
            **self.kwargs,
        )
        self.acquire = self.pool.connection  # type: ignore[method-assign]

    def acquire(self) -> Any:  # replaced per instance by the bound PooledDB.connection
        return self.pool.connection()

    def release(self, conn: Any, error: BaseException | None = None) -> None:
        conn.close()

    def close(self) -> None:
        self.pool.close()

    def stats(self) -> str:
        return f"lent={self.pool._connections} idle={len(self.pool._idle_cache)}"


class ThreadLocal(Contender):
    """One persistent connection per thread (no pool): the practical limit.

    Connections are opened before the timed run (one per worker thread) and handed out on a
    thread's first acquire. With autocommit off a ROLLBACK follows an op that ran a
    statement (correctness, as for the pools); a closed connection is reopened on acquire.
    """

    key = "thread_local"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._lock = threading.Lock()
        self._all: list[pymysql.connections.Connection] = []
        self._stock: list[pymysql.connections.Connection] = []
        self._local = threading.local()
        self.prepare(self.size)

    def prepare(self, threads: int) -> None:
        while len(self._all) < threads:
            self._all.append(pymysql.connect(**self.kwargs))
        self._stock = list(self._all)
        self._local = threading.local()  # threads of the next run take from the stock afresh

    def acquire(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None:
            with self._lock:
                conn = self._stock.pop() if self._stock else None
            if conn is None:
                conn = pymysql.connect(**self.kwargs)
                with self._lock:
                    self._all.append(conn)
            local.conn = conn
            local.dirty = False
        if not conn.open:
            conn.connect()
        return conn

    def query(self, conn: Any) -> None:
        self._local.dirty = True
        select_one(conn)

    def release(self, conn: Any, error: BaseException | None = None) -> None:
        local = self._local
        if not self.autocommit and local.dirty and conn.open:
            local.dirty = False
            conn.rollback()

    def close(self) -> None:
        for conn in self._all:
            with contextlib.suppress(Exception):
                conn.close()
        self._all.clear()
        self._stock.clear()

    def stats(self) -> str:
        return f"connections={len(self._all)} open={sum(c.open for c in self._all)}"


class ConnectPerOp(Contender):
    """A new PyMySQL connection for every op, closed after it."""

    key = "connect"
    max_ops = 1500  # TIME_WAIT sockets: keep the total number of connects modest

    def acquire(self) -> Any:
        return pymysql.connect(**self.kwargs)

    def release(self, conn: Any, error: BaseException | None = None) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - already closed by the error
            conn._force_close()

    def close(self) -> None:
        pass


FACTORIES: dict[str, Callable[..., Contender]] = {
    "ours": Ours,
    "ours_plugin": lambda *args: Ours(*args, plugin=True),
    "pymysql_pool": PymysqlPool,
    "sqlalchemy": SQLAlchemyPool,
    "dbutils": DBUtilsPool,
    "thread_local": ThreadLocal,
    "connect": ConnectPerOp,
}


def make(
    key: str,
    connect_kwargs: dict[str, Any],
    *,
    size: int,
    autocommit: bool,
    acquire_timeout: float = 30.0,
) -> Contender:
    """Build contender *key* with ``size`` connections opened up front."""
    return FACTORIES[key](connect_kwargs, size, autocommit, acquire_timeout)


#: The module each peer needs, and the distribution that provides it (the ``bench`` extra).
PEER_MODULES = {
    "pymysql_pool": ("pymysqlpool", "pymysql-pool"),
    "sqlalchemy": ("sqlalchemy.pool", "SQLAlchemy"),
    "dbutils": ("dbutils.pooled_db", "DBUtils"),
}


def missing_peers() -> dict[str, str]:
    """Peers whose package is not installed: {key: distribution name}."""
    missing = {}
    for key, (module, dist) in PEER_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing[key] = dist
    return missing
