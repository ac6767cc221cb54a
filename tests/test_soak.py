"""A bounded soak against the session server: a million checkouts with injected faults.

Eight threads share a pool of four connections. Most loans run nothing (autocommit is on, so an
empty loan costs no round trip); a few run ``SELECT 1``; some raise an application error, some
a real server error, and a very few KILL their own connection through an admin connection
before a query, which must then fail as a lost connection and be discarded. At the end nothing
may be leaked or lost: the pool's counters, its idle connections and the server's sessions of
the pool's own user must all agree.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pymysql
import pytest

from pymysqlpool_registry import ConnectionPool, PoolConfig
from pymysqlpool_registry.testing import Worker
from pymysqlpool_registry.throwaway import ThrowawayServer

CHECKOUTS = 1_000_000
THREADS = 8
MAX_SIZE = 4
TIME_LIMIT = 90.0  # seconds: the workers stop early after this, and the test then fails
SEED = 20_240_611
DISCONNECTED = (2006, 2013)  # what PyMySQL raises for a connection the server dropped
SETTLE_LIMIT = 15.0  # seconds the server may take to drop the sessions the pool closed

# One draw in 20,000 per loan picks what it does (the rest are empty loans).
ROLL = 20_000
KILL, SYNTAX_ERROR, VALUE_ERROR, SELECT = "kill", "syntax-error", "value-error", "select"
ACTIONS = (  # (action, draws out of ROLL): 1 in 20,000, 1 in 5,000, 1 in 2,000, 1 in 500
    (KILL, 1),
    (SYNTAX_ERROR, 4),
    (VALUE_ERROR, 10),
    (SELECT, 40),
)


class InjectedError(ValueError):
    """The application error a loan raises on purpose."""


def pick_action(roll: int) -> str | None:
    for action, weight in ACTIONS:
        if roll < weight:
            return action
        roll -= weight
    return None


def sessions_of(server: ThrowawayServer, user: str) -> int:
    """The server's sessions (threads in its processlist) logged in as *user*."""
    rows = server.query(
        "SELECT COUNT(*) FROM information_schema.processlist "
        f"WHERE user = '{user}' AND command <> 'Killed'"
    )
    return int(rows[0][0])


@pytest.fixture
def soak_user(server: ThrowawayServer) -> Iterator[str]:
    """A user of the pool's own, so the server's sessions of the pool can be counted."""
    name = f"soak_{uuid.uuid4().hex[:8]}"
    account = f"'{name}'@'127.0.0.1'"
    server.query(f"CREATE USER {account} IDENTIFIED BY ''")
    server.query(f"GRANT ALL ON test.* TO {account}")
    yield name
    server.query(f"DROP USER IF EXISTS {account}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_a_million_checkouts_with_injected_faults(
    server: ThrowawayServer, soak_user: str
) -> None:
    config = PoolConfig(
        **server.connect_kwargs(user=soak_user, password=""),
        max_size=MAX_SIZE,
        autocommit=True,
        timeout=30,
    )
    pool = ConnectionPool(config, name="soak")
    per_thread = CHECKOUTS // THREADS
    started = time.monotonic()
    deadline = started + TIME_LIMIT
    stop = threading.Event()  # set by a worker that failed, or when time is up
    samples: Counter[str] = Counter()

    def work(seed: int) -> Counter[str]:
        rng = random.Random(seed)
        tally: Counter[str] = Counter()
        try:
            for done in range(per_thread):
                if done % 1024 == 0 and (stop.is_set() or time.monotonic() > deadline):
                    stop.set()
                    break
                action = pick_action(rng.randrange(ROLL))
                loan(action, tally)
        except BaseException:
            stop.set()
            raise
        return tally

    def loan(action: str | None, tally: Counter[str]) -> None:
        try:
            with pool.get_connection() as conn:
                tally["loans"] += 1
                if action == SELECT:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                        assert cur.fetchone() == (1,)
                elif action == VALUE_ERROR:
                    raise InjectedError("injected")
                elif action == SYNTAX_ERROR:
                    conn.cursor().execute("SELEC 1")
                elif action == KILL:
                    server.query(f"KILL CONNECTION {conn.thread_id()}")
                    conn.cursor().execute("SELECT 1")
        except InjectedError:
            tally[VALUE_ERROR] += 1
        except pymysql.err.ProgrammingError as exc:
            if action != SYNTAX_ERROR or exc.args[0] != 1064:
                raise
            tally[SYNTAX_ERROR] += 1
        except pymysql.err.OperationalError as exc:
            if action != KILL or exc.args[0] not in DISCONNECTED:
                raise
            tally[KILL] += 1
        else:
            if action in (VALUE_ERROR, SYNTAX_ERROR, KILL):
                raise AssertionError(f"the {action} loan raised nothing")

    def sample() -> None:
        """Check the pool's bounds while the soak runs."""
        while not stop.wait(0.01):
            stats = pool.stats()
            samples["rounds"] += 1
            if stats["total"] > MAX_SIZE or stats["idle"] + stats["in_use"] > stats["total"]:
                samples["out of bounds"] += 1

    try:
        sampler = Worker(sample)
        sampler.start()
        workers = [Worker(work, SEED + n) for n in range(THREADS)]
        for worker in workers:
            worker.start()
        join_by = deadline + 60  # a loan in progress at the deadline has a minute to end
        for worker in workers:
            worker.join(max(join_by - time.monotonic(), 0.1))
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join(10)
        hung = [worker.name for worker in workers if worker.is_alive()]
        assert not hung, f"workers still running {elapsed:.0f} s in: {hung}"
        errors = [worker.error for worker in workers if worker.error is not None]
        if errors:
            raise errors[0]
        assert sampler.error is None
        assert not sampler.is_alive()

        tally: Counter[str] = sum((worker.result for worker in workers), Counter())
        stats = pool.stats()
        total = int(stats["total"])
        sessions = sessions_of(server, soak_user)
        settle_by = time.monotonic() + SETTLE_LIMIT
        while sessions != total and time.monotonic() < settle_by:
            time.sleep(0.05)  # a closed or killed session may linger on the server for a moment
            sessions = sessions_of(server, soak_user)
    finally:
        stop.set()
        pool.close()

    rate = tally["loans"] / elapsed
    assert tally["loans"] == CHECKOUTS, (
        f"only {tally['loans']:,} of {CHECKOUTS:,} checkouts in {elapsed:.0f} s ({rate:,.0f}/s)"
    )
    assert samples["rounds"] > 0
    assert samples["out of bounds"] == 0
    assert stats["requests"] == tally["loans"]
    assert (stats["in_use"], stats["waiting"]) == (0, 0)
    assert 1 <= total == stats["idle"] <= MAX_SIZE
    assert sessions == total, f"the server has {sessions} sessions of the pool, it counts {total}"
    # Every fault was injected, and only the killed connections were discarded.
    assert tally[KILL] > 0
    assert tally[SYNTAX_ERROR] > 0
    assert tally[VALUE_ERROR] > 0
    assert stats["discarded"] == tally[KILL]
    assert stats["closed"] == stats["discarded"]
    assert stats["created"] == total + stats["discarded"]
    assert stats["resets"] == tally[SYNTAX_ERROR]  # a server error rolls back; nothing else does
    assert stats["timeouts"] == stats["connect_errors"] == stats["leaks"] == 0
