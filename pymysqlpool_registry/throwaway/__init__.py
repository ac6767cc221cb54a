"""Throwaway MariaDB servers in temporary directories, for tests, demos and benchmarks:
finding the binaries (``binaries``), one server (``server``) and topologies of several
(``topologies``), and their processes and ports (``process``)."""

from __future__ import annotations

from .binaries import ServerNotFound, find_galera_provider, find_server_binaries
from .process import ServerStartError
from .server import ThrowawayServer
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
