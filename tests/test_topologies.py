"""Real topologies through one registry name: a 3-node Galera cluster and a primary/replica pair.

Slow (a cluster takes ~15 s to form; the Galera scenario waits out real evictions), so marked
``slow``; CI runs them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import pymysql
import pytest

from pymysqlpool_registry import ConnectionPool, GetConnectionFromPoolError, Registry
from pymysqlpool_registry.errnos import error_number
from pymysqlpool_registry.testing import scalar, wait_until
from pymysqlpool_registry.throwaway import ThrowawayGalera, ThrowawayReplication

if TYPE_CHECKING:
    from typing_extensions import Self

pytestmark = pytest.mark.slow

THREADS = 16
#: A borrower waits at most TIMEOUT for a connection, a statement at most READ_TIMEOUT (a write
#: on Galera blocks ~4 s until a killed node is evicted): a request's deadline is their sum.
TIMEOUT, READ_TIMEOUT = 3.0, 8.0
DEADLINE = TIMEOUT + READ_TIMEOUT + 1.0  # plus a second of scheduling slack on 2 cores


@attrs.define
class Request:
    started: float
    ended: float = 0.0
    port: int | None = None  # the node whose connection it got
    error: BaseException | None = None


class Load:
    """THREADS threads running reads and writes through *pool* until stopped (bounded)."""

    def __init__(self, pool: ConnectionPool, max_requests: int = 200_000) -> None:
        self.pool = pool
        self.requests: list[Request] = []
        self.max_total = 0.0
        self._stop = threading.Event()
        self._budget = max_requests
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(THREADS)
        ]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(DEADLINE + 5)
        assert not any(t.is_alive() for t in self._threads), "a request hung past its deadline"

    def _run(self, n: int) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._budget -= 1
                if self._budget < 0:
                    return
            request = Request(time.monotonic())
            try:
                with self.pool.connection(timeout=TIMEOUT) as conn:
                    self.max_total = max(self.max_total, self.pool.stats()["total"])
                    request.port = conn.port
                    if n % 4 == 0:
                        conn.execute("INSERT INTO t (thread) VALUES (%s)", (n,))
                    else:
                        conn.execute("SELECT COUNT(*) FROM t WHERE thread = %s", (n,))
                        conn.fetchall()
            except (pymysql.err.MySQLError, GetConnectionFromPoolError) as exc:
                request.error = exc
                time.sleep(0.05)  # a failing client backs off a little, as real ones do
            request.ended = time.monotonic()
            with self._lock:
                self.requests.append(request)

    def between(self, start: float, end: float = float("inf")) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if start <= r.started < end]


def slowest(requests: list[Request]) -> float:
    return max((r.ended - r.started for r in requests), default=0.0)


# --- Galera ---


@pytest.fixture(scope="module")
def galera() -> Iterator[ThrowawayGalera]:
    with ThrowawayGalera(nodes=3) as cluster:
        yield cluster


def test_galera_node_loss_then_quorum_loss(galera: ThrowawayGalera) -> None:
    node1, node2, node3 = galera.nodes
    node1.query("CREATE TABLE test.t (id INT AUTO_INCREMENT PRIMARY KEY, thread INT)")
    registry = Registry(load_entrypoints=False)
    registry.register(
        "shop",
        **galera.connect_kwargs(),
        endpoints=galera.endpoints(),
        endpoint_policy="round-robin",
        cluster="galera",
        autocommit=True,
        max_size=12,
        min_size=3,
        connect_timeout=1.0,
        read_timeout=READ_TIMEOUT,
        write_timeout=READ_TIMEOUT,
        ping_interval=0.5,
        eject_backoff=0.5,
    )
    pool = registry.get("shop")
    try:
        with Load(pool) as load:
            time.sleep(2)
            assert load.requests and not any(r.error for r in load.requests)

            # (1) a node dies: only requests on it fail; 6 s later everything works
            killed = time.monotonic()
            node3.kill()
            time.sleep(12)
            during = load.between(killed - DEADLINE, killed + 6)
            failed = [r for r in during if r.error is not None]
            assert all(r.port == node3.port for r in failed), [
                (r.port, repr(r.error)) for r in failed if r.port != node3.port
            ]
            after = load.between(killed + 6)
            assert after and not [r for r in after if r.error], [
                repr(r.error) for r in after if r.error
            ][:5]

            # (2) a survivor stops: the last node loses quorum (it still answers SELECT 1)
            stopped = time.monotonic()
            node2.pause()
            assert node1.query("SELECT 1") == ((1,),)
            deadline = time.monotonic() + 30
            while node1.query("SHOW STATUS LIKE 'wsrep_ready'")[0][1] != "OFF":
                assert time.monotonic() < deadline, "node 1 kept quorum"
                time.sleep(0.2)
            time.sleep(6)  # the pool meets the lost quorum
            resumed = time.monotonic()
            node2.resume()
            time.sleep(14)

        quorumless = load.between(stopped, resumed)
        seen_1047 = [r for r in quorumless if error_number(r.error or Exception()) == 1047]
        assert seen_1047, "no request met the quorum loss"
        first_1047 = min(r.ended for r in seen_1047)
        to_node1 = [r for r in load.between(first_1047, resumed) if r.port == node1.port]
        assert to_node1 == [], "a connection to the quorum-less node was lent after its 1047"
        refused = [r for r in quorumless if isinstance(r.error, GetConnectionFromPoolError)]
        assert refused, "no request was refused while the cluster had no quorum"
        assert all("wsrep_ready OFF" in str(r.error) for r in refused[-5:]), str(refused[-1].error)
        assert all(r.ended - r.started < TIMEOUT + 1 for r in refused), "a refusal hung"
        after = load.between(resumed + 10)
        assert after and not [r for r in after if r.error], [
            repr(r.error) for r in after if r.error
        ][:5]
        assert slowest(load.requests) <= DEADLINE
        assert load.max_total <= 12

        def all_idle() -> bool:  # the maintenance thread may hold one for a moment (a check)
            stats = pool.stats()
            return stats["in_use"] == 0 and stats["total"] == stats["idle"]

        wait_until(all_idle, "every connection idle after the load")
    finally:
        registry.close_all()


# --- primary and replica ---


@pytest.fixture(scope="module")
def replication() -> Iterator[ThrowawayReplication]:
    with ThrowawayReplication() as pair:
        yield pair


def with_roles(replication: ThrowawayReplication) -> list[dict[str, Any]]:
    """The pair as a pool's endpoints: the primary the writer, the replica a reader."""
    return [
        {"host": server.host, "port": server.port, "role": role}
        for server, role in ((replication.primary, "writer"), (replication.replica, "reader"))
    ]


