"""Default connection factory: PyMySQL with the pool's config, the handshake bounded in time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..connection import Connection
from ..hookspecs import hookimpl

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
