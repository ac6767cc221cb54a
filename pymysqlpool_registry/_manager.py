"""PolicyManager: one pluggy PluginManager and a cheap callable per hook."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError

DEFAULT_PLUGINS = (
    "pymysqlpool_registry.default_plugins.connect",
    "pymysqlpool_registry.default_plugins.reusability",
    "pymysqlpool_registry.default_plugins.health",
    "pymysqlpool_registry.default_plugins.log",
)
#: Hook names without their ``pymysqlpool_`` prefix, as PolicyManager attributes.
HOOKS = tuple(
    name.removeprefix("pymysqlpool_") for name in dir(hookspecs) if name.startswith("pymysqlpool_")
)

Hook = Callable[..., Any]


class PolicyManager:
    """Owns a pluggy PluginManager and exposes each hook as an attribute (``manager.pre_ping``).

    When the default plugin alone implements a hook, the attribute is its function itself, so
    the pool's hot path pays a plain call instead of a pluggy dispatch; when nothing implements
    it, the attribute is ``None`` and the pool skips the call.
    """

    create_connection: Hook | None
    classify_error: Hook | None
    pre_ping: Hook | None
    on_checkout: Hook | None
    on_checkin: Hook | None
    on_connect: Hook | None
    on_discard: Hook | None
    on_timeout: Hook | None

    def __init__(self, plugins: Iterable[object] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        for path in DEFAULT_PLUGINS:
            self.pm.register(importlib.import_module(path), name=path)
        for plugin in plugins:
            self.register(plugin)
        self._refresh()

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
        return [name for name, _ in self.pm.list_name_plugin()]

    def describe(self) -> list[dict[str, Any]]:
        """Each plugin's name, whether it is a default, and the hooks it implements."""
        return [
            {
                "name": name,
                "default": name in DEFAULT_PLUGINS,
                "hooks": sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()),
            }
            for name, plugin in self.pm.list_name_plugin()
        ]

    def _refresh(self) -> None:
        for hook in HOOKS:
            caller = getattr(self.pm.hook, f"pymysqlpool_{hook}")
            impls = caller.get_hookimpls()
            fast: Hook | None = caller
            if not impls:
                fast = None
            elif (
                len(impls) == 1
                and impls[0].plugin_name in DEFAULT_PLUGINS
                and caller.spec is not None
                and impls[0].argnames == caller.spec.argnames
            ):
                fast = impls[0].function
            setattr(self, hook, fast)