def port_of(conn: Any) -> int:
    return int(scalar(conn, "SELECT @@port"))


def test_a_lagging_or_stopped_replica_is_kept_out_of_the_reader_pool(
    replication: ThrowawayReplication,
) -> None:
    primary, replica = replication.primary, replication.replica
    primary.query("CREATE TABLE test.lagged (id INT PRIMARY KEY)")
    replication.wait_replicated(10)
    registry = Registry(load_entrypoints=False)
    registry.register(
        "orders",
        **replication.app_connect_kwargs(),
        endpoints=with_roles(replication),
        max_replica_lag=1.0,
        autocommit=True,
        connect_timeout=1.0,
        read_timeout=5.0,
        eject_backoff=0.2,
    )
    reader = registry.get("orders", role="read")

    def read_port() -> int:
        reader.invalidate()  # a new connection, so the check runs now
        time.sleep(0.3)  # past an ejection's backoff
        with reader.connection(timeout=5) as conn:
            return port_of(conn)

    def check_of(server: Any) -> str:
        states = {e["endpoint"]: e for e in reader.endpoint_stats()}
        return str(states[f"{server.host}:{server.port}"]["check"])

    try:
        assert read_port() == replica.port and check_of(replica) == "ok"

        # the replica's SQL thread waits on a table lock: real lag, over the 1 s limit
        with pymysql.connect(**replica.connect_kwargs(autocommit=True)) as locker:
            scalar(locker, "LOCK TABLES lagged WRITE")
            primary.query("INSERT INTO test.lagged VALUES (1)")
            time.sleep(2.5)
            assert read_port() == primary.port  # reads fall back to the writer
            assert check_of(replica).startswith("replica lag"), check_of(replica)
            scalar(locker, "UNLOCK TABLES")
        replication.wait_replicated(10)
        assert read_port() == replica.port

        # replication stopped: Seconds_Behind_Master is NULL, so the replica is not used
        replica.query("STOP SLAVE SQL_THREAD")
        try:
            assert read_port() == primary.port
            assert "not replicating" in check_of(replica)
        finally:
            replica.query("START SLAVE SQL_THREAD")
        replication.wait_replicated(10)
        assert read_port() == replica.port
    finally:
        registry.close_all()


