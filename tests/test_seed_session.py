"""The README session of pymysql-pool 0.3.3, replayed line by line against a real server."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pymysql
import pytest

import pymysqlpool_registry as pymysqlpool


def test_seed_readme_session(
    connect_kwargs: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pymysqlpool_registry")
    config = {**connect_kwargs, "autocommit": True}

    pool1 = pymysqlpool.ConnectionPool(size=2, name="pool1", **config)
    assert pool1.size() == 2
    con1 = pool1.get_connection()
    con2 = pool1.get_connection()
    assert pool1.size() == 0
    assert [r.getMessage() for r in caplog.records].count("Get connection from pool(pool1)") == 2

    with pytest.raises(pymysqlpool.GetConnectionFromPoolError) as raised:
        pool1.get_connection(timeout=0, retry_num=0)
    assert str(raised.value) == "can't get connection from pool(pool1) within 0*1 second(s)"
    assert isinstance(raised.value, pymysql.err.OperationalError)

    caplog.clear()
    con1.close()
    assert caplog.records[-1].getMessage() == "Put connection back to pool(pool1)"
    assert caplog.records[-1].levelno == logging.DEBUG

    # pymysql-pool 0.3 (PyMySQL < 1.0) gave a cursor here; our Connection has execute() itself.
    with con1 as cur:
        assert cur.execute("select 1+1") == 1
        assert cur.fetchone() == (2,)
    assert caplog.records[-1].getMessage() == "Put connection back to pool(pool1)"
    assert pool1.size() == 1

    # NOTE 3 of the old README: closing twice corrupted the pool. Here it is an error.
    with pytest.raises(pymysqlpool.ConnectionReturnedError):
        con1.close()
    con2.close()
    assert pool1.size() == 2
    assert pool1.stats()["total"] == 2
    pool1.close()


def test_execute_query_as_in_the_seed(connect_kwargs: dict[str, Any]) -> None:
    pool = pymysqlpool.ConnectionPool(size=1, name="eq", **connect_kwargs)
    conn = pool.get_connection()
    assert conn.execute_query("SELECT 1 AS one UNION SELECT 2") == ((1,), (2,))
    assert pool.size() == 1, "execute_query gives the connection back, as pymysql-pool did"
    row = pool.get_connection().execute_query(
        "SELECT %s AS x", ("a",), dictcursor=True, return_one=True
    )
    assert row == {"x": "a"}
    pool.close()


def test_importing_changes_no_global_logging_or_warnings() -> None:
    script = (
        "import logging, warnings\n"
        "before = (list(warnings.filters), list(logging.root.handlers), logging.root.level)\n"
        "import pymysqlpool_registry\n"
        "after = (list(warnings.filters), list(logging.root.handlers), logging.root.level)\n"
        "assert before == after, (before, after)\n"
        "assert pymysqlpool_registry.logger.handlers == []\n"
        "assert pymysqlpool_registry.logger.level == logging.NOTSET\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
