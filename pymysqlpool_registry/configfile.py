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
import re
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from ._checks import error_message
from .config import PoolConfig, fields_set

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_SECRET_SUFFIX = "_env"
#: The largest config file read, in bytes.
MAX_FILE_SIZE = 1 << 20
#: Settings whose values are secret: an error never shows them, nor the variable they come from.
_SECRETS = frozenset({"password", "passwd", "ssl"})
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


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


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError("expected true or false")
    return word in _TRUE


def _env_type(option: str) -> Callable[[str], Any]:
    """How the text of an environment variable becomes *option*'s value."""
    if option in ("size", "maxsize", "pre_create_num"):
        return int
    if option == "con_lifetime":
        return float
    field = attrs.fields_dict(PoolConfig).get(option)
    kind = str(field.type) if field is not None else "str"
    if "bool" in kind:
        return _parse_bool
    if kind.startswith("int"):
        return int
    if kind.startswith("float"):
        return float
    return str


def _resolve_secrets(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """*settings* with each ``<option>_env`` replaced by the option, read from the environment
    and converted to the option's type. Errors never show a secret's variable or value."""
    resolved = {}
    for key, value in settings.items():
        if not key.endswith(_SECRET_SUFFIX):
            resolved[key] = value
            continue
        option = key.removesuffix(_SECRET_SUFFIX)
        if not isinstance(value, str) or not _VARIABLE_NAME.match(value):
            raise ConfigFileError(f"{where}: {key} must be the name of an environment variable")
        secret = option in _SECRETS
        variable = (
            "the environment variable it names" if secret else f"environment variable {value!r}"
        )
        text = os.environ.get(value)
        if text is None:
            raise ConfigFileError(f"{where}: {key}: {variable} is not set")
        if not text:
            raise ConfigFileError(f"{where}: {key}: {variable} is empty")
        try:
            resolved[option] = _env_type(option)(text)
        except ValueError as exc:
            shown = "" if secret else f" ({error_message(exc)})"
            raise ConfigFileError(
                f"{where}: {key}: {variable} is not a valid {option}{shown}"
            ) from None
    return resolved


def _check_names(table: Mapping[str, Any], where: str) -> None:
    """Raise if a key is not an option name (``<option>_env`` counts as the option)."""
    try:
        fields_set({key.removesuffix(_SECRET_SUFFIX): None for key in table})
    except TypeError as exc:
        raise ConfigFileError(f"{where}: {error_message(exc)}") from None


def _overlay(
    path: Path, environments: dict[str, Any], env: str, pools: dict[str, Any]
) -> dict[str, Any]:
    """The checked ``[env.ENV]`` table."""
    where = f"{path}: [env.{env}]"
    overlay = _table(environments, env, f"{path}: [env]")
    _only(overlay, {"defaults", "pools", "packs"}, where)
    _check_names(_table(overlay, "defaults", where), f"{where} defaults")
    for name, table in _table(overlay, "pools", where).items():
        if name not in pools:
            raise ConfigFileError(f"{where}: pools.{name}: no [pools.{name}] to overlay")
        _check_names(_table({name: table}, name, where), f"{where} pools.{name}")
    packs = overlay.get("packs", [])
    if not isinstance(packs, list) or not all(isinstance(p, str) for p in packs):
        raise ConfigFileError(f"{where}: packs must be a list of pack names")
    return overlay


def _load(path: Path) -> dict[str, Any]:
    """The TOML of *path*: a regular file (not a FIFO or a device) of at most MAX_FILE_SIZE
    bytes, in UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigFileError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as file:
        raw = file.read(MAX_FILE_SIZE + 1)
    if len(raw) > MAX_FILE_SIZE:
        raise ConfigFileError(f"{path}: larger than {MAX_FILE_SIZE // 1024} KiB")
    try:
        return dict(tomllib.loads(raw.decode("utf-8")))
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None


def read(path: str | os.PathLike[str], env: str | None) -> FileConfig:
    """Read *path* for environment *env* (None: no overlay); every error names file and key.

    Every environment's tables are checked for unknown names, not only the one chosen.
    """
    path = Path(path)
    data = _load(path)
    _only(data, {"defaults", "pools", "env"}, str(path))
    defaults = _table(data, "defaults", str(path))
    _check_names(defaults, f"{path}: [defaults]")
    pools = _table(data, "pools", str(path))
    for name in pools:
        _check_names(_table(pools, name, f"{path}: [pools]"), f"{path}: [pools.{name}]")
    environments = _table(data, "env", str(path))
    overlays = {name: _overlay(path, environments, name, pools) for name in environments}
    if env is not None and env not in environments:
        known = ", ".join(sorted(environments)) or "none"
        raise ConfigFileError(f"{path}: no environment {env!r} (environments: {known})")
    overlay = overlays.get(env, {}) if env is not None else {}
    env_defaults = overlay.get("defaults", {})
    env_pools = overlay.get("pools", {})
    result = {}
    for name, table in pools.items():
        where = f"{path}: [pools.{name}]"
        settings: dict[str, Any] = {}
        for layer in (defaults, table, env_defaults, env_pools.get(name, {})):
            settings.update(_resolve_secrets(layer, where))  # a later layer's <x>_env beats x
        try:
            config = PoolConfig.from_kwargs(**settings)
        except (TypeError, ValueError) as exc:
            raise ConfigFileError(f"{where}: {error_message(exc)}") from None
        result[name] = PoolSettings(config, fields_set(settings))
    return FileConfig(result, tuple(overlay.get("packs", ())), tuple(sorted(environments)))
