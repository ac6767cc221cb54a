"""Default reusability policy: decide from the MySQL error number and the socket's state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pymysql

from ..errnos import (
    DISCONNECT_ERRNOS,
    GALERA_NOT_READY,
    READ_ONLY_ERRNOS,
    error_number,
)
from ..hookspecs import hookimpl
from ..verdicts import Verdict

if TYPE_CHECKING:
    from ..connection import Connection
    from ..pool import ConnectionPool


@hookimpl(trylast=True)
def pymysqlpool_classify_error(
    pool: ConnectionPool, connection: Connection, error: BaseException
) -> Verdict:
    """Discard a dead or desynchronised connection; roll back after a server error.

    A deadlock (1213), lock wait timeout (1205), duplicate key or SQL error leaves a healthy
    connection: it is rolled back and reused. An exception that is not an ``Exception``
    (KeyboardInterrupt, ...) may have cut a reply in half, so that connection is discarded.
    Read-only (1290, 1836) in a writer pool and 1047 in a Galera pool eject the endpoint.
    """
    if not connection.socket_open or isinstance(error, pymysql.err.InterfaceError):
        return Verdict.DISCARD
    if not isinstance(error, Exception):
        return Verdict.DISCARD
    if isinstance(error, pymysql.err.Error):
        errno = error_number(error)
        if errno in READ_ONLY_ERRNOS and pool.config.role == "writer":
            return Verdict.EJECT_ENDPOINT  # the writer moved: find where it is now
        if errno == GALERA_NOT_READY and pool.config.cluster == "galera":
            return Verdict.EJECT_ENDPOINT  # this node lost quorum; others may have it
        return Verdict.DISCARD if errno in DISCONNECT_ERRNOS else Verdict.RESET
    return Verdict.REUSE