def test_a_lag_limit_without_the_privilege_to_read_it_says_which(
    replication: ThrowawayReplication,
) -> None:
    primary = replication.primary
    primary.query("CREATE USER IF NOT EXISTS 'nomon'@'%' IDENTIFIED BY 'nomon-secret'")
    primary.query("GRANT ALL ON test.* TO 'nomon'@'%'")
    replication.wait_replicated(10)
    registry = Registry(load_entrypoints=False)
    registry.register(
        "orders",
        user="nomon",
        password="nomon-secret",
        database="test",
        endpoints=replication.endpoints(),
        max_replica_lag=5.0,
        connect_timeout=1.0,
    )
    try:
        with pytest.raises(GetConnectionFromPoolError, match="GRANT SLAVE MONITOR"):
            registry.get("orders", role="read").get_connection(timeout=5)
    finally:
        registry.close_all()


def test_reads_go_to_the_replica_and_writes_follow_a_promotion(
    replication: ThrowawayReplication,
) -> None:
    primary, replica = replication.primary, replication.replica
    primary.query("CREATE TABLE test.orders (id INT PRIMARY KEY)")
    registry = Registry(load_entrypoints=False)
    registry.register(
        "orders",
        **replication.app_connect_kwargs(),
        endpoints=with_roles(replication),
        autocommit=True,
        max_size=4,
        connect_timeout=1.0,
        read_timeout=5.0,
    )
    writer, reader = registry.get("orders", role="write"), registry.get("orders", role="read")
    try:
        with writer.connection(timeout=5) as conn:
            conn.execute("INSERT INTO orders VALUES (1)")
            assert port_of(conn) == primary.port
        replication.wait_replicated(10)
        with reader.connection(timeout=5) as conn:
            assert scalar(conn, "SELECT COUNT(*) FROM orders") == 1
            assert port_of(conn) == replica.port

        primary.kill()
        started = time.monotonic()
        with (
            pytest.raises(GetConnectionFromPoolError, match="read-only") as raised,
            writer.connection(timeout=5) as conn,  # the idle one is dead: discarded
        ):
            conn.execute("INSERT INTO orders VALUES (2)")
        assert time.monotonic() - started < 5, "no writer: the pool must say so, not wait"
        assert str(primary.port) in str(raised.value)

        replication.promote_replica()
        with writer.connection(timeout=5) as conn:  # same registry name, no restart
            conn.execute("INSERT INTO orders VALUES (2)")
            assert port_of(conn) == replica.port
        with reader.connection(timeout=5) as conn:
            assert scalar(conn, "SELECT COUNT(*) FROM orders") == 2
    finally:
        registry.close_all()
