"""Default endpoint choice (the pool's ``endpoint_policy``) and vetting (writable, lag)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pymysql

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..connection import Connection
    from ..endpoints import Endpoint, EndpointState
    from ..pool import ConnectionPool

_ACCESS_DENIED = 1227  # ER_SPECIFIC_ACCESS_DENIED_ERROR
_PARSE_ERROR = 1064  # ER_PARSE_ERROR: a server older than SHOW REPLICA STATUS


@hookimpl(trylast=True)
def pymysqlpool_select_endpoint(
    pool: ConnectionPool, candidates: list[EndpointState]
) -> EndpointState:
    """failover: the first candidate; round-robin: the fewest chosen per weight;
    least-in-use: the fewest open connections per weight (ties: config order)."""
    policy = pool.config.endpoint_policy
    if policy == "round-robin":
        return min(candidates, key=lambda s: s.chosen / s.endpoint.weight)
    if policy == "least-in-use":
        return min(candidates, key=lambda s: s.open / s.endpoint.weight)
    return candidates[0]


@hookimpl(trylast=True)
def pymysqlpool_check_endpoint(
    pool: ConnectionPool, connection: Connection, endpoint: Endpoint
) -> str:
    """Refuse a Galera node that is not ready, a read-only server for a writer pool and, for a
    reader pool, a replica lagging more than ``max_replica_lag``; otherwise accept ("")."""
    config = pool.config
    if config.cluster == "galera":
        status = _query(
            connection,
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_cluster_status')",
        )
        state = {name.lower(): value for name, value in status}
        if state.get("wsrep_ready") != "ON":
            return (
                f"wsrep_ready {state.get('wsrep_ready', 'missing')}, "
                f"wsrep_cluster_status {state.get('wsrep_cluster_status', 'missing')}"
            )
    if config.role == "writer":
        (flags,) = _query(connection, "SELECT @@global.read_only, @@global.innodb_read_only")
        if any(flags):
            return "read-only"
    if config.role == "reader" and config.max_replica_lag is not None:
        try:
            replica = _replica_status(connection)
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != _ACCESS_DENIED:
                raise
            return (
                "max_replica_lag needs the privilege to read the replica status: "
                "GRANT SLAVE MONITOR (MariaDB) or REPLICATION CLIENT (MySQL) to the pool's user"
            )
        if replica is not None:  # a replica: is it replicating, and close enough?
            lag = replica.get("Seconds_Behind_Master", replica.get("Seconds_Behind_Source"))
            if lag is None:
                return "replica not replicating (Seconds_Behind_Master NULL)"
            if lag > config.max_replica_lag:
                return f"replica lag {lag} s over {config.max_replica_lag:g} s"
    return ""


def _replica_status(connection: Connection) -> dict[str, Any] | None:
    """SHOW REPLICA STATUS as a dict (SHOW SLAVE STATUS before MariaDB 10.5 / MySQL 8.0.22);
    None on a server that is not a replica."""
    with connection.cursor() as cur:
        try:
            cur.execute("SHOW REPLICA STATUS")
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != _PARSE_ERROR:
                raise
            cur.execute("SHOW SLAVE STATUS")
        names = [column[0] for column in cur.description or ()]
        row = cur.fetchone()
    return None if row is None else dict(zip(names, row, strict=True))


def _query(connection: Connection, sql: str) -> tuple[tuple[Any, ...], ...]:
    with connection.cursor() as cur:
        cur.execute(sql)
        return tuple(cur.fetchall())
