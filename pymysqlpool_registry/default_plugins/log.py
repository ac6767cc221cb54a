"""Default event logging, with the old pymysql-pool's DEBUG lines."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..hookspecs import hookimpl
from ..verdicts import Reason

if TYPE_CHECKING:
    from ..connection import Connection
    from ..pool import ConnectionPool

logger = logging.getLogger("pymysqlpool_registry")
_LEVELS = {
    Reason.INVALIDATED: logging.DEBUG,
    Reason.POOL_CLOSED: logging.DEBUG,
    Reason.RESET_FAILED: logging.WARNING,
}


@hookimpl(trylast=True)
def pymysqlpool_on_checkout(pool: ConnectionPool, connection: Connection, wait: float) -> None:
    """Log each loan at DEBUG."""
    logger.debug("Get connection from pool(%s)", pool.name)


@hookimpl(trylast=True)
def pymysqlpool_on_checkin(
    pool: ConnectionPool, connection: Connection, usage: float, open_transaction: bool
) -> None:
    """Log each return at DEBUG."""
    logger.debug("Put connection back to pool(%s)", pool.name)


@hookimpl(trylast=True)
def pymysqlpool_on_connect(
    pool: ConnectionPool, connection: Connection, reason: str, duration: float
) -> None:
    """Log each new connection at DEBUG."""
    logger.debug(
        "Create new connection in pool(%s) (%s, %.1f ms)", pool.name, reason, duration * 1e3
    )


@hookimpl(trylast=True)
def pymysqlpool_on_discard(pool: ConnectionPool, connection: Connection, reason: Reason) -> None:
    """Log a closed connection: INFO for a fault, WARNING if the reset failed, DEBUG if routine."""
    logger.log(
        _LEVELS.get(reason, logging.INFO), "Close connection from pool(%s): %s", pool.name, reason
    )


@hookimpl(trylast=True)
def pymysqlpool_on_leak(
    pool: ConnectionPool, connection: Connection, held: float, stack: str, abandoned: bool
) -> None:
    """Log a leaked (or abandoned) connection at WARNING, with where it was taken."""
    what = "its borrower thread died; closing it" if abandoned else "not returned yet"
    where = f"; taken at:\n{stack}" if stack else ""
    logger.warning("Connection lent by pool(%s) for %.1f s: %s%s", pool.name, held, what, where)


@hookimpl(trylast=True)
def pymysqlpool_on_reconnect_failed(
    pool: ConnectionPool, error: BaseException, elapsed: float
) -> None:
    """Log at ERROR that the pool cannot reach its server."""
    logger.error("pool(%s) has failed to reconnect for %.0f s: %s", pool.name, elapsed, error)


@hookimpl(trylast=True)
def pymysqlpool_on_timeout(pool: ConnectionPool, waited: float) -> None:
    """Log a borrower that gave up at INFO (the borrower gets the exception)."""
    logger.info("No connection from pool(%s) after %.3f s", pool.name, waited)
