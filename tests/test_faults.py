"""Fault matrix against real MariaDB servers: every fault provoked for real.

For each fault the tests check that no request outlives its deadline (each get_connection,
statement and return is timed against its configured timeout plus SLACK), that every request
started a second after the fault cleared succeeds, that the pool never opens more than
max_size connections (sampled from ``pool.stats()`` and from the server's processlist for the
pool's own user), and that the pool ends with nothing leaked or lost (in_use 0 and
total == idle == the server's sessions for that user).

Every fault runs on servers of this module's own (restart, kill -9, SIGSTOP, read_only,
max_connections), each with a private tmpdir (see private_server); the session ``server`` is
not used, let alone stopped.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymysql
import pytest

from pymysqlpool_registry import (
    ConnectionPool,
    GetConnectionFromPoolError,
    PoolConfig,
    Verdict,
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

if TYPE_CHECKING:
    from typing_extensions import Self

MakePool = Callable[..., ConnectionPool]
SLACK = 3.0  # seconds a timed call may overrun its configured timeout: a correctness bound
RECOVERY_GRACE = 1.0  # requests started this long after a fault cleared must all succeed
DISCONNECTED = (2006, 2013)  # what PyMySQL raises for a connection the server dropped
PROCESSLIST = "SELECT COUNT(*) FROM information_schema.processlist WHERE user = %s"


# --- helpers ---


def errno(exc: BaseException | None) -> int | None:
    if isinstance(exc, pymysql.err.Error) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def admin_exec(srv: ThrowawayServer, *statements: str | tuple[str, Any]) -> None:
    """Run statements (SQL, or (SQL, args)) on one autocommit root connection."""
    conn = srv.admin()
    try:
        with conn.cursor() as cur:
            for statement in statements:
                sql, args = (statement, None) if isinstance(statement, str) else statement
                cur.execute(sql, args)
    finally:
        conn.close()


def sessions_of(srv: ThrowawayServer, user: str) -> int:
    """Sessions the server has for *user* now (processlist)."""
    conn = srv.admin()
    try:
        return int(scalar(conn, PROCESSLIST, (user,)))
    finally:
        conn.close()


def close_quietly(conn: Any) -> None:
    """Close a plain PyMySQL connection that may already be force-closed by an error."""
    if conn.open:
        with contextlib.suppress(pymysql.err.Error):
            conn.close()


def wait_stopped(srv: ThrowawayServer) -> None:
    """Wait until every thread of the paused server is stopped.

    SIGSTOP is delivered asynchronously: a query sent right after ``pause()`` may still be
    answered by a server thread that has not stopped yet.
    """
    pid = srv.pid
    assert pid is not None

    def all_stopped() -> bool:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in "Tt" for state in states)

    wait_until(all_stopped, "every server thread to stop after SIGSTOP")


def settle(pool: ConnectionPool, srv: ThrowawayServer, user: str) -> dict[str, float]:
    """Wait (bounded) until nothing is lent or waiting and total == idle == server sessions."""
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        stats = pool.stats()
        on_server = sessions_of(srv, user)
        state = (stats["in_use"], stats["waiting"], stats["total"], stats["idle"], on_server)
        if (
            stats["in_use"] == stats["waiting"] == 0
            and stats["total"] == stats["idle"] == on_server
        ):
            return stats
        if time.monotonic() > deadline:
            pytest.fail(
                f"pool never settled in {WAIT_LIMIT} s: (in_use, waiting, total, idle, "
                f"server sessions) = {state}; stats {stats}"
            )
        time.sleep(0.05)


@dataclass
class Op:
    """One timed call: a get_connection, a statement, or a return."""

    kind: str
    started: float
    elapsed: float
    bound: float
    error: BaseException | None


class Timings:
    """Times calls (thread-safe) so a test can check deadlines and recovery afterwards."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._lock = threading.Lock()

    def call(self, kind: str, limit: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args); record how long it took against *limit* + SLACK; re-raise."""
        began = time.monotonic()
        error: BaseException | None = None
        try:
            return fn(*args)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.record(kind, began, limit, error)

    def call_failing(self, kind: str, limit: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Like :meth:`call`, for a call expected to raise, run in a thread of its own.

        A call that hangs fails the test after its bound plus a margin, instead of blocking
        the test until pytest-timeout. A result that the call returns anyway is handed back
        (owned by that thread); the exception it raises is re-raised here.
        """
        worker = start_thread(self.call, kind, limit, fn, *args)
        worker.join(limit + SLACK + 5)
        if worker.is_alive():
            pytest.fail(f"{kind} still blocked {limit + SLACK + 5:.1f} s later: it hangs")
        return worker.finish()

    def record(self, kind: str, began: float, limit: float, error: BaseException | None) -> None:
        op = Op(kind, began, time.monotonic() - began, limit + SLACK, error)
        with self._lock:
            self.ops.append(op)

    def overruns(self) -> list[str]:
        return [
            f"{op.kind} took {op.elapsed:.2f} s (bound {op.bound:.1f} s): {op.error!r}"
            for op in self.ops
            if op.elapsed > op.bound
        ]

    def after(self, moment: float) -> list[Op]:
        """The calls started at or after *moment*."""
        return [op for op in self.ops if op.started >= moment]

    def failed(self) -> list[Op]:
        return [op for op in self.ops if op.error is not None]


