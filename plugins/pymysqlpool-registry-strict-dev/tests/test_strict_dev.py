"""The strict-dev pack through a real registry and server."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from pymysqlpool_registry_strict_dev import OpenTransactionWarning

from pymysqlpool_registry import ConnectionPool, Registry
from pymysqlpool_registry.throwaway import ThrowawayServer


@pytest.fixture
def pool(connect_kwargs: dict[str, Any]) -> Iterator[ConnectionPool]:
    registry = Registry(packs=["strict-dev"])
    registry.register("dev", **connect_kwargs)
    yield registry.get("dev")
    registry.close_all()


def test_pack_defaults_fill_what_the_registration_left_unset(
    connect_kwargs: dict[str, Any],
) -> None:
    registry = Registry(packs=["strict-dev"])
    registry.register("dev", **connect_kwargs, timeout=12)
    config = registry.config("dev")
    assert (config.leak_threshold, config.ping_interval, config.timeout) == (10.0, 0.0, 12)
    assert config.connect_timeout == connect_kwargs["connect_timeout"]  # set by the registration
    kinds = {entry["name"]: entry["kind"] for entry in registry.manager.describe()}
    assert kinds["pack:strict-dev"] == "pack"


def test_open_transaction_warns_at_the_line_that_gives_it_back(pool: ConnectionPool) -> None:
    conn = pool.get_connection()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS strict_dev (id INT PRIMARY KEY)")
        cur.execute("BEGIN")
        cur.execute("INSERT INTO strict_dev VALUES (1)")
    with pytest.warns(OpenTransactionWarning, match=r"pool\(dev\)") as caught:
        conn.close()
    assert caught[0].filename == __file__
    with pool.connection() as again, again.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM strict_dev")
        assert cur.fetchone() == (0,)  # the pool rolled it back


def test_committed_work_does_not_warn(pool: ConnectionPool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")  # autocommit off: an implicit snapshot, not a write
        with pool.connection() as conn:
            conn.begin()
            conn.commit()


def test_every_loan_is_pinged(pool: ConnectionPool, server: ThrowawayServer) -> None:
    pool.get_connection().close()  # the pool opened it: a fresh connection is not pinged
    before = server.status("Com_admin_commands")
    for _ in range(3):
        pool.get_connection().close()
    # three pings, plus the status query's own connection setup counts none
    assert server.status("Com_admin_commands") - before == 3


def test_the_warning_points_at_the_with_block_too(pool: ConnectionPool) -> None:
    def leave_a_transaction_open() -> None:
        with pool.connection() as conn:
            conn.begin()
            with conn.cursor() as cur:
                cur.execute("CREATE TEMPORARY TABLE strict_dev_tmp (id INT)")
                cur.execute("INSERT INTO strict_dev_tmp VALUES (1)")

    with pytest.warns(OpenTransactionWarning) as caught:
        leave_a_transaction_open()
    assert caught[0].filename == __file__
