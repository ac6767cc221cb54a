"""The pool's core loop against fake connections: a Hypothesis state machine and waiter hand-offs.

No server: a :class:`FakeConnection` is a real pooled ``Connection`` (built with
``defer_connect=True``) whose socket-level behaviour is a few flags the test sets, and a plugin
hands them to the pool. The state machine keeps an exact model of the pool (which connection is
idle, in which order, which is lent, every counter, every discard and its reason) and checks it
after each step. The pool's maintenance thread is stopped there (its rounds would race the
model: they retire idle connections the server closed); a rule runs its rounds instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from pymysql.constants import SERVER_STATUS

from pymysqlpool_registry import (
    Connection,
    ConnectionPool,
    ConnectionReturnedError,
    GetConnectionFromPoolError,
    PolicyManager,
    PoolClosedError,
    PoolConfig,
    hookimpl,
)
from pymysqlpool_registry import connection as connection_module
from pymysqlpool_registry._maintenance import run_round, sweep_owed
from pymysqlpool_registry.connection import OWED, SENT
from pymysqlpool_registry.testing import Worker, snapshot, start_thread, wait_until
from pymysqlpool_registry.waiting import ConnectGate

AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
WAIT_LIMIT = 10.0  # seconds any bounded poll or join may take before the test fails
COUNTERS = (
    "requests",
    "waited",
    "timeouts",
    "created",
    "connect_errors",
    "closed",
    "discarded",
    "resets",
    "leaks",
)


# --- the fake connection and the plugin that makes them ---


class FakeNetwork:
    """What the fakes share: a server outage, and replies slow to arrive."""

    def __init__(self) -> None:
        self.outage = False  # connecting fails
        self.slow_replies = False  # a pipelined ROLLBACK's OK has not arrived by the next checkout


class FakeConnection(Connection):
    """A pooled Connection without a socket; the "server" is the flags below.

    ``fake_open`` is the client side of the socket (what ``open`` reports), ``eof`` means the
    server closed it (an idle socket turns readable), ``dead`` that the server session is gone
    (with ``eof`` unset: silently, so only a round trip finds out). Each method the pool may
    call mirrors its real counterpart: the borrower guard of Connection._execute_command, a
    pipelined ROLLBACK whose OK is read at the next command or checkout, PyMySQL closing the
    socket when a read or write fails.
    """

    def __init__(self, serial: int, network: FakeNetwork, *, autocommit: bool) -> None:
        super().__init__(
            host="fake.invalid", autocommit=autocommit, ssl_disabled=True, defer_connect=True
        )
        self.serial = serial
        self.network = network
        self.server_status = AUTOCOMMIT if autocommit else 0
        self.fake_open = True
        self.eof = False
        self.dead = False
        self.discards = 0
        self.commands: list[str] = []

    def __repr__(self) -> str:
        return f"<FakeConnection #{self.serial}>"

    @property
    def socket_open(self) -> bool:
        return self.fake_open

    def _lose(self, errno: int = 2013) -> pymysql.err.OperationalError:
        self.fake_open = False  # PyMySQL force-closes the socket when a read or write fails
        return pymysql.err.OperationalError(errno, "Lost connection to server (fake)")

    def _command(self, name: str) -> None:
        """One command and its reply, as Connection._execute_command sends it (after the
        ROLLBACK the pool owes, in the same write)."""
        self._check_borrower()
        if not self.fake_open:
            self.commands.append(name)
            raise pymysql.err.InterfaceError(0, "")  # what PyMySQL raises without a socket
        if self._rollback == OWED:
            self.commands.append("rollback (with the next command)")
            self._rollback = SENT
        self.commands.append(name)
        if name != "ping":
            self._dirty = True
        if self.dead:
            raise self._lose()
        if self._rollback:
            self.read_pending_reply()

    def statement(self, effect: str = "select", error: int | None = None) -> None:
        """A statement run by the borrower: its effect on the session, or a server error."""
        self._command(effect)
        if error is not None:
            raise pymysql.err.ProgrammingError(error, "You have an error in your SQL syntax")
        if effect == "begin":
            self.server_status |= IN_TRANS
        elif effect == "flip-autocommit":
            self.server_status ^= AUTOCOMMIT

    def readable(self) -> bool:
        return (
            not self.fake_open
            or self.eof
            or (self._rollback == SENT and not self.network.slow_replies)
        )

    def send_owed_rollback(self) -> None:
        self.commands.append("rollback (by the maintenance thread)")
        if not self.fake_open:
            raise pymysql.err.InterfaceError(0, "")
        self._rollback = SENT  # sent: whether the server is there shows when the reply is read

    def read_pending_reply(self) -> None:
        self._rollback = 0
        if self.dead:
            raise self._lose()
        self.server_status &= ~IN_TRANS

    def ping_within(self, timeout: float) -> None:
        self._command("ping")

    def rollback(self) -> None:
        self._command("rollback")
        self.server_status &= ~IN_TRANS
        self._dirty = False

    def commit(self) -> None:
        self._command("commit")
        self.server_status &= ~IN_TRANS
        self._dirty = False

    def autocommit(self, value: bool) -> None:
        self.autocommit_mode = bool(value)
        if value != bool(self.server_status & AUTOCOMMIT):
            self._command(f"autocommit={int(value)}")
            self.server_status ^= AUTOCOMMIT

    def discard(self) -> None:
        self.discards += 1
        super().discard()  # the real one: marks it not lent, "closes" (no socket to close)
        self.fake_open = False


class FakeFactory:
    """Plugin: makes FakeConnections; during an outage connecting fails like a down server."""

    def __init__(self, network: FakeNetwork | None = None) -> None:
        self.network = network or FakeNetwork()
        self.made: list[FakeConnection] = []
        self._lock = threading.Lock()

    @property
    def outage(self) -> bool:
        return self.network.outage

    @outage.setter
    def outage(self, value: bool) -> None:
        self.network.outage = value

    @hookimpl
    def pymysqlpool_create_connection(
        self, pool: ConnectionPool, reason: str, timeout: float
    ) -> Connection:
        if self.network.outage:
            raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server (fake outage)")
        with self._lock:
            conn = FakeConnection(len(self.made), self.network, autocommit=pool.config.autocommit)
            self.made.append(conn)
        return conn


class DiscardLog:
    """Plugin: records every discarded connection with its reason."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str]] = []

    @hookimpl
    def pymysqlpool_on_discard(
        self, pool: ConnectionPool, connection: Connection, reason: str
    ) -> None:
        self.events.append((connection.serial, reason))


