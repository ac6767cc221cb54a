"""Default pre-ping: a free socket check always, COM_PING after ``ping_interval`` idle."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pymysql

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..connection import Connection
    from ..pool import ConnectionPool


@hookimpl(trylast=True)
def pymysqlpool_pre_ping(
    pool: ConnectionPool, connection: Connection, idle: float, timeout: float
) -> bool:
    """Reject a connection whose socket the server closed; ping one idle too long.

    An idle socket with data waiting has been closed (or broken) by the server: a restart,
    ``KILL`` or ``wait_timeout``. That check costs no round trip; a connection idle longer
    than ``ping_interval`` also gets a COM_PING bounded by *timeout*, and so does every
    connection when the borrower asked for a ping (*idle* is inf).
    """
    if connection.server_closed():
        return False
    interval = pool.config.ping_interval
    if idle < (math.inf if interval is None else interval):
        return True
    try:
        connection.ping_within(timeout)
    except pymysql.err.Error:
        return False
    return True
