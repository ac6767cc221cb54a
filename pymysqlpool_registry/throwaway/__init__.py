"""Throwaway MariaDB servers in temporary directories, for tests, demos and benchmarks:
finding the binaries (``binaries``), one server (``server``) and topologies of several
(``topologies``)."""

from __future__ import annotations

from .binaries import ServerNotFound, find_galera_provider, find_server_binaries
from .server import ServerStartError, ThrowawayServer
from .topologies import GaleraNode, ThrowawayGalera, ThrowawayReplication

__all__ = [
    "GaleraNode",
    "ServerNotFound",
    "ServerStartError",
    "ThrowawayGalera",
    "ThrowawayReplication",
    "ThrowawayServer",
    "find_galera_provider",
    "find_server_binaries",
]
