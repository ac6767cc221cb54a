"""Default connection factory (PyMySQL with the pool's config, the handshake bounded in time)
and the default judgement of connect errors."""

from __future__ import annotations

import ssl
import weakref
from typing import TYPE_CHECKING, Any

import pymysql

from ..connection import Connection
from ..errnos import CONNECT_FAIL_ERRNOS, error_number
from ..hookspecs import hookimpl
from ..verdicts import ConnectVerdict

if TYPE_CHECKING:
    from ..endpoints import Endpoint
    from ..pool import ConnectionPool


@hookimpl(trylast=True)
def pymysqlpool_create_connection(
    pool: ConnectionPool, reason: str, timeout: float, endpoint: Endpoint
) -> Connection:
    """Connect to *endpoint* with ``pool.config``; *timeout* bounds the TCP connect and the
    whole handshake.

    PyMySQL alone bounds only the TCP connect: a server that accepts but never greets would
    block forever without a read timeout.
    """
    kwargs = pool.config.connect_kwargs()
    kwargs["host"], kwargs["port"] = endpoint.host, endpoint.port
    kwargs["connect_timeout"] = timeout
    conn = _TLS_CONTEXTS.connection(pool, kwargs)
    read_timeout, write_timeout = conn._read_timeout, conn._write_timeout
    conn._read_timeout = min(read_timeout or timeout, timeout)
    conn._write_timeout = min(write_timeout or timeout, timeout)
    try:
        conn.connect()
    finally:
        conn._read_timeout, conn._write_timeout = read_timeout, write_timeout
    return conn


#: The keyword arguments by which pymysql.connect() asks for TLS (``ssl_disabled`` aside).
_TLS_ARGS = ("ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_cert", "ssl_verify_identity")
_TLS_SETTINGS = (*_TLS_ARGS, "ssl_key_password")  # what the context is built from


class _SharedContexts:
    """One TLS context per pool and TLS setting, built by PyMySQL from the pool's settings
    at the first connect and handed to every later one.

    PyMySQL builds a new ``SSLContext`` on every connect; loading a CA bundle (the system's,
    or a cloud provider's) takes tens of milliseconds each time, and a pool reopening many
    connections after a failover would pay it for each. The context is the same whatever
    the endpoint (the host name is checked per connection), with the verification PyMySQL
    set up. Where TLS is required it is passed as ``ssl=``; where it is only "preferred" (no
    TLS option, not disabled: PyMySQL falls back to plain if the server has no TLS) the
    connection is made without TLS and then given what PyMySQL's constructor would set
    (``ssl``, ``_ssl_required``, ``ctx``), since ``ssl=`` would make TLS required.
    """

    def __init__(self) -> None:
        self._built: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], ssl.SSLContext]] = (
            weakref.WeakKeyDictionary()
        )

    def connection(self, pool: Any, kwargs: dict[str, Any]) -> Connection:
        """An unconnected Connection for *kwargs*, with the pool's shared TLS context."""
        if kwargs.get("ssl_disabled"):
            return Connection(defer_connect=True, **kwargs)
        settings = tuple(kwargs.get(key) for key in _TLS_SETTINGS)
        built = self._built.get(pool)
        if built is None or built[0] != settings:
            conn = Connection(defer_connect=True, **kwargs)  # PyMySQL builds the context
            if isinstance(getattr(conn, "ctx", None), ssl.SSLContext):
                self._built[pool] = (settings, conn.ctx)
            return conn
        for key in _TLS_SETTINGS:
            kwargs.pop(key, None)
        if any(settings[: len(_TLS_ARGS)]):  # TLS required
            return Connection(defer_connect=True, ssl=built[1], **kwargs)
        kwargs["ssl_disabled"] = True  # then, what PyMySQL sets up for "preferred" TLS:
        conn = Connection(defer_connect=True, **kwargs)
        conn.ssl, conn._ssl_required, conn.ctx = True, False, built[1]
        return conn


_TLS_CONTEXTS = _SharedContexts()


@hookimpl(trylast=True)
def pymysqlpool_classify_connect_error(
    pool: ConnectionPool, error: BaseException
) -> ConnectVerdict:
    """FAIL on what no retry can fix, RETRY on the rest (refused, full, lost, timed out).

    FAIL: the errnos in ``CONNECT_FAIL_ERRNOS``; a server error that is not an
    OperationalError (a SQL error of ``init_command``); a TLS error; and anything that is not
    a PyMySQL error (PyMySQL failed before talking to the server: a bad argument).
    """
    if not isinstance(error, pymysql.err.Error):
        return ConnectVerdict.FAIL
    if isinstance(getattr(error, "original_exception", None), ssl.SSLError):
        return ConnectVerdict.FAIL  # PyMySQL wraps OSErrors, TLS ones included, as 2003
    if not isinstance(error, pymysql.err.OperationalError) and error_number(error):
        return ConnectVerdict.FAIL
    if error_number(error) in CONNECT_FAIL_ERRNOS:
        return ConnectVerdict.FAIL
    return ConnectVerdict.RETRY