def assert_recovered(timings: Timings, cleared: float) -> None:
    """Every call started RECOVERY_GRACE after *cleared* succeeded (and there were some)."""
    late = timings.after(cleared + RECOVERY_GRACE)
    assert late, "no request ran after the fault cleared: the test proves nothing"
    failures = [
        f"{op.kind} at +{op.started - cleared:.2f} s: {op.error!r}" for op in late if op.error
    ]
    assert failures == [], f"{len(failures)} of {len(late)} requests failed after recovery"


class Sampler(threading.Thread):
    """Samples pool.stats()['total'] and the server's sessions of the pool's user.

    Its admin connection is bounded by short timeouts and reopened after a fault, so it keeps
    sampling (or skips a beat) through restarts and a hung server.
    """

    def __init__(self, pool: ConnectionPool, srv: ThrowawayServer, user: str) -> None:
        super().__init__(daemon=True)
        self.pool, self.srv, self.user = pool, srv, user
        self.totals: list[int] = []
        self.sessions: list[int] = []
        self.stopping = threading.Event()

    def _connect(self) -> Any:
        return pymysql.connect(
            **self.srv.connect_kwargs(
                database=None,
                autocommit=True,
                connect_timeout=0.5,
                read_timeout=1,
                write_timeout=1,
            )
        )

    def run(self) -> None:
        conn = None
        try:
            for _ in range(100_000):
                if self.stopping.is_set():
                    return
                self.totals.append(int(self.pool.stats()["total"]))
                try:
                    if conn is None:
                        conn = self._connect()
                    self.sessions.append(int(scalar(conn, PROCESSLIST, (self.user,))))
                except pymysql.err.Error:
                    if conn is not None:
                        close_quietly(conn)
                        conn = None
                    self.stopping.wait(0.05)
                self.stopping.wait(0.005)
        finally:
            if conn is not None:
                close_quietly(conn)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.join(WAIT_LIMIT)
        assert not self.is_alive(), "sampler still running"

    def assert_within(self, max_size: int) -> None:
        assert self.totals, "the sampler took no sample of the pool"
        assert self.sessions, "the sampler took no sample of the server"
        assert max(self.totals) <= max_size
        assert max(self.sessions) <= max_size


def shut(pool: ConnectionPool) -> None:
    """Close *pool* and, as a safety net for a failed test, whatever it still lends."""
    pool.close()
    for conn in snapshot(pool).lent:
        conn.discard()


def create_user(srv: ThrowawayServer, prefix: str) -> str:
    """A fresh non-SUPER user '<prefix>_<hex>'@'127.0.0.1' with all rights on test.*."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    account = f"'{name}'@'127.0.0.1'"
    admin_exec(srv, f"CREATE USER {account}", f"GRANT ALL ON test.* TO {account}")
    return name


def drop_user(srv: ThrowawayServer, name: str) -> None:
    if srv.pid is not None:
        admin_exec(srv, f"DROP USER IF EXISTS '{name}'@'127.0.0.1'")


# --- fixtures ---


@contextlib.contextmanager
def private_server(*extra_args: str) -> Iterator[ThrowawayServer]:
    """A ThrowawayServer with a temporary directory (--tmpdir) of its own.

    ThrowawayServer leaves MariaDB's tmpdir at /tmp, shared by every server on the machine,
    and a starting mariadbd deletes every ``#sql*`` file there: the on-disk temporary tables
    (e.g. of an information_schema.processlist query) of the servers already running. Those
    then fail (1 "Error on delete", 2013) or crash in ha_maria::drop_table. With a private
    tmpdir, our restarts harm no other server and other servers' starts do not harm ours.
    """
    tmpdir = tempfile.mkdtemp(prefix="pymysqlpool-faults-tmp-")
    try:
        with ThrowawayServer(extra_args=[f"--tmpdir={tmpdir}", *extra_args]) as srv:
            yield srv
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(scope="module")
def fault_server() -> Iterator[ThrowawayServer]:
    """A server of this module's own: every fault here runs on it (or on crowded_server)."""
    with private_server() as srv:
        yield srv


