"""ConnectionPool against a real MariaDB: concurrency, waiting, returns, error verdicts, faults."""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from pymysqlpool_registry import (
    Connection,
    ConnectionPool,
    ConnectionReturnedError,
    GetConnectionFromPoolError,
    PoolConfig,
)
from pymysqlpool_registry.testing import (
    WAIT_LIMIT,
    connection_id,
    scalar,
    snapshot,
    start_thread,
    wait_until,
)
from pymysqlpool_registry.throwaway import ThrowawayServer

MakePool = Callable[..., ConnectionPool]
DISCONNECTED = (2006, 2013)  # what PyMySQL raises for a connection the server dropped


# --- helpers ---


def global_status(conn: Any, name: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
        return int(cur.fetchone()[1])


def admin_exec(server: ThrowawayServer, *statements: str | tuple[str, Any]) -> None:
    """Run statements (SQL, or (SQL, args)) on one autocommit root connection."""
    conn = server.admin()
    try:
        with conn.cursor() as cur:
            for statement in statements:
                sql, args = (statement, None) if isinstance(statement, str) else statement
                cur.execute(sql, args)
    finally:
        conn.close()


def lock_waits(server: ThrowawayServer) -> int:
    """Transactions now waiting for a row lock."""
    sql = "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
    return int(server.query(sql)[0][0])


class StatusProbe:
    """Reads global status counters on one connection of its own (each read costs 1 Question)."""

    NAMES = ("Questions", "Com_commit", "Com_rollback", "Com_admin_commands", "Bytes_received")

    def __init__(self, server: ThrowawayServer) -> None:
        self.conn = server.admin()

    def read(self) -> dict[str, int]:
        with self.conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN %s", (self.NAMES,))
            return {name: int(value) for name, value in cur.fetchall()}

    def cost(self, action: Callable[[], object]) -> dict[str, int]:
        """How much the counters moved across *action* (this probe's own read included)."""
        before = self.read()
        action()
        after = self.read()
        return {name: after[name] - before[name] for name in self.NAMES}

    def close(self) -> None:
        self.conn.close()


def borrow_and_return(pool: ConnectionPool) -> None:
    pool.get_connection().close()


def shut(pool: ConnectionPool) -> None:
    """Close *pool* and, as a safety net for a failed test, whatever it still lends."""
    pool.close()
    for conn in snapshot(pool).lent:
        conn.discard()


# --- fixtures ---


@pytest.fixture
def make_pool(server: ThrowawayServer) -> Iterator[MakePool]:
    """Build pools on the session server (or on=another); all are closed after the test."""
    pools: list[ConnectionPool] = []

    def make(
        *, on: ThrowawayServer | None = None, name: str | None = None, **overrides: Any
    ) -> ConnectionPool:
        target = server if on is None else on
        pool = ConnectionPool(PoolConfig(**{**target.connect_kwargs(), **overrides}), name=name)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        shut(pool)


@pytest.fixture
def table(server: ThrowawayServer) -> Iterator[str]:
    """A fresh InnoDB table test.tp_<random> (id INT PRIMARY KEY, v VARCHAR(32)), rows 1 and 2."""
    name = f"test.tp_{uuid.uuid4().hex[:10]}"
    admin_exec(
        server,
        f"CREATE TABLE {name} (id INT PRIMARY KEY, v VARCHAR(32)) ENGINE=InnoDB",
        f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b')",
    )
    yield name
    admin_exec(server, "SET SESSION lock_wait_timeout=5", f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def make_user(server: ThrowawayServer) -> Iterator[Callable[[str, str], str]]:
    """Create 'name'@'127.0.0.1' with a password and all rights on test.*; dropped afterwards."""
    made: list[str] = []

    def make(name: str, password: str = "") -> str:
        account = f"'{name}'@'127.0.0.1'"
        admin_exec(
            server,
            f"DROP USER IF EXISTS {account}",
            (f"CREATE USER {account} IDENTIFIED BY %s", (password,)),
            f"GRANT ALL ON test.* TO {account}",
        )
        made.append(account)
        return name

    yield make
    admin_exec(server, *(f"DROP USER IF EXISTS {account}" for account in made))


@pytest.fixture
def probe(server: ThrowawayServer) -> Iterator[StatusProbe]:
    status = StatusProbe(server)
    yield status
    status.close()


@pytest.fixture(scope="module")
def spare() -> Iterator[ThrowawayServer]:
    """A server of this module's own, for tests that restart or stop it."""
    with ThrowawayServer() as srv:
        yield srv


@pytest.fixture
def spare_server(spare: ThrowawayServer) -> Iterator[ThrowawayServer]:
    """The spare server, running before the test and left running after it."""
    spare.start()
    yield spare
    spare.start()


# --- many threads ---

THREADS, OPS, MAX_SIZE = 32, 50, 4


def test_many_threads_share_a_small_pool(
    server: ThrowawayServer, make_pool: MakePool, make_user: Callable[[str, str], str]
) -> None:
    user = make_user("tp_stress", "")
    sampler_conn = server.admin()
    threads_before = global_status(sampler_conn, "Threads_connected")
    pool = make_pool(user=user, password="", max_size=MAX_SIZE, timeout=60)
    guard = threading.Lock()
    lent_ids: set[int] = set()
    problems: list[str] = []
    samples: dict[str, list[int]] = {"total": [], "processlist": [], "threads": []}
    stop = threading.Event()

    def count_processlist() -> int:
        return int(
            scalar(
                sampler_conn,
                "SELECT COUNT(*) FROM information_schema.processlist WHERE user = %s",
                (user,),
            )
        )

    def sample() -> None:
        for _ in range(100_000):
            if stop.is_set():
                return
            samples["total"].append(int(pool.stats()["total"]))
            samples["processlist"].append(count_processlist())
            samples["threads"].append(global_status(sampler_conn, "Threads_connected"))

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for op in range(OPS):
            with pool.get_connection() as conn:
                cid = connection_id(conn)
                with guard:
                    if cid in lent_ids:
                        problems.append(f"op {seed}/{op}: connection {cid} lent twice at once")
                    lent_ids.add(cid)
                time.sleep(rng.random() / 1000)
                again = connection_id(conn)
                with guard:
                    lent_ids.discard(cid)
                if again != cid:
                    problems.append(f"op {seed}/{op}: CONNECTION_ID changed {cid} -> {again}")

    try:
        sampler = start_thread(sample)
        workers = [start_thread(work, seed) for seed in range(THREADS)]
        for worker in workers:
            worker.finish(90)
        stop.set()
        sampler.finish()
        stats = pool.stats()
        idle_on_server = count_processlist()
    finally:
        stop.set()
        sampler_conn.close()

    assert problems == []
    assert max(samples["total"]) == MAX_SIZE  # the run did contend for every slot
    assert 1 <= max(samples["processlist"]) <= MAX_SIZE
    assert max(samples["threads"]) <= threads_before + MAX_SIZE
    assert stats["in_use"] == 0
    assert stats["waiting"] == 0
    assert 1 <= stats["idle"] <= MAX_SIZE
    assert stats["total"] == stats["idle"] == idle_on_server
    assert stats["requests"] == THREADS * OPS
    assert stats["created"] <= MAX_SIZE
    assert stats["discarded"] == stats["timeouts"] == 0


# --- waiting: first come first served, timeouts ---


def test_waiters_are_served_first_come_first_served(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1, timeout=30)
    holder = pool.get_connection()
    held_id = connection_id(holder)
    served: list[tuple[int, int]] = []

    def wait_turn(position: int) -> None:
        with pool.get_connection() as conn:
            served.append((position, connection_id(conn)))

    waiters = []
    try:
        for position in range(5):
            waiters.append(start_thread(wait_turn, position))
            wait_until(
                lambda queued=position + 1: pool.stats()["waiting"] == queued,
                f"waiter {position} to queue",
            )
    finally:
        holder.close()
        for waiter in waiters:
            waiter.finish()

    assert [position for position, _ in served] == list(range(5))
    assert {cid for _, cid in served} == {held_id}  # handed over directly, never reopened
    stats = pool.stats()
    assert stats["created"] == 1
    assert stats["waited"] == 5
    assert (stats["idle"], stats["in_use"], stats["waiting"]) == (1, 0, 0)


def test_exhausted_pool_times_out_after_every_retry(make_pool: MakePool) -> None:
    pool = make_pool(name="tiny", max_size=1)
    holder = pool.get_connection()
    try:
        began = time.monotonic()
        with pytest.raises(GetConnectionFromPoolError) as raised:
            pool.get_connection(timeout=0.2, retry_num=2)
        assert time.monotonic() - began >= 0.6
        assert str(raised.value) == "can't get connection from pool(tiny) within 0.2*3 second(s)"
        assert isinstance(raised.value, pymysql.err.OperationalError)

        with pytest.raises(GetConnectionFromPoolError) as raised:
            pool.get_connection(timeout=0)
        assert str(raised.value) == "can't get connection from pool(tiny) within 0*1 second(s)"

        stats = pool.stats()
        assert stats["timeouts"] == 2
        assert stats["waiting"] == 0  # the quitters left the line
    finally:
        holder.close()
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (1, 0)  # not handed to a quitter


# --- on return ---


def test_open_transaction_is_rolled_back_on_return(
    table: str, make_pool: MakePool, probe: StatusProbe
) -> None:
    pool = make_pool(max_size=1, autocommit=False)

    def insert_without_commit() -> None:
        conn = pool.get_connection()
        conn.cursor().execute(f"INSERT INTO {table} VALUES (3, 'uncommitted')")
        conn.close()

    cost = probe.cost(insert_without_commit)
    assert cost["Com_rollback"] >= 1
    with pool.get_connection() as conn:
        assert scalar(conn, f"SELECT COUNT(*) FROM {table} WHERE id = 3") == 0


def test_select_snapshot_does_not_leak_to_next_borrower(
    server: ThrowawayServer, table: str, make_pool: MakePool
) -> None:
    pool = make_pool(max_size=1, autocommit=False)
    with pool.get_connection() as conn:
        first_id = connection_id(conn)
        assert scalar(conn, f"SELECT COUNT(*) FROM {table}") == 2  # opens a snapshot
    admin_exec(server, f"INSERT INTO {table} VALUES (3, 'committed meanwhile')")
    with pool.get_connection() as conn:
        assert connection_id(conn) == first_id
        assert scalar(conn, f"SELECT COUNT(*) FROM {table}") == 3


#: How long after a connection comes back the tests give the pool to end its transaction
#: before another session must find nothing held (README: "Autocommit off").
SETTLE = 0.05


@pytest.mark.parametrize("loan", ["select", "write"])
def test_an_idle_connection_holds_no_lock_another_session_would_wait_for(
    server: ThrowawayServer, table: str, make_pool: MakePool, loan: str
) -> None:
    """With autocommit off a SELECT opens a transaction that holds the table's metadata lock
    (and a write, its row locks): once the connection is back and idle, DDL and a write from
    another session must not wait on it (both are told not to wait at all)."""
    pool = make_pool(max_size=1, autocommit=False)
    conn = pool.get_connection()
    with conn.cursor() as cur:
        if loan == "select":
            cur.execute(f"SELECT COUNT(*) FROM {table}")
        else:
            cur.execute(f"UPDATE {table} SET v = 'uncommitted' WHERE id = 1")
    conn.close()  # not committed: the pool ends the transaction
    time.sleep(SETTLE)
    assert snapshot(pool).idle, "the connection is idle in the pool"
    admin_exec(
        server,
        "SET SESSION lock_wait_timeout = 0, innodb_lock_wait_timeout = 0",
        f"UPDATE {table} SET v = 'other session' WHERE id = 1",
        f"ALTER TABLE {table} ADD COLUMN added INT",
    )
    with pool.connection() as again:
        assert scalar(again, f"SELECT v FROM {table} WHERE id = 1") == "other session"
        assert scalar(again, f"SELECT COUNT(added) FROM {table}") == 0


def test_autocommit_select_loan_costs_no_rollback(
    table: str, make_pool: MakePool, probe: StatusProbe
) -> None:
    pool = make_pool(max_size=1, min_size=1, autocommit=True, ping_interval=None)
    borrow_and_return(pool)
    baseline = probe.cost(lambda: None)

    def select_loan() -> None:
        with pool.get_connection() as conn:
            conn.cursor().execute(f"SELECT * FROM {table}")

    cost = probe.cost(select_loan)
    assert cost["Com_rollback"] == cost["Com_commit"] == 0
    assert cost["Questions"] == baseline["Questions"] + 1  # the SELECT and nothing else


@pytest.mark.parametrize("autocommit", [True, False])
def test_empty_loan_costs_no_round_trip(
    make_pool: MakePool, probe: StatusProbe, autocommit: bool
) -> None:
    pool = make_pool(max_size=1, min_size=1, autocommit=autocommit, ping_interval=None)
    borrow_and_return(pool)  # warm up: the connect itself is not measured
    baseline = probe.cost(lambda: None)
    assert probe.cost(lambda: borrow_and_return(pool)) == baseline
    assert pool.stats()["requests"] == 2


def test_loan_after_autocommit_restore_costs_no_round_trip(
    make_pool: MakePool, probe: StatusProbe
) -> None:
    pool = make_pool(max_size=1, min_size=1, autocommit=False, ping_interval=None)
    conn = pool.get_connection()
    conn.autocommit(True)
    conn.close()  # the pool switches autocommit back off: nothing else is pending
    baseline = probe.cost(lambda: None)
    assert probe.cost(lambda: borrow_and_return(pool)) == baseline


@pytest.mark.parametrize("how", ["method", "sql"])
@pytest.mark.parametrize("autocommit", [True, False])
def test_autocommit_is_restored_for_the_next_borrower(
    table: str, make_pool: MakePool, autocommit: bool, how: str
) -> None:
    pool = make_pool(max_size=1, autocommit=autocommit)
    with pool.get_connection() as conn:
        first_id = connection_id(conn)
        if how == "method":
            conn.autocommit(not autocommit)
        else:
            conn.cursor().execute(f"SET autocommit = {int(not autocommit)}")
        conn.cursor().execute(f"SELECT * FROM {table}")
    with pool.get_connection() as conn:
        assert connection_id(conn) == first_id
        assert scalar(conn, "SELECT @@autocommit") == int(autocommit)
        assert conn.get_autocommit() is autocommit


def test_session_reset_clears_state_and_restores_config(make_pool: MakePool) -> None:
    pool = make_pool(
        max_size=1, reset="session", autocommit=False, init_command="SET @from_init = 7"
    )
    with pool.get_connection() as conn:
        first_id = connection_id(conn)
        conn.cursor().execute("SET @x = 1")
        conn.autocommit(True)
    with pool.get_connection() as conn:
        assert connection_id(conn) == first_id  # reset in place, not reconnected
        assert scalar(conn, "SELECT @x") is None
        assert scalar(conn, "SELECT @@autocommit") == 0
        assert scalar(conn, "SELECT @from_init") == 7
    assert pool.stats()["resets"] >= 1


def test_session_reset_keeps_connect_time_sql_mode(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1, reset="session", connect_args={"sql_mode": "ANSI_QUOTES"})
    with pool.get_connection() as conn:
        assert scalar(conn, "SELECT @@sql_mode") == "ANSI_QUOTES"
        conn.cursor().execute("SET @x = 1")  # dirty: the session gets reset on return
    with pool.get_connection() as conn:
        assert scalar(conn, "SELECT @@sql_mode") == "ANSI_QUOTES"


def test_session_reset_restores_the_configured_database(
    server: ThrowawayServer, make_pool: MakePool
) -> None:
    admin_exec(server, "CREATE DATABASE IF NOT EXISTS tp_elsewhere")
    pool = make_pool(max_size=1, reset="session")
    with pool.get_connection() as conn:
        conn.cursor().execute("USE tp_elsewhere")
    with pool.get_connection() as conn:
        assert scalar(conn, "SELECT DATABASE()") == "test"


# --- verdicts after exceptions inside `with` ---


def test_deadlock_leaves_connection_reusable(
    server: ThrowawayServer, table: str, make_pool: MakePool
) -> None:
    pool = make_pool(max_size=1, autocommit=False)
    other = pymysql.connect(**server.connect_kwargs(autocommit=False))
    try:
        with other.cursor() as cur:
            cur.execute(f"UPDATE {table} SET v = 'other' WHERE id = 2")
            # Many rows make the other transaction the heavier one: InnoDB picks ours as victim.
            rows = [(100 + n, "weight") for n in range(50)]
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", rows)
        with pytest.raises(pymysql.err.OperationalError) as raised, pool.get_connection() as conn:
            first_id = connection_id(conn)
            conn.cursor().execute(f"UPDATE {table} SET v = 'pool' WHERE id = 1")
            blocked = start_thread(
                other.cursor().execute, f"UPDATE {table} SET v = 'other' WHERE id = 1"
            )
            wait_until(lambda: lock_waits(server) == 1, "the other side to wait for our lock")
            conn.cursor().execute(f"UPDATE {table} SET v = 'pool' WHERE id = 2")
        blocked.finish()
    finally:
        other.rollback()
        other.close()
    assert raised.value.args[0] == 1213
    assert pool.stats()["discarded"] == 0
    with pool.get_connection() as conn:
        assert connection_id(conn) == first_id
        assert scalar(conn, f"SELECT v FROM {table} WHERE id = 1") == "a"


@pytest.mark.parametrize(
    ("sql", "error", "errno"),
    [
        ("INSERT INTO {table} VALUES (1, 'duplicate')", pymysql.err.IntegrityError, 1062),
        ("SELEC 1", pymysql.err.ProgrammingError, 1064),
    ],
    ids=["duplicate-key", "syntax-error"],
)
def test_server_error_leaves_connection_reusable(
    table: str, make_pool: MakePool, sql: str, error: type[Exception], errno: int
) -> None:
    pool = make_pool(max_size=1, autocommit=False)
    with pytest.raises(error) as raised, pool.get_connection() as conn:
        first_id = connection_id(conn)
        conn.cursor().execute(f"INSERT INTO {table} VALUES (3, 'rolled back')")
        conn.cursor().execute(sql.format(table=table))
    assert raised.value.args[0] == errno
    assert pool.stats()["discarded"] == 0
    with pool.get_connection() as conn:
        assert connection_id(conn) == first_id
        assert scalar(conn, f"SELECT COUNT(*) FROM {table} WHERE id = 3") == 0


def test_connection_killed_while_lent_is_discarded(
    server: ThrowawayServer, make_pool: MakePool
) -> None:
    pool = make_pool(max_size=1)
    with pytest.raises(pymysql.err.OperationalError) as raised, pool.get_connection() as conn:
        killed_id = connection_id(conn)
        server.query(f"KILL CONNECTION {killed_id}")
        scalar(conn, "SELECT 1")
    assert raised.value.args[0] in DISCONNECTED
    stats = pool.stats()
    assert stats["discarded"] == 1
    assert (stats["total"], stats["in_use"]) == (0, 0)
    with pool.get_connection() as conn:
        assert connection_id(conn) != killed_id


def test_idle_connection_killed_in_pool_is_replaced_at_checkout(
    server: ThrowawayServer, make_pool: MakePool
) -> None:
    pool = make_pool(max_size=1, ping_interval=None)  # only the socket check may notice
    conn = pool.get_connection()
    killed_id = connection_id(conn)
    conn.close()
    server.query(f"KILL CONNECTION {killed_id}")
    wait_until(conn.server_closed, "the server to close the killed connection's socket")

    with pool.get_connection() as conn:
        assert connection_id(conn) != killed_id
        assert scalar(conn, "SELECT 1") == 1
    assert pool.stats()["discarded"] == 1


def test_connection_past_wait_timeout_is_replaced(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1, init_command="SET SESSION wait_timeout = 1")
    with pool.get_connection() as conn:
        expired_id = connection_id(conn)
        assert scalar(conn, "SELECT @@wait_timeout") == 1
    time.sleep(2.5)
    with pool.get_connection() as conn:
        assert connection_id(conn) != expired_id
    assert pool.stats()["discarded"] == 1


class FakeInterrupt(BaseException):
    """Stands in for KeyboardInterrupt: not an Exception, may cut a reply in half."""


def test_base_exception_in_block_discards_connection(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1)
    with pytest.raises(FakeInterrupt), pool.get_connection() as conn:
        first_id = connection_id(conn)
        raise FakeInterrupt
    stats = pool.stats()
    assert stats["discarded"] == 1
    assert (stats["total"], stats["in_use"]) == (0, 0)
    with pool.get_connection() as conn:
        assert connection_id(conn) != first_id


# --- returned connections ---


def test_double_close_raises_and_pool_holds_no_duplicate(make_pool: MakePool) -> None:
    pool = make_pool(max_size=2)
    first, second = pool.get_connection(), pool.get_connection()
    first.close()
    with pytest.raises(ConnectionReturnedError):
        first.close()
    second.close()
    stats = pool.stats()
    assert (stats["idle"], stats["in_use"], stats["total"]) == (2, 0, 2)

    a, b = pool.get_connection(), pool.get_connection()
    try:
        assert a is not b
        assert connection_id(a) != connection_id(b)
        with pytest.raises(GetConnectionFromPoolError):
            pool.get_connection(timeout=0)
    finally:
        a.close()
        b.close()


def test_using_a_returned_connection_raises(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1)
    conn = pool.get_connection()
    conn.close()
    with pytest.raises(ConnectionReturnedError):
        conn.cursor().execute("SELECT 1")
    with pytest.raises(ConnectionReturnedError):
        conn.commit()
    assert (pool.stats()["idle"], pool.stats()["discarded"]) == (1, 0)


def test_using_a_connection_handed_to_a_waiter_raises(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1, timeout=30)
    stale = pool.get_connection()
    taken, release = threading.Event(), threading.Event()

    def take_and_hold() -> int:
        with pool.get_connection() as conn:
            taken.set()
            release.wait(WAIT_LIMIT)
            return connection_id(conn)

    waiter = start_thread(take_and_hold)
    try:
        wait_until(lambda: pool.stats()["waiting"] == 1, "the waiter to queue")
        stale.close()  # handed straight to the waiter
        wait_until(taken.is_set, "the waiter to get the connection")
        with pytest.raises(ConnectionReturnedError):
            stale.cursor().execute("SELECT 1")
    finally:
        release.set()
        waiter.finish()


def test_close_from_another_thread_is_refused(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1)
    conn = pool.get_connection()
    closer = start_thread(conn.close)
    with pytest.raises(ConnectionReturnedError):
        closer.finish()
    assert pool.stats()["in_use"] == 1  # still lent to this thread
    conn.close()
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (1, 0)


def test_close_from_another_thread_allowed_without_owner_check(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1, check_owner_thread=False)
    conn = pool.get_connection()
    start_thread(conn.close).finish()
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (1, 0)


def test_with_on_a_returned_idle_connection_lends_it_again(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1)
    conn = pool.get_connection()
    first_id = connection_id(conn)
    conn.close()
    with conn:
        assert pool.stats()["in_use"] == 1
        assert connection_id(conn) == first_id
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (1, 0)


def test_with_on_a_returned_connection_held_by_another_borrower_raises(
    make_pool: MakePool,
) -> None:
    pool = make_pool(max_size=1, timeout=30)
    stale = pool.get_connection()
    stale.close()
    taken, release = threading.Event(), threading.Event()

    def take_and_hold() -> None:
        with pool.get_connection():
            taken.set()
            release.wait(WAIT_LIMIT)

    holder = start_thread(take_and_hold)
    ran: list[bool] = []
    try:
        wait_until(taken.is_set, "the other borrower to take the connection")
        with pytest.raises(ConnectionReturnedError), stale:
            ran.append(True)
    finally:
        release.set()
        holder.finish()  # the other borrower returns its loan without error
    assert ran == [], "the block ran on a connection another borrower holds"
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (1, 0)


# --- secrets ---

GOOD_PASSWORD = "Good-pw-7f3a9c-never-in-logs"
WRONG_PASSWORD = "Wrong-pw-2b8e1d-never-in-logs"


def error_text(exc: BaseException) -> str:
    """Everything a log or a traceback would show of *exc*, causes included."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.__cause__)


def test_password_never_leaks(
    server: ThrowawayServer,
    make_pool: MakePool,
    make_user: Callable[[str, str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user = make_user("tp_app", GOOD_PASSWORD)
    texts: list[str] = []

    pool = make_pool(user=user, password=GOOD_PASSWORD, min_size=1, max_size=1)
    with pool.get_connection() as conn:
        assert scalar(conn, "SELECT CURRENT_USER()") == f"{user}@127.0.0.1"
        texts += [repr(conn), str(conn)]
    texts += [repr(pool), str(pool), repr(pool.config), str(pool.config), repr(pool.stats())]

    bad = make_pool(user=user, password=WRONG_PASSWORD, max_size=1)
    with pytest.raises(GetConnectionFromPoolError) as raised:
        bad.get_connection(timeout=0)
    assert isinstance(raised.value.__cause__, pymysql.err.OperationalError)
    assert raised.value.__cause__.args[0] == 1045  # access denied: the password was tried
    # an answer, not a wait: the message says what failed, not "within 0*1 second(s)"
    assert str(raised.value).startswith(f"can't get connection from pool({bad.name}): (1045, ")
    texts += [error_text(raised.value), repr(bad), repr(bad.config)]

    with pytest.raises(pymysql.err.OperationalError) as raised_at_fill:
        make_pool(user=user, password=WRONG_PASSWORD, min_size=1, max_size=1)
    texts.append(error_text(raised_at_fill.value))

    texts += [record.getMessage() for record in caplog.records]
    texts.append(caplog.text)
    assert any("Get connection from pool" in text for text in texts)  # DEBUG was captured
    for secret in (GOOD_PASSWORD, WRONG_PASSWORD):
        assert not [text for text in texts if secret in text]


def test_config_error_does_not_echo_a_bytes_password() -> None:
    secret = b"Bytes-pw-5e0c41-never-echoed"
    try:
        config = PoolConfig(host="127.0.0.1", password=secret)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        text = error_text(exc)
    else:
        text = repr(config)
    assert "Bytes-pw-5e0c41" not in text


# --- server restart and outage (a server of this module's own) ---


@pytest.mark.slow
def test_server_restart_dead_idle_connections_are_replaced(
    spare_server: ThrowawayServer, make_pool: MakePool
) -> None:
    pool = make_pool(on=spare_server, min_size=3, max_size=3)
    idle = [pool.get_connection() for _ in range(3)]
    for conn in idle:
        conn.close()
    spare_server.restart()
    wait_until(
        lambda: all(conn.server_closed() for conn in idle), "the restart to drop the sockets"
    )

    lent = [pool.get_connection() for _ in range(3)]
    try:
        assert [scalar(conn, "SELECT 1") for conn in lent] == [1, 1, 1]
        stats = pool.stats()
        assert stats["discarded"] == 3
        assert stats["created"] == 6
        assert (stats["total"], stats["in_use"]) == (3, 3)
    finally:
        for conn in lent:
            conn.close()


@pytest.mark.slow
def test_server_down_raises_with_cause_and_frees_the_slot(
    spare_server: ThrowawayServer, make_pool: MakePool
) -> None:
    # min_size 0: no maintenance refill competes for the single slot during the outage
    pool = make_pool(on=spare_server, min_size=0, max_size=1)
    pool.get_connection().close()
    spare_server.stop()
    with pytest.raises(GetConnectionFromPoolError) as raised:
        pool.get_connection(timeout=1)
    cause = raised.value.__cause__
    assert isinstance(cause, pymysql.err.OperationalError)
    assert cause.args[0] == 2003
    stats = pool.stats()
    assert (stats["total"], stats["idle"], stats["in_use"]) == (0, 0, 0)
    assert stats["discarded"] == 1  # the idle connection the stop killed
    assert stats["connect_errors"] >= 1
    assert stats["timeouts"] == 1

    spare_server.start()
    # the only slot is free again; the next connect may start once the backoff delay is over
    with pool.get_connection(timeout=2) as conn:
        assert scalar(conn, "SELECT 1") == 1
    assert pool.stats()["total"] == 1


# --- execute_query, as pymysql-pool had it ---


def old_execute_query(
    conn: Any,
    query: str,
    args: Any = (),
    dictcursor: bool = False,
    return_one: bool = False,
    exec_many: bool = False,
) -> Any:
    """pymysql-pool's execute_query on a plain PyMySQL connection, rolled back afterwards."""
    cur = conn.cursor(pymysql.cursors.DictCursor) if dictcursor else conn.cursor()
    if exec_many:
        cur.executemany(query, args)
    else:
        cur.execute(query, args)
    rows = cur.fetchone() if return_one else cur.fetchall()
    cur.close()
    conn.rollback()
    return rows


@pytest.mark.parametrize(
    ("query", "args", "options"),
    [
        ("SELECT id, v FROM {table} ORDER BY id", (), {}),
        ("SELECT id, v FROM {table} WHERE id > %s ORDER BY id", (0,), {"dictcursor": True}),
        ("SELECT v FROM {table} WHERE id = %s", (2,), {"return_one": True}),
        ("SELECT v FROM {table} WHERE id = %s", (99,), {"return_one": True}),
        ("SELECT v FROM {table} WHERE id = %s", (99,), {}),
        ("INSERT INTO {table} VALUES (%s, %s)", [(10, "x"), (11, "y")], {"exec_many": True}),
    ],
    ids=["rows", "dictcursor", "return-one", "return-one-none", "no-rows", "exec-many"],
)
def test_execute_query_returns_rows_like_pymysql_pool(
    server: ThrowawayServer,
    table: str,
    make_pool: MakePool,
    query: str,
    args: Any,
    options: dict[str, bool],
) -> None:
    sql = query.format(table=table)
    plain = pymysql.connect(**server.connect_kwargs())
    try:
        expected = old_execute_query(plain, sql, args, **options)
    finally:
        plain.close()
    pool = make_pool(max_size=1, autocommit=False)
    conn = pool.get_connection()

    rows = conn.execute_query(sql, args, **options)

    assert rows == expected
    assert type(rows) is type(expected)
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (1, 0)
    with pytest.raises(ConnectionReturnedError):
        conn.cursor().execute("SELECT 1")
    committed = server.query(f"SELECT COUNT(*) FROM {table}")[0][0]
    assert committed == (4 if options.get("exec_many") else 2)


def test_execute_query_error_gives_connection_back(table: str, make_pool: MakePool) -> None:
    pool = make_pool(max_size=1, autocommit=False)
    conn = pool.get_connection()
    first_id = connection_id(conn)
    with pytest.raises(pymysql.err.IntegrityError):
        conn.execute_query(f"INSERT INTO {table} VALUES (1, 'duplicate')")
    assert (pool.stats()["idle"], pool.stats()["in_use"], pool.stats()["discarded"]) == (1, 0, 0)
    with pool.get_connection() as again:
        assert connection_id(again) == first_id
        assert isinstance(again, Connection)
