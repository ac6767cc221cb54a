"""PolicyManager: one pluggy PluginManager and a cheap callable per hook."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .packs import PLUGIN_GROUP, PolicyPack, installed

logger = logging.getLogger("pymysqlpool_registry")

DEFAULT_PLUGINS = (
    "pymysqlpool_registry.default_plugins.connect",
    "pymysqlpool_registry.default_plugins.reusability",
    "pymysqlpool_registry.default_plugins.health",
    "pymysqlpool_registry.default_plugins.log",
    "pymysqlpool_registry.default_plugins.endpoints",
)
#: Hook names without their ``pymysqlpool_`` prefix, as PolicyManager attributes.
HOOKS = tuple(
    name.removeprefix("pymysqlpool_") for name in dir(hookspecs) if name.startswith("pymysqlpool_")
)

Hook = Callable[..., Any]


def _observer(caller: Hook, hook: str) -> Hook:
    """*caller* for an event hook: a plugin that raises is logged, and the pool carries on."""

    def notify(**kwargs: Any) -> None:
        try:
            caller(**kwargs)
        except Exception:
            logger.exception("a plugin's pymysqlpool_%s failed; the pool carries on", hook)

    return notify


def env_flag(name: str) -> bool:
    """True if environment variable *name* is set to anything but empty, 0, false or no."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class PolicyManager:
    """Owns a pluggy PluginManager and exposes each hook as an attribute (``manager.pre_ping``).

    When the default plugin alone implements a hook, the attribute is its function itself, so
    the pool's hot path pays a plain call instead of a pluggy dispatch; when nothing implements
    it, the attribute is ``None`` and the pool skips the call.
    """

    create_connection: Hook | None
    select_endpoint: Hook | None
    check_endpoint: Hook | None
    classify_error: Hook | None
    classify_connect_error: Hook | None
    pre_ping: Hook | None
    on_checkout: Hook | None
    on_checkin: Hook | None
    on_connect: Hook | None
    on_discard: Hook | None
    on_timeout: Hook | None
    on_leak: Hook | None
    on_reconnect_failed: Hook | None

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        load_entrypoints: bool = True,
        disabled: Iterable[str] = (),
    ) -> None:
        """Register the default plugins, then installed ones (entry points), then *plugins*.

        *disabled* names plugins (defaults too) never to register; so does the environment
        variable ``PYMYSQLPOOL_DISABLE_PLUGINS`` (comma-separated).
        ``PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD=1`` skips the entry points;
        ``PYMYSQLPOOL_TRACE_HOOKS=1`` logs every hook call at DEBUG.
        """
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._tracing = env_flag("PYMYSQLPOOL_TRACE_HOOKS")
        self.packs: list[PolicyPack] = []
        self._kinds: dict[str, str] = {}
        env_disabled = os.environ.get("PYMYSQLPOOL_DISABLE_PLUGINS", "").split(",")
        for name in {*disabled, *env_disabled} - {""}:
            self.pm.set_blocked(name.strip())
        for path in DEFAULT_PLUGINS:
            if not self.pm.is_blocked(path):
                self.pm.register(importlib.import_module(path), name=path)
                self._kinds[path] = "default"
        if load_entrypoints and not env_flag("PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD"):
            self._load_entrypoints()
        for plugin in plugins:
            self.register(plugin)
        if self._tracing:
            self.pm.trace.root.setwriter(lambda message: logger.debug("hook %s", message.rstrip()))
            self.pm.enable_tracing()
        self._refresh()

    def _load_entrypoints(self) -> None:
        for name, entry in sorted(installed(PLUGIN_GROUP).items()):
            if self.pm.is_blocked(name):
                continue
            try:
                plugin = entry.load()
            except Exception as exc:
                raise PluginError(f"plugin {name!r} ({entry.value}) failed to load: {exc}") from exc
            dist = entry.dist
            self.register(plugin, name=name)
            self._kinds[name] = (
                f"entry point of {dist.name} {dist.version}" if dist else "entry point"
            )

    def add_pack(self, pack: PolicyPack) -> None:
        """Register *pack*'s hooks as ``pack:<name>`` and keep its config defaults."""
        if any(known.name == pack.name for known in self.packs):
            return
        if pack.plugin is not None:
            self.register(pack.plugin, name=f"pack:{pack.name}")
            self._kinds[f"pack:{pack.name}"] = "pack"
        self.packs.append(pack)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register *plugin* (a module, class or instance with ``@hookimpl`` methods)."""
        label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        try:
            registered = self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            raise PluginError(f"plugin {label!r} cannot be registered: {exc}") from exc
        except Exception as exc:
            raise PluginError(f"plugin {label!r} cannot be registered: {exc}") from exc
        if registered is None:
            raise PluginError(f"plugin {label!r} is blocked")
        self._refresh()
        return registered

    def unregister(self, name: str) -> None:
        """Remove the plugin registered as *name* (a default plugin too)."""
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            raise PluginError(f"no plugin named {name!r}; registered: {sorted(self.names())}")
        self.pm.unregister(plugin)
        self._refresh()

    def names(self) -> list[str]:
        """Names of the registered plugins, defaults included."""
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def describe(self) -> list[dict[str, Any]]:
        """Each plugin's name, kind (default, entry point, pack, plugin) and hooks."""
        return [
            {
                "name": name,
                "kind": self._kinds.get(name, "plugin"),
                "default": name in DEFAULT_PLUGINS,
                "hooks": sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()),
            }
            for name, plugin in self.pm.list_name_plugin()
            if plugin is not None  # a blocked name
        ]

    def _refresh(self) -> None:
        for hook in HOOKS:
            caller = getattr(self.pm.hook, f"pymysqlpool_{hook}")
            impls = caller.get_hookimpls()
            fast: Hook | None = caller
            if not impls:
                fast = None
            elif (
                not self._tracing
                and len(impls) == 1
                and impls[0].plugin_name in DEFAULT_PLUGINS
                and caller.spec is not None
                and impls[0].argnames == caller.spec.argnames
            ):
                fast = impls[0].function
            elif hook.startswith("on_"):
                fast = _observer(caller, hook)
            setattr(self, hook, fast)
