"""The pool's life over time, against a real MariaDB: the maintenance thread (lifetimes, idle
timeouts, keepalive, refill, leak detection), outages, close(timeout), resize and fork safety."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, NoReturn

import pymysql
import pytest

from pymysqlpool_registry import (
    Connection,
    ConnectionPool,
    GetConnectionFromPoolError,
    PolicyManager,
    PoolClosedError,
    PoolConfig,
    hookimpl,
)
from pymysqlpool_registry.testing import (
    WAIT_LIMIT,
    connection_id,
    entry,
    scalar,
    snapshot,
    start_thread,
    wait_until,
)
from pymysqlpool_registry.throwaway import ServerNotFound, ThrowawayServer

MakePool = Callable[..., ConnectionPool]
MAINTENANCE = "pymysqlpool-maintenance"  # the name prefix of a pool's maintenance thread
POOL_NAME = "lc"


# --- helpers ---


def checkout_ids(pool: ConnectionPool, count: int) -> list[int]:
    """Borrow *count* connections at once, read their CONNECTION_IDs, give them all back."""
    conns: list[Connection] = []
    try:
        for _ in range(count):
            conns.append(pool.get_connection(timeout=WAIT_LIMIT))
        return [connection_id(conn) for conn in conns]
    finally:
        for conn in conns:
            conn.close()


class Events:
    """A plugin recording the hooks of interest here, with the calling thread and the time."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _add(self, hook: str, **kwargs: Any) -> None:
        kwargs["thread"] = threading.current_thread().name
        kwargs["at"] = time.monotonic()
        self.calls.append((hook, kwargs))

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in list(self.calls) if name == hook]

    def discards(self) -> list[tuple[Connection, str]]:
        return [(e["connection"], e["reason"]) for e in self.of("discard")]

    @hookimpl(wrapper=True)
    def pymysqlpool_create_connection(self, reason: str) -> Generator[None, Connection, Connection]:
        try:
            conn = yield
        except Exception as exc:
            self._add("connect_failed", reason=reason, error=exc)
            raise
        return conn

    @hookimpl
    def pymysqlpool_on_connect(
        self, pool: ConnectionPool, connection: Connection, reason: str
    ) -> None:
        self._add("connect", pool=pool, connection=connection, reason=reason)

    @hookimpl
    def pymysqlpool_on_discard(
        self, pool: ConnectionPool, connection: Connection, reason: str
    ) -> None:
        self._add("discard", pool=pool, connection=connection, reason=reason)

    @hookimpl
    def pymysqlpool_on_leak(
        self, pool: ConnectionPool, connection: Connection, held: float, stack: str, abandoned: bool
    ) -> None:
        self._add(
            "leak", pool=pool, connection=connection, held=held, stack=stack, abandoned=abandoned
        )

    @hookimpl
    def pymysqlpool_on_reconnect_failed(
        self, pool: ConnectionPool, error: BaseException, elapsed: float
    ) -> None:
        self._add("reconnect_failed", pool=pool, error=error, elapsed=elapsed)


def shut(pool: ConnectionPool) -> None:
    """Close *pool* and, as a safety net for a failed test, whatever it still lends."""
    pool.close()
    for conn in snapshot(pool).lent:
        conn.discard()


# --- fixtures ---


@pytest.fixture
def make_pool(server: ThrowawayServer) -> Iterator[MakePool]:
    """Build pools with the given plugins on the session server (or on=another); closed after."""
    pools: list[ConnectionPool] = []

    def make(
        *plugins: object, on: ThrowawayServer | None = None, **overrides: Any
    ) -> ConnectionPool:
        target = server if on is None else on
        config = PoolConfig(**{**target.connect_kwargs(), **overrides})
        pool = ConnectionPool(config, name=POOL_NAME, manager=PolicyManager(plugins))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        shut(pool)


@pytest.fixture(scope="module")
def own_server() -> Iterator[ThrowawayServer]:
    """A server of this module's own, for the tests that stop it (started from the main thread)."""
    try:
        srv = ThrowawayServer()
    except ServerNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


@pytest.fixture
def outage_server(own_server: ThrowawayServer) -> Iterator[ThrowawayServer]:
    """The module's own server, running before the test and again after it."""
    own_server.start()
    yield own_server
    own_server.start()


# --- max_lifetime ---


