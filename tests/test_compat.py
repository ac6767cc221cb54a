"""Code written for pymysql-pool 0.3 to 0.5, run unchanged against a real server."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

import pymysqlpool_registry as pymysqlpool
from pymysqlpool_registry.testing import start_thread


@pytest.fixture
def table(connect_kwargs: dict[str, Any]) -> Iterator[str]:
    """A fresh InnoDB table ``name (id INT PRIMARY KEY)``, dropped afterwards."""
    name = f"compat_{uuid.uuid4().hex[:8]}"
    with pymysql.connect(**connect_kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY) ENGINE=InnoDB")
    yield name
    with pymysql.connect(**connect_kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {name}")


def rows(connect_kwargs: dict[str, Any], table: str) -> list[int]:
    """The ids committed in *table*, read on a connection of its own."""
    with pymysql.connect(**connect_kwargs) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {table} ORDER BY id")
        return [row[0] for row in cur.fetchall()]


def logged_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _status(conn: Any, name: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
        return int(cur.fetchone()[1])


# --- execute_query follows the loan it runs in ---


def test_execute_query_in_a_with_block_keeps_the_connection(
    connect_kwargs: dict[str, Any], table: str
) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, name="compat", **connect_kwargs)
    with pool.get_connection() as conn:
        conn.execute_query(f"INSERT INTO {table} VALUES (%s)", (1,))
        assert pool.size() == 0  # still lent: the block ends the loan
        assert conn.execute_query(f"SELECT id FROM {table}") == ((1,),)
        conn.execute_query(f"INSERT INTO {table} VALUES (%s)", [(2,), (3,)], exec_many=True)
        assert conn.execute_query(f"SELECT COUNT(*) FROM {table}", return_one=True) == (3,)
    assert pool.size() == 1
    assert rows(connect_kwargs, table) == [1, 2, 3]  # each call committed
    with pool.connection() as conn:
        assert conn.execute_query("SELECT 1 AS one", dictcursor=True) == [{"one": 1}]
        assert conn.execute_query("SELECT 2") == ((2,),)
    assert pool.size() == 1
    pool.close()


def test_execute_query_outside_a_block_is_a_whole_loan(
    connect_kwargs: dict[str, Any], table: str
) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, name="compat", **connect_kwargs)
    conn = pool.get_connection()
    conn.execute_query(f"INSERT INTO {table} VALUES (1)")
    assert pool.size() == 1  # given back, as in pymysql-pool 0.3
    assert rows(connect_kwargs, table) == [1]
    # already given back: taken out for the one call, then given back again
    assert conn.execute_query(f"SELECT id FROM {table}") == ((1,),)
    assert pool.size() == 1
    # given back and now held by another borrower: refused, that loan untouched
    other = pool.get_connection()
    assert other is conn
    with pytest.raises(pymysqlpool.ConnectionReturnedError):
        start_thread(conn.execute_query, "SELECT 1").finish()
    assert other.execute_query("SELECT 3") == ((3,),)
    assert pool.stats()["in_use"] == 0
    pool.close()


def test_a_failing_query_in_a_block_raises_the_users_own_error(
    connect_kwargs: dict[str, Any], table: str
) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, name="compat", **connect_kwargs)
    with pytest.raises(pymysql.err.ProgrammingError) as raised, pool.get_connection() as conn:
        conn.execute_query(f"INSERT INTO {table} VALUES (1)")
        conn.execute_query("SELEC 1")  # a syntax error
    assert type(raised.value) is pymysql.err.ProgrammingError
    assert raised.value.args[0] == 1064
    assert raised.value.__context__ is None
    assert pool.size() == 1  # the connection came back and is reusable
    assert rows(connect_kwargs, table) == [1]
    assert pool.get_connection().execute_query("SELECT 1") == ((1,),)
    pool.close()


def test_the_users_exception_wins_when_giving_back_fails_too(
    connect_kwargs: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, name="compat", **connect_kwargs)
    caplog.set_level(logging.WARNING, logger="pymysqlpool_registry")
    with pytest.raises(KeyError) as raised, pool.get_connection() as conn:
        conn.close()  # the loan ends here: the block's exit cannot give it back again
        raise KeyError("mine")
    assert raised.value.args == ("mine",)
    warnings = logged_warnings(caplog)
    assert any("pool(compat)" in w and "after KeyError" in w for w in warnings), warnings
    if hasattr(raised.value, "__notes__"):
        assert "giving the connection back to pool(compat) failed" in raised.value.__notes__[0]
    assert pool.size() == 1  # nothing lost, nothing lent twice
    pool.close()


def test_nested_blocks_give_back_at_the_outermost(connect_kwargs: dict[str, Any]) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, name="compat", **connect_kwargs)
    with pool.get_connection() as conn:
        with conn:
            conn.execute_query("SELECT 1")
        assert pool.size() == 0
        assert conn.execute_query("SELECT 2") == ((2,),)
    assert pool.size() == 1
    pool.close()


# --- the 0.4/0.5 API ---


def test_v05_keywords_map_to_the_config(connect_kwargs: dict[str, Any], table: str) -> None:
    pool = pymysqlpool.ConnectionPool(
        size=5, maxsize=100, pre_create_num=5, name="pool", con_lifetime=1800, **connect_kwargs
    )
    assert pool.name == "pool"
    config = pool.config
    assert (config.min_size, config.max_size, config.max_lifetime) == (5, 100, 1800.0)
    assert config.autocommit is True  # 0.5's default
    assert pool.available_num == 5
    assert pool.total_num == 5
    conn = pool.get_connection()
    assert (pool.available_num, pool.total_num) == (4, 5)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (7)")
    conn.close()  # no commit(): 0.5 code relies on autocommit
    assert rows(connect_kwargs, table) == [7]
    pool.close()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"maxsize": 3}, {"min_size": 0, "max_size": 3, "autocommit": True}),
        ({"pre_create_num": 0}, {"min_size": 0, "max_size": 100, "autocommit": True}),
        ({"pre_create_num": 9, "maxsize": 4}, {"min_size": 4, "max_size": 4}),  # as 0.5 clamps
        ({"con_lifetime": 0}, {"max_lifetime": None}),
        ({"con_lifetime": -1}, {"max_lifetime": None}),
        ({"maxsize": 3, "autocommit": False}, {"autocommit": False}),
        ({"size": 2}, {"min_size": 2, "max_size": 2, "autocommit": False}),  # 0.3
    ],
)
def test_v05_keyword_mapping(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    config = pymysqlpool.PoolConfig.from_kwargs(**kwargs)
    assert {key: getattr(config, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"maxsize": 3, "max_size": 4}, TypeError, "'max_size' or pymysql-pool 0.5's 'maxsize'"),
        ({"pre_create_num": 1, "min_size": 1}, TypeError, "'pre_create_num'"),
        ({"con_lifetime": 1, "max_lifetime": 1}, TypeError, "'con_lifetime'"),
        ({"maxsize": "10"}, ValueError, "'maxsize' must be an int"),
        ({"maxsize": 0}, ValueError, "'maxsize' must be an int >= 1"),
        ({"pre_create_num": -1}, ValueError, "'pre_create_num'"),
        ({"maxsize": 2, "size": True}, ValueError, "'size'"),
        ({"con_lifetime": "1h"}, ValueError, "'con_lifetime'"),
    ],
)
def test_bad_v05_keywords_are_named(kwargs: dict[str, Any], error: type, names: str) -> None:
    with pytest.raises(error, match=names):
        pymysqlpool.ConnectionPool(**kwargs)


def test_registry_and_updated_take_v05_keywords() -> None:
    registry = pymysqlpool.Registry()
    registry.register("old", maxsize=4, pre_create_num=0, host="127.0.0.1")
    assert registry.config("old").max_size == 4
    config = pymysqlpool.PoolConfig().updated(maxsize=6)
    assert (config.max_size, config.min_size) == (6, 0)


def test_get_connection_v05_arguments(connect_kwargs: dict[str, Any]) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, maxsize=1, name="p05", **connect_kwargs)
    held = pool.get_connection(retry_num=3, retry_interval=0.1, pre_ping=True)
    with pytest.raises(pymysqlpool.GetConnectionFromPoolError) as raised:
        pool.get_connection(retry_num=3, retry_interval=0.05)
    # retry_interval stands in for timeout: 4 tries of 0.05 s, not 4 of 30 s
    assert str(raised.value) == "can't get connection from pool(p05) within 0.05*4 second(s)"
    with pytest.raises(pymysqlpool.GetConnectionFromPoolError, match=r"within 0\*1 second"):
        pool.get_connection(0, 0)  # positional: 0.3's order, timeout first
    held.close()
    pool.close()


def test_pre_ping_pings_whatever_the_idle_time(connect_kwargs: dict[str, Any]) -> None:
    # ping_interval=None: the pool itself would never ping; pre_ping=True asks for one
    pool = pymysqlpool.ConnectionPool(size=1, ping_interval=None, **connect_kwargs)
    with pymysql.connect(**connect_kwargs) as monitor:
        before = _status(monitor, "Com_admin_commands")  # COM_PING counts here
        pool.get_connection().close()
        plain = _status(monitor, "Com_admin_commands") - before
        pool.get_connection(pre_ping=True).close()
        pinged = _status(monitor, "Com_admin_commands") - before - plain
    assert (plain, pinged) == (0, 1)
    pool.close()


def test_pre_ping_replaces_a_connection_the_server_killed(connect_kwargs: dict[str, Any]) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, **connect_kwargs)
    with pool.get_connection() as conn:
        killed = conn.thread_id()
    with pymysql.connect(**connect_kwargs) as admin, admin.cursor() as cur:
        cur.execute(f"KILL {killed}")
    with pool.get_connection(pre_ping=True) as conn:
        assert conn.thread_id() != killed
        assert conn.execute_query("SELECT 1") == ((1,),)
    pool.close()


def test_double_return_raises_the_v05_exception_name(connect_kwargs: dict[str, Any]) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, **connect_kwargs)
    conn = pool.get_connection()
    conn.close()
    with pytest.raises(pymysqlpool.ReturnConnectionToPoolError):
        conn.close()
    assert pymysqlpool.ReturnConnectionToPoolError is pymysqlpool.ConnectionReturnedError
    pool.close()


def test_v05_code_in_many_threads(connect_kwargs: dict[str, Any], table: str) -> None:
    pool = pymysqlpool.ConnectionPool(
        size=2, maxsize=3, pre_create_num=2, name="t", **connect_kwargs
    )

    def work(base: int) -> int:
        for i in range(20):
            conn = pool.get_connection(pre_ping=True)
            conn.execute_query(f"INSERT INTO {table} VALUES (%s)", (base + i,))  # whole loan
            with pool.get_connection() as conn:
                conn.execute_query(f"SELECT COUNT(*) FROM {table}")
                conn.execute_query("SELECT 1")
        return pool.total_num

    workers = [start_thread(work, 100 * n) for n in range(8)]
    assert all(worker.finish() <= 3 for worker in workers)
    assert len(rows(connect_kwargs, table)) == 160
    stats = pool.stats()
    assert stats["in_use"] == 0 and stats["total"] <= 3
    pool.close()


# --- no silent change of meaning ---


def test_uncommitted_writes_are_rolled_back_with_a_warning(
    connect_kwargs: dict[str, Any], table: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, name="wr", **connect_kwargs)  # autocommit off
    caplog.set_level(logging.WARNING, logger="pymysqlpool_registry")
    for i in range(50):  # a hot loop: one warning, not fifty
        conn = pool.get_connection()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
        conn.close()
    warnings = logged_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "pool(wr)" in warnings[0] and "uncommitted work was rolled back" in warnings[0]
    assert rows(connect_kwargs, table) == []
    pool.close()


def test_read_only_loans_and_failed_blocks_roll_back_silently(
    connect_kwargs: dict[str, Any], table: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, name="ro", **connect_kwargs)  # autocommit off
    caplog.set_level(logging.WARNING, logger="pymysqlpool_registry")
    conn = pool.get_connection()
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table}")  # opens a snapshot, writes nothing
    conn.close()
    with pytest.raises(ValueError), pool.get_connection() as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        raise ValueError("the exception is the news")
    assert logged_warnings(caplog) == []
    assert rows(connect_kwargs, table) == []
    pool.close()


# --- pymysql-identical handles ---


def test_open_is_false_for_a_handle_given_back(connect_kwargs: dict[str, Any]) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, **connect_kwargs)
    conn = pool.get_connection()
    assert conn.open is True
    conn.close()
    assert conn.open is False
    with conn:
        assert conn.open is True  # taken out again for the block
    assert conn.open is False
    other = pool.get_connection()
    assert start_thread(lambda: other.open).finish() is False  # not the borrower's handle
    assert other.open is True
    other.close()
    pool.close()
    assert conn.open is False


def test_the_warning_counts_the_returns_it_stood_for(
    connect_kwargs: dict[str, Any],
    table: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pymysqlpool_registry.pool._RollbackWarnings.INTERVAL", 0.3)
    pool = pymysqlpool.ConnectionPool(size=1, name="wc", **connect_kwargs)
    caplog.set_level(logging.WARNING, logger="pymysqlpool_registry")

    def write_and_return(value: int) -> None:
        with pool.get_connection() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} VALUES (%s)", (value,))

    for i in range(5):
        write_and_return(i)
    time.sleep(0.35)
    write_and_return(99)
    warnings = logged_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert warnings[1].endswith("; 4 more since the last such warning")
    pool.close()


def test_a_refused_connect_keeps_its_error_number() -> None:
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    pool = pymysqlpool.ConnectionPool(host="127.0.0.1", port=port, user="nobody", timeout=0.3)
    with pytest.raises(pymysql.err.OperationalError) as raised:
        pool.get_connection()
    assert isinstance(raised.value, pymysqlpool.GetConnectionFromPoolError)
    assert raised.value.args[0] == 2003
    pool.close()