def fake_pool(factory: FakeFactory, *plugins: object, **overrides: Any) -> ConnectionPool:
    """A pool of FakeConnections whose maintenance thread has nothing to do."""
    settings_: dict[str, Any] = {
        "host": "fake.invalid",
        "min_size": 0,
        "max_size": 1,
        "timeout": 0,
        "ping_interval": None,
        "max_lifetime": None,
        "max_idle": None,
        "keepalive_interval": None,
        "leak_threshold": None,
        **overrides,
    }
    manager = PolicyManager([factory, *plugins], load_entrypoints=False)
    return ConnectionPool(PoolConfig(**settings_), manager=manager, name="fake")


def shut(pool: ConnectionPool) -> None:
    """Close *pool*, discard what it still lends, and wait for its maintenance thread."""
    pool.close()
    for conn in snapshot(pool).lent:
        conn.discard()
    pool._maintenance.join(WAIT_LIMIT)


# --- the state machine ---

#: What a loan's body raises: an application error, a server error (from a statement), the
#: connection lost during a statement, a disconnect error with the socket still open, and a
#: BaseException that is not an Exception.
ERROR_KINDS = ("value", "syntax", "lost", "gone-open", "interrupt")
LOST = (2006, 2013)  # the disconnect errors these tests raise


class FakeInterrupt(BaseException):
    """Stands in for KeyboardInterrupt: not an Exception."""