def test_idle_connection_past_max_lifetime_is_closed_by_maintenance(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=1, max_lifetime=0.5, max_idle=None)
    with pool.connection() as conn:
        first_id = connection_id(conn)

    wait_until(events.discards, "the maintenance thread to close the expired connection")
    [discard] = events.of("discard")
    assert (discard["connection"], discard["reason"]) == (conn, "expired")
    assert discard["thread"].startswith(MAINTENANCE)
    assert not conn.socket_open
    stats = pool.stats()
    assert (stats["idle"], stats["total"], stats["discarded"]) == (0, 0, 1)
    with pool.connection() as again:
        assert connection_id(again) != first_id


def test_connection_lent_past_max_lifetime_is_closed_when_returned(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=1, max_lifetime=0.3)
    conn = pool.get_connection()
    first_id = connection_id(conn)
    time.sleep(0.6)
    assert events.discards() == []  # never closed under its borrower
    assert scalar(conn, "SELECT 1") == 1
    conn.close()

    assert events.discards() == [(conn, "expired")]
    assert not conn.socket_open
    stats = pool.stats()
    assert (stats["idle"], stats["in_use"], stats["total"]) == (0, 0, 0)
    with pool.connection() as again:
        assert connection_id(again) != first_id


def test_idle_connection_past_max_lifetime_is_not_lent(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=1, max_lifetime=0.3, max_idle=None)
    with pool.connection() as conn:
        first_id = connection_id(conn)
    time.sleep(0.5)  # expired; the maintenance thread may not have had a round since
    with pool.connection() as again:
        assert again is not conn
        assert connection_id(again) != first_id
    assert events.discards()[0] == (conn, "expired")
    assert not conn.socket_open


def test_lifetimes_are_jittered_within_ten_percent(make_pool: MakePool) -> None:
    lifetime = 60.0
    before = time.monotonic()
    pool = make_pool(min_size=8, max_size=8, max_lifetime=lifetime)
    after = time.monotonic()
    conns = list(snapshot(pool).idle)
    assert len(conns) == 8
    created = [
        entry(conn).idle_since for conn in conns
    ]  # set when opened; not yet lent or returned
    assert all(before <= when <= after for when in created)

    spans = [entry(conn).expires_at - entry(conn).idle_since for conn in conns]
    assert all(0.9 * lifetime - 1e-6 <= span <= lifetime + 1e-6 for span in spans), spans
    assert len(set(spans)) > 1, "connections opened together would expire together"


# --- max_idle ---


def test_idle_connections_above_min_size_close_after_max_idle(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=1, max_size=4, max_idle=0.3)
    conns = [pool.get_connection() for _ in range(4)]
    for conn in conns:
        conn.close()

    wait_until(lambda: pool.stats()["total"] == 1, "the idle surplus to be closed")
    time.sleep(1.0)  # many more rounds (one every 0.075 s): never below min_size
    stats = pool.stats()
    assert (stats["idle"], stats["total"], stats["in_use"]) == (1, 1, 0)
    assert stats["created"] == 4  # the last one was kept, not closed and reopened
    discards = events.of("discard")
    assert [e["reason"] for e in discards] == ["idle"] * 3
    assert all(e["thread"].startswith(MAINTENANCE) for e in discards)
    closed = [e["connection"] for e in discards]
    assert not any(conn.socket_open for conn in closed)
    with pool.connection() as kept:
        assert kept in conns
        assert kept not in closed
        assert scalar(kept, "SELECT 1") == 1


# --- keepalive ---

SHORT_WAIT_TIMEOUT = "SET SESSION wait_timeout=2"


