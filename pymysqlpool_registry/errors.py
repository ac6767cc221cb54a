"""Exceptions raised by the pool; all subclass PyMySQL's errors so existing handlers still catch them."""

from __future__ import annotations

import pymysql


class _Message:
    """Show just the message, as PyMySQL's ``(errno, message)`` args would print as a tuple."""

    args: tuple[object, ...]

    def __str__(self) -> str:
        return str(self.args[-1]) if self.args else ""


class PoolError(_Message, pymysql.err.OperationalError):
    """Base class of the errors the pool raises about itself."""

    __module__ = "pymysqlpool_registry"


class GetConnectionFromPoolError(PoolError):
    """No connection could be had from a pool within the time allowed."""

    __module__ = "pymysqlpool_registry"


PoolTimeout = GetConnectionFromPoolError


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