@pytest.fixture
def victim(fault_server: ThrowawayServer) -> Iterator[ThrowawayServer]:
    """The module's server, running and writable before the test and put back after it."""
    fault_server.start()
    yield fault_server
    if fault_server.pid is not None:
        fault_server.resume()  # harmless if it is not paused
    fault_server.start()
    admin_exec(fault_server, "SET GLOBAL read_only = 0")


@pytest.fixture(scope="module")
def crowded_server() -> Iterator[ThrowawayServer]:
    """A server of this module's own that takes at most 10 connections (MariaDB's minimum)."""
    with private_server("--max-connections=10") as srv:
        yield srv


@pytest.fixture
def make_pool() -> Iterator[MakePool]:
    """Build pools on a given server as a given user; all are closed after the test."""
    pools: list[ConnectionPool] = []

    def make(srv: ThrowawayServer, user: str, **overrides: Any) -> ConnectionPool:
        settings = {**srv.connect_kwargs(user=user, password=""), **overrides}
        pool = ConnectionPool(PoolConfig(**settings), name=f"faults-{user}")
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        shut(pool)


@pytest.fixture
def users() -> Iterator[Callable[[ThrowawayServer, str], str]]:
    """Create throwaway users on a server; dropped after the test (if the server runs)."""
    made: list[tuple[ThrowawayServer, str]] = []

    def make(srv: ThrowawayServer, prefix: str = "fp") -> str:
        name = create_user(srv, prefix)
        made.append((srv, name))
        return name

    yield make
    for srv, name in made:
        drop_user(srv, name)


@pytest.fixture
def table_on() -> Iterator[Callable[[ThrowawayServer, str], str]]:
    """Create a fresh table test.tf_<hex> from a DDL template; dropped after the test."""
    made: list[tuple[ThrowawayServer, str]] = []

    def make(srv: ThrowawayServer, ddl: str) -> str:
        name = f"test.tf_{uuid.uuid4().hex[:10]}"
        admin_exec(srv, ddl.format(table=name))
        made.append((srv, name))
        return name

    yield make
    for srv, name in made:
        if srv.pid is not None:
            admin_exec(srv, "SET SESSION lock_wait_timeout = 5", f"DROP TABLE IF EXISTS {name}")


# --- 1. server restart under load ---

