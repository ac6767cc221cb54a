"""Tests of the ThrowawayServer test helper itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from pymysqlpool_registry.throwaway import ServerNotFound, ThrowawayServer


@pytest.fixture
def own_server() -> Iterator[ThrowawayServer]:
    """A private server for destructive tests (the session one stays untouched)."""
    try:
        srv = ThrowawayServer()
    except ServerNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    with srv:
        yield srv


def test_start_and_query(server: ThrowawayServer) -> None:
    assert server.pid is not None
    assert server.host == "127.0.0.1"
    rows = server.query("SELECT @@port, @@bind_address, @@skip_name_resolve")
    assert rows == ((server.port, "127.0.0.1", 1),)
    assert server.status("Threads_connected") >= 1
    with pytest.raises(KeyError):
        server.status("No_such_status_variable")


def test_connect_kwargs_connects(connect_kwargs: dict[str, Any]) -> None:
    assert connect_kwargs["database"] == "test"
    assert connect_kwargs["ssl_disabled"] is True
    with pymysql.connect(**connect_kwargs) as conn, conn.cursor() as cur:
        cur.execute("SELECT DATABASE(), CURRENT_USER()")
        assert cur.fetchone() == ("test", "root@127.0.0.1")


def test_admin_is_autocommit(server: ThrowawayServer) -> None:
    conn = server.admin()
    try:
        assert conn.get_autocommit()
    finally:
        conn.close()


def test_restart_keeps_data_and_port(own_server: ThrowawayServer) -> None:
    own_server.query("CREATE TABLE test.t (x INT) ENGINE=InnoDB")
    own_server.query("INSERT INTO test.t VALUES (42)")
    port, old_pid = own_server.port, own_server.pid
    conn = pymysql.connect(**own_server.connect_kwargs())
    own_server.restart()
    assert own_server.port == port
    assert own_server.pid not in (None, old_pid)
    assert own_server.query("SELECT x FROM test.t") == ((42,),)
    with pytest.raises(pymysql.err.OperationalError) as info:
        conn.cursor().execute("SELECT 1")
    assert info.value.args[0] in (2006, 2013)
    assert not conn.open


def test_kill_then_start_recovers(own_server: ThrowawayServer) -> None:
    own_server.query("CREATE TABLE test.k (x INT) ENGINE=InnoDB")
    own_server.query("INSERT INTO test.k VALUES (7)")
    port = own_server.port
    own_server.kill()
    assert own_server.pid is None
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(**own_server.connect_kwargs(connect_timeout=2))
    assert info.value.args[0] == 2003
    own_server.kill()  # idempotent
    own_server.start()
    assert own_server.port == port
    assert own_server.query("SELECT x FROM test.k") == ((7,),)


def test_pause_times_out_and_resume_recovers(own_server: ThrowawayServer) -> None:
    conn = pymysql.connect(**own_server.connect_kwargs(read_timeout=1))
    own_server.pause()
    try:
        with pytest.raises(pymysql.err.OperationalError) as info:
            conn.cursor().execute("SELECT 1")
        assert info.value.args[0] == 2013
        assert not conn.open
    finally:
        own_server.resume()
    assert own_server.query("SELECT 1") == ((1,),)


def test_stop_is_idempotent_and_close_removes_dir() -> None:
    srv = ThrowawayServer()
    srv.start()
    datadir = srv.datadir
    srv.stop()
    srv.stop()
    assert srv.pid is None
    srv.close()
    srv.close()
    assert not os.path.exists(datadir)
