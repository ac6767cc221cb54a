"""Reading pool configs from a TOML file: shared defaults, named pools, per-environment overlays.

```toml
[defaults]                  # every pool
user = "app"
password_env = "DB_PASSWORD"   # <field>_env: the value comes from that environment variable

[pools.orders]
host = "db1"
database = "orders"

[env.production]
packs = ["failover"]
defaults = { max_size = 32 }
pools.orders = { host = "orders-primary.internal" }
```
A pool's settings are, later winning: ``[defaults]``, ``[pools.NAME]``,
``[env.ENV.defaults]``, ``[env.ENV.pools.NAME]``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .config import PoolConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_SECRET_SUFFIX = "_env"


class ConfigFileError(ValueError):
    """A config file is missing, malformed, or names something unknown."""

    __module__ = "pymysqlpool_registry"


@attrs.frozen
class PoolSettings:
    """One pool as a file describes it: the config and the keys the file set."""

    config: PoolConfig
    explicit: frozenset[str]


@attrs.frozen
class FileConfig:
    """What a config file says for one environment."""

    pools: dict[str, PoolSettings]
    packs: tuple[str, ...]
    environments: tuple[str, ...]


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigFileError(f"{where}: {key!r} must be a table")
    return value


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigFileError(
            f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(sorted(allowed))})"
        )


def _resolve_secrets(settings: dict[str, Any], where: str) -> dict[str, Any]:
    resolved = {}
    for key, value in settings.items():
        if key.endswith(_SECRET_SUFFIX):
            if not isinstance(value, str) or value not in os.environ:
                raise ConfigFileError(
                    f"{where}: {key} names environment variable {value!r}, which is not set"
                )
            resolved[key.removesuffix(_SECRET_SUFFIX)] = os.environ[value]
        else:
            resolved[key] = value
    return resolved


def read(path: str | os.PathLike[str], env: str | None) -> FileConfig:
    """Read *path* for environment *env* (None: no overlay); every error names file and key."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    _only(data, {"defaults", "pools", "env"}, str(path))
    defaults = _table(data, "defaults", str(path))
    pools = _table(data, "pools", str(path))
    environments = _table(data, "env", str(path))
    overlay: dict[str, Any] = {}
    if env is not None:
        if env not in environments:
            known = ", ".join(sorted(environments)) or "none"
            raise ConfigFileError(f"{path}: no environment {env!r} (environments: {known})")
        overlay = _table(environments, env, f"{path}: [env]")
        _only(overlay, {"defaults", "pools", "packs"}, f"{path}: [env.{env}]")
    env_where = f"{path}: [env.{env}]"
    env_defaults = _table(overlay, "defaults", env_where)
    env_pools = _table(overlay, "pools", env_where)
    for name in env_pools:
        if name not in pools:
            raise ConfigFileError(f"{env_where}: pools.{name}: no [pools.{name}] to overlay")
    packs = overlay.get("packs", [])
    if not isinstance(packs, list) or not all(isinstance(p, str) for p in packs):
        raise ConfigFileError(f"{env_where}: packs must be a list of pack names")
    result = {}
    for name, table in pools.items():
        where = f"{path}: [pools.{name}]"
        if not isinstance(table, dict):
            raise ConfigFileError(f"{where}: must be a table")
        merged = {**defaults, **table, **env_defaults, **_table(env_pools, name, env_where)}
        settings = _resolve_secrets(merged, where)
        try:
            config = PoolConfig.from_kwargs(**settings)
        except (TypeError, ValueError) as exc:
            raise ConfigFileError(f"{where}: {exc}") from None
        result[name] = PoolSettings(config, frozenset(settings))
    return FileConfig(result, tuple(packs), tuple(sorted(environments)))