THREADS, MAX_SIZE = 16, 4
GET_TIMEOUT, READ_TIMEOUT = 2.0, 2.0
LOAD_OPS = 20_000  # per thread; the loop normally ends on the stop event long before
DOWN_AFTER_KILL = GET_TIMEOUT + 0.5


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_under_load(
    victim: ThrowawayServer,
    table_on: Callable[[ThrowawayServer, str], str],
    make_pool: MakePool,
    users: Callable[[ThrowawayServer, str], str],
    how: str,
) -> None:
    user = users(victim, "fp_load")
    table = table_on(victim, "CREATE TABLE {table} (id INT PRIMARY KEY, n INT NOT NULL)")
    admin_exec(
        victim,
        f"INSERT INTO {table} VALUES " + ", ".join(f"({i}, 0)" for i in range(THREADS)),
    )
    pool = make_pool(
        victim,
        user,
        min_size=1,
        max_size=MAX_SIZE,
        timeout=GET_TIMEOUT,
        connect_timeout=1,
        read_timeout=READ_TIMEOUT,
        write_timeout=READ_TIMEOUT,
    )
    timings = Timings()
    stop = threading.Event()
    committed = [0] * THREADS  # commits that returned OK
    uncertain = [0] * THREADS  # commits that raised: may or may not have been applied
    strangers: list[BaseException] = []

    def transaction(row: int) -> None:
        try:
            conn = timings.call("get", GET_TIMEOUT, pool.get_connection)
        except pymysql.err.Error:
            stop.wait(0.01)  # the pool already waited; don't spin on a dead server
            return
        stage = "statements"
        try:
            with conn:
                with conn.cursor() as cur:
                    sql = f"UPDATE {table} SET n = n + 1 WHERE id = %s"
                    timings.call("update", READ_TIMEOUT, cur.execute, sql, (row,))
                    sql = f"SELECT n FROM {table} WHERE id = %s"
                    timings.call("select", READ_TIMEOUT, cur.execute, sql, (row,))
                stage = "commit"
                timings.call("commit", READ_TIMEOUT, conn.commit)
                committed[row] += 1
                stage = "return"
                began = time.monotonic()
            timings.record("return", began, READ_TIMEOUT, None)
        except pymysql.err.Error:
            if stage == "commit":
                uncertain[row] += 1

    def load(row: int) -> None:
        for _ in range(LOAD_OPS):
            if stop.is_set():
                return
            try:
                transaction(row)
            except BaseException as exc:  # noqa: BLE001 - anything not pymysql's is a finding
                strangers.append(exc)
                return

    with Sampler(pool, victim, user) as sampler:
        workers = [start_thread(load, row) for row in range(THREADS)]
        try:
            time.sleep(0.5)
            created_before = pool.stats()["created"]
            fault = time.monotonic()
            if how == "sigterm":
                victim.stop()
            else:
                victim.kill()
                time.sleep(DOWN_AFTER_KILL)  # longer than GET_TIMEOUT: borrowers must give up
            victim.start()
            cleared = time.monotonic()
            time.sleep(RECOVERY_GRACE + 2.0)
        finally:
            stop.set()
            for worker in workers:
                worker.finish(GET_TIMEOUT + 3 * READ_TIMEOUT + SLACK)

    assert strangers == []
    assert timings.overruns() == []
    before = [op for op in timings.ops if op.started < fault]
    assert before, "no request ran before the fault"
    ended_before = [op for op in before if op.started + op.elapsed < fault]
    assert [op for op in ended_before if op.error is not None] == []  # healthy until the fault
    # A quick restart may be fully transparent (a borrower retries its connect until its
    # deadline), so the proof that the fault was real is that the pool replaced connections.
    if how == "sigkill":  # down longer than GET_TIMEOUT: some borrowers gave up, in time
        gave_up = [
            op
            for op in timings.failed()
            if op.kind == "get" and isinstance(op.error, GetConnectionFromPoolError)
        ]
        assert gave_up
        assert {errno(op.error.__cause__) for op in gave_up} <= {2003, None}
    assert_recovered(timings, cleared)
    sampler.assert_within(MAX_SIZE)
    stats = settle(pool, victim, user)
    assert 1 <= stats["total"] <= MAX_SIZE
    assert stats["discarded"] >= 1
    assert stats["created"] > created_before
    rows = dict(victim.query(f"SELECT id, n FROM {table}"))
    for row in range(THREADS):  # no committed work lost, nothing applied twice
        assert committed[row] <= rows[row] <= committed[row] + uncertain[row], row


# --- 2. KILL CONNECTION ---


def test_kill_lent_connections_mid_query(
    victim: ThrowawayServer, make_pool: MakePool, users: Callable[[ThrowawayServer, str], str]
) -> None:
    user = users(victim, "fp_kill")
    pool = make_pool(victim, user, max_size=3, timeout=2, read_timeout=5)
    timings = Timings()
    running: dict[int, threading.Event] = {}
    ids: list[int] = []
    guard = threading.Lock()

    def sleep_on_a_loan(slot: int) -> None:
        with timings.call("get", 2, pool.get_connection) as conn:
            with guard:
                ids.append(connection_id(conn))
            running[slot].set()
            timings.call("query", 5, scalar, conn, "SELECT SLEEP(2)")

    def sleeping_sessions() -> int:
        sql = (
            "SELECT COUNT(*) FROM information_schema.processlist "
            f"WHERE user = '{user}' AND info LIKE 'SELECT SLEEP%'"
        )
        return int(victim.query(sql)[0][0])

    with Sampler(pool, victim, user) as sampler:
        for slot in range(2):
            running[slot] = threading.Event()
        workers = [start_thread(sleep_on_a_loan, slot) for slot in range(2)]
        for event in running.values():
            assert event.wait(WAIT_LIMIT)
        wait_until(lambda: sleeping_sessions() == 2, "both loans to sit in SELECT SLEEP(2)")
        for cid in ids:
            victim.query(f"KILL CONNECTION {cid}")
        errors = []
        for worker in workers:
            with pytest.raises(pymysql.err.OperationalError) as raised:
                worker.finish()
            errors.append(raised.value)
        cleared = time.monotonic()
        # An error at all shows the kill cut the sleep short: SLEEP(2) alone returns a row.
        assert [errno(exc) in DISCONNECTED for exc in errors] == [True, True], errors
        stats = pool.stats()
        assert (stats["discarded"], stats["in_use"], stats["total"]) == (2, 0, 0)

        time.sleep(RECOVERY_GRACE)
        lent = [timings.call("get", 2, pool.get_connection) for _ in range(3)]
        try:
            new_ids = [timings.call("query", 5, connection_id, conn) for conn in lent]
        finally:
            for conn in lent:
                conn.close()
    assert not set(new_ids) & set(ids)
    assert timings.overruns() == []
    assert_recovered(timings, cleared)
    sampler.assert_within(3)
    stats = settle(pool, victim, user)
    assert stats["total"] == 3


