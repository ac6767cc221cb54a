"""Default connection factory (PyMySQL with the pool's config, the handshake bounded in time)
and the default judgement of connect errors."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

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
    conn = Connection(defer_connect=True, **kwargs)
    read_timeout, write_timeout = conn._read_timeout, conn._write_timeout
    conn._read_timeout = min(read_timeout or timeout, timeout)
    conn._write_timeout = min(write_timeout or timeout, timeout)
    try:
        conn.connect()
    finally:
        conn._read_timeout, conn._write_timeout = read_timeout, write_timeout
    return conn


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