def fail_loan(conn: FakeConnection, kind: str) -> None:
    """The body of a loan that raises *kind* (a statement on a connection already lost raises
    that instead)."""
    if kind == "value":
        raise ValueError("application error")
    if kind == "syntax":
        conn.statement(error=1064)
    elif kind == "lost":
        conn.dead = True  # the server drops it during the statement
        conn.statement()
    elif kind == "gone-open":
        raise pymysql.err.OperationalError(2006, "MySQL server has gone away (fake)")
    elif kind == "interrupt":
        raise FakeInterrupt
    raise AssertionError(f"the {kind} statement did not raise")


def expected_verdict(conn: FakeConnection, error: BaseException | None) -> str:
    """The default classify_error plugin's documented policy."""
    if error is None:
        return "reuse"
    if not conn.socket_open or isinstance(error, pymysql.err.InterfaceError):
        return "discard"
    if not isinstance(error, Exception):
        return "discard"
    if isinstance(error, pymysql.err.Error):
        return "discard" if error.args[0] in LOST else "reset"
    return "reuse"


def pick(items: Any, index: int) -> FakeConnection:
    """Item *index* (wrapped) of *items* ordered by serial: stable choices that shrink well."""
    ordered = sorted(items, key=lambda conn: conn.serial)
    return ordered[index % len(ordered)]


def pool_open(machine: PoolMachine) -> bool:
    return machine.pool is not None and not machine.closed


