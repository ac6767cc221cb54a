"""Regression tests for defects found in code review, each against the real server."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pymysqlpool_registry import ConnectionPool, PoolConfig, Registry, hookimpl
from pymysqlpool_registry.testing import WAIT_LIMIT, scalar, start_thread
from pymysqlpool_registry.throwaway import ThrowawayServer


@pytest.fixture
def pools(server: ThrowawayServer) -> Iterator[list[ConnectionPool]]:
    made: list[ConnectionPool] = []
    yield made
    for pool in made:
        pool.close()


def make(pools: list[ConnectionPool], server: ThrowawayServer, **overrides: Any) -> ConnectionPool:
    pool = ConnectionPool(PoolConfig(**{**server.connect_kwargs(), **overrides}))
    pools.append(pool)
    return pool


def test_session_reset_runs_after_a_commit(
    pools: list[ConnectionPool], server: ThrowawayServer
) -> None:
    pool = make(pools, server, reset="session", max_size=1)
    with pool.connection() as conn:
        scalar(conn, "SET @secret = 'alice'")
        conn.commit()  # ends the transaction, not the session state
    with pool.connection() as conn:
        assert scalar(conn, "SELECT @secret") is None


def test_an_interrupted_wait_leaves_no_ghost_in_line(
    pools: list[ConnectionPool], server: ThrowawayServer
) -> None:
    pool = make(pools, server, max_size=1)
    held = pool.get_connection()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            pool.get_connection(timeout=WAIT_LIMIT)  # only the main thread gets signals
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert pool.stats()["waiting"] == 0
    held.close()
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (1, 0)
    with pool.connection(timeout=0) as conn:
        assert conn is held


class FailingObserver:
    """An event plugin that raises on every discard and connect."""

    @hookimpl
    def pymysqlpool_on_discard(self) -> None:
        raise RuntimeError("observer bug")

    @hookimpl
    def pymysqlpool_on_connect(self) -> None:
        raise RuntimeError("observer bug")


def test_a_raising_observer_plugin_breaks_nothing(
    server: ThrowawayServer, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(plugins=[FailingObserver()])
    registry.register("p", **server.connect_kwargs(), max_size=1)
    try:
        pool = registry.get("p")
        with pytest.raises(ZeroDivisionError), pool.connection():  # BaseException-free path
            raise ZeroDivisionError
        conn = pool.get_connection()
        conn._force_close()  # broken socket: the return discards it
        conn.close()
        stats = pool.stats()
        assert (stats["total"], stats["in_use"], stats["discarded"]) == (0, 0, 1)
        with pool.connection(timeout=1) as again:  # the freed slot works; connect not retried
            assert scalar(again, "SELECT 1") == 1
        assert pool.stats()["created"] == 2
        assert "pymysqlpool_on_discard failed" in caplog.text
    finally:
        registry.close_all()


def test_a_later_layers_secret_beats_an_earlier_literal(
    tmp_path: Path, server: ThrowawayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROD_PW", "from-the-environment")
    monkeypatch.setenv("DEV_PW", "dev")
    path = tmp_path / "pools.toml"
    path.write_text(
        f'[defaults]\nhost = "127.0.0.1"\nport = {server.port}\npassword_env = "DEV_PW"\n'
        '[pools.orders]\npassword = "literal"\n'
        '[env.prod.defaults]\npassword_env = "PROD_PW"\n'
    )
    registry = Registry(load_entrypoints=False)
    registry.load(path, env="prod")
    assert registry.config("orders").password == "from-the-environment"


def test_register_a_config_with_size_keyword(server: ThrowawayServer) -> None:
    registry = Registry(load_entrypoints=False)
    config = PoolConfig(**server.connect_kwargs())
    registered = registry.register("sized", config, size=3)
    assert (registered.min_size, registered.max_size) == (3, 3)
    assert registered.host == config.host


def test_close_reports_all_back_only_when_nothing_is_open(
    pools: list[ConnectionPool], server: ThrowawayServer
) -> None:
    pool = make(pools, server, max_size=2)
    lent = pool.get_connection()
    assert pool.close(timeout=0.1) is False
    worker = start_thread(lent.close)  # the borrower thread is this one: close here instead
    with pytest.raises(Exception, match="lent to another thread"):
        worker.finish()
    lent.close()
    assert pool.close(timeout=1) is True
    assert pool.stats()["total"] == 0
    assert threading.active_count() >= 1