def test_keepalive_keeps_idle_connections_past_wait_timeout(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(
        events, min_size=2, max_size=2, init_command=SHORT_WAIT_TIMEOUT, keepalive_interval=0.5
    )
    with pool.connection() as conn:
        assert scalar(conn, "SELECT @@wait_timeout") == 2
    ids = sorted(checkout_ids(pool, 2))

    time.sleep(4.0)  # twice the server's wait_timeout

    assert sorted(checkout_ids(pool, 2)) == ids
    assert events.discards() == []
    stats = pool.stats()
    assert (stats["created"], stats["discarded"]) == (2, 0)


def test_without_keepalive_the_server_drops_idle_connections(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(
        events,
        min_size=2,
        max_size=2,
        init_command=SHORT_WAIT_TIMEOUT,
        keepalive_interval=None,
        ping_interval=None,
    )
    ids = checkout_ids(pool, 2)
    idle = list(snapshot(pool).idle)

    time.sleep(4.0)
    wait_until(
        lambda: all(conn.server_closed() for conn in idle),
        "the server to close the connections idle past wait_timeout",
    )

    new_ids = checkout_ids(pool, 2)
    assert set(new_ids).isdisjoint(ids)
    discards = events.of("discard")
    assert [e["reason"] for e in discards] == ["dead", "dead"]
    assert {id(e["connection"]) for e in discards} == {id(conn) for conn in idle}
    # found by the maintenance round's socket check or at checkout, whichever came first
    assert pool.stats()["created"] == 4


# --- refill to min_size ---


def test_maintenance_replaces_killed_idle_connections(
    server: ThrowawayServer, make_pool: MakePool
) -> None:
    events = Events()
    pool = make_pool(events, min_size=3, max_size=3, keepalive_interval=0.2)
    ids = checkout_ids(pool, 3)
    killed, survivor = ids[:2], ids[2]
    for cid in killed:
        server.query(f"KILL CONNECTION {cid}")

    def refilled() -> bool:
        stats = pool.stats()
        return stats["discarded"] == 2 and stats["created"] == 5 and stats["total"] == 3

    wait_until(refilled, "the maintenance thread to replace the killed connections")
    wait_until(lambda: pool.stats()["idle"] == 3, "the refilled connections to be idle")
    discards = events.of("discard")
    assert [e["reason"] for e in discards] == ["dead", "dead"]
    assert all(e["thread"].startswith(MAINTENANCE) for e in discards)
    connects = events.of("connect")
    assert [e["reason"] for e in connects] == ["fill"] * 5
    assert all(e["thread"].startswith(MAINTENANCE) for e in connects[3:])

    now_ids = checkout_ids(pool, 3)
    assert survivor in now_ids
    assert set(now_ids).isdisjoint(killed)
    assert len(set(now_ids)) == 3
    stats = pool.stats()  # all three were live: none replaced at checkout
    assert (stats["discarded"], stats["created"], stats["total"]) == (2, 5, 3)


def test_resize_raising_min_size_refills(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=0, max_size=3)
    assert pool.stats()["total"] == 0
    pool.resize(min_size=2)
    wait_until(lambda: pool.stats()["idle"] == 2, "the pool to refill to the new min_size")
    assert [e["reason"] for e in events.of("connect")] == ["fill", "fill"]
    assert pool.stats()["min_size"] == 2
    assert len(set(checkout_ids(pool, 2))) == 2


# --- the server down (a server of this module's own) ---


def stop_and_wait_for_refill_failure(
    server: ThrowawayServer, pool: ConnectionPool, events: Events
) -> float:
    """Stop *server*, wait until the pool has lost its connections and failed to refill;
    return when the stop began."""
    wait_until(lambda: pool.stats()["idle"] == 2, "the pool to be full before the outage")
    failed_before = len(events.of("connect_failed"))
    stopped = time.monotonic()
    server.stop()
    wait_until(
        lambda: pool.stats()["idle"] == 0 and len(events.of("connect_failed")) > failed_before,
        "the pool to notice the outage and fail to refill",
    )
    return stopped


@pytest.mark.slow
def test_refill_backs_off_while_the_server_is_down(
    outage_server: ThrowawayServer, make_pool: MakePool
) -> None:
    events = Events()
    pool = make_pool(
        events, on=outage_server, min_size=2, max_size=2, keepalive_interval=0.2, connect_timeout=2
    )
    stop_and_wait_for_refill_failure(outage_server, pool, events)
    assert [e["reason"] for e in events.of("discard")] == ["dead", "dead"]

    failed_before = len(events.of("connect_failed"))
    time.sleep(2.0)
    tried = len(events.of("connect_failed")) - failed_before
    assert tried >= 2, "the pool gave up refilling"
    assert tried < 40, f"{tried} refill attempts in 2 s: no backoff"
    assert all(e["reason"] == "fill" for e in events.of("connect_failed"))
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (0, 0)

    outage_server.start()
    wait_until(lambda: pool.stats()["idle"] == 2, "the pool to refill after the outage", 30)
    with pool.connection(timeout=5) as conn:
        assert scalar(conn, "SELECT 1") == 1


@pytest.mark.slow
def test_refill_failures_count_as_connect_errors(
    outage_server: ThrowawayServer, make_pool: MakePool
) -> None:
    events = Events()
    pool = make_pool(
        events, on=outage_server, min_size=2, max_size=2, keepalive_interval=0.2, connect_timeout=2
    )
    assert pool.stats()["connect_errors"] == 0
    stop_and_wait_for_refill_failure(outage_server, pool, events)
    time.sleep(1.0)
    failed = len(events.of("connect_failed"))
    errors = pool.stats()["connect_errors"]
    assert errors >= 1, "failed refill attempts are not counted in stats()['connect_errors']"
    assert errors >= failed - 1  # the counter may trail the hook by the attempt in flight


@pytest.mark.slow
def test_hook_pymysqlpool_on_reconnect_failed_once_per_outage(
    outage_server: ThrowawayServer, make_pool: MakePool
) -> None:
    events = Events()
    pool = make_pool(
        events,
        on=outage_server,
        min_size=2,
        max_size=2,
        keepalive_interval=0.2,
        reconnect_timeout=0.5,
        connect_timeout=2,
    )
    for outage in (1, 2):
        stopped = stop_and_wait_for_refill_failure(outage_server, pool, events)
        wait_until(
            lambda n=outage: len(events.of("reconnect_failed")) >= n,
            f"pymysqlpool_on_reconnect_failed in outage {outage}",
        )
        time.sleep(1.5)  # the outage goes on: no second call
        calls = events.of("reconnect_failed")
        assert len(calls) == outage
        call = calls[-1]
        assert call["pool"] is pool
        assert isinstance(call["error"], pymysql.err.OperationalError)
        assert call["error"].args[0] == 2003  # can't connect
        assert call["elapsed"] >= 0.5
        assert call["at"] - stopped >= 0.5
        assert call["thread"].startswith(MAINTENANCE)

        outage_server.start()
        wait_until(lambda: pool.stats()["idle"] == 2, "the pool to refill after the outage", 30)
        with pool.connection(timeout=5) as conn:
            assert scalar(conn, "SELECT 1") == 1
        assert len(events.of("reconnect_failed")) == outage


# --- leak detection ---


def test_hook_pymysqlpool_on_leak_reports_a_long_loan_once(
    make_pool: MakePool, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    caplog.set_level(logging.WARNING, logger="pymysqlpool_registry")
    events = Events()
    pool = make_pool(events, max_size=1, leak_threshold=0.3)
    conn = pool.get_connection()
    time.sleep(1.0)
    assert len(events.of("leak")) == 1  # reported while still lent
    assert scalar(conn, "SELECT 1") == 1  # the report takes nothing away from the borrower
    conn.close()
    time.sleep(0.3)  # a few more rounds (one every 0.075 s)

    [leak] = events.of("leak")
    assert (leak["pool"], leak["connection"]) == (pool, conn)
    assert leak["held"] >= 0.3
    assert leak["abandoned"] is False
    assert leak["thread"].startswith(MAINTENANCE)
    test_name = request.function.__name__
    assert test_name in leak["stack"], leak["stack"]
    assert pool.stats()["leaks"] == 1
    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name == "pymysqlpool_registry"
    ]
    assert len(warnings) == 1
    assert f"pool({POOL_NAME})" in warnings[0]
    assert "not returned yet" in warnings[0]
    assert test_name in warnings[0]
    assert events.discards() == []  # a leak report does not close the connection
    assert pool.stats()["idle"] == 1


def test_hook_pymysqlpool_on_leak_abandoned_connection_is_reclaimed(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=1)  # leak_threshold off: abandonment is still checked
    taken: list[tuple[Connection, int]] = []

    def take_and_exit() -> None:
        conn = pool.get_connection()
        taken.append((conn, connection_id(conn)))

    start_thread(take_and_exit).finish()
    [(leaked, leaked_id)] = taken

    def reclaimed() -> bool:  # the maintenance thread reports, closes, then frees the slot
        stats = pool.stats()
        return (stats["in_use"], stats["total"]) == (0, 0) and bool(events.discards())

    wait_until(reclaimed, "the pool to reclaim the connection")
    [leak] = events.of("leak")
    assert (leak["pool"], leak["connection"]) == (pool, leaked)
    assert leak["abandoned"] is True
    assert leak["held"] >= 0
    assert events.discards() == [(leaked, "abandoned")]
    assert not leaked.socket_open
    stats = pool.stats()
    assert (stats["total"], stats["leaks"], stats["discarded"]) == (0, 1, 1)
    with pool.get_connection(timeout=0) as conn:  # the only slot is free again
        assert connection_id(conn) != leaked_id


def test_abandoned_connection_slot_goes_to_a_waiting_borrower(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=1, leak_threshold=60)
    taken, leave = threading.Event(), threading.Event()
    leaked: list[Connection] = []

    def take_and_exit_when_asked() -> None:
        leaked.append(pool.get_connection())
        taken.set()
        leave.wait(WAIT_LIMIT)

    def borrow() -> int:
        with pool.connection(timeout=WAIT_LIMIT) as conn:
            return connection_id(conn)

    try:
        thief = start_thread(take_and_exit_when_asked)
        wait_until(taken.is_set, "the other thread to take the connection")
        waiter = start_thread(borrow)
        wait_until(lambda: pool.stats()["waiting"] == 1, "the borrower to queue")
        leave.set()
        thief.finish()
        served = waiter.finish(WAIT_LIMIT + 5)  # once the dead thread's slot was reclaimed
    finally:
        shut(pool)  # stop the maintenance thread before pytest reports a failure
    assert isinstance(served, int)
    [leak] = events.of("leak")
    assert (leak["connection"], leak["abandoned"]) == (leaked[0], True)
    assert "take_and_exit_when_asked" in leak["stack"]  # where the dead thread took it
    assert events.discards()[0] == (leaked[0], "abandoned")


def test_abandoned_connection_is_kept_without_owner_check(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=1, check_owner_thread=False, leak_threshold=0.3)
    taken: list[Connection] = []
    start_thread(lambda: taken.append(pool.get_connection())).finish()
    [leaked] = taken

    wait_until(lambda: events.of("leak"), "the overdue-loan report")  # rounds ran after the exit
    time.sleep(0.5)  # a few more rounds (one every 0.075 s)
    assert [e["abandoned"] for e in events.of("leak")] == [False]
    assert events.discards() == []
    assert pool.stats()["in_use"] == 1
    with pytest.raises(GetConnectionFromPoolError):
        pool.get_connection(timeout=0)
    assert scalar(leaked, "SELECT 1") == 1  # still open; any thread may use and return it
    leaked.close()
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (1, 0)


def test_keepalive_pings_are_not_reported_as_leaks(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, min_size=2, max_size=2, keepalive_interval=0.2, leak_threshold=0.3)
    conns = list(snapshot(pool).idle)
    opened = max(entry(conn).idle_since for conn in conns)
    time.sleep(1.5)
    assert all(
        entry(conn).idle_since > opened + 0.2 for conn in snapshot(pool).idle
    )  # keepalive pinged them
    assert events.of("leak") == []
    assert pool.stats()["leaks"] == 0


class SlowPrePing:
    """A pre-ping that takes its time (a slow network), then lets the default decide."""

    def __init__(self) -> None:
        self.delay = 0.0

    @hookimpl
    def pymysqlpool_pre_ping(self) -> None:
        time.sleep(self.delay)


def test_a_slow_pre_ping_is_not_reported_as_a_leak(make_pool: MakePool) -> None:
    slow, events = SlowPrePing(), Events()
    pool = make_pool(slow, events, max_size=1, leak_threshold=0.3)
    pool.get_connection().close()  # a short loan
    time.sleep(0.5)
    slow.delay = 0.6
    conn = pool.get_connection()  # the pre-ping takes longer than leak_threshold
    conn.close()  # returned as soon as it was lent
    time.sleep(0.3)
    assert events.of("leak") == []
    assert pool.stats()["leaks"] == 0


# --- close(timeout) ---


def test_close_timeout_false_while_a_connection_is_lent(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=2)
    conn = pool.get_connection()
    began = time.monotonic()
    assert pool.close(timeout=0.2) is False
    assert time.monotonic() - began >= 0.2
    assert scalar(conn, "SELECT 1") == 1  # still the borrower's until it comes back
    with pytest.raises(PoolClosedError):
        pool.get_connection()
    conn.close()
    assert events.discards() == [(conn, "pool-closed")]
    assert not conn.socket_open
    assert pool.close(timeout=0.2) is True


def test_close_timeout_waits_for_a_connection_returned_meanwhile(make_pool: MakePool) -> None:
    pool = make_pool(max_size=2)
    taken, returning = threading.Event(), threading.Event()

    def borrow_a_while() -> Connection:
        conn = pool.get_connection()
        taken.set()
        time.sleep(0.3)
        returning.set()
        conn.close()
        return conn

    borrower = start_thread(borrow_a_while)
    wait_until(taken.is_set, "the borrower to take a connection")
    assert pool.close(timeout=2) is True
    assert returning.is_set()  # close() waited for the return
    conn = borrower.finish()
    assert not conn.socket_open
    assert pool.stats()["in_use"] == 0


def test_close_wakes_waiting_borrowers_with_pool_closed_error(make_pool: MakePool) -> None:
    pool = make_pool(max_size=1, timeout=60)
    holder = pool.get_connection()
    waiters = [start_thread(pool.get_connection) for _ in range(2)]
    wait_until(lambda: pool.stats()["waiting"] == 2, "both borrowers to queue")
    pool.close()
    for waiter in waiters:
        with pytest.raises(PoolClosedError):
            waiter.finish()  # within WAIT_LIMIT: woken, not timed out after 60 s
    assert pool.stats()["waiting"] == 0
    holder.close()
    assert not holder.socket_open


# --- resize ---


def test_resize_grow_serves_queued_waiters(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=1, timeout=60)
    holder = pool.get_connection()
    held_id = connection_id(holder)

    def borrow() -> int:
        with pool.connection() as conn:
            return connection_id(conn)

    try:
        waiters = [start_thread(borrow) for _ in range(2)]
        wait_until(lambda: pool.stats()["waiting"] == 2, "both borrowers to queue")
        pool.resize(max_size=3)
        served = [waiter.finish() for waiter in waiters]
    finally:
        holder.close()
    assert held_id not in served  # served while the first connection was still held
    assert len(set(served)) == 2
    assert pool.config.max_size == 3
    stats = pool.stats()
    assert (stats["max_size"], stats["created"], stats["total"], stats["waiting"]) == (3, 3, 3, 0)


def test_resize_shrink_closes_idle_surplus_now_and_lent_on_return(make_pool: MakePool) -> None:
    events = Events()
    pool = make_pool(events, max_size=4)
    conns = [pool.get_connection() for _ in range(4)]
    lent, idle = conns[:2], conns[2:]
    for conn in idle:
        conn.close()

    pool.resize(max_size=1)
    assert sorted(events.discards(), key=lambda d: id(d[0])) == sorted(
        ((conn, "resized") for conn in idle), key=lambda d: id(d[0])
    )
    assert not any(conn.socket_open for conn in idle)
    stats = pool.stats()
    assert (stats["max_size"], stats["total"], stats["idle"], stats["in_use"]) == (1, 2, 0, 2)

    lent[0].close()
    assert events.discards()[-1] == (lent[0], "resized")
    assert not lent[0].socket_open
    lent[1].close()
    assert len(events.discards()) == 3  # the last one fits in the new size: kept
    stats = pool.stats()
    assert (stats["total"], stats["idle"], stats["in_use"]) == (1, 1, 0)
    assert stats["total"] <= pool.config.max_size
    with pool.connection() as conn:
        assert conn is lent[1]
        assert scalar(conn, "SELECT 1") == 1


def test_resize_shrink_keeps_a_waiter_waiting_until_below_max_size(make_pool: MakePool) -> None:
    pool = make_pool(max_size=2, timeout=60)
    first, second = pool.get_connection(), pool.get_connection()
    second_id = connection_id(second)

    def borrow() -> int:
        with pool.connection() as conn:
            return connection_id(conn)

    waiter = start_thread(borrow)
    try:
        wait_until(lambda: pool.stats()["waiting"] == 1, "the borrower to queue")
        pool.resize(max_size=1)
        first.close()  # surplus: closed; its slot must not be reopened while second is lent
        stats = pool.stats()
        assert (stats["total"], stats["waiting"]) == (1, 1), stats
    finally:
        if first in snapshot(pool).lent:
            first.close()
        second.close()  # now the waiter's turn
    assert waiter.finish() == second_id
    stats = pool.stats()
    assert stats["total"] <= 1
    assert stats["created"] == 2


@pytest.mark.parametrize(
    ("sizes", "field"),
    [
        ({"max_size": 0}, "max_size"),
        ({"min_size": -1}, "min_size"),
        ({"min_size": 3}, "min_size"),
        ({"min_size": 2, "max_size": 1}, "min_size"),
    ],
    ids=["max-zero", "min-negative", "min-above-max", "both-crossed"],
)
def test_resize_rejects_invalid_sizes(
    make_pool: MakePool, sizes: dict[str, int], field: str
) -> None:
    pool = make_pool(min_size=1, max_size=2)
    config = pool.config
    with pytest.raises(ValueError, match=field):
        pool.resize(**sizes)
    assert pool.config is config
    stats = pool.stats()
    assert (stats["min_size"], stats["max_size"]) == (1, 2)
    assert len(checkout_ids(pool, 2)) == 2  # still lends up to the old max_size


# --- fork safety ---

CHILD_OK = 0
CHILD_CRASHED = 1
CHILD_LENT_USABLE = 2
CHILD_REUSED_PARENT_SESSION = 3
CHILD_QUERY_WRONG = 4
CHILD_CLOSE_FAILED = 5
CHILD_ENDPOINT_COUNT_WRONG = 6
CHILD_FAILURES = {
    CHILD_CRASHED: "the child raised an unexpected exception",
    CHILD_LENT_USABLE: "the connection lent across the fork was usable in the child",
    CHILD_REUSED_PARENT_SESSION: "the child was lent one of the parent's server sessions",
    CHILD_QUERY_WRONG: "the child's query returned a wrong result",
    CHILD_CLOSE_FAILED: "the child could not close its pool cleanly",
    CHILD_ENDPOINT_COUNT_WRONG: "the child's endpoint stats still counted the parent's sockets",
}


def child_checks(pool: ConnectionPool, lent: Connection, parent_ids: set[int]) -> int:
    """What the forked child verifies; returns its exit code."""
    try:
        scalar(lent, "SELECT 1")
    except pymysql.err.Error:
        pass
    else:
        return CHILD_LENT_USABLE
    conn = pool.get_connection(timeout=10)
    if connection_id(conn) in parent_ids:
        return CHILD_REUSED_PARENT_SESSION
    if scalar(conn, "SELECT 6 * 7") != 42:
        return CHILD_QUERY_WRONG
    conn.close()
    if not pool.close(timeout=5):
        return CHILD_CLOSE_FAILED
    if any(endpoint["open"] for endpoint in pool.endpoint_stats()):
        return CHILD_ENDPOINT_COUNT_WRONG
    return CHILD_OK


def run_child(pool: ConnectionPool, lent: Connection, parent_ids: set[int]) -> NoReturn:
    code = CHILD_CRASHED
    try:
        code = child_checks(pool, lent, parent_ids)
    finally:
        os._exit(code)


def wait_for_child(pid: int, limit: float = WAIT_LIMIT) -> int:
    """The child's exit code; kill it and fail the test if it takes longer than *limit*."""
    deadline = time.monotonic() + limit
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child did not exit within {limit} s")
        time.sleep(0.01)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork on Linux")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_uses_its_own_connections(make_pool: MakePool) -> None:
    pool = make_pool(min_size=2, max_size=4)
    conns = [pool.get_connection() for _ in range(3)]
    ids = [connection_id(conn) for conn in conns]
    lent, lent_id = conns[2], ids[2]
    idle_ids = set(ids[:2])
    for conn in conns[:2]:
        conn.close()
    assert (pool.stats()["idle"], pool.stats()["in_use"]) == (2, 1)

    pid = os.fork()
    if pid == 0:  # the child: always leaves through os._exit
        run_child(pool, lent, set(ids))
    code = wait_for_child(pid)

    assert code == CHILD_OK, CHILD_FAILURES.get(code, f"child exit code {code}")
    # The child sent no COM_QUIT on the shared sockets: the parent's sessions live on.
    assert connection_id(lent) == lent_id
    assert set(checkout_ids(pool, 2)) == idle_ids
    lent.close()
    stats = pool.stats()
    assert (stats["idle"], stats["in_use"], stats["discarded"], stats["created"]) == (3, 0, 0, 3)
