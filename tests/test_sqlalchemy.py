"""SQLAlchemy on the registry's pool (``registry.engine``), Core and ORM, on a real server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Delete, Insert, Update, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pymysqlpool_registry import Registry
from pymysqlpool_registry.testing import WAIT_LIMIT, wait_until
from pymysqlpool_registry.throwaway import ThrowawayServer


@pytest.fixture
def registry(server: ThrowawayServer) -> Iterator[Registry]:
    pools = Registry(load_entrypoints=False)
    pools.register("orders", **server.connect_kwargs(database="test"), max_size=4)
    yield pools
    pools.close_all()


@pytest.fixture
def table(server: ThrowawayServer) -> Iterator[str]:
    name = f"sa_{uuid.uuid4().hex[:10]}"
    server.query(f"CREATE TABLE test.{name} (id INT PRIMARY KEY, note VARCHAR(32)) ENGINE=InnoDB")
    yield name
    server.query(f"DROP TABLE IF EXISTS test.{name}")


def orm_model(table: str) -> type[Any]:
    class Base(DeclarativeBase):
        pass

    class Order(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(primary_key=True)
        note: Mapped[str] = mapped_column(sqlalchemy.String(32))

    return Order


def rows(server: ThrowawayServer, table: str) -> list[tuple[Any, ...]]:
    return list(server.query(f"SELECT id, note FROM test.{table} ORDER BY id"))


def status(server: ThrowawayServer, name: str) -> int:
    return int(server.query(f"SHOW GLOBAL STATUS LIKE '{name}'")[0][1])


def test_core_commit_is_kept(registry: Registry, server: ThrowawayServer, table: str) -> None:
    engine = registry.engine("orders")
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} VALUES (1, 'core')"))
    assert rows(server, table) == [(1, "core")]
    assert registry.get("orders").stats()["in_use"] == 0  # the loan went back


def test_orm_commit_is_kept_and_an_exception_rolls_back(
    registry: Registry, server: ThrowawayServer, table: str
) -> None:
    order = orm_model(table)
    engine = registry.engine("orders")
    with Session(engine) as session:
        session.add(order(id=1, note="kept"))
        session.commit()
    with (
        pytest.raises(ValueError, match="the application's"),
        Session(engine) as session,
        session.begin(),
    ):
        session.add(order(id=2, note="rolled back"))
        session.flush()  # the row is written in the transaction
        raise ValueError("the application's own error")
    assert rows(server, table) == [(1, "kept")]
    pool = registry.get("orders")
    assert pool.stats()["discarded"] == 0  # the connection came back reusable
    with Session(engine) as session:
        assert session.get(order, 1).note == "kept"


def test_a_killed_connection_is_discarded_not_reused(
    registry: Registry, server: ThrowawayServer
) -> None:
    engine = registry.engine("orders")
    with engine.connect() as conn:
        killed = conn.execute(text("SELECT CONNECTION_ID()")).scalar()
        server.query(f"KILL {killed}")
        with pytest.raises(sqlalchemy.exc.OperationalError):
            conn.execute(text("SELECT 1"))
    pool = registry.get("orders")
    wait_until(lambda: pool.stats()["discarded"] == 1, "the killed connection discarded")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT CONNECTION_ID()")).scalar() != killed
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_sixteen_threads_through_one_engine_stay_within_max_size(registry: Registry) -> None:
    engine = registry.engine("orders")
    errors: list[BaseException] = []
    stop = time.monotonic() + 1.0

    def work() -> None:
        try:
            for _ in range(200):  # bounded in count and in time
                if time.monotonic() > stop:
                    return
                with engine.connect() as conn:
                    assert conn.execute(text("SELECT 1")).scalar() == 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_LIMIT)
    assert not errors, errors
    stats = registry.get("orders").stats()
    assert stats["created"] <= 4  # no connection beyond max_size was ever opened
    assert stats["total"] <= 4
    assert stats["requests"] > 16


def test_a_loan_pays_one_rollback_at_most(registry: Registry, server: ThrowawayServer) -> None:
    """SQLAlchemy's reset on return is off; the pool's ROLLBACK is the only one."""
    engine = registry.engine("orders")
    with engine.connect() as conn:  # the dialect's first-connect queries, out of the count
        conn.execute(text("SELECT 1"))
    time.sleep(0.05)  # the owed ROLLBACK of that loan is sent within 5 ms
    before = status(server, "Com_rollback")
    for _ in range(5):
        with engine.connect() as conn:  # autobegin; closed without commit
            conn.execute(text("SELECT 1"))
    time.sleep(0.05)
    # one per loan: SQLAlchemy's reset and the pool's both would make it 10
    assert status(server, "Com_rollback") - before == 5
    before = status(server, "Com_rollback")
    for _ in range(5):
        with engine.begin() as conn:  # committed: nothing to roll back
            conn.execute(text("SELECT 1"))
    time.sleep(0.05)
    assert status(server, "Com_rollback") - before == 0


def test_orm_writes_go_to_the_writer_pool(registry: Registry, table: str) -> None:
    """SQLAlchemy's routing recipe (a Session.get_bind override) on the two role engines."""
    order = orm_model(table)
    engines = {role: registry.engine("orders", role=role) for role in ("read", "write")}

    class RoutingSession(Session):
        def get_bind(self, mapper: Any = None, clause: Any = None, **kw: Any) -> Any:
            if self._flushing or isinstance(clause, (Insert, Update, Delete)):
                return engines["write"]
            return engines["read"]

    writer, reader = registry.get("orders", role="write"), registry.get("orders", role="read")
    with RoutingSession() as session:
        session.add(order(id=1, note="routed"))
        session.commit()
    assert writer.stats()["requests"] >= 1
    assert reader.stats()["requests"] == 0
    with RoutingSession() as session:
        assert session.get(order, 1).note == "routed"
    assert reader.stats()["requests"] >= 1


def test_engine_refuses_pool_settings_of_its_own(registry: Registry) -> None:
    with pytest.raises(TypeError, match="pool_size"):
        registry.engine("orders", pool_size=10)
    with pytest.raises(LookupError, match="nope"):
        registry.engine("nope")
