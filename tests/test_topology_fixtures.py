"""Tests of the multi-server fixtures themselves: ThrowawayGalera and ThrowawayReplication.

Real servers on free 127.0.0.1 ports; each topology starts once per module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from pymysqlpool_registry.testing import scalar
from pymysqlpool_registry.throwaway import (
    ServerNotFound,
    ServerStartError,
    ThrowawayGalera,
    ThrowawayReplication,
    ThrowawayServer,
)

IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def galera() -> Iterator[ThrowawayGalera]:
    """A 3-node cluster shared by the module; tests that break a node repair it."""
    try:
        cluster = ThrowawayGalera()
    except ServerNotFound as exc:  # CI installs mariadb-server, which brings galera-4
        pytest.fail(str(exc), pytrace=False)
    with cluster:
        yield cluster


@pytest.fixture(scope="module")
def replication() -> Iterator[ThrowawayReplication]:
    with ThrowawayReplication() as topology:
        yield topology


def process_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("Uid:"))
    return int(line.split()[1])


def assert_own_loopback_ports(endpoints: list[str]) -> None:
    ports = [int(e.removeprefix("127.0.0.1:")) for e in endpoints]
    assert all(e.startswith("127.0.0.1:") for e in endpoints)
    assert len(set(ports)) == len(ports)
    assert 3306 not in ports


# -- run_as ------------------------------------------------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="run_as only applies when the tests run as root")
def test_run_as_an_unknown_user_is_a_clear_error() -> None:
    with pytest.raises(ServerStartError, match="'no-such-user-x' does not exist"):
        ThrowawayServer(run_as="no-such-user-x")


@pytest.mark.skipif(not IS_ROOT, reason="run_as only applies when the tests run as root")
def test_run_as_mysql_serves_root_over_tcp_and_close_kills_it() -> None:
    srv = ThrowawayServer(run_as="mysql")
    try:
        srv.start()
        pid = srv.pid
        assert pid is not None
        mysql_uid = os.stat(srv.datadir).st_uid
        assert mysql_uid != 0
        assert process_uid(pid) == mysql_uid
        assert srv.query("SELECT CURRENT_USER()") == (("root@127.0.0.1",),)
    finally:
        srv.close()
    assert not os.path.exists(f"/proc/{pid}")  # reaped: gone although PDEATHSIG was cleared


CRASHING_PARENT = """
import sys, time
from pymysqlpool_registry.throwaway import ThrowawayServer
srv = ThrowawayServer(run_as="mysql")
srv.start()
print(srv.pid, srv.datadir, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.mark.skipif(not IS_ROOT, reason="run_as only applies when the tests run as root")
def test_run_as_server_dies_with_a_crashed_parent() -> None:
    """mariadbd loses PR_SET_PDEATHSIG when it drops root: its watchdog kills it instead."""
    pid, datadir = 0, ""
    with subprocess.Popen(
        [sys.executable, "-c", CRASHING_PARENT], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            pid_text, datadir = parent.stdout.readline().split()  # bounded by start's timeout
            pid = int(pid_text)
            assert alive(pid)
            parent.kill()
            parent.wait(10)
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(pid)
        finally:
            parent.kill()
            if pid and alive(pid) and datadir in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)  # only the server our child started
            if datadir:
                shutil.rmtree(os.path.dirname(datadir), ignore_errors=True)


# -- Galera ------------------------------------------------------------------------------


@pytest.mark.slow
def test_galera_row_written_on_node_1_is_read_on_node_3(galera: ThrowawayGalera) -> None:
    assert_own_loopback_ports(galera.endpoints())
    assert len(galera.nodes) == 3
    for node in galera.nodes:
        assert node.wsrep_ready()
        assert node.status("wsrep_cluster_size") == 3
        if IS_ROOT:
            assert node.pid is not None and process_uid(node.pid) != 0
    first, third = galera.nodes[0], galera.nodes[2]
    with pymysql.connect(**galera.connect_kwargs(first, autocommit=True)) as conn:
        scalar(conn, "CREATE TABLE replicated (id INT PRIMARY KEY, v VARCHAR(10))")
        scalar(conn, "INSERT INTO replicated VALUES (1, 'from-1')")
    # Galera applies on the other nodes asynchronously: a causal read waits for it.
    causal = galera.connect_kwargs(third, init_command="SET SESSION wsrep_sync_wait=1")
    with pymysql.connect(**causal) as conn:
        assert scalar(conn, "SELECT v FROM replicated WHERE id = 1") == "from-1"


def test_galera_connect_kwargs_leave_the_host_to_the_endpoints(galera: ThrowawayGalera) -> None:
    kwargs = galera.connect_kwargs(read_timeout=3)
    assert kwargs == {"user": "root", "password": "", "database": "test", "read_timeout": 3}
    for endpoint in galera.endpoints():
        host, port = endpoint.split(":")
        with pymysql.connect(host=host, port=int(port), **kwargs) as conn:
            assert scalar(conn, "SELECT DATABASE()") == "test"


@pytest.mark.slow
def test_galera_killing_a_node_leaves_two_ready(galera: ThrowawayGalera) -> None:
    first, second, third = galera.nodes
    held = pymysql.connect(**galera.connect_kwargs(third))
    third.kill()
    try:
        with pytest.raises(pymysql.err.OperationalError) as info:
            held.cursor().execute("SELECT 1")
        assert info.value.args[0] in (2006, 2013)
        galera.wait_ready([first, second], timeout=30)
        assert not third.wsrep_ready()
        with pymysql.connect(**galera.connect_kwargs(first, autocommit=True)) as conn:
            scalar(conn, "CREATE TABLE IF NOT EXISTS survivors (id INT PRIMARY KEY)")
            scalar(conn, "INSERT INTO survivors VALUES (2)")
        causal = galera.connect_kwargs(second, init_command="SET SESSION wsrep_sync_wait=1")
        with pymysql.connect(**causal) as conn:
            assert scalar(conn, "SELECT COUNT(*) FROM survivors") == 1
    finally:
        third.start(60)  # rejoins the cluster (a full SST: SIGKILL left no saved position)
        galera.wait_ready(timeout=60)


@pytest.mark.slow
def test_galera_wait_ready_waits_for_a_resumed_node_to_rejoin(
    galera: ThrowawayGalera,
) -> None:
    """A node evicted while paused keeps reporting its old view (ready, 3 nodes) for seconds
    after SIGCONT, then rejoins: after wait_ready it has what was written meanwhile."""
    first, second, third = galera.nodes
    first.query("CREATE TABLE IF NOT EXISTS test.while_paused (id INT PRIMARY KEY)")
    third.pause()
    try:
        galera.wait_ready([first, second], timeout=30)
        first.query("INSERT INTO test.while_paused VALUES (1)")
    finally:
        third.resume()
    galera.wait_ready(timeout=60)
    causal = galera.connect_kwargs(
        third, init_command="SET SESSION wsrep_sync_wait=1", read_timeout=10
    )
    with pymysql.connect(**causal) as conn:
        assert scalar(conn, "SELECT COUNT(*) FROM while_paused") == 1


# -- primary/replica ---------------------------------------------------------------------


def test_replica_sees_primary_rows_and_refuses_app_writes(
    replication: ThrowawayReplication,
) -> None:
    assert_own_loopback_ports(replication.endpoints())
    primary, replica = replication.primary, replication.replica
    assert replication.endpoints() == [
        f"{primary.host}:{primary.port}",
        f"{replica.host}:{replica.port}",
    ]
    assert replication.app_connect_kwargs() == {
        "user": "app",
        "password": "app-secret",
        "database": "test",
    }
    with pymysql.connect(**replication.app_connect_kwargs(primary, autocommit=True)) as conn:
        assert scalar(conn, "SELECT CURRENT_USER()") == "app@%"
        scalar(conn, "CREATE TABLE shipped (id INT PRIMARY KEY)")
        scalar(conn, "INSERT INTO shipped VALUES (1)")
    replication.wait_replicated(timeout=10)
    with pymysql.connect(**replication.app_connect_kwargs(replica, autocommit=True)) as conn:
        assert scalar(conn, "SELECT COUNT(*) FROM shipped") == 1
        with pytest.raises(pymysql.err.OperationalError) as info:
            scalar(conn, "INSERT INTO shipped VALUES (2)")
        assert info.value.args[0] == 1290
        assert conn.open


def test_wait_replicated_times_out_while_the_replica_stands_still(
    replication: ThrowawayReplication,
) -> None:
    replication.replica.query("STOP SLAVE SQL_THREAD")
    try:
        replication.primary.query("CREATE TABLE test.pending (id INT PRIMARY KEY)")
        with pytest.raises(TimeoutError, match="Slave_SQL_Running': 'No'"):
            replication.wait_replicated(timeout=0.3)
    finally:
        replication.replica.query("START SLAVE SQL_THREAD")
    replication.wait_replicated(timeout=10)
    assert replication.replica.query("SHOW TABLES FROM test LIKE 'pending'") == (("pending",),)


def test_promotion_makes_the_replica_writable() -> None:
    with ThrowawayReplication() as topology:  # its own: the primary dies here
        topology.primary.kill()
        topology.promote_replica()
        kwargs = topology.app_connect_kwargs(topology.replica, autocommit=True)
        with pymysql.connect(**kwargs) as conn:
            scalar(conn, "CREATE TABLE promoted (id INT PRIMARY KEY)")
            scalar(conn, "INSERT INTO promoted VALUES (1)")
            assert scalar(conn, "SELECT @@read_only") == 0
