"""The plugin system: each hook through real pools on the throwaway server, and PolicyManager."""

from __future__ import annotations

import inspect
import logging
import re
import socket
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pymysql
import pytest

from pymysqlpool_registry import (
    Connection,
    ConnectionPool,
    ConnectVerdict,
    GetConnectionFromPoolError,
    PluginError,
    PolicyManager,
    Reason,
    Registry,
    Verdict,
    hookimpl,
    hookspecs,
)
from pymysqlpool_registry._manager import DEFAULT_PLUGINS
from pymysqlpool_registry.default_plugins import connect, endpoints, health, log, reusability
from pymysqlpool_registry.errnos import error_number

LOG_PLUGIN = "pymysqlpool_registry.default_plugins.log"
MakePool = Callable[..., ConnectionPool]


@pytest.fixture
def make_pool(connect_kwargs: dict[str, Any]) -> Iterator[MakePool]:
    """Build a pool on the session server in a fresh Registry with the given plugins."""
    registries: list[Registry] = []

    def make(*plugins: object, **overrides: Any) -> ConnectionPool:
        registry = Registry(plugins=plugins)
        registries.append(registry)
        registry.register("p", **{**connect_kwargs, **overrides})
        return registry.get("p")

    yield make
    for registry in registries:
        registry.close_all()