def test_kill_idle_connections(
    victim: ThrowawayServer, make_pool: MakePool, users: Callable[[ThrowawayServer, str], str]
) -> None:
    user = users(victim, "fp_killidle")
    pool = make_pool(victim, user, max_size=3, timeout=2, read_timeout=2)
    timings = Timings()
    lent = [pool.get_connection() for _ in range(3)]
    ids = [connection_id(conn) for conn in lent]
    for conn in lent:
        conn.close()
    assert sessions_of(victim, user) == 3

    with Sampler(pool, victim, user) as sampler:
        for cid in ids[:2]:  # two of the three idle connections die, one survives
            victim.query(f"KILL CONNECTION {cid}")
        wait_until(lambda: sessions_of(victim, user) == 1, "the server to end the killed sessions")
        cleared = time.monotonic()
        time.sleep(RECOVERY_GRACE)
        for _ in range(3):  # one at a time: each loan gets the most recent idle connection
            with timings.call("get", 2, pool.get_connection) as conn:
                timings.call("query", 2, scalar, conn, "SELECT 1")
        lent = [timings.call("get", 2, pool.get_connection) for _ in range(3)]
        try:
            new_ids = [timings.call("query", 2, connection_id, conn) for conn in lent]
        finally:
            for conn in lent:
                conn.close()
    assert ids[2] in new_ids  # the survivor was kept
    assert not set(new_ids) & set(ids[:2])
    assert timings.overruns() == []
    assert_recovered(timings, cleared)
    sampler.assert_within(3)
    stats = settle(pool, victim, user)
    assert stats["discarded"] == 2
    assert stats["total"] == 3


# --- 3. wait_timeout ---


def test_wait_timeout_expiry_is_transparent(
    victim: ThrowawayServer, make_pool: MakePool, users: Callable[[ThrowawayServer, str], str]
) -> None:
    user = users(victim, "fp_wait")
    pool = make_pool(
        victim,
        user,
        max_size=3,
        timeout=2,
        read_timeout=2,
        ping_interval=None,  # no COM_PING: only the free socket checks can notice the dead links
        init_command="SET SESSION wait_timeout = 1",
    )
    timings = Timings()
    lent = [pool.get_connection() for _ in range(3)]
    old_ids = [connection_id(conn) for conn in lent]
    assert [scalar(conn, "SELECT @@wait_timeout") for conn in lent] == [1, 1, 1]
    for conn in lent:
        conn.close()

    time.sleep(2.5)
    assert sessions_of(victim, user) == 0  # the server really dropped them
    cleared = time.monotonic() - RECOVERY_GRACE  # nothing is left to clear: all must succeed
    lent = []
    try:
        for _ in range(3):
            conn = timings.call("get", 2, pool.get_connection)
            lent.append(conn)
        new_ids = [timings.call("query", 2, connection_id, conn) for conn in lent]
        for conn in lent:  # keep the new ones alive while the test settles, however slowly
            conn.cursor().execute("SET SESSION wait_timeout = 60")
    finally:
        for conn in lent:
            conn.close()
    assert not set(new_ids) & set(old_ids)
    assert timings.overruns() == []
    assert_recovered(timings, cleared)
    stats = settle(pool, victim, user)
    assert stats["discarded"] == 3
    assert stats["total"] == 3
    assert stats["timeouts"] == 0


# --- 4. too many connections (1040) ---


