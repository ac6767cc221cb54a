"""Several throwaway servers: a Galera cluster and a primary with a replica."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.connections

if TYPE_CHECKING:
    from typing_extensions import Self
from .binaries import find_galera_provider
from .process import ServerStartError, _pick_port, _tail
from .server import ThrowawayServer


def _pick_ports(count: int) -> list[int]:
    """*count* distinct free 127.0.0.1 ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = _pick_port()
        if port not in ports:
            ports.append(port)
    return ports


def _credentials(kwargs: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """User, password and database of *kwargs*, updated with *overrides*: the part of a pool's
    settings that does not depend on the host (the pool's own timeouts go beside it)."""
    return {key: kwargs[key] for key in ("user", "password", "database")} | overrides


class _Topology:
    """Several ThrowawayServers started and closed together."""

    def _servers(self) -> list[ThrowawayServer]:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        raise NotImplementedError

    def endpoints(self) -> list[str]:
        """``"127.0.0.1:port"`` of every server, in order."""
        return [f"{srv.host}:{srv.port}" for srv in self._servers()]

    def close(self) -> None:
        """Stop every server and remove its directory. Idempotent."""
        errors: list[Exception] = []
        for srv in reversed(self._servers()):
            try:
                srv.close()
            except (OSError, RuntimeError) as exc:  # close the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]

    def _log_tails(self) -> str:
        """The last lines of each (not yet closed) server's error log."""
        return "\n".join(
            f"--- last lines of {srv.error_log}:\n{_tail(srv.error_log)}"
            for srv in self._servers()
            if srv._tmpdir is not None
        )

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class GaleraNode(ThrowawayServer):
    """One node of a :class:`ThrowawayGalera`: its start waits until ``wsrep_ready`` is ON."""

    def __init__(
        self,
        index: int,
        *,
        bootstrap: bool,
        extra_args: Sequence[str],
        basedir: str | None,
        run_as: str | None,
    ) -> None:
        super().__init__(extra_args=extra_args, basedir=basedir, run_as=run_as)
        self.index = index
        self._bootstrap = bootstrap  # only the very first start of node 1 founds the cluster

    def _install(self, timeout: float) -> None:
        """Only the founder needs system tables: a joiner's datadir is replaced by its SST."""
        if self._bootstrap:
            super()._install(timeout)
            return
        os.makedirs(self.datadir, exist_ok=True)
        self._chown(self.datadir)
        self._installed = True

    def _server_cmd(self) -> list[str]:
        cmd = super()._server_cmd()
        return [*cmd, "--wsrep-new-cluster"] if self._bootstrap else cmd

    def _ready(self, conn: pymysql.connections.Connection) -> bool:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_ready'")
            row = cur.fetchone()
        ready = row is not None and row[1] == "ON"
        if ready:
            self._bootstrap = False
        return ready

    def wsrep_statuses(self) -> dict[str, str]:
        """Every ``wsrep_%`` status variable as text; empty if the node is down, paused or slow."""
        if self.pid is None or self._paused:
            return {}
        try:
            conn = pymysql.connect(
                **self.connect_kwargs(database=None, connect_timeout=1, read_timeout=1)
            )
        except pymysql.err.MySQLError:
            return {}
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep%'")
                return {str(name): str(value) for name, value in cur.fetchall()}
        except pymysql.err.MySQLError:
            return {}
        finally:
            conn.close()

    def wsrep_status(self, name: str) -> str | None:
        """One wsrep status variable as text; None if the node is down, paused or slow."""
        return self.wsrep_statuses().get(name)

    def wsrep_ready(self) -> bool:
        """True if the node is up and accepts queries (``wsrep_ready`` is ON)."""
        return self.wsrep_status("wsrep_ready") == "ON"

    def __repr__(self) -> str:
        return f"<GaleraNode {self.index} {super().__repr__()[1:-1]}>"


class ThrowawayGalera(_Topology):
    """A Galera cluster of *nodes* MariaDB servers on 127.0.0.1, for tests of several hosts.

    Every port (SQL, gcomm, IST, SST) is picked free on 127.0.0.1 and every datadir is fresh.
    As root the nodes run as ``run_as`` (rsync SST fails for root). Root has an empty password
    over TCP on every node; database ``test`` exists.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        basedir: str | None = None,
        run_as: str = "mysql",
        provider: str | None = None,
    ) -> None:
        provider = provider or find_galera_provider()
        aux = _pick_ports(3 * nodes)
        gcomm, ist, sst = aux[0::3], aux[1::3], aux[2::3]
        address = "gcomm://" + ",".join(f"127.0.0.1:{port}" for port in gcomm)
        self.nodes: list[GaleraNode] = []
        try:
            for i in range(nodes):
                options = (
                    f"gmcast.listen_addr=tcp://127.0.0.1:{gcomm[i]};"
                    f"ist.recv_addr=127.0.0.1:{ist[i]};"
                    "evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.install_timeout=PT6S"
                )
                node = GaleraNode(
                    i + 1,
                    bootstrap=i == 0,
                    basedir=basedir,
                    run_as=run_as,
                    extra_args=[
                        "--wsrep-on=ON",
                        f"--wsrep-provider={provider}",
                        f"--wsrep-cluster-address={address}",
                        f"--wsrep-node-address=127.0.0.1:{gcomm[i]}",
                        f"--wsrep-provider-options={options}",
                        "--wsrep-sst-method=rsync",
                        f"--wsrep-sst-receive-address=127.0.0.1:{sst[i]}",
                        "--binlog-format=ROW",
                        "--innodb-autoinc-lock-mode=2",
                    ],
                )
                self.nodes.append(node)
                while node.port in aux:
                    node.port = _pick_port()
        except BaseException:
            self.close()
            raise

    def _servers(self) -> list[ThrowawayServer]:
        return list(self.nodes)

    def start(self, timeout: float = 60.0) -> None:
        """Found the cluster on node 1 (with database ``test``), then join the others one by one.

        Returns when every node is ready in a cluster of them all; ServerStartError with each
        node's log tail after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        first = self.nodes[0]
        try:
            first.start(timeout)
            first.query("CREATE DATABASE IF NOT EXISTS test")  # joiners get it by SST
            for node in self.nodes[1:]:
                node.start(max(deadline - time.monotonic(), 1.0))
        except ServerStartError as exc:
            raise ServerStartError(
                f"Galera cluster did not start: {exc}\n{self._log_tails()}"
            ) from exc
        self.wait_ready(timeout=max(deadline - time.monotonic(), 1.0))
        for node in self.nodes:
            if not node.query("SHOW DATABASES LIKE 'test'"):
                raise ServerStartError(f"database test missing on node {node.index}")

    def wait_ready(self, nodes: Sequence[GaleraNode] | None = None, timeout: float = 60.0) -> None:
        """Wait until each of *nodes* (default: all) is ready in a cluster of exactly them.

        ServerStartError with the nodes' states and log tails after *timeout* seconds.
        """
        nodes = list(self.nodes if nodes is None else nodes)
        deadline = time.monotonic() + timeout
        while True:
            states = [node.wsrep_statuses() for node in nodes]
            # The same configuration id everywhere: a resumed node briefly shows a stale view.
            if len({state.get("wsrep_cluster_conf_id") for state in states}) == 1 and all(
                state.get("wsrep_ready") == "ON"
                and state.get("wsrep_cluster_size") == str(len(nodes))
                for state in states
            ):
                return
            if time.monotonic() >= deadline:
                shown = ", ".join(
                    f"node {node.index}: ready={state.get('wsrep_ready')} "
                    f"size={state.get('wsrep_cluster_size')} "
                    f"conf_id={state.get('wsrep_cluster_conf_id')}"
                    for node, state in zip(nodes, states, strict=True)
                )
                raise ServerStartError(
                    f"Galera nodes not ready in a cluster of {len(nodes)} after {timeout:.0f} s "
                    f"({shown})\n{self._log_tails()}"
                )
            time.sleep(0.1)

    def connect_kwargs(
        self, node: ThrowawayServer | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """``pymysql.connect`` keyword arguments (root, database ``test``) for *node*; without
        a node only user, password and database (for a pool given :meth:`endpoints`)."""
        if node is not None:
            return node.connect_kwargs(**overrides)
        return _credentials(self.nodes[0].connect_kwargs(), overrides)

    def __repr__(self) -> str:
        return f"<ThrowawayGalera {self.endpoints()}>"


class ThrowawayReplication(_Topology):
    """A primary and a read-only replica (GTID replication) on 127.0.0.1, for tests of several hosts.

    Database ``test`` is created on the primary and replicated. Root bypasses ``read_only``,
    so connect as the application user (:meth:`app_connect_kwargs`): the replica refuses its
    writes with error 1290 until :meth:`promote_replica`.
    """

    app_user = "app"
    app_password = "app-secret"
    repl_user = "repl"
    repl_password = "repl-secret"

    def __init__(self, *, basedir: str | None = None) -> None:
        binlog = ["--log-bin=mariadb-bin", "--binlog-format=ROW"]
        self.primary = ThrowawayServer(extra_args=[*binlog, "--server-id=1"], basedir=basedir)
        try:
            self.replica = ThrowawayServer(
                extra_args=[*binlog, "--server-id=2", "--read-only=ON"], basedir=basedir
            )
        except BaseException:
            self.primary.close()
            raise
        self.replica._created_test_db = True  # no local write: it replicates from the primary

    def _servers(self) -> list[ThrowawayServer]:
        return [self.primary, self.replica]

    def start(self, timeout: float = 30.0) -> None:
        """Start both servers, create the users on the primary and replicate until caught up."""
        deadline = time.monotonic() + timeout
        self.primary.start(timeout)
        self.replica.start(max(deadline - time.monotonic(), 1.0))
        repl, app = f"'{self.repl_user}'@'127.0.0.1'", f"'{self.app_user}'@'%'"
        for sql in (
            f"CREATE USER IF NOT EXISTS {repl} IDENTIFIED BY '{self.repl_password}'",
            f"GRANT REPLICATION SLAVE ON *.* TO {repl}",
            f"CREATE USER IF NOT EXISTS {app} IDENTIFIED BY '{self.app_password}'",
            f"GRANT ALL ON test.* TO {app}",
            f"GRANT SLAVE MONITOR ON *.* TO {app}",  # to read the replica's lag
        ):
            self.primary.query(sql)
        self.replica.query(
            f"CHANGE MASTER TO MASTER_HOST='{self.primary.host}', MASTER_PORT={self.primary.port}, "
            f"MASTER_USER='{self.repl_user}', MASTER_PASSWORD='{self.repl_password}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        )
        self.replica.query("START SLAVE")
        self.wait_replicated(max(deadline - time.monotonic(), 1.0))

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until the replica has applied everything the primary has logged so far.

        TimeoutError (with the replica's replication state) after *timeout* seconds.
        """
        position = self.primary.query("SELECT @@gtid_binlog_pos")[0][0]
        conn = pymysql.connect(
            **self.replica.connect_kwargs(database=None, autocommit=True, read_timeout=timeout + 5)
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))
                row = cur.fetchone()
                if row is not None and row[0] == 0:
                    return
                cur.execute("SHOW SLAVE STATUS")
                names = [d[0] for d in cur.description or ()]
                status = dict(zip(names, cur.fetchone() or (), strict=False))
        finally:
            conn.close()
        shown = {
            key: status.get(key)
            for key in ("Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error", "Last_SQL_Error")
        }
        raise TimeoutError(
            f"replica not at the primary's GTID position {position!r} after {timeout:.0f} s: "
            f"{shown}; gtid_slave_pos={self.replica.query('SELECT @@gtid_slave_pos')[0][0]!r}"
        )

    def promote_replica(self) -> None:
        """Make the replica a writable primary (after the test stopped or killed the primary)."""
        self.replica.query("STOP SLAVE")
        self.replica.query("SET GLOBAL read_only=OFF")

    def app_connect_kwargs(
        self, server: ThrowawayServer | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """``pymysql.connect`` keyword arguments for the non-SUPER application user to *server*;
        without a server only user, password and database (for a pool given :meth:`endpoints`)."""
        app = {"user": self.app_user, "password": self.app_password}
        if server is not None:
            return server.connect_kwargs(**app, **overrides)
        return _credentials(self.primary.connect_kwargs(**app), overrides)

    def __repr__(self) -> str:
        return f"<ThrowawayReplication primary={self.primary!r} replica={self.replica!r}>"
