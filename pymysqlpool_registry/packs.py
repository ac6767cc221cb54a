"""Policy packs: named bundles of hook implementations and config defaults, chosen per environment."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

import attrs

from .config import PoolConfig
from .errors import PluginError

#: Entry-point group of third-party plugins, loaded into every registry.
PLUGIN_GROUP = "pymysqlpool_registry"
#: Entry-point group of policy packs, loaded only when selected by name.
PACK_GROUP = "pymysqlpool_registry.packs"


def _as_dict(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return dict(mapping)


def _check_defaults(instance: PolicyPack, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        PoolConfig.from_kwargs(**value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"policy pack {instance.name!r}: bad config default: {exc}") from None


@attrs.frozen(kw_only=True)
class PolicyPack:
    """A named policy: hook implementations plus defaults for the pools' configs.

    A pack's defaults fill the config fields a registration left unset; its ``plugin`` (any
    object with ``@hookimpl`` methods) joins the registry's plugins as ``pack:<name>``.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    description: str = ""
    defaults: dict[str, Any] = attrs.field(
        factory=dict, converter=_as_dict, validator=_check_defaults
    )
    plugin: object | None = None


def installed(group: str) -> dict[str, Any]:
    """The entry points of *group* by name."""
    return {ep.name: ep for ep in entry_points(group=group)}


def load_pack(name: str) -> PolicyPack:
    """The installed policy pack called *name*; a clear error if it is missing or broken."""
    found = installed(PACK_GROUP)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise PluginError(f"no policy pack named {name!r} is installed; installed packs: {known}")
    entry = found[name]
    try:
        pack = entry.load()
    except Exception as exc:
        raise PluginError(f"policy pack {name!r} ({entry.value}) failed to load: {exc}") from exc
    if not isinstance(pack, PolicyPack):
        raise PluginError(f"policy pack {name!r} ({entry.value}) is not a PolicyPack")
    return pack


def explicit_fields(config: PoolConfig) -> frozenset[str]:
    """The fields of *config* that differ from PoolConfig's defaults."""
    default = PoolConfig()
    return frozenset(
        field.name
        for field in attrs.fields(PoolConfig)
        if getattr(config, field.name) != getattr(default, field.name)
    )


def apply_defaults(
    config: PoolConfig, explicit: frozenset[str], packs: list[PolicyPack]
) -> PoolConfig:
    """*config* with the packs' defaults (later packs win) for every field not in *explicit*."""
    merged: dict[str, Any] = {}
    for pack in packs:
        merged.update(pack.defaults)
    if not merged:
        return config
    overlay = PoolConfig.from_kwargs(**merged)
    changes = {key: getattr(overlay, key) for key in explicit_fields(overlay) - explicit}
    if overlay.connect_args:  # merged key by key: the registration's win
        changes["connect_args"] = {**overlay.connect_args, **config.connect_args}
    return attrs.evolve(config, **changes) if changes else config
