"""Registry: names mapped to pool configs; each pool is built once, on first use."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import attrs

from . import configfile
from ._manager import PolicyManager
from .config import PoolConfig, fields_set
from .configfile import PoolSettings
from .errors import UnknownPoolError
from .packs import PolicyPack, apply_defaults, explicit_fields, load_pack
from .pool import ConnectionPool

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: Every registry alive, so a forked child gets fresh locks (a lock held by a parent thread
#: at the fork would never be released in the child).
_REGISTRIES: weakref.WeakSet[Registry] = weakref.WeakSet()


def _fresh_locks_after_fork() -> None:
    for registry in list(_REGISTRIES):
        registry._lock = threading.Lock()
        registry._building = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)


_ROLES: dict[str, Literal["reader", "writer"]] = {"read": "reader", "write": "writer"}


class Registry:
    """Named pools for a program: register configs at start-up, ``get(name)`` anywhere.

    Each registry owns its plugin manager, so two registries never share plugins. The
    environment (*env*, else ``PYMYSQLPOOL_ENV``) picks overlays from config files; policy packs
    come from *packs*, ``PYMYSQLPOOL_PACKS`` (comma-separated) and the file's environment.
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        env: str | None = None,
        packs: Iterable[str | PolicyPack] = (),
        disable_plugins: Iterable[str] = (),
        load_entrypoints: bool = True,
    ) -> None:
        self.env = env if env is not None else os.environ.get("PYMYSQLPOOL_ENV") or None
        self._plugins = tuple(plugins)
        env_packs = os.environ.get("PYMYSQLPOOL_PACKS", "").split(",")
        self._packs: list[str | PolicyPack] = [*packs, *(p.strip() for p in env_packs if p.strip())]
        self._disabled = tuple(disable_plugins)
        self._load_entrypoints = load_entrypoints
        self._manager: PolicyManager | None = None
        self._settings: dict[str, PoolSettings] = {}
        self._pools: dict[tuple[str, str | None], ConnectionPool] = {}  # by (name, role)
        self._lock = threading.Lock()
        self._building: dict[tuple[str, str | None], threading.Lock] = {}
        _REGISTRIES.add(self)

    def __repr__(self) -> str:
        return f"<Registry env={self.env!r} pools={self.names()!r}>"

    def __contains__(self, name: object) -> bool:
        return name in self._settings

    @property
    def manager(self) -> PolicyManager:
        """The plugin manager shared by this registry's pools (made on first use)."""
        manager = self._manager
        if manager is None:
            with self._lock:
                if self._manager is None:
                    made = PolicyManager(
                        self._plugins,
                        load_entrypoints=self._load_entrypoints,
                        disabled=self._disabled,
                    )
                    for pack in self._packs:
                        made.add_pack(load_pack(pack) if isinstance(pack, str) else pack)
                    self._manager = made
                manager = self._manager
        return manager

    def use_pack(self, pack: str | PolicyPack) -> None:
        """Add a policy pack (by installed name, or the object).

        Its hooks act at once on every pool of this registry; its config defaults apply to
        pools built from now on (``config(name)`` shows them even for a pool already built).
        """
        self.manager.add_pack(load_pack(pack) if isinstance(pack, str) else pack)

    def load(
        self, path: str | os.PathLike[str], env: str | None = None, *, replace: bool = False
    ) -> list[str]:
        """Register every pool of a TOML config file for *env* (default: the registry's).

        Adds the packs the file names for that environment; returns the pool names.
        """
        found = configfile.read(path, env if env is not None else self.env)
        taken = sorted(found.pools.keys() & self._settings.keys())
        if taken and not replace:
            raise ValueError(
                f"{path}: pools already registered: {', '.join(taken)}; pass replace=True"
            )
        for pack in found.packs:
            self.use_pack(pack)
        for name, settings in found.pools.items():
            self._register(name, settings, replace)
        return sorted(found.pools)

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

        Keyword arguments given with a config override its fields. Policy packs' defaults fill
        the fields a registration did not set: the keywords given, or with a config object
        the fields that differ from PoolConfig's defaults (pass a field as a keyword to pin it
        at its default value). Re-registering a name needs ``replace=True``; the old pool, if
        it was built, is closed.
        """
        if config is None:
            settings = PoolSettings(PoolConfig.from_kwargs(**kwargs), fields_set(kwargs))
        else:
            config = config.updated(**kwargs) if kwargs else config
            settings = PoolSettings(config, explicit_fields(config) | fields_set(kwargs))
        self._register(name, settings, replace)
        return self.config(name)

    def _register(self, name: str, settings: PoolSettings, replace: bool) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a pool name must be a non-empty string, not {name!r}")
        if "[" in name:
            raise ValueError(f"a pool name cannot contain '[' (name[read] is a role), not {name!r}")
        self.manager  # noqa: B018 - resolve plugins and packs now, so errors surface here
        with self._lock:
            if name in self._settings and not replace:
                raise ValueError(f"pool {name!r} is already registered; pass replace=True")
            self._settings[name] = settings
            old = self._take_pools(name)
        for pool in old:
            pool.close()

    def get(self, name: str, role: Literal["read", "write"] | None = None) -> ConnectionPool:
        """The pool registered as *name*: built on the first call, the same object after.

        With *role*, one of the two pools that name stands for: ``"write"`` connects only
        where it can write (finding the writer again after a failover), ``"read"`` prefers
        reader endpoints and falls back to the writer only when no reader is usable.
        """
        key = (name, role)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        if role is not None and role not in _ROLES:
            raise ValueError(f"role must be 'read' or 'write', not {role!r}")
        self.config(name)  # unknown name: the error, before any bookkeeping
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:  # the retries below run after it is released: it is not reentrant
            pool = self._pools.get(key)
            if pool is not None:
                return pool
            settings = self._settings.get(name)
            if settings is not None:
                config = apply_defaults(settings.config, settings.explicit, self.manager.packs)
                if role is not None:
                    config = attrs.evolve(config, role=_ROLES[role])
                label = name if role is None else f"{name}[{role}]"
                pool = ConnectionPool(config, name=label, manager=self.manager)
                with self._lock:
                    if self._settings.get(name) is settings:
                        self._pools[key] = pool
                        return pool
                pool.close()  # replaced or removed while it was being built
        return self.get(name, role)  # removed (UnknownPoolError) or replaced meanwhile

    def config(self, name: str) -> PoolConfig:
        """The config pool *name* is built with: as registered, packs' defaults filling the rest."""
        try:
            settings = self._settings[name]
        except KeyError:
            known = ", ".join(map(repr, sorted(self._settings))) or "none"
            raise UnknownPoolError(f"no pool named {name!r}; registered pools: {known}") from None
        return apply_defaults(settings.config, settings.explicit, self.manager.packs)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._settings)

    def stats(self) -> dict[str, dict[str, float]]:
        """``stats()`` of each pool built so far, by name."""
        return {pool.name: pool.stats() for pool in list(self._pools.values())}

    def engine(
        self, name: str, role: Literal["read", "write"] | None = None, **engine_kwargs: Any
    ) -> Engine:
        """A SQLAlchemy Engine on pool *name* (and *role*), for Core and ORM sessions.

        SQLAlchemy's own pool is off (NullPool): every connection SQLAlchemy checks out is a
        loan from ``get(name, role)``, so this registry's hooks, failover and health checks
        apply. *engine_kwargs* go to ``sqlalchemy.create_engine`` (``echo``, ``future``, ...).
        Needs the ``sqlalchemy`` extra.
        """
        from . import sqla

        self.config(name)  # an unknown name fails now, not at the first checkout
        if role is not None and role not in _ROLES:
            raise ValueError(f"role must be 'read' or 'write', not {role!r}")
        return sqla.engine(lambda: self.get(name, role), **engine_kwargs)

    def remove(self, name: str) -> None:
        """Forget *name* and close its pool if it was built."""
        self.config(name)
        with self._lock:
            self._settings.pop(name, None)
            old = self._take_pools(name)
        for pool in old:
            pool.close()

    def _take_pools(self, name: str) -> list[ConnectionPool]:
        """Under the lock: forget the pools built for *name* (any role) and return them."""
        keys = [key for key in self._pools if key[0] == name]
        return [self._pools.pop(key) for key in keys]

    def close_all(self) -> None:
        """Close every pool built so far; the configs stay registered."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