class Events:
    """Records every event hook call with its keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == hook]

    @hookimpl
    def pymysqlpool_on_checkout(
        self, pool: ConnectionPool, connection: Connection, wait: float
    ) -> None:
        self.calls.append(("checkout", {"pool": pool, "connection": connection, "wait": wait}))

    @hookimpl
    def pymysqlpool_on_checkin(
        self, pool: ConnectionPool, connection: Connection, usage: float
    ) -> None:
        self.calls.append(("checkin", {"pool": pool, "connection": connection, "usage": usage}))

    @hookimpl
    def pymysqlpool_on_connect(
        self, pool: ConnectionPool, connection: Connection, reason: str, duration: float
    ) -> None:
        self.calls.append(
            (
                "connect",
                {"pool": pool, "connection": connection, "reason": reason, "duration": duration},
            )
        )

    @hookimpl
    def pymysqlpool_on_discard(
        self, pool: ConnectionPool, connection: Connection, reason: str
    ) -> None:
        self.calls.append(("discard", {"pool": pool, "connection": connection, "reason": reason}))

    @hookimpl
    def pymysqlpool_on_timeout(self, pool: ConnectionPool, waited: float) -> None:
        self.calls.append(("timeout", {"pool": pool, "waited": waited}))


def run_bad_sql(pool: ConnectionPool) -> tuple[Connection, BaseException]:
    """Raise a server error (ProgrammingError 1064) inside ``with pool.connection()``."""
    with pytest.raises(pymysql.err.ProgrammingError) as info, pool.connection() as conn:
        conn.cursor().execute("SELEC 1")
    return conn, info.value


# --- create_connection ---


class Tagged(Connection):
    """A Connection subclass a plugin can make."""


class TaggingFactory:
    def __init__(self) -> None:
        self.calls: list[tuple[ConnectionPool, str, float]] = []

    @hookimpl
    def pymysqlpool_create_connection(
        self, pool: ConnectionPool, reason: str, timeout: float
    ) -> Connection:
        self.calls.append((pool, reason, timeout))
        return Tagged(**pool.config.connect_kwargs())


def test_hook_pymysqlpool_create_connection_plugin_makes_the_connections(
    make_pool: MakePool,
) -> None:
    factory = TaggingFactory()
    pool = make_pool(factory, min_size=1, max_size=2, connect_timeout=4)
    with pool.connection() as first, pool.connection() as second:
        assert isinstance(first, Tagged)
        assert isinstance(second, Tagged)
        with second.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    assert [(p, reason) for p, reason, _ in factory.calls] == [(pool, "fill"), (pool, "grow")]
    assert factory.calls[0][2] == 4.0
    assert 0 < factory.calls[1][2] <= 4.0
    assert pool.stats()["created"] == 2


class CountingWrapper:
    def __init__(self) -> None:
        self.made: list[Connection] = []

    @hookimpl(wrapper=True)
    def pymysqlpool_create_connection(self) -> Generator[None, Connection, Connection]:
        conn = yield
        self.made.append(conn)
        return conn


def test_hook_pymysqlpool_create_connection_wrapper_sees_the_default(make_pool: MakePool) -> None:
    wrapper = CountingWrapper()
    pool = make_pool(wrapper, min_size=2)
    with pool.connection() as a, pool.connection() as b:
        assert {id(a), id(b)} == {id(conn) for conn in wrapper.made}
    assert type(wrapper.made[0]) is Connection
    assert pool.stats()["created"] == 2


class Abstaining:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    @hookimpl
    def pymysqlpool_create_connection(self, reason: str) -> None:
        self.reasons.append(reason)


def test_hook_pymysqlpool_create_connection_none_falls_through(make_pool: MakePool) -> None:
    plugin = Abstaining()
    pool = make_pool(plugin, min_size=1)
    with pool.connection() as conn:
        assert type(conn) is Connection
        assert conn.socket_open
    assert plugin.reasons == ["fill"]


class WrongType:
    @hookimpl
    def pymysqlpool_create_connection(self) -> object:
        return object()


def test_hook_pymysqlpool_create_connection_non_connection_fails_fill(
    make_pool: MakePool,
) -> None:
    with pytest.raises(
        PluginError, match=r"returned object, not a pymysqlpool_registry\.Connection"
    ):
        make_pool(WrongType(), min_size=1)


def test_hook_pymysqlpool_create_connection_non_connection_fails_checkout(
    make_pool: MakePool,
) -> None:
    pool = make_pool(WrongType(), min_size=0)
    # A plugin bug is not a connection failure: it should surface as such, not be retried
    # until the deadline and then reported as a timeout.
    with pytest.raises(PluginError, match="returned object"):
        pool.get_connection(timeout=1)


# --- classify_error ---


class Classifier:
    def __init__(self, verdict: Verdict | None) -> None:
        self.verdict = verdict
        self.calls: list[tuple[ConnectionPool, Connection, BaseException]] = []

    @hookimpl
    def pymysqlpool_classify_error(
        self, pool: ConnectionPool, connection: Connection, error: BaseException
    ) -> Verdict | None:
        self.calls.append((pool, connection, error))
        return self.verdict


def test_default_classify_error_resets_after_a_server_error(make_pool: MakePool) -> None:
    pool = make_pool(min_size=1, max_size=1)
    conn, _ = run_bad_sql(pool)
    assert conn.socket_open
    with pool.connection() as again:
        assert again is conn
    assert pool.stats()["created"] == 1
    assert pool.stats()["resets"] == 1


def test_hook_pymysqlpool_classify_error_plugin_overrides_default(make_pool: MakePool) -> None:
    classifier, events = Classifier(Verdict.DISCARD), Events()
    pool = make_pool(classifier, events, min_size=1, max_size=1)
    conn, error = run_bad_sql(pool)
    assert classifier.calls == [(pool, conn, error)]
    assert not conn.socket_open
    assert [e["reason"] for e in events.of("discard")] == ["error"]
    assert pool.stats()["created"] == 1
    with pool.connection() as again:
        assert again is not conn
    assert pool.stats()["created"] == 2


def test_hook_pymysqlpool_classify_error_invalidate_pool(make_pool: MakePool) -> None:
    classifier, events = Classifier(Verdict.INVALIDATE_POOL), Events()
    pool = make_pool(classifier, events, min_size=3, max_size=3)
    other = pool.get_connection()
    failed, _ = run_bad_sql(pool)
    assert pool.size() == 0
    assert not failed.socket_open
    idle = [e["connection"] for e in events.of("discard") if e["reason"] == "invalidated"]
    assert len(idle) == 1
    assert not idle[0].socket_open
    assert other.socket_open  # a lent connection is closed when it comes back
    other.close()
    assert not other.socket_open
    assert pool.stats()["idle"] == 0
    with pool.connection() as fresh:
        assert fresh not in (failed, other, idle[0])
    assert pool.stats()["created"] >= 4  # the maintenance thread also refills to min_size


def test_hook_pymysqlpool_classify_error_none_falls_through_to_default(
    make_pool: MakePool,
) -> None:
    classifier = Classifier(None)
    pool = make_pool(classifier, min_size=1, max_size=1)
    conn, error = run_bad_sql(pool)
    assert classifier.calls == [(pool, conn, error)]
    assert conn.socket_open  # the default said RESET
    with pool.connection() as again:
        assert again is conn
    assert pool.stats()["created"] == 1
    assert pool.stats()["resets"] == 1


# --- pre_ping ---


class RejectFirst:
    def __init__(self) -> None:
        self.calls: list[tuple[ConnectionPool, Connection, float]] = []
        self.rejected: Connection | None = None

    @hookimpl
    def pymysqlpool_pre_ping(
        self, pool: ConnectionPool, connection: Connection, idle: float
    ) -> bool | None:
        self.calls.append((pool, connection, idle))
        if self.rejected is None:
            self.rejected = connection
            return False
        return None


def test_hook_pymysqlpool_pre_ping_false_discards_and_lends_another(make_pool: MakePool) -> None:
    plugin, events = RejectFirst(), Events()
    pool = make_pool(plugin, events, min_size=2, max_size=2)
    with pool.connection() as conn:
        assert plugin.rejected is not None
        assert conn is not plugin.rejected
        assert conn.socket_open
        assert not plugin.rejected.socket_open
    assert [call[1] for call in plugin.calls] == [plugin.rejected, conn]
    assert all(call[0] is pool and call[2] >= 0 for call in plugin.calls)
    assert [(e["connection"], e["reason"]) for e in events.of("discard")] == [
        (plugin.rejected, "dead")
    ]
    assert pool.stats()["created"] == 2


# --- events ---


def test_hook_pymysqlpool_on_connect_reasons(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=1, max_size=2)
    with pool.connection() as first, pool.connection() as second:
        pass
    connects = events.of("connect")
    assert [(e["reason"], e["pool"]) for e in connects] == [("fill", pool), ("grow", pool)]
    assert {id(e["connection"]) for e in connects} == {id(first), id(second)}
    assert all(e["duration"] >= 0 for e in connects)


def test_hook_pymysqlpool_on_checkout_and_on_checkin(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=1)
    conn = pool.get_connection()
    assert [(e["pool"], e["connection"]) for e in events.of("checkout")] == [(pool, conn)]
    assert events.of("checkout")[0]["wait"] >= 0
    assert events.of("checkin") == []
    conn.close()
    assert [(e["pool"], e["connection"]) for e in events.of("checkin")] == [(pool, conn)]
    assert events.of("checkin")[0]["usage"] >= 0


def test_hook_pymysqlpool_on_checkin_after_an_error(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=1)
    conn, _ = run_bad_sql(pool)
    [checkin] = events.of("checkin")
    assert checkin["connection"] is conn
    assert checkin["usage"] >= 0


def test_hook_pymysqlpool_on_discard_reasons(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=2, max_size=2)
    pool.invalidate()
    assert [e["reason"] for e in events.of("discard")] == ["invalidated", "invalidated"]
    conn = pool.get_connection()
    pool.close()
    conn.close()
    discards = events.of("discard")
    assert [e["reason"] for e in discards] == ["invalidated", "invalidated", "pool-closed"]
    assert discards[-1]["connection"] is conn
    assert all(e["pool"] is pool and not e["connection"].socket_open for e in discards)


def test_hook_pymysqlpool_on_timeout_waited(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=1, max_size=1)
    with pool.connection():
        with pytest.raises(GetConnectionFromPoolError):
            pool.get_connection(timeout=0.05)
        with pytest.raises(GetConnectionFromPoolError):
            pool.get_connection(timeout=0)
    timeouts = events.of("timeout")
    assert len(timeouts) == 2
    assert all(e["pool"] is pool and e["waited"] >= 0 for e in timeouts)
    assert pool.stats()["timeouts"] == 2


def test_plugin_events_run_alongside_default_logging(
    make_pool: MakePool, caplog: pytest.LogCaptureFixture
) -> None:
    events = Events()
    pool = make_pool(events, min_size=1)
    with caplog.at_level(logging.DEBUG, logger="pymysqlpool_registry"), pool.connection():
        pass
    assert len(events.of("checkout")) == 1
    assert "Get connection from pool(p)" in caplog.messages
    assert "Put connection back to pool(p)" in caplog.messages


# --- PolicyManager ---

DEFAULT_HOOKS = {
    connect: ["pymysqlpool_classify_connect_error", "pymysqlpool_create_connection"],
    endpoints: ["pymysqlpool_check_endpoint", "pymysqlpool_select_endpoint"],
    reusability: ["pymysqlpool_classify_error"],
    health: ["pymysqlpool_pre_ping"],
    log: [
        "pymysqlpool_on_checkin",
        "pymysqlpool_on_checkout",
        "pymysqlpool_on_connect",
        "pymysqlpool_on_discard",
        "pymysqlpool_on_leak",
        "pymysqlpool_on_reconnect_failed",
        "pymysqlpool_on_timeout",
    ],
}


def defaults_only() -> PolicyManager:
    """A PolicyManager with just the default plugins (installed entry-point plugins removed)."""
    manager = PolicyManager()
    for name in manager.names():
        if name not in DEFAULT_PLUGINS:
            manager.unregister(name)
    assert manager.names() == list(DEFAULT_PLUGINS)
    return manager


def test_manager_lists_the_default_plugins() -> None:
    manager = PolicyManager()
    assert [name for name in manager.names() if name in DEFAULT_PLUGINS] == list(DEFAULT_PLUGINS)
    described = {entry["name"]: entry for entry in manager.describe()}
    for module, hooks in DEFAULT_HOOKS.items():
        assert described[module.__name__]["default"] is True
        assert described[module.__name__]["hooks"] == hooks
    name = manager.register(Events())
    assert name in manager.names()
    assert {e["name"]: e for e in manager.describe()}[name]["default"] is False


def test_manager_fast_path_until_a_plugin_joins() -> None:
    manager = defaults_only()
    for module, hooks in DEFAULT_HOOKS.items():
        for hook in hooks:
            assert getattr(manager, hook.removeprefix("pymysqlpool_")) is getattr(module, hook)
    name = manager.register(RejectFirst())
    assert isinstance(manager.pre_ping, pluggy.HookCaller)
    assert manager.pre_ping is manager.pm.hook.pymysqlpool_pre_ping
    assert manager.classify_error is reusability.pymysqlpool_classify_error
    manager.unregister(name)
    assert manager.pre_ping is health.pymysqlpool_pre_ping


def test_manager_unregister_default_log() -> None:
    manager = defaults_only()
    manager.unregister(LOG_PLUGIN)
    assert LOG_PLUGIN not in manager.names()
    for hook in ("on_checkout", "on_checkin", "on_connect", "on_discard", "on_timeout"):
        assert getattr(manager, hook) is None
    assert manager.pre_ping is health.pymysqlpool_pre_ping
    with pytest.raises(PluginError, match=re.escape(LOG_PLUGIN)):
        manager.unregister(LOG_PLUGIN)


def test_pool_works_without_the_log_plugin(connect_kwargs: dict[str, Any]) -> None:
    registry = Registry()
    registry.manager.unregister(LOG_PLUGIN)
    registry.register("quiet", **connect_kwargs, min_size=1)
    try:
        with registry.get("quiet").connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        registry.close_all()


class UnknownArgument:
    @hookimpl
    def pymysqlpool_pre_ping(self, connection: Connection, freshness: float) -> bool:
        return True


class UnknownHook:
    @hookimpl
    def pymysqlpool_pre_pong(self, pool: ConnectionPool) -> None:
        pass


@pytest.mark.parametrize(
    "plugin", [UnknownArgument(), UnknownHook()], ids=lambda plugin: type(plugin).__name__
)
def test_manager_rejects_an_invalid_plugin(plugin: object) -> None:
    manager = defaults_only()
    before = manager.names()
    with pytest.raises(PluginError, match=rf"'{type(plugin).__name__}'"):
        manager.register(plugin)
    assert manager.names() == before
    assert manager.pre_ping is health.pymysqlpool_pre_ping
    manager.register(RejectFirst())  # the failed registration left nothing pending
    assert isinstance(manager.pre_ping, pluggy.HookCaller)


def test_registry_with_an_invalid_plugin_fails() -> None:
    with pytest.raises(PluginError, match="'UnknownHook'"):
        Registry(plugins=[UnknownHook()]).manager  # noqa: B018


# --- every hook is specified, documented and tested ---


def test_every_hookspec_is_documented_and_tested() -> None:
    specs = {
        name: func
        for name, func in vars(hookspecs).items()
        if name.startswith("pymysqlpool_") and inspect.isfunction(func)
    }
    assert len(specs) >= 8
    sources = "\n".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    untested = [
        name
        for name in specs
        if not re.search(rf"^def test_hook_{name}\w*\(", sources, re.MULTILINE)
    ]
    undocumented = [name for name, func in specs.items() if not inspect.getdoc(func)]
    unmarked = [
        name for name, func in specs.items() if not hasattr(func, f"{hookspecs.PROJECT_NAME}_spec")
    ]
    assert untested == []
    assert undocumented == []
    assert unmarked == []
    manager = PolicyManager()
    assert all(hasattr(manager, name.removeprefix("pymysqlpool_")) for name in specs)


class ConnectJudge:
    """Answers classify_connect_error with a fixed verdict and records the errors."""

    def __init__(self, verdict: ConnectVerdict | None) -> None:
        self.verdict = verdict
        self.errors: list[BaseException] = []

    @hookimpl(tryfirst=True)
    def pymysqlpool_classify_connect_error(
        self, pool: ConnectionPool, error: BaseException
    ) -> ConnectVerdict | None:
        self.errors.append(error)
        return self.verdict


def test_hook_pymysqlpool_classify_connect_error_fail_ends_the_request_at_once(
    make_pool: MakePool,
) -> None:
    judge = ConnectJudge(ConnectVerdict.FAIL)
    # a refused connect is retried by default; this plugin says no retry can fix it
    pool = make_pool(judge, port=unused_port(), timeout=30)
    with pytest.raises(GetConnectionFromPoolError) as raised:
        pool.get_connection()
    assert "within" not in str(raised.value)  # an answer, not a wait
    assert type(raised.value).__name__ == "ConnectFailedError"
    assert raised.value.__cause__ is judge.errors[0]
    assert error_number(judge.errors[0]) == 2003
    assert pool.stats()["connect_errors"] == 1


def test_hook_pymysqlpool_classify_connect_error_retry_overrides_the_default(
    make_pool: MakePool,
) -> None:
    judge = ConnectJudge(ConnectVerdict.RETRY)
    pool = make_pool(judge, password="wrong", timeout=0.3)  # 1045: the default fails at once
    with pytest.raises(GetConnectionFromPoolError) as raised:
        pool.get_connection()
    assert "within 0.3*1 second(s)" in str(raised.value)
    assert error_number(raised.value.__cause__) == 1045
    assert 2 <= len(judge.errors) <= 12  # retried, spaced out by the backoff


@pytest.mark.parametrize(
    ("overrides", "errno"),
    [
        ({"password": "wrong"}, 1045),
        ({"database": "no_such_db"}, 1049),
        ({"init_command": "SELEC 1"}, 1064),
        ({"init_command": "SET GLOBAL max_connections = 100", "user": "nobody_priv"}, 1227),
        ({"ssl": {"ca": "/nonexistent"}, "ssl_disabled": False}, None),  # before any packet
        ({"ssl": {"check_hostname": False}, "ssl_disabled": False}, 2026),  # server has no TLS
    ],
)
def test_default_classify_connect_error_fails_fast_on_what_no_retry_fixes(
    make_pool: MakePool, server: Any, overrides: dict[str, Any], errno: int | None
) -> None:
    if overrides.get("user") == "nobody_priv":
        server.query("CREATE USER IF NOT EXISTS nobody_priv@'%' IDENTIFIED BY ''")
        server.query("GRANT SELECT ON test.* TO nobody_priv@'%'")
    before = server.status("Connections")
    pool = make_pool(**overrides)  # default timeout: 30 s
    started = time.monotonic()
    with pytest.raises(GetConnectionFromPoolError) as raised:
        pool.get_connection()
    assert time.monotonic() - started < 5
    assert "within" not in str(raised.value)
    if errno is not None:
        assert error_number(raised.value.__cause__) == errno
    assert server.status("Connections") - before <= 2  # one attempt (and the status query)


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_discard_reasons_are_reason_members_and_strings(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=1, max_size=1)
    pool.invalidate()
    (event,) = events.of("discard")
    assert event["reason"] is Reason.INVALIDATED
    assert event["reason"] == "invalidated" and str(event["reason"]) == "invalidated"
    documented = inspect.getsource(hookspecs.Reason)
    assert all(f"{member.name} = " in documented for member in Reason)
