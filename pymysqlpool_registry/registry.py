"""Registry: names mapped to pool configs; each pool is built once, on first use."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import attrs

from ._manager import PolicyManager
from .config import PoolConfig
from .errors import UnknownPoolError
from .pool import ConnectionPool


class Registry:
    """Named pools for a program: register configs at start-up, ``get(name)`` anywhere.

    Each registry owns its plugin manager, so two registries never share plugins.
    """

    def __init__(self, plugins: Iterable[object] = ()) -> None:
        self._plugins = tuple(plugins)
        self._manager: PolicyManager | None = None
        self._configs: dict[str, PoolConfig] = {}
        self._pools: dict[str, ConnectionPool] = {}
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"<Registry pools={self.names()!r}>"

    def __contains__(self, name: object) -> bool:
        return name in self._configs

    @property
    def manager(self) -> PolicyManager:
        """The plugin manager shared by this registry's pools (made on first use)."""
        manager = self._manager
        if manager is None:
            with self._lock:
                if self._manager is None:
                    self._manager = PolicyManager(self._plugins)
                manager = self._manager
        return manager

    def register(
        self,
        name: str,
        config: PoolConfig | None = None,
        /,
        *,
        replace: bool = False,
        **kwargs: Any,
    ) -> PoolConfig:
        """Register pool *name* with *config*, or with the keyword arguments of ``PoolConfig``.

        Keyword arguments given with a config override its fields. Re-registering a name
        needs ``replace=True``; the old pool, if it was built, is closed.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a pool name must be a non-empty string, not {name!r}")
        if config is None:
            config = PoolConfig.from_kwargs(**kwargs)
        elif kwargs:
            config = attrs.evolve(config, **kwargs)
        with self._lock:
            if name in self._configs and not replace:
                raise ValueError(f"pool {name!r} is already registered; pass replace=True")
            self._configs[name] = config
            old = self._pools.pop(name, None)
        if old is not None:
            old.close()
        return config

    def get(self, name: str) -> ConnectionPool:
        """The pool registered as *name*: built on the first call, the same object after."""
        pool = self._pools.get(name)
        if pool is not None:
            return pool
        with self._lock:
            building = self._building.setdefault(name, threading.Lock())
        with building:
            pool = self._pools.get(name)
            if pool is None:
                config = self.config(name)
                pool = ConnectionPool(config, name=name, manager=self.manager)
                with self._lock:
                    if self._configs.get(name) is config:
                        self._pools[name] = pool
                        return pool
                pool.close()  # replaced or removed while it was being built
                return self.get(name)
        return pool

    def config(self, name: str) -> PoolConfig:
        """The config registered as *name*."""
        try:
            return self._configs[name]
        except KeyError:
            known = ", ".join(map(repr, sorted(self._configs))) or "none"
            raise UnknownPoolError(f"no pool named {name!r}; registered pools: {known}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._configs)

    def stats(self) -> dict[str, dict[str, float]]:
        """``stats()`` of each pool built so far, by name."""
        return {name: pool.stats() for name, pool in list(self._pools.items())}

    def remove(self, name: str) -> None:
        """Forget *name* and close its pool if it was built."""
        self.config(name)
        with self._lock:
            self._configs.pop(name, None)
            pool = self._pools.pop(name, None)
        if pool is not None:
            pool.close()

    def close_all(self) -> None:
        """Close every pool built so far; the configs stay registered."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
