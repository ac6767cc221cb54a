"""Run PyMySQL's own test suite with every ``pymysql.connect()`` lent by a pool.

Usage (a PyMySQL git checkout; its ``pymysql/tests`` run against the installed PyMySQL)::

    python tests/pymysql_suite.py PATH/TO/PyMySQL [pytest arguments]

It starts a throwaway MariaDB, copies the checkout's ``pymysql/tests`` to a temporary
directory as the ``pymysql.tests`` package, points its ``databases.json`` at the server and
runs it under pytest with ``pymysql.connect`` replaced: each call builds a one-connection
:class:`~pymysqlpool_registry.ConnectionPool` from the same arguments and returns the
connection it lends. The README lists the tests that fail, and why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pymysqlpool_registry.throwaway import ThrowawayServer

#: Written into the copied tests as conftest.py: the pooled pymysql.connect.
CONFTEST = """
import sys
import types
from pathlib import Path

import pymysql
import pytest

import pymysqlpool_registry

package = types.ModuleType("pymysql.tests")
package.__path__ = [str(Path(__file__).parent)]
sys.modules["pymysql.tests"] = pymysql.tests = package

_plain_connect = pymysql.connect
_pools = []


def pooled_connect(*args, **kwargs):
    if args:  # positional arguments are PyMySQL's, not a pool's
        return _plain_connect(*args, **kwargs)
    pool = pymysqlpool_registry.ConnectionPool(max_size=1, **kwargs)
    _pools.append(pool)
    return pool.get_connection()


pymysql.connect = pymysql.Connect = pooled_connect


@pytest.fixture(autouse=True)
def close_pools():
    yield
    while _pools:
        _pools.pop().close()
"""


def main(argv: list[str]) -> int:
    if not argv or not (Path(argv[0]) / "pymysql" / "tests").is_dir():
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    checkout, pytest_args = Path(argv[0]), argv[1:]
    workdir = Path(tempfile.mkdtemp(prefix="pymysql-suite-"))
    tests = workdir / "tests"
    try:
        shutil.copytree(checkout / "pymysql" / "tests", tests)
        (tests / "__init__.py").unlink(missing_ok=True)
        (tests / "conftest.py").write_text(CONFTEST)
        with ThrowawayServer() as server:
            for name in ("test1", "test2"):  # as PyMySQL's CI makes them
                server.query(f"CREATE DATABASE {name} DEFAULT CHARACTER SET utf8mb4")
            base = {"host": server.host, "port": server.port, "user": "root", "passwd": ""}
            databases = [
                {**base, "database": "test1", "use_unicode": True, "local_infile": True},
                {**base, "database": "test2"},
            ]
            (tests / "databases.json").write_text(json.dumps(databases))
            command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
            command += ["--rootdir", str(workdir), "-o", "addopts=", str(tests), *pytest_args]
            env = {**os.environ, "PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD": "1"}
            return subprocess.run(command, cwd=workdir, env=env, check=False).returncode
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
