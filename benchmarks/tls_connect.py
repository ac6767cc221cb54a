"""What a new TLS connection costs against a plain one, PyMySQL alone and through the pool.

    python benchmarks/tls_connect.py            # 300 connects per contender
    python benchmarks/tls_connect.py --smoke    # 10 each (CI: it runs, timings not checked)

A throwaway MariaDB serves a certificate from a test CA made for the run (trustme). Each
contender opens and closes connections in blocks of 10, the blocks interleaved, and the
table gives the median milliseconds per connect over all of them and the ratio to a plain
connect (TLS off), PyMySQL alone and through the pool. "bundle" contenders trust a CA file holding the test CA and this
machine's CA bundle, as a client of a cloud database does: PyMySQL loads it at every
connect, the pool once. "preferred" is PyMySQL's TLS when no option asks for it and it
is not disabled: a context with the system's CAs, no verification, plain if the server has
no TLS. Through the pool, each connect is ``pool.invalidate()`` and a
loan, so the pool opens a new connection each time.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pymysql
import trustme

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pymysqlpool_registry import ConnectionPool, PoolConfig
from pymysqlpool_registry.throwaway import ThrowawayServer

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BLOCK = 10


def write(folder: str, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as out:
        out.write(data)
    os.chmod(path, 0o644)
    return path


def pool_connect(pool: ConnectionPool) -> Callable[[], None]:
    def connect() -> None:
        pool.invalidate()
        with pool.connection():
            pass

    return connect


def direct_connect(**kwargs: Any) -> Callable[[], None]:
    def connect() -> None:
        pymysql.connect(**kwargs).close()

    return connect


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="10 connects each (CI)")
    args = parser.parse_args()
    count = BLOCK if args.smoke else 300
    folder = tempfile.mkdtemp(prefix="pymysqlpool-tls-")
    os.chmod(folder, 0o755)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = write(folder, "ca.pem", ca.cert_pem.bytes())
    bundle = ca.cert_pem.bytes()
    if os.path.exists(SYSTEM_BUNDLE):
        with open(SYSTEM_BUNDLE, "rb") as system:
            bundle += system.read()
    bundle_file = write(folder, "bundle.pem", bundle)
    server_args = [
        f"--ssl-ca={ca_file}",
        f"--ssl-cert={write(folder, 'cert.pem', cert.cert_chain_pems[0].bytes())}",
        f"--ssl-key={write(folder, 'key.pem', cert.private_key_pem.bytes())}",
    ]
    with ThrowawayServer(extra_args=server_args) as server:
        base = {"host": "127.0.0.1", "port": server.port, "user": "root"}

        def pool(**tls: Any) -> ConnectionPool:
            return ConnectionPool(PoolConfig(**base, min_size=0, max_size=1, **tls))

        pools = [
            pool(ssl_disabled=True),
            pool(ssl={"ca": ca_file}),
            pool(ssl={"ca": bundle_file}),
            pool(ssl_disabled=False),
        ]
        contenders = {
            "plain, PyMySQL": direct_connect(**base, ssl_disabled=True),
            "plain, pool": pool_connect(pools[0]),
            "TLS test CA, PyMySQL": direct_connect(**base, ssl={"ca": ca_file}),
            "TLS test CA, pool": pool_connect(pools[1]),
            "TLS bundle, PyMySQL": direct_connect(**base, ssl={"ca": bundle_file}),
            "TLS bundle, pool": pool_connect(pools[2]),
            "TLS preferred (no option), PyMySQL": direct_connect(**base),
            "TLS preferred (no option), pool": pool_connect(pools[3]),
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for connect in contenders.values():
            connect()  # warm up (and build the pools' contexts)
        for block in range(count // BLOCK):
            order = list(contenders.items())
            for name, connect in order if block % 2 else reversed(order):
                for _ in range(BLOCK):
                    started = time.perf_counter()
                    connect()
                    times[name].append(time.perf_counter() - started)
        for each in pools:
            each.close()
    plain = statistics.median(times["plain, PyMySQL"])
    plain_pool = statistics.median(times["plain, pool"])
    print("# TLS connect cost")
    print(
        f"- command: `python benchmarks/tls_connect.py{' --smoke' if args.smoke else ''}`; "
        f"{datetime.date.today()}; {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores; {count} connects each"
    )
    print("\n| contender | ms per connect (median) | x plain PyMySQL | x plain, pool |")
    print("|---|---:|---:|---:|")
    for name, spent in times.items():
        median = statistics.median(spent)
        print(
            f"| {name} | {median * 1000:.2f} | {median / plain:.1f} | {median / plain_pool:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