def test_too_many_connections(
    crowded_server: ThrowawayServer,
    make_pool: MakePool,
    users: Callable[[ThrowawayServer, str], str],
) -> None:
    srv = crowded_server
    user, hog = users(srv, "fp_crowd"), users(srv, "fp_hog")
    pool = make_pool(srv, user, max_size=4, timeout=1, connect_timeout=2, read_timeout=2)
    timings = Timings()
    held_by_pool = pool.get_connection()
    before = pool.stats()
    assert (before["total"], before["in_use"]) == (1, 1)
    # Root's one extra connection beyond max_connections is no refuge: a refused connect in
    # progress occupies it. So the watcher and the sampler connect before the server is full.
    watcher = srv.admin()
    hogs: list[Any] = []
    refused: list[BaseException] = []
    with Sampler(pool, srv, user) as sampler:
        wait_until(lambda: len(sampler.sessions) > 0, "the sampler to connect")
        try:
            for _ in range(20):  # fill the server up to max_connections as a non-SUPER user
                try:
                    hogs.append(pymysql.connect(**srv.connect_kwargs(user=hog, password="")))
                except pymysql.err.OperationalError as exc:
                    refused.append(exc)
                    break
            assert [errno(exc) for exc in refused] == [1040], "the server never refused: no fault"
            assert len(hogs) >= 6

            for wait in (1.0, 0.0):
                with pytest.raises(GetConnectionFromPoolError) as raised:
                    timings.call("get", wait, pool.get_connection, wait)
                cause = raised.value.__cause__
                assert isinstance(cause, pymysql.err.OperationalError), cause
                assert errno(cause) == 1040
                stats = pool.stats()
                assert (stats["total"], stats["in_use"], stats["waiting"]) == (1, 1, 0)
            assert timings.ops[0].elapsed >= 0.5  # it kept trying until near its deadline
            assert pool.stats()["connect_errors"] >= 2
            wait_until(  # a refused session may linger a moment in the processlist
                lambda: scalar(watcher, PROCESSLIST, (user,)) == 1,
                "the refused sessions to leave the server",
            )
        finally:
            for conn in hogs:
                close_quietly(conn)
            close_quietly(watcher)
        cleared = time.monotonic()
        wait_until(lambda: sessions_of(srv, hog) == 0, "the server to end the hogs' sessions")
        time.sleep(RECOVERY_GRACE)

        lent = [timings.call("get", 1, pool.get_connection, 1) for _ in range(3)]
        try:
            assert [timings.call("query", 2, scalar, c, "SELECT 1") for c in lent] == [1, 1, 1]
        finally:
            for conn in lent:
                conn.close()
            held_by_pool.close()
    assert timings.overruns() == []
    assert_recovered(timings, cleared)
    sampler.assert_within(4)
    stats = settle(pool, srv, user)
    assert stats["total"] == 4


# --- 5. a listener that accepts TCP but never greets ---


class SilentListener:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (no MySQL handshake)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        for _ in range(1_000_000):
            if self._stopping.is_set():
                return
            if select.select([self.sock], [], [], 0.02)[0]:
                conn, _ = self.sock.accept()
                with self._lock:
                    self.accepted.append(conn)

    def still_open(self) -> int:
        """Accepted connections the client has not closed yet (no EOF waiting)."""
        with self._lock:
            conns = list(self.accepted)
        count = 0
        for conn in conns:
            readable = select.select([conn], [], [], 0)[0]
            if not readable or conn.recv(1, socket.MSG_PEEK):
                count += 1
        return count

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(WAIT_LIMIT)
        assert not self._thread.is_alive(), "listener thread still running"
        with self._lock:
            for conn in self.accepted:
                conn.close()
        self.sock.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


def test_listener_that_never_greets(silent_listener: SilentListener) -> None:
    listener = silent_listener
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": listener.port,
        "user": "nobody",
        "ssl_disabled": True,
        "connect_timeout": 0.5,
        "max_size": 2,
    }
    pool = ConnectionPool(PoolConfig(**settings), name="silent")
    try:
        timings = Timings()
        with pytest.raises(GetConnectionFromPoolError) as raised:
            timings.call_failing("get", 1, pool.get_connection, 1)
        assert errno(raised.value.__cause__) == 2013, repr(raised.value.__cause__)
        assert timings.ops[-1].elapsed >= 0.4  # it did try the handshake, bounded

        with pytest.raises(GetConnectionFromPoolError) as raised:
            timings.call_failing("get", 0.5, pool.get_connection, 0)  # connect_timeout bounds it
        assert errno(raised.value.__cause__) == 2013, repr(raised.value.__cause__)

        with pytest.raises(pymysql.err.OperationalError) as raised_at_fill:
            timings.call_failing("fill", 0.5, ConnectionPool, PoolConfig(**settings, min_size=1))
        assert errno(raised_at_fill.value) == 2013

        assert timings.overruns() == []
        assert listener.accepted, "the pool never reached the listener: no fault"
        stats = pool.stats()
        assert (stats["total"], stats["idle"], stats["in_use"], stats["waiting"]) == (0, 0, 0, 0)
        assert stats["connect_errors"] >= 2
        wait_until(lambda: listener.still_open() == 0, "the pool to close every silent socket")
    finally:
        shut(pool)


# --- 6. deadlock ---


