"""TLS: a pool builds its TLS context once and every connection shares it, with certificate
verification on (a server whose certificate the CA did not sign is refused).

A throwaway MariaDB serves a certificate from a test CA that trustme makes for the run; no
certificate is committed.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from pymysqlpool_registry import ConnectFailedError, ConnectionPool, PoolConfig
from pymysqlpool_registry.testing import scalar
from pymysqlpool_registry.throwaway import ThrowawayServer


def write_readable(path: Path, blob: trustme.Blob) -> str:
    """Write *blob* to *path*, readable by the server's user (it may not be ours)."""
    blob.write_to_path(str(path))
    path.chmod(0o644)
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A test CA, a server certificate it signed for 127.0.0.1, and a second, unrelated CA."""
    folder = tmp_path_factory.mktemp("tls")
    os.chmod(folder, 0o755)
    ca, stranger = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    return {
        "ca": write_readable(folder / "ca.pem", ca.cert_pem),
        "cert": write_readable(folder / "cert.pem", cert.cert_chain_pems[0]),
        "key": write_readable(folder / "key.pem", cert.private_key_pem),
        "stranger": write_readable(folder / "stranger.pem", stranger.cert_pem),
    }


@pytest.fixture(scope="module")
def tls_server(pki: dict[str, str]) -> Iterator[ThrowawayServer]:
    args = [f"--ssl-ca={pki['ca']}", f"--ssl-cert={pki['cert']}", f"--ssl-key={pki['key']}"]
    with ThrowawayServer(extra_args=args) as srv:
        yield srv


def tls_pool(server: ThrowawayServer, ca: str, **settings: object) -> ConnectionPool:
    config = PoolConfig(host="127.0.0.1", port=server.port, user="root", ssl={"ca": ca}, **settings)
    return ConnectionPool(config, name="tls")


def test_every_connection_of_a_pool_shares_one_verified_tls_context(
    tls_server: ThrowawayServer, pki: dict[str, str]
) -> None:
    pool = tls_pool(tls_server, pki["ca"], min_size=0, max_size=3)
    try:
        conns = [pool.get_connection() for _ in range(3)]
        for conn in conns:
            with conn.cursor() as cur:  # the server's view: this session is encrypted
                cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
                assert cur.fetchone()[1].startswith("TLS")
            assert isinstance(conn._sock, ssl.SSLSocket)
            assert conn._sock.version() in ("TLSv1.2", "TLSv1.3")
        contexts = {id(conn.ctx) for conn in conns}
        assert len(contexts) == 1, "each connection built its own TLS context"
        context = conns[0].ctx
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        for conn in conns:
            conn.close()
        pool.invalidate()  # the next connections are new ones
        with pool.connection() as again:
            assert again.ctx is context
            assert isinstance(again._sock, ssl.SSLSocket)
    finally:
        pool.close()


def test_a_server_the_ca_did_not_sign_is_refused_every_time(
    tls_server: ThrowawayServer, pki: dict[str, str]
) -> None:
    pool = tls_pool(tls_server, pki["stranger"], min_size=0, max_size=2)
    try:
        for _ in range(2):  # the second attempt uses the context the first one built
            with pytest.raises(ConnectFailedError) as refused:
                pool.get_connection(timeout=5)
            cause = refused.value.__cause__
            assert isinstance(
                getattr(cause, "original_exception", None), ssl.SSLCertVerificationError
            )
        assert pool.stats()["total"] == 0
    finally:
        pool.close()


def test_a_pool_without_tls_options_talks_plain_to_a_loopback_server(
    tls_server: ThrowawayServer,
) -> None:
    pool = ConnectionPool(
        PoolConfig(host="127.0.0.1", port=tls_server.port, user="root", min_size=0), name="plain"
    )
    try:
        with pool.connection() as conn:
            assert not isinstance(conn._sock, ssl.SSLSocket)
            assert scalar(conn, "SELECT 1") == 1
    finally:
        pool.close()


def test_preferred_tls_shares_one_context_and_still_falls_back_to_plain(
    tls_server: ThrowawayServer, server: ThrowawayServer
) -> None:
    """No TLS option and TLS not disabled is PyMySQL's "preferred" TLS: used where the server
    offers it, plain where it does not; the pool builds its context once for both."""
    pools = []
    try:
        for target in (tls_server, server):
            config = PoolConfig(
                host="127.0.0.1", port=target.port, user="root", ssl_disabled=False, max_size=2
            )
            pools.append(ConnectionPool(config, name="preferred"))
        with_tls, plain = pools
        conns = [with_tls.get_connection() for _ in range(2)]
        assert all(isinstance(conn._sock, ssl.SSLSocket) for conn in conns)
        assert conns[0].ctx is conns[1].ctx
        for conn in conns:
            conn.close()
        conns = [plain.get_connection() for _ in range(2)]
        assert not any(isinstance(conn._sock, ssl.SSLSocket) for conn in conns)
        assert conns[0].ctx is conns[1].ctx  # built once, unused: the server has no TLS
        assert all(scalar(conn, "SELECT 1") == 1 for conn in conns)
        for conn in conns:
            conn.close()
    finally:
        for pool in pools:
            pool.close()