class PoolMachine(RuleBasedStateMachine):
    """The pool against an exact model, one thread, timeout=0 (no waiting)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool: ConnectionPool | None = None
        self.rollback_within = connection_module.ROLLBACK_WITHIN
        self.factory = FakeFactory()
        self.net = self.factory.network
        self.log = DiscardLog()
        self.idle: list[FakeConnection] = []
        self.lent: set[FakeConnection] = set()
        self.generation_of: dict[FakeConnection, int] = {}
        self.generation = 0
        self.total = 0
        self.max_size = 1
        self.closed = False
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.discards: list[tuple[int, str]] = []

    # --- the model ---

    def _discard(self, conn: FakeConnection, reason: str) -> None:
        self.discards.append((conn.serial, reason))
        self.total -= 1
        self.counts["closed"] += 1
        if reason != "pool-closed":
            self.counts["discarded"] += 1

    def _server_closed(self, conn: FakeConnection) -> bool:
        """What server_closed() finds: EOF, or a pipelined reply that has arrived and fails."""
        if not conn.socket_open or conn.eof:
            return True
        return conn.dead and conn._rollback == SENT and not self.net.slow_replies

    def _is_fit(self, conn: FakeConnection) -> bool:
        """The default pre-ping: the socket check, then a round trip if ping_interval is 0."""
        return not (self._server_closed(conn) or (conn.dead and self.ping_interval == 0))

    def _expect_return(self, conn: FakeConnection, error: BaseException | None) -> None:
        """Model the pool taking *conn* back after a loan that raised *error*.

        Call it right before the pool does: it reads the fake's state as the pool will find it.
        """
        self.lent.remove(conn)
        verdict = expected_verdict(conn, error)
        reason = None
        reset = False
        if verdict == "discard":
            reason = "error"
        elif not conn.socket_open:
            reason = "broken"
        elif self.generation_of[conn] != self.generation:
            reason = "invalidated"
        elif not conn._rollback:  # one owed or unanswered: no command since the last reset
            rollback = verdict == "reset" or conn.in_transaction  # owed: no I/O at return
            autocommit = bool(conn.server_status & AUTOCOMMIT) is not self.autocommit
            if autocommit and conn.dead:  # SET autocommit is a round trip: it fails
                reason = "reset-failed"
            else:
                reset = rollback or autocommit
        if reason is not None:
            self._discard(conn, reason)
            return
        if reset:
            self.counts["resets"] += 1
        if self.closed:
            self._discard(conn, "pool-closed")
        elif self.total <= self.max_size:
            self.idle.append(conn)
        else:
            self._discard(conn, "resized")

    def _returned(self) -> list[FakeConnection]:
        return [conn for conn in self.factory.made if conn not in self.lent]

    # --- setup ---

    @initialize(
        max_size=st.integers(1, 4),
        lifo=st.booleans(),
        autocommit=st.booleans(),
        ping_interval=st.sampled_from([None, 0.0]),
    )
    def open_pool(
        self, max_size: int, lifo: bool, autocommit: bool, ping_interval: float | None
    ) -> None:
        # every owed ROLLBACK is due at the next maintenance round (the model's "maintain")
        self.rollback_within = connection_module.ROLLBACK_WITHIN
        connection_module.ROLLBACK_WITHIN = 0.0
        self.max_size = max_size
        self.lifo = lifo
        self.autocommit = autocommit
        self.ping_interval = ping_interval
        self.pool = fake_pool(
            self.factory,
            self.log,
            max_size=max_size,
            lifo=lifo,
            autocommit=autocommit,
            ping_interval=ping_interval,
        )
        self.pool._inventory.line.gate = ConnectGate(
            first=0.0002, cap=0.001
        )  # short waits between attempts
        maintenance = self.pool._maintenance
        maintenance.stop()
        assert maintenance.join(WAIT_LIMIT)

    def teardown(self) -> None:
        connection_module.ROLLBACK_WITHIN = self.rollback_within
        if self.pool is not None:
            shut(self.pool)

    # --- lending and returning ---

    @precondition(pool_open)
    @rule(count=st.integers(1, 3))
    def get(self, count: int) -> None:
        """*count* checkouts in a row."""
        for _ in range(count):
            self._get_one()

    def _get_one(self) -> FakeConnection | None:
        """One checkout (None if the pool, as the model expects, had none to give)."""
        assert self.pool is not None
        gate = (
            self.pool._inventory.line.gate
        )  # after a failed connect, the next may start only this late
        if gate.failing:
            time.sleep(max(gate.next_at - time.monotonic(), 0))
        self.counts["requests"] += 1
        expected: FakeConnection | None = None
        while self.idle and expected is None:
            conn = self.idle.pop() if self.lifo else self.idle.pop(0)
            if self._is_fit(conn):
                expected = conn
            else:
                self._discard(conn, "dead")
        opens = expected is None and self.total < self.max_size
        if opens and not self.net.outage:
            self.counts["created"] += 1
            self.total += 1
        elif opens:
            self.counts["connect_errors"] += 1
            self.counts["timeouts"] += 1
        elif expected is None:
            self.counts["waited"] += 1
            self.counts["timeouts"] += 1
        made_before = len(self.factory.made)

        if expected is None and not (opens and not self.net.outage):
            with pytest.raises(GetConnectionFromPoolError) as raised:
                self.pool.get_connection(timeout=0)
            if opens:  # the connect error is the cause
                assert isinstance(raised.value.__cause__, pymysql.err.OperationalError)
                assert raised.value.__cause__.args[0] == 2003
            assert len(self.factory.made) == made_before
            return None
        conn = self.pool.get_connection(timeout=0)
        if expected is None:
            assert len(self.factory.made) == made_before + 1
            assert conn is self.factory.made[-1]
            self.generation_of[conn] = self.generation
        else:
            assert conn is expected, f"lent {conn!r}, the model expected {expected!r}"
        assert conn._lent
        self.lent.add(conn)
        assert isinstance(conn, FakeConnection)
        return conn

    @precondition(lambda self: self.lent)
    @rule(index=st.integers(0, 7), effect=st.sampled_from(["select", "begin", "flip-autocommit"]))
    def run_statement(self, index: int, effect: str) -> None:
        """The borrower runs a statement (and swallows the error if the server is gone)."""
        self._statement(pick(self.lent, index), effect)

    def _statement(self, conn: FakeConnection, effect: str) -> None:
        was_open, dead = conn.socket_open, conn.dead
        try:
            conn.statement(effect)
        except pymysql.err.InterfaceError as exc:
            assert type(exc) is pymysql.err.InterfaceError  # not the pool's guard
            assert not was_open
        except pymysql.err.OperationalError:
            assert was_open
            assert dead
            assert not conn.socket_open
        else:
            assert was_open
            assert not dead
            assert not conn._rollback  # the owed ROLLBACK went first and its reply was read

    @precondition(lambda self: self.lent)
    @rule(index=st.integers(0, 7))
    def give_back(self, index: int) -> None:
        conn = pick(self.lent, index)
        self._expect_return(conn, None)
        conn.close()
        assert not conn._lent

    @precondition(lambda self: self.lent)
    @rule(index=st.integers(0, 7), kind=st.sampled_from(ERROR_KINDS))
    def give_back_raising(self, index: int, kind: str) -> None:
        self._give_back_raising(pick(self.lent, index), kind)

    def _give_back_raising(self, conn: FakeConnection, kind: str) -> None:
        raised: list[BaseException] = []
        with pytest.raises(BaseException) as caught, conn:
            try:
                fail_loan(conn, kind)
            except BaseException as exc:
                raised.append(exc)
                self._expect_return(conn, exc)
                raise
        assert caught.value is raised[0]  # the pool neither swallows nor replaces the error
        assert not conn._lent

    @precondition(pool_open)
    @rule(
        effects=st.lists(st.sampled_from(["select", "begin", "flip-autocommit"]), max_size=3),
        killed=st.sampled_from([None, "silent", "eof"]),
        kind=st.sampled_from([None, *ERROR_KINDS]),
        width=st.integers(1, 3),
    )
    def loan(self, effects: list[str], killed: str | None, kind: str | None, width: int) -> None:
        """Whole loans: check out *width* connections; on the first run statements, maybe lose
        the server, give it back (maybe with an error); then give back the others."""
        conns = [conn for conn in (self._get_one() for _ in range(width)) if conn is not None]
        if not conns:
            return
        conn, *others = conns
        for effect in effects:
            self._statement(conn, effect)
        if killed is not None:
            conn.dead = True
            conn.eof = killed == "eof"
        if kind is None:
            self._expect_return(conn, None)
            conn.close()
        else:
            self._give_back_raising(conn, kind)
        for other in others:
            self._expect_return(other, None)
            other.close()

    @precondition(lambda self: self._returned())
    @rule(index=st.integers(0, 15))
    def with_on_returned(self, index: int) -> None:
        """``with conn:`` on a returned connection lends it again only if it is idle and fit."""
        assert self.pool is not None
        conn = pick(self._returned(), index)
        if self.closed or conn not in self.idle:
            with pytest.raises(ConnectionReturnedError), conn:
                pytest.fail("the block ran on a connection that is not idle")
            return
        self.counts["requests"] += 1
        self.idle.remove(conn)
        if not self._is_fit(conn):
            self._discard(conn, "dead")
            with pytest.raises(ConnectionReturnedError), conn:
                pytest.fail("the block ran on a dead connection")
            return
        self.lent.add(conn)
        with conn:
            assert conn._lent
            assert conn in snapshot(self.pool).lent
            self._expect_return(conn, None)

    # --- what the server does ---

    @precondition(lambda self: any(not conn.dead for conn in [*self.idle, *self.lent]))
    @rule(index=st.integers(0, 15), silent=st.booleans())
    def kill(self, index: int, silent: bool) -> None:
        """The server drops a connection: the socket turns readable, or (silent) only a round
        trip can tell."""
        conn = pick([c for c in [*self.idle, *self.lent] if not c.dead], index)
        conn.dead = True
        conn.eof = not silent

    @precondition(lambda self: self.pool is not None)
    @rule(outage=st.booleans(), slow_replies=st.booleans())
    def network(self, outage: bool, slow_replies: bool) -> None:
        self.net.outage = outage
        self.net.slow_replies = slow_replies

    # --- the pool's own operations ---

    @precondition(pool_open)
    @rule()
    def invalidate(self) -> None:
        assert self.pool is not None
        self.generation += 1
        for conn in self.idle:
            self._discard(conn, "invalidated")
        self.idle.clear()
        self.pool.invalidate()

    @precondition(pool_open)
    @rule(max_size=st.integers(1, 5))
    def resize(self, max_size: int) -> None:
        assert self.pool is not None
        self.max_size = max_size
        while self.total > max_size and self.idle:
            self._discard(self.idle.pop(0), "resized")
        self.pool.resize(max_size=max_size)
        assert self.pool.config.max_size == max_size

    @precondition(lambda self: self.pool is not None)
    @rule()
    def maintain(self) -> None:
        """A maintenance round: it retires the idle connections the server closed (in their
        order); those with a pipelined reply that has arrived it takes out of the idle ones
        (no socket is read under the pool lock), reads the reply, and closes them if it
        failed or puts them back, at the most recent end; with this config it does nothing
        else."""
        assert self.pool is not None
        retired = (
            []
            if self.closed
            else [c for c in self.idle if c._rollback != SENT and self._server_closed(c)]
        )
        for conn in retired:
            self.idle.remove(conn)
            self._discard(conn, "dead")
        answered = (
            [] if self.closed else [c for c in self.idle if c._rollback == SENT and c.readable()]
        )
        owing = [] if self.closed else [c for c in self.idle if c._rollback == OWED]
        for conn in [*answered, *owing]:
            self.idle.remove(conn)
        for conn in answered:
            if conn.dead:
                self._discard(conn, "dead")
            else:
                self.idle.append(conn)
        for conn in owing:  # ROLLBACK_WITHIN is 0 here: every one is due
            if conn.socket_open:
                self.idle.append(conn)
            else:
                self._discard(conn, "dead")
        delay = run_round(self.pool)
        sweep_owed(self.pool)
        assert delay == (None if self.closed else 1.0)

    @precondition(lambda self: pool_open(self) and self.counts["requests"] >= 10)
    @rule()
    def close_pool(self) -> None:
        """Close the pool: idle connections at once, lent ones as they come back."""
        assert self.pool is not None
        for conn in self.idle:
            self._discard(conn, "pool-closed")
        self.idle.clear()
        assert self.pool.close() is (not self.lent)
        self.closed = True
        for conn in sorted(self.lent, key=lambda c: c.serial):
            self._expect_return(conn, None)
            conn.close()
        assert self.pool.close(timeout=WAIT_LIMIT) is True
        assert self.pool._maintenance.join(WAIT_LIMIT)
        with pytest.raises(PoolClosedError):
            self.pool.get_connection(timeout=0)
        assert [conn.discards for conn in self.factory.made] == [1] * len(self.factory.made)

    # --- misuse ---

    @precondition(lambda self: self._returned())
    @rule(
        index=st.integers(0, 15),
        how=st.sampled_from(["close", "query", "cursor", "execute"]),
    )
    def use_after_return(self, index: int, how: str) -> None:
        """Closing or using a returned connection raises and reaches neither pool nor server."""
        conn = pick(self._returned(), index)
        commands = list(conn.commands)
        with pytest.raises(ConnectionReturnedError):
            if how == "close":
                conn.close()
            elif how == "query":
                conn.query("SELECT 1")
            elif how == "cursor":
                conn.cursor().execute("SELECT 1")
            else:
                conn.execute("SELECT 1")
        assert conn.commands == commands

    # --- invariants ---

    @invariant()
    def pool_matches_model(self) -> None:
        pool = self.pool
        if pool is None:
            return
        held = snapshot(pool)
        idle, lent, total = list(held.idle), set(held.lent), held.total
        stats = pool.stats()
        assert total == stats["idle"] + stats["in_use"]  # no slot is being opened between steps
        assert total <= stats["max_size"] or stats["idle"] == 0  # surplus only while lent
        assert stats["waiting"] == 0
        assert not set(idle) & lent, "a connection is both idle and lent"
        assert len(set(idle)) == len(idle), "a connection is idle twice"
        assert idle == self.idle, "idle connections (or their order) differ from the model"
        assert lent == self.lent, "lent connections differ from the model"
        assert total == self.total
        assert stats["max_size"] == self.max_size
        assert {name: stats[name] for name in COUNTERS} == self.counts
        assert stats["created"] - stats["closed"] == total
        assert self.log.events == self.discards

    @invariant()
    def connections_are_consistent(self) -> None:
        if self.pool is None:
            return
        for conn in self.factory.made:
            if conn in self.lent:
                assert conn._lent
                assert conn.discards == 0
            elif conn in self.idle:
                assert not conn._lent
                assert conn.socket_open, "a closed connection is idle"
                assert conn.discards == 0
                # The session is clean, or a ROLLBACK is on its way with nothing sent since.
                assert conn._rollback or not conn.in_transaction
                assert not conn._dirty or conn.server_status & AUTOCOMMIT
                assert bool(conn.server_status & AUTOCOMMIT) is self.autocommit
            else:
                assert not conn._lent
                assert not conn.socket_open
                assert conn.discards == 1, f"{conn!r} left the pool closed {conn.discards} times"


PoolMachine.TestCase.settings = settings(
    max_examples=600,
    stateful_step_count=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Room for Hypothesis to shrink a failure before the default per-test timeout cuts it short.
TestPoolModel = pytest.mark.timeout(600)(PoolMachine.TestCase)


# --- waiters, with threads ---


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
def make_pool(factory: FakeFactory) -> Iterator[Callable[..., ConnectionPool]]:
    pools: list[ConnectionPool] = []

    def make(*plugins: object, **overrides: Any) -> ConnectionPool:
        pool = fake_pool(factory, *plugins, **overrides)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        shut(pool)


def queue_waiters(pool: ConnectionPool, count: int, target: Callable[[int], Any]) -> list[Worker]:
    """Start *count* threads running target(position), each queued before the next starts."""
    workers = []
    for position in range(count):
        workers.append(start_thread(target, position))
        wait_until(
            lambda queued=position + 1: pool.stats()["waiting"] == queued,
            f"waiter {position} to queue",
        )
    return workers


def test_waiters_are_handed_the_connection_first_come_first_served(
    make_pool: Callable[..., ConnectionPool], factory: FakeFactory
) -> None:
    pool = make_pool(max_size=1, timeout=WAIT_LIMIT, ping_interval=0)
    holder = pool.get_connection()
    served: list[tuple[int, Connection]] = []

    def wait_turn(position: int) -> None:
        with pool.get_connection() as conn:
            served.append((position, conn))

    waiters = queue_waiters(pool, 6, wait_turn)
    holder.close()
    for waiter in waiters:
        waiter.finish()

    assert [position for position, _ in served] == list(range(6))
    assert all(conn is holder for _, conn in served)  # handed over, never reopened
    assert len(factory.made) == 1
    assert holder.commands == ["ping"] * 6  # each waiter pre-pinged it as its own borrower
    stats = pool.stats()
    assert (stats["created"], stats["waited"], stats["timeouts"]) == (1, 6, 0)
    assert (stats["idle"], stats["in_use"], stats["waiting"], stats["total"]) == (1, 0, 0, 1)


def test_returned_connection_goes_to_the_waiter_not_to_a_newcomer(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    pool = make_pool(max_size=1, timeout=WAIT_LIMIT)
    holder = pool.get_connection()
    got = threading.Event()
    release = threading.Event()

    def wait_and_hold(position: int) -> Connection:
        conn = pool.get_connection()
        got.set()
        assert release.wait(WAIT_LIMIT)
        conn.close()
        return conn

    (waiter,) = queue_waiters(pool, 1, wait_and_hold)
    holder.close()
    try:
        # Whether or not the waiter has woken yet, the connection is already its own.
        with pytest.raises(GetConnectionFromPoolError):
            pool.get_connection(timeout=0)
        assert got.wait(WAIT_LIMIT)
    finally:
        release.set()
    assert waiter.finish() is holder
    stats = pool.stats()
    assert (stats["requests"], stats["timeouts"], stats["created"]) == (3, 1, 1)


def test_slot_freed_by_a_discard_goes_to_the_first_waiter(
    make_pool: Callable[..., ConnectionPool], factory: FakeFactory
) -> None:
    pool = make_pool(max_size=1, timeout=WAIT_LIMIT)
    holder = pool.get_connection()
    served: list[tuple[int, Connection]] = []
    release = [threading.Event(), threading.Event()]

    def wait_and_hold(position: int) -> None:
        conn = pool.get_connection()
        served.append((position, conn))
        assert release[position].wait(WAIT_LIMIT)
        conn.close()

    waiters = queue_waiters(pool, 2, wait_and_hold)
    try:
        with pytest.raises(pymysql.err.OperationalError), holder:
            holder.fake_open = False
            raise pymysql.err.OperationalError(2013, "Lost connection (fake)")
        wait_until(lambda: len(served) == 1, "the first waiter to be served")
        position, conn = served[0]
        assert position == 0
        assert conn is factory.made[1]  # opened in the freed slot, not the discarded one
        assert holder.discards == 1
        stats = pool.stats()
        assert (stats["waiting"], stats["total"], stats["in_use"]) == (1, 1, 1)
        assert (stats["created"], stats["discarded"]) == (2, 1)
    finally:
        release[0].set()
        release[1].set()
    for waiter in waiters:
        waiter.finish()
    assert served == [(0, factory.made[1]), (1, factory.made[1])]
    assert len(factory.made) == 2


def test_waiter_that_cannot_connect_in_a_freed_slot_passes_it_on(
    make_pool: Callable[..., ConnectionPool], factory: FakeFactory
) -> None:
    # No owner check: the maintenance thread must not reclaim the connection of a finished waiter.
    pool = make_pool(max_size=1, timeout=WAIT_LIMIT, check_owner_thread=False)
    holder = pool.get_connection()

    def wait_for(position: int) -> Connection:
        return pool.get_connection(timeout=1.0 if position == 0 else WAIT_LIMIT)

    waiters = queue_waiters(pool, 2, wait_for)
    factory.outage = True
    holder.fake_open = False
    holder.close()  # discarded as broken: its slot goes to waiter 0, which cannot connect
    with pytest.raises(GetConnectionFromPoolError) as raised:
        waiters[0].finish()
    assert isinstance(raised.value.__cause__, pymysql.err.OperationalError)
    assert raised.value.__cause__.args[0] == 2003
    assert waiters[1].is_alive()  # the slot went to waiter 1, still trying
    factory.outage = False
    conn = waiters[1].finish()
    assert conn is factory.made[-1]
    assert len(factory.made) == 2
    stats = pool.stats()
    assert (stats["total"], stats["in_use"], stats["waiting"]) == (1, 1, 0)
    assert stats["timeouts"] == 1
    assert stats["connect_errors"] >= 2  # each waiter retried with backoff