def test_deadlock_victim_stays_reusable(
    victim: ThrowawayServer,
    table_on: Callable[[ThrowawayServer, str], str],
    make_pool: MakePool,
    users: Callable[[ThrowawayServer, str], str],
) -> None:
    user = users(victim, "fp_dead")
    table = table_on(victim, "CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(16))")
    admin_exec(victim, f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
    pool = make_pool(victim, user, max_size=2, timeout=2, read_timeout=10, autocommit=False)
    timings = Timings()
    both_locked = threading.Barrier(2, timeout=WAIT_LIMIT)
    outcome: dict[str, tuple[int, BaseException | None]] = {}

    def cross(name: str, first: int, second: int) -> None:
        error = None
        with timings.call("get", 2, pool.get_connection) as conn:
            cid = connection_id(conn)
            try:
                with conn.cursor() as cur:
                    sql = f"UPDATE {table} SET v = %s WHERE id = %s"
                    timings.call("update", 10, cur.execute, sql, (name, first))
                    both_locked.wait()
                    timings.call("update", 10, cur.execute, sql, (name, second))
                timings.call("commit", 10, conn.commit)
            except pymysql.err.OperationalError as exc:
                error = exc
                raise  # the pool sees the error, as in real use
            finally:
                outcome[name] = (cid, error)

    def run(name: str, first: int, second: int) -> None:
        with contextlib.suppress(pymysql.err.OperationalError):
            cross(name, first, second)

    workers = [start_thread(run, "x", 1, 2), start_thread(run, "y", 2, 1)]
    for worker in workers:
        worker.finish()

    errors = {name: error for name, (_, error) in outcome.items() if error is not None}
    assert len(errors) == 1, outcome  # exactly one victim
    ((victim_name, error),) = errors.items()
    assert errno(error) == 1213
    winner = "y" if victim_name == "x" else "x"
    assert victim.query(f"SELECT v FROM {table} ORDER BY id") == ((winner,), (winner,))
    stats = pool.stats()
    assert stats["discarded"] == 0
    assert stats["resets"] >= 1  # the victim's loan was rolled back on return
    lent = [pool.get_connection(timeout=0), pool.get_connection(timeout=0)]
    try:
        ids_after = {connection_id(conn) for conn in lent}
        assert scalar(lent[0], "SELECT @@in_transaction") == 0
    finally:
        for conn in lent:
            conn.close()
    assert outcome[victim_name][0] in ids_after  # same CONNECTION_ID: reused, not reopened
    assert ids_after == {cid for cid, _ in outcome.values()}
    assert timings.overruns() == []
    settle(pool, victim, user)


# --- 7. read-only server (1290) ---


def test_read_only_server_keeps_connections(
    victim: ThrowawayServer,
    table_on: Callable[[ThrowawayServer, str], str],
    make_pool: MakePool,
    users: Callable[[ThrowawayServer, str], str],
) -> None:
    user = users(victim, "fp_ro")
    table = table_on(victim, "CREATE TABLE {table} (id INT PRIMARY KEY)")
    pool = make_pool(victim, user, max_size=1, timeout=2, read_timeout=2, autocommit=False)
    timings = Timings()
    with pool.get_connection() as conn:
        first_id = connection_id(conn)
        conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")
        conn.commit()
    try:
        admin_exec(victim, "SET GLOBAL read_only = 1")
        resets = pool.stats()["resets"]
        with (
            pytest.raises(pymysql.err.OperationalError) as raised,
            timings.call("get", 2, pool.get_connection) as conn,
        ):
            assert connection_id(conn) == first_id
            try:
                timings.call("insert", 2, conn.cursor().execute, f"INSERT INTO {table} VALUES (2)")
            except pymysql.err.OperationalError as exc:
                verdict = pool._hooks.classify_error(pool=pool, connection=conn, error=exc)
                assert verdict is Verdict.RESET
                raise
        assert errno(raised.value) == 1290
        stats = pool.stats()
        assert (stats["discarded"], stats["total"], stats["idle"]) == (0, 1, 1)
        assert stats["resets"] == resets + 1  # rolled back, kept

        for _ in range(3):  # reads keep working on the very same connection
            with timings.call("get", 2, pool.get_connection) as conn:
                assert connection_id(conn) == first_id
                assert timings.call("read", 2, scalar, conn, f"SELECT COUNT(*) FROM {table}") == 1
    finally:
        admin_exec(victim, "SET GLOBAL read_only = 0")
    cleared = time.monotonic()
    time.sleep(RECOVERY_GRACE)
    with timings.call("get", 2, pool.get_connection) as conn:
        assert connection_id(conn) == first_id
        timings.call("insert", 2, conn.cursor().execute, f"INSERT INTO {table} VALUES (2)")
        conn.commit()
    assert victim.query(f"SELECT COUNT(*) FROM {table}") == ((2,),)
    assert timings.overruns() == []
    assert_recovered(timings, cleared)
    stats = settle(pool, victim, user)
    assert (stats["total"], stats["created"], stats["discarded"]) == (1, 1, 0)


# --- 8. a borrower thread that dies holding a connection ---


@pytest.mark.parametrize("leak_threshold", [0.2, None], ids=["leak-threshold", "no-threshold"])
def test_dead_borrower_thread_slot_is_reclaimed(
    leak_threshold: float | None,
    victim: ThrowawayServer,
    table_on: Callable[[ThrowawayServer, str], str],
    make_pool: MakePool,
    users: Callable[[ThrowawayServer, str], str],
) -> None:
    user = users(victim, "fp_leak")
    table = table_on(victim, "CREATE TABLE {table} (id INT PRIMARY KEY, v INT)")
    admin_exec(victim, f"INSERT INTO {table} VALUES (1, 0)")
    pool = make_pool(victim, user, max_size=1, read_timeout=2, leak_threshold=leak_threshold)
    timings = Timings()

    def take_and_die() -> int:
        conn = pool.get_connection(timeout=2)
        conn.cursor().execute(f"UPDATE {table} SET v = 1 WHERE id = 1")  # row lock, no commit
        return connection_id(conn)  # the thread ends; the connection is never returned

    dead_id = start_thread(take_and_die).finish()
    assert pool.stats()["in_use"] == 1  # the dead thread still holds it, for now
    died = time.monotonic()
    # The only slot is taken: this waits until the pool reclaims it.
    with timings.call("get", 5, pool.get_connection, 5) as conn:
        reclaimed = time.monotonic() - died
        new_id = connection_id(conn)
        assert scalar(conn, f"SELECT v FROM {table} WHERE id = 1") == 0  # rolled back
        conn.cursor().execute("SET SESSION innodb_lock_wait_timeout = 1")
        conn.cursor().execute(f"UPDATE {table} SET v = 2 WHERE id = 1")  # the lock is gone
        conn.commit()
    assert new_id != dead_id
    assert reclaimed < 3.0, f"reclaimed after {reclaimed:.2f} s"  # maintenance runs each <= 1 s
    stats = pool.stats()
    assert stats["leaks"] >= 1
    assert stats["discarded"] == 1
    assert timings.overruns() == []
    stats = settle(pool, victim, user)
    assert stats["total"] == 1


# --- 9. a hung server (SIGSTOP) ---


@pytest.mark.parametrize("size", [4, 10], ids=["max_size-4", "default-max_size-10"])
def test_hung_server_requests_fail_in_time_then_recover(
    victim: ThrowawayServer,
    make_pool: MakePool,
    users: Callable[[ThrowawayServer, str], str],
    size: int,
) -> None:
    user = users(victim, "fp_hung")
    pool = make_pool(
        victim,
        user,
        max_size=size,
        timeout=1,
        connect_timeout=1,
        read_timeout=1,
        write_timeout=1,
        ping_interval=0,
        ping_timeout=0.5,
    )
    timings = Timings()
    warm = [pool.get_connection() for _ in range(size)]
    for conn in warm:
        conn.close()
    assert pool.stats()["idle"] == size

    with Sampler(pool, victim, user) as sampler:
        loan = pool.get_connection()
        victim.pause()
        try:
            wait_stopped(victim)
            with pytest.raises(pymysql.err.OperationalError) as raised, loan:
                timings.call("query", 1, scalar, loan, "SELECT 1")
            assert errno(raised.value) == 2013
            assert timings.ops[-1].elapsed >= 0.9  # it did wait for the read timeout
            assert pool.stats()["discarded"] == 1

            # size - 1 idle connections: each fails its ping; none may stretch the deadline.
            # wait=0 opens a connection at once: connect_timeout (1 s) bounds it.
            for wait in (1.0, 0.0):
                with pytest.raises(GetConnectionFromPoolError):
                    timings.call_failing("get", max(wait, 1.0), pool.get_connection, wait)
        finally:
            victim.resume()
        cleared = time.monotonic()
        time.sleep(RECOVERY_GRACE)
        lent = [timings.call("get", 1, pool.get_connection) for _ in range(size)]
        try:
            values = [timings.call("query", 1, scalar, conn, "SELECT 1") for conn in lent]
        finally:
            for conn in lent:
                conn.close()
    assert values == [1] * size
    assert timings.overruns() == []
    assert_recovered(timings, cleared)
    sampler.assert_within(size)
    stats = settle(pool, victim, user)
    assert stats["total"] == size
    assert stats["timeouts"] == 2
