"""pymysqlpool_registry: a thread-safe PyMySQL connection pool with named pools and plugins."""

from __future__ import annotations

import logging

from ._manager import PolicyManager
from .config import PoolConfig
from .configfile import ConfigFileError
from .connection import Connection
from .endpoints import Endpoint
from .errors import (
    ConnectFailedError,
    ConnectionReturnedError,
    EndpointRefusedError,
    GetConnectionFromPoolError,
    NoEndpointError,
    PluginError,
    PoolClosedError,
    PoolError,
    PoolTimeout,
    ReturnConnectionToPoolError,
    UnknownPoolError,
)
from .hookspecs import hookimpl
from .packs import PolicyPack
from .pool import ConnectionPool
from .registry import Registry
from .verdicts import ConnectVerdict, Reason, Verdict

__all__ = [
    "ConfigFileError",
    "ConnectFailedError",
    "ConnectVerdict",
    "Connection",
    "ConnectionPool",
    "ConnectionReturnedError",
    "Endpoint",
    "EndpointRefusedError",
    "GetConnectionFromPoolError",
    "NoEndpointError",
    "PluginError",
    "PolicyManager",
    "PolicyPack",
    "PoolClosedError",
    "PoolConfig",
    "PoolError",
    "PoolTimeout",
    "Reason",
    "Registry",
    "ReturnConnectionToPoolError",
    "UnknownPoolError",
    "Verdict",
    "hookimpl",
    "logger",
    "registry",
]

#: The package's logger; the DEBUG lines "Get connection from pool(NAME)" and
#: "Put connection back to pool(NAME)" come from it. No handler is added here.
logger = logging.getLogger("pymysqlpool_registry")

#: The default registry, for programs that need just one.
registry = Registry()


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("pymysqlpool-registry")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
