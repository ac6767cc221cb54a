"""Policy packs (defaults plus hooks, chosen by name) and entry-point plugins."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pluggy
import pymysql
import pytest

import pymysqlpool_registry.packs
from pymysqlpool_registry import (
    PluginError,
    PolicyPack,
    PoolConfig,
    Registry,
    Verdict,
    hookimpl,
)
from pymysqlpool_registry.packs import PACK_GROUP, PLUGIN_GROUP, apply_defaults

LOG_PLUGIN = "pymysqlpool_registry.default_plugins.log"
PROMETHEUS_DIST = "pymysqlpool-registry-prometheus"


@pytest.fixture
def registries() -> Iterator[list[Registry]]:
    """Registries a test made, their pools closed at teardown."""
    made: list[Registry] = []
    yield made
    for registry in made:
        registry.close_all()


def pack(name: str = "mine", plugin: object = None, **defaults: Any) -> PolicyPack:
    return PolicyPack(name=name, defaults=defaults, plugin=plugin)


def kinds(registry: Registry) -> dict[str, str]:
    return {entry["name"]: entry["kind"] for entry in registry.manager.describe()}


class Reuse:
    """A pack hook: every error leaves the connection as it is."""

    @hookimpl(tryfirst=True)
    def pymysqlpool_classify_error(self, error: BaseException) -> Verdict:
        return Verdict.REUSE


# --- PolicyPack ---


@pytest.mark.parametrize(
    ("defaults", "word"),
    [
        ({"hots": "db"}, "hots"),
        ({"max_size": 0}, "max_size"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"lifo": "yes"}, "lifo"),
    ],
)
def test_pack_with_a_bad_default_names_the_pack(defaults: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=r"policy pack 'shaky'.*bad config default") as info:
        PolicyPack(name="shaky", defaults=defaults)
    assert word in str(info.value)


def test_pack_needs_a_name() -> None:
    with pytest.raises(ValueError, match="name"):
        PolicyPack(name="")


def test_pack_defaults_are_copied() -> None:
    source = {"max_size": 4}
    made = PolicyPack(name="copy", defaults=source)
    source["max_size"] = 0
    assert made.defaults == {"max_size": 4}


# --- apply_defaults ---


def test_apply_defaults_fills_only_unset_fields() -> None:
    config = PoolConfig(host="db1", max_size=3)
    result = apply_defaults(
        config, frozenset({"host", "max_size"}), [pack(max_size=8, timeout=2.0, host="db9")]
    )
    assert result.host == "db1"
    assert result.max_size == 3
    assert result.timeout == 2.0


def test_apply_defaults_later_packs_win() -> None:
    first = pack("first", max_size=4, timeout=2.0)
    second = pack("second", max_size=6)
    result = apply_defaults(PoolConfig(), frozenset(), [first, second])
    assert result.max_size == 6
    assert result.timeout == 2.0
    assert apply_defaults(PoolConfig(), frozenset(), [second, first]).max_size == 4


def test_apply_defaults_without_packs_is_the_config() -> None:
    config = PoolConfig(max_size=3)
    assert apply_defaults(config, frozenset(), []) is config


def test_register_kwargs_win_over_pack_defaults() -> None:
    registry = Registry(packs=[pack(max_size=8, timeout=2.0, connect_timeout=3.0)])
    # 10.0 is PoolConfig's default, but it was given, so it wins too.
    config = registry.register("a", host="db1", max_size=3, connect_timeout=10.0)
    assert config.max_size == 3
    assert config.connect_timeout == 10.0
    assert config.timeout == 2.0
    assert config.host == "db1"


def test_register_config_fields_differing_from_defaults_win() -> None:
    registry = Registry(packs=[pack(max_size=8, timeout=2.0, host="db9")])
    config = registry.register("a", PoolConfig(host="db1", max_size=3))
    assert config.host == "db1"
    assert config.max_size == 3
    assert config.timeout == 2.0


def test_register_config_with_overrides_keeps_the_overrides() -> None:
    registry = Registry(packs=[pack(max_size=8, timeout=2.0)])
    config = registry.register("a", PoolConfig(host="db1"), timeout=30.0)
    assert config.timeout == 30.0  # PoolConfig's default, but given as an override
    assert config.max_size == 8


def test_register_size_wins_over_pack_sizes() -> None:
    registry = Registry(packs=[pack(max_size=8)])
    config = registry.register("fixed", host="db1", size=2)
    assert (config.min_size, config.max_size) == (2, 2)


def test_register_old_alias_wins_over_pack_default() -> None:
    registry = Registry(packs=[pack(database="other")])
    assert registry.register("a", host="db1", db="mine").database == "mine"


def test_register_pymysql_argument_survives_pack_connect_args() -> None:
    registry = Registry(packs=[pack(sql_mode="ANSI")])
    assert registry.register("plain", host="db1").connect_args == {"sql_mode": "ANSI"}
    config = registry.register("own", host="db1", cursorclass=pymysql.cursors.DictCursor)
    assert config.connect_args["cursorclass"] is pymysql.cursors.DictCursor


# --- packs in a registry ---


def assert_failover_loaded(registry: Registry) -> None:
    described = {entry["name"]: entry for entry in registry.manager.describe()}
    assert described["pack:failover"]["kind"] == "pack"
    assert described["pack:failover"]["hooks"] == ["pymysqlpool_classify_error"]
    assert [p.name for p in registry.manager.packs] == ["failover"]
    config = registry.register("a", host="db1")
    assert config.connect_timeout == 2.0
    assert config.ping_interval == 0.5
    assert config.ping_timeout == 1.0
    assert registry.config("a") == config
    assert registry.register("b", host="db1", connect_timeout=7.0).connect_timeout == 7.0


def test_registry_packs_loads_an_installed_pack_by_entry_point() -> None:
    assert_failover_loaded(Registry(packs=["failover"]))


def test_environment_variable_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMYSQLPOOL_PACKS", " failover , ")
    assert_failover_loaded(Registry())


def test_same_pack_from_argument_and_environment_is_added_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYMYSQLPOOL_PACKS", "failover")
    registry = Registry(packs=["failover"])
    registry.use_pack("failover")
    assert [p.name for p in registry.manager.packs] == ["failover"]
    assert registry.manager.names().count("pack:failover") == 1


def test_registry_without_packs_has_no_pack_defaults() -> None:
    registry = Registry()
    assert registry.manager.packs == []
    assert "pack:failover" not in registry.manager.names()
    assert registry.register("a", host="db1").connect_timeout == 10.0


def test_unknown_pack_lists_the_installed_ones() -> None:
    registry = Registry(packs=["nope"])
    with pytest.raises(
        PluginError, match=r"no policy pack named 'nope'.*installed packs: failover"
    ):
        registry.register("a", host="db1")
    assert "a" not in registry


def test_unknown_pack_from_use_pack() -> None:
    with pytest.raises(PluginError, match=r"'nope'.*failover"):
        Registry().use_pack("nope")


def test_pack_object_passed_directly() -> None:
    mine = pack("mine", plugin=Reuse(), max_size=4)
    registry = Registry(packs=[mine])
    assert kinds(registry)["pack:mine"] == "pack"
    assert registry.manager.packs == [mine]
    assert registry.register("a", host="db1").max_size == 4


def test_pack_without_hooks_adds_only_defaults() -> None:
    registry = Registry(packs=[pack("plain", max_size=4)])
    assert "pack:plain" not in registry.manager.names()
    assert registry.register("a", host="db1").max_size == 4


def test_later_pack_wins_in_a_registry() -> None:
    registry = Registry(packs=[pack("one", max_size=4, timeout=2.0), pack("two", max_size=6)])
    config = registry.register("a", host="db1")
    assert config.max_size == 6
    assert config.timeout == 2.0


def test_use_pack_after_pools_exist_affects_pools_built_later(
    connect_kwargs: dict[str, Any], registries: list[Registry]
) -> None:
    registry = Registry()
    registries.append(registry)
    registry.register("early", **connect_kwargs)
    registry.register("late", **connect_kwargs)
    early = registry.get("early")
    registry.use_pack(pack("bigger", max_size=4, ping_interval=0.25))
    assert registry.get("early") is early
    assert early.config.max_size == 10
    assert early.config.ping_interval == 1.0
    late = registry.get("late")
    assert late.config.max_size == 4
    assert late.config.ping_interval == 0.25
    assert late.config.connect_timeout == connect_kwargs["connect_timeout"]
    with late.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


# --- entry-point plugins ---


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYMYSQLPOOL_DISABLE_PLUGINS", raising=False)


def test_autoload_off_in_tests() -> None:
    assert "prometheus" not in Registry().manager.names()


@pytest.mark.usefixtures("autoload")
def test_entry_point_plugin_is_loaded() -> None:
    kind = kinds(Registry())["prometheus"]
    assert kind.startswith("entry point")
    assert PROMETHEUS_DIST in kind


@pytest.mark.usefixtures("autoload")
def test_load_entrypoints_false_skips_them() -> None:
    assert "prometheus" not in Registry(load_entrypoints=False).manager.names()


def active(registry: Registry, name: str) -> bool:
    """Whether plugin *name* takes part in hook calls (not merely listed)."""
    return registry.manager.pm.get_plugin(name) is not None


@pytest.mark.usefixtures("autoload")
def test_disable_plugins_argument() -> None:
    registry = Registry(disable_plugins=["prometheus", "opentelemetry"])  # the metrics plugins
    assert not active(registry, "prometheus")
    assert not active(registry, "opentelemetry")
    assert active(registry, LOG_PLUGIN)
    assert not isinstance(registry.manager.on_checkout, pluggy.HookCaller)  # the log plugin alone
    assert "prometheus" not in registry.manager.names()
    assert "prometheus" not in kinds(registry)


@pytest.mark.usefixtures("autoload")
def test_disable_plugins_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMYSQLPOOL_DISABLE_PLUGINS", f"{LOG_PLUGIN}, prometheus,opentelemetry")
    registry = Registry()
    assert not active(registry, "prometheus")
    assert not active(registry, "opentelemetry")
    assert not active(registry, LOG_PLUGIN)
    assert registry.manager.on_checkout is None
    names = registry.manager.names()
    assert "prometheus" not in names
    assert LOG_PLUGIN not in names


def test_disable_a_default_plugin_by_module_name(
    connect_kwargs: dict[str, Any], registries: list[Registry], caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(disable_plugins=[LOG_PLUGIN])
    registries.append(registry)
    assert registry.manager.on_checkout is None
    registry.register("quiet", **connect_kwargs)
    caplog.set_level(logging.DEBUG, logger="pymysqlpool_registry")
    with registry.get("quiet").connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert not [r for r in caplog.records if "pool(quiet)" in r.getMessage()]
    assert LOG_PLUGIN not in registry.manager.names()
    assert LOG_PLUGIN not in kinds(registry)


class FakeEntryPoint:
    """Looks like an importlib.metadata.EntryPoint; load() returns or raises what it is given."""

    def __init__(self, name: str, group: str, loaded: object) -> None:
        self.name, self.group, self.loaded = name, group, loaded
        self.value = f"fake_module:{name}"
        self.dist = None

    def load(self) -> object:
        if isinstance(self.loaded, BaseException):
            raise self.loaded
        return self.loaded


def install(monkeypatch: pytest.MonkeyPatch, *eps: Any) -> None:
    """Make these the only installed entry points (of their groups)."""

    def fake_entry_points(*, group: str) -> list[Any]:
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(pymysqlpool_registry.packs, "entry_points", fake_entry_points)


class WrongArgument:
    @hookimpl
    def pymysqlpool_on_checkout(self, pool: Any, conection: Any) -> None:
        """A typo: 'conection' is no argument of the hook."""


@pytest.mark.usefixtures("autoload")
def test_fake_entry_point_plugin_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeEntryPoint("fine", PLUGIN_GROUP, Reuse()))
    assert kinds(Registry())["fine"] == "entry point"


@pytest.mark.usefixtures("autoload")
def test_entry_point_that_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeEntryPoint("broken", PLUGIN_GROUP, ImportError("no module xyz")))
    registry = Registry()
    with pytest.raises(PluginError, match=r"plugin 'broken' \(fake_module:broken\).*no module xyz"):
        registry.manager  # noqa: B018
    with pytest.raises(PluginError, match="'broken'"):
        registry.register("a", host="db1")


@pytest.mark.usefixtures("autoload")
def test_real_entry_point_of_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = EntryPoint(name="gone", value="no_such_module_pmr:plugin", group=PLUGIN_GROUP)
    install(monkeypatch, missing)
    with pytest.raises(PluginError, match=r"plugin 'gone'.*failed to load") as info:
        Registry().manager  # noqa: B018
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.usefixtures("autoload")
def test_entry_point_with_a_wrong_argument_name(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeEntryPoint("typo", PLUGIN_GROUP, WrongArgument()))
    with pytest.raises(PluginError, match=r"'typo'.*cannot be registered") as info:
        Registry().manager  # noqa: B018
    assert "conection" in str(info.value)


@pytest.mark.usefixtures("autoload")
def test_broken_entry_point_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeEntryPoint("broken", PLUGIN_GROUP, ImportError("no module xyz")))
    registry = Registry(disable_plugins=["broken"])
    assert not active(registry, "broken")
    assert "broken" not in registry.manager.names()


def test_pack_entry_point_that_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeEntryPoint("bad", PACK_GROUP, ImportError("no module xyz")))
    with pytest.raises(PluginError, match=r"policy pack 'bad'.*failed to load.*no module xyz"):
        Registry(packs=["bad"]).manager  # noqa: B018


def test_pack_entry_point_that_is_not_a_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeEntryPoint("odd", PACK_GROUP, Reuse()))
    with pytest.raises(PluginError, match=r"policy pack 'odd'.*not a PolicyPack"):
        Registry(packs=["odd"]).manager  # noqa: B018


def test_pack_with_a_wrong_argument_name(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeEntryPoint("typo", PACK_GROUP, pack("typo", plugin=WrongArgument())))
    with pytest.raises(PluginError, match=r"'pack:typo'.*cannot be registered"):
        Registry(packs=["typo"]).manager  # noqa: B018


def test_no_pack_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    with pytest.raises(PluginError, match="installed packs: none"):
        Registry(packs=["failover"]).manager  # noqa: B018


# --- tracing ---


def test_fast_path_without_tracing() -> None:
    assert not isinstance(Registry().manager.pre_ping, pluggy.HookCaller)


def test_trace_hooks_logs_hook_calls(
    monkeypatch: pytest.MonkeyPatch,
    connect_kwargs: dict[str, Any],
    registries: list[Registry],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PYMYSQLPOOL_TRACE_HOOKS", "1")
    registry = Registry()
    registries.append(registry)
    assert isinstance(registry.manager.pre_ping, pluggy.HookCaller)
    assert isinstance(registry.manager.create_connection, pluggy.HookCaller)
    registry.register("traced", **connect_kwargs, min_size=1)
    caplog.set_level(logging.DEBUG, logger="pymysqlpool_registry")
    with registry.get("traced").connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    traced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hook")]
    for hook in ("create_connection", "on_connect", "pre_ping", "on_checkout", "on_checkin"):
        assert any(f"pymysqlpool_{hook}" in line for line in traced), hook
    assert all(
        r.levelno == logging.DEBUG for r in caplog.records if r.getMessage().startswith("hook")
    )
