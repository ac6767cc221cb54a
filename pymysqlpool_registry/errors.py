"""Exceptions raised by the pool; all subclass PyMySQL's errors so existing handlers still catch them."""

from __future__ import annotations

import pymysql

from .errnos import error_number


class _Message:
    """Show just the message, as PyMySQL's ``(errno, message)`` args would print as a tuple."""

    args: tuple[object, ...]

    def __str__(self) -> str:
        return str(self.args[-1]) if self.args else ""


class PoolError(_Message, pymysql.err.OperationalError):
    """Base class of the errors the pool raises about itself."""

    __module__ = "pymysqlpool_registry"


class GetConnectionFromPoolError(PoolError):
    """No connection could be had from a pool: the base of PoolTimeout and ConnectFailedError,
    and what pymysql-pool raised (its message format is kept)."""

    __module__ = "pymysqlpool_registry"


class PoolTimeout(GetConnectionFromPoolError):
    """The borrower's wait ran out: the pool stayed full, or connects kept failing (then the
    last connect error is the cause)."""

    __module__ = "pymysqlpool_registry"


class ConnectFailedError(GetConnectionFromPoolError):
    """The request ended on an answer no wait can change: a connect error no retry fixes
    (access denied, ...), a refused endpoint, or no usable endpoint; the cause says which."""

    __module__ = "pymysqlpool_registry"


def request_failed(
    pool_name: str, timeout: float, retry_num: int, cause: BaseException | None, answered: bool
) -> PoolTimeout | ConnectFailedError:
    """The error of a failed ``get_connection``: a PoolTimeout in pymysql-pool's wording after
    a wait, or a ConnectFailedError, without "within", when it ended early on an *answered*
    cause. Its args[0] is the cause's error number (2003...), as pymysql-pool's was."""
    message = f"can't get connection from pool({pool_name})"
    if not answered:
        message += f" within {timeout:g}*{retry_num + 1} second(s)"
    if cause is not None:
        message += f": {cause}"
    kind = ConnectFailedError if answered else PoolTimeout
    error = kind(error_number(cause) or 0 if cause else 0, message)
    error.__cause__ = cause
    return error


class EndpointRefusedError(PoolError):
    """A new connection's endpoint was refused by a check (read-only, lagging, not ready)."""

    __module__ = "pymysqlpool_registry"


class NoEndpointError(PoolError):
    """Every endpoint of a pool failed or was refused; the message gives each one's state."""

    __module__ = "pymysqlpool_registry"


class PoolClosedError(PoolError):
    """The pool was closed; it lends no more connections."""

    __module__ = "pymysqlpool_registry"


class ConnectionReturnedError(_Message, pymysql.err.InterfaceError):
    """A pooled connection was used or returned after it went back to its pool."""

    __module__ = "pymysqlpool_registry"


#: pymysql-pool 0.4/0.5's name for it.
ReturnConnectionToPoolError = ConnectionReturnedError


class UnknownPoolError(LookupError):
    """The registry has no pool of that name."""

    __module__ = "pymysqlpool_registry"


class PluginError(RuntimeError):
    """A plugin could not be found, loaded or registered."""

    __module__ = "pymysqlpool_registry"
