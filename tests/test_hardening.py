"""Overload, failing connects, bad settings and stale loans, against a real server."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from pymysqlpool_registry import (
    ConnectFailedError,
    ConnectionPool,
    ConnectionReturnedError,
    GetConnectionFromPoolError,
    NoEndpointError,
    PoolConfig,
    PoolTimeout,
    Registry,
    hookimpl,
)
from pymysqlpool_registry.errnos import error_number
from pymysqlpool_registry.testing import connection_id, scalar, start_thread, wait_until
from pymysqlpool_registry.throwaway import ThrowawayServer

SECRET = "s3cr3t-PW"


@pytest.fixture
def limited(server: ThrowawayServer) -> Iterator[dict[str, Any]]:
    """connect_kwargs of a user the server lets open one connection at a time (1226)."""
    server.query(f"CREATE USER limited@'%' IDENTIFIED BY '{SECRET}' WITH MAX_USER_CONNECTIONS 1")
    server.query("GRANT ALL ON test.* TO limited@'%'")
    yield server.connect_kwargs(user="limited", password=SECRET)
    server.query("DROP USER limited@'%'")


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


# --- overload and failing connects ---


def test_a_full_server_hands_a_returned_connection_to_the_borrower_retrying(
    server: ThrowawayServer, limited: dict[str, Any]
) -> None:
    pool = ConnectionPool(max_size=2, **limited)
    holder = pool.get_connection()  # the user's only connection
    held_id = connection_id(holder)
    before = server.status("Aborted_connects")

    def borrow() -> tuple[int, float]:
        with pool.get_connection() as conn:
            return conn.thread_id(), time.monotonic()

    borrower = start_thread(borrow)
    time.sleep(1.0)
    returned_at = time.monotonic()
    holder.close()
    session, got_at = borrower.finish()
    refused = server.status("Aborted_connects") - before
    pool.close()
    assert got_at - returned_at < 0.5  # at once, not at its deadline (30 s)
    assert refused <= 15, f"{refused} connects in 1 s: the backoff does not hold"
    assert refused >= 1  # it did try, and was refused
    assert session == held_id  # the very connection that came back


def test_waiters_learn_the_connect_error_the_pool_saw(limited: dict[str, Any]) -> None:
    pool = ConnectionPool(max_size=3, timeout=0.5, **limited)
    holder = pool.get_connection()
    waiters = [start_thread(pool.get_connection) for _ in range(2)]
    for waiter in waiters:
        with pytest.raises(GetConnectionFromPoolError) as raised:
            waiter.finish()
        assert "within 0.5*1 second(s)" in str(raised.value)
        assert isinstance(raised.value, PoolTimeout)
        assert error_number(raised.value.__cause__) == 1226
        assert "max_user_connections" in str(raised.value)
        assert raised.value.args[0] == 1226
        assert SECRET not in str(raised.value)
    holder.close()
    assert pool.stats()["total"] == 1
    pool.close()


def test_a_connect_storm_is_bounded_pool_wide(
    server: ThrowawayServer, limited: dict[str, Any]
) -> None:
    pool = ConnectionPool(max_size=8, timeout=1.0, **limited)
    holder = pool.get_connection()
    before = server.status("Aborted_connects")
    borrowers = [start_thread(pool.get_connection) for _ in range(8)]
    for borrower in borrowers:
        with pytest.raises(GetConnectionFromPoolError):
            borrower.finish()
    refused = server.status("Aborted_connects") - before
    # 8 borrowers for 1 s: one attempt at a time, spaced out (10 ms doubling): not 8 x 70
    assert 1 <= refused <= 15, refused
    holder.close()
    pool.close()


def test_an_unknown_charset_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="'charset' 'utf9' is not a character set"):
        PoolConfig(charset="utf9")


# --- invalid settings and arguments ---


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"timeout": math.inf}, "'timeout' must be a finite number"),
        ({"timeout": math.nan}, "'timeout' must be a finite number"),
        ({"retry_num": 10**12}, "timeout * (retry_num + 1) must be at most"),
        (
            {"keepalive_interval": 1e-300},
            "'keepalive_interval' must be a finite number of seconds >= 0.1",
        ),
        ({"max_idle": 1e-9}, "'max_idle'"),
        ({"leak_threshold": 1e-9}, "'leak_threshold'"),
        ({"max_lifetime": 0.01}, "'max_lifetime'"),
        ({"endpoint_check_interval": 0.001}, "'endpoint_check_interval'"),
        ({"port": True}, "'port' must be an int, not bool"),
        ({"size": True}, "'min_size' must be an int, not bool"),
        ({"max_size": 2.0}, "'max_size' must be an int, not float"),
        ({"connect_timeout": "1"}, "'connect_timeout' must be a number of seconds, not str"),
        ({"host": "app:PW@db1"}, "'host' must be a host name or IP address, without user"),
        ({"host": "db 1"}, "'host' is not a host name or IP address"),
    ],
)
def test_invalid_settings_are_refused_naming_them(kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises((TypeError, ValueError)) as raised:
        ConnectionPool(**kwargs)
    assert names in str(raised.value)
    assert "PW" not in str(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"timeout": -1}, "'timeout' must be a finite number of seconds >= 0, not -1"),
        ({"retry_num": -1}, "'retry_num' must be >= 0, not -1"),
        ({"timeout": "1"}, "'timeout' must be a number of seconds, not str"),
        ({"timeout": math.inf}, "'timeout' must be a finite number"),
        ({"timeout": 1.0, "retry_num": 10**9}, "timeout * (retry_num + 1) must be at most"),
        ({"retry_num": True}, "'retry_num' must be an int, not bool"),
        ({"retry_interval": -0.1}, "'retry_interval' must be a finite number"),
    ],
)
def test_invalid_get_connection_arguments_are_refused(
    connect_kwargs: dict[str, Any], kwargs: dict[str, Any], names: str
) -> None:
    pool = ConnectionPool(max_size=1, **connect_kwargs)
    with pytest.raises((TypeError, ValueError)) as raised:
        pool.get_connection(**kwargs)
    assert names in str(raised.value)
    assert pool.stats()["requests"] == 0
    pool.close()


@pytest.mark.parametrize(
    ("endpoints", "names"),
    [
        ("app:PW@db1:3306", "without user or password"),
        (["db1:3306", "app:PW@db2"], "without user or password"),
        ("a:b:c", "is not a host name or IP address: 'a:b:c'"),
        ("db 1:3306", "is not a host name or IP address: 'db 1'"),
        ("[::1", "expected '[IPv6]' or '[IPv6]:port'"),
        ("db1:33x6", "the port must be a number"),
        ("db1:99999", "must be between 1 and 65535"),
        ("", "'endpoints' is empty"),
        (",,,", "'endpoints' is empty"),
        ("db1:3306,", "is not a host name or IP address: ''"),
        (5, "'endpoints' must be a list"),
    ],
)
def test_bad_endpoint_strings_are_refused_without_echoing_secrets(
    endpoints: Any, names: str
) -> None:
    with pytest.raises((TypeError, ValueError)) as raised:
        PoolConfig(endpoints=endpoints)
    assert names in str(raised.value)
    assert "PW" not in str(raised.value)


def test_good_endpoint_strings_still_parse() -> None:
    config = PoolConfig(endpoints="db1:3306, db-2.example.com, [::1]:3307, 10.0.0.5, fe80::1")
    assert [str(e) for e in config.endpoints] == [
        "db1:3306",
        "db-2.example.com:3306",
        "::1:3307",
        "10.0.0.5:3306",
        "fe80::1:3306",
    ]


# --- loans ---


def test_a_stale_close_cannot_return_another_borrowers_loan(connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(max_size=1, check_owner_thread=False, **connect_kwargs)
    first = pool.get_connection()
    session = connection_id(first)
    first.close()
    second = start_thread(pool.get_connection).finish()  # the same session, another loan
    assert connection_id(second) == session
    with pytest.raises(ConnectionReturnedError):
        first.close()  # stale: the loan it held has ended
    with pytest.raises(ConnectionReturnedError):
        first.cursor().execute("SELECT 1")
    assert first.open is False
    assert pool.stats()["in_use"] == 1  # the second loan is untouched
    with pytest.raises(GetConnectionFromPoolError):
        pool.get_connection(timeout=0)  # and not lent twice
    assert scalar(second, "SELECT 2") == 2
    second.close()  # passed between threads, returned by another: allowed in this mode
    assert pool.stats()["in_use"] == 0
    pool.close()


class Leaks:
    def __init__(self) -> None:
        self.reports: list[tuple[float, bool]] = []

    @hookimpl
    def pymysqlpool_on_leak(
        self, pool: ConnectionPool, connection: Any, held: float, stack: str, abandoned: bool
    ) -> None:
        self.reports.append((held, abandoned))


def test_a_dead_borrower_is_reported_when_connections_may_pass_between_threads(
    connect_kwargs: dict[str, Any],
) -> None:
    leaks = Leaks()
    registry = Registry(plugins=[leaks])
    registry.register("p", max_size=2, check_owner_thread=False, **connect_kwargs)
    pool = registry.get("p")
    kept = start_thread(pool.get_connection).finish()  # its borrower thread has ended
    wait_until(lambda: leaks.reports, "the leak report")
    assert leaks.reports[0][1] is False  # reported, not closed: another thread may hold it
    assert pool.stats()["leaks"] == 1
    time.sleep(1.2)
    assert len(leaks.reports) == 1  # once per loan
    kept.close()
    assert pool.stats()["in_use"] == 0
    registry.close_all()


def test_a_connection_killed_while_lent_is_not_counted_idle(
    server: ThrowawayServer, connect_kwargs: dict[str, Any]
) -> None:
    pool = ConnectionPool(max_size=2, **connect_kwargs)  # autocommit off
    with pytest.raises(ValueError), pool.get_connection() as conn:
        scalar(conn, "SELECT 1")
        server.query(f"KILL {conn.thread_id()}")
        raise ValueError("the user's own error")
    wait_until(lambda: pool.stats()["total"] == 0, "the maintenance thread to find it dead")
    stats = pool.stats()
    assert (stats["idle"], stats["discarded"]) == (0, 1)
    pool.close()


def test_an_error_caught_before_close_still_reaches_classify_error(
    server: ThrowawayServer,
) -> None:
    server.query("CREATE USER IF NOT EXISTS app_rw@'%' IDENTIFIED BY ''")
    server.query("GRANT ALL ON test.* TO app_rw@'%'")
    server.query("CREATE TABLE IF NOT EXISTS test.ro_probe (id INT)")
    pool = ConnectionPool(
        max_size=2, role="writer", **server.connect_kwargs(user="app_rw", autocommit=True)
    )
    conn = pool.get_connection()
    session = connection_id(conn)
    server.query("SET GLOBAL read_only = ON")
    try:
        with pytest.raises(pymysql.err.OperationalError) as raised:
            scalar(conn, "INSERT INTO ro_probe VALUES (1)")
        assert raised.value.args[0] == 1290
        conn.close()  # the old API: the error was caught, the loan ends with close()
        (state,) = pool.endpoint_stats()
        assert state["failures"] == 1 and "1290" in state["last_error"]
        assert pool.stats()["idle"] == 0  # that connection was not kept
        with pytest.raises(GetConnectionFromPoolError, match="read-only"):
            pool.get_connection(timeout=0.5)
    finally:
        server.query("SET GLOBAL read_only = OFF")
    wait_until(lambda: not pool.endpoint_stats()[0]["ejected_for"], "the ejection to end")
    again = pool.get_connection()
    assert connection_id(again) != session
    again.close()
    pool.close()


def test_no_endpoint_error_is_the_documented_cause() -> None:
    pool = ConnectionPool(endpoints=[f"127.0.0.1:{unused_port()}", f"127.0.0.1:{unused_port()}"])
    with pytest.raises(GetConnectionFromPoolError) as raised:
        pool.get_connection()
    assert isinstance(raised.value, ConnectFailedError)  # an answer, not a timeout
    cause = raised.value.__cause__
    assert isinstance(cause, NoEndpointError)
    assert error_number(cause.__cause__) == 2003
    borrowers = [start_thread(pool.get_connection) for _ in range(8)]
    for borrower in borrowers:  # each gets the answer of one attempt, not its 30 s timeout
        with pytest.raises(GetConnectionFromPoolError) as again:
            borrower.finish(limit=5)
        assert isinstance(again.value.__cause__, NoEndpointError)
    assert pool.stats()["connect_errors"] < 2 * 8  # attempts were shared, not one each
    pool.close()


def test_a_hung_endpoint_costs_the_failover_timeout_not_the_connect_timeout(
    silent_port: int, connect_kwargs: dict[str, Any]
) -> None:
    kwargs = {
        k: v for k, v in connect_kwargs.items() if k not in ("host", "port", "connect_timeout")
    }
    config = PoolConfig.from_kwargs(
        endpoints=[f"127.0.0.1:{silent_port}", f"127.0.0.1:{connect_kwargs['port']}"], **kwargs
    )
    assert config.connect_timeout == 10.0  # the default, as users run it
    pool = ConnectionPool(config)

    def borrow() -> int:
        with pool.get_connection() as conn:
            return int(conn.port)

    started = time.monotonic()
    ports = [worker.finish() for worker in [start_thread(borrow) for _ in range(4)]]
    elapsed = time.monotonic() - started
    assert elapsed < config.connect_timeout / 2, elapsed  # about failover_timeout (1 s)
    assert set(ports) == {connect_kwargs["port"]}
    hung = next(e for e in pool.endpoint_stats() if e["endpoint"].endswith(f":{silent_port}"))
    assert hung["failures"] >= 1
    pool.close()
