"""Read/write routing through one registry name, across a failover.

Run: ``python examples/primary_replica.py`` (needs ``mariadb-server`` installed; it starts its
own throwaway primary and replica on 127.0.0.1 and removes them at the end).
"""

from __future__ import annotations

from pymysqlpool_registry import Connection, GetConnectionFromPoolError, Registry
from pymysqlpool_registry.throwaway import ThrowawayReplication


def where(conn: Connection) -> int:
    """The port of the server a pooled connection talks to."""
    return int(conn.port)


def main() -> None:
    with ThrowawayReplication() as servers:
        primary, replica = servers.primary, servers.replica
        print(f"primary on port {primary.port}, replica on port {replica.port}")
        registry = Registry()
        registry.register(
            "orders",
            **servers.app_connect_kwargs(),  # user, password, database
            endpoints=[
                {"host": primary.host, "port": primary.port, "role": "writer"},
                {"host": replica.host, "port": replica.port, "role": "reader"},
            ],
            max_replica_lag=5.0,  # a reader more than 5 s behind is skipped
            autocommit=True,
            connect_timeout=1.0,
        )
        writer = registry.get("orders", role="write")
        reader = registry.get("orders", role="read")

        with writer.connection() as conn:
            conn.execute("CREATE TABLE orders (id INT PRIMARY KEY)")
            conn.execute("INSERT INTO orders VALUES (1)")
            print(f"write  -> port {where(conn)}")
        servers.wait_replicated()
        with reader.connection() as conn:
            conn.execute("SELECT COUNT(*) FROM orders")
            (count,) = conn.fetchone()
            print(f"read   -> port {where(conn)}: {count} order(s)")

        primary.kill()  # the writer dies; the only server left is read-only
        try:
            with writer.connection(timeout=3) as conn:
                conn.execute("INSERT INTO orders VALUES (2)")
        except GetConnectionFromPoolError as exc:
            print(f"write refused at once: {exc}")

        servers.promote_replica()  # what a failover tool does: read_only=OFF on the replica
        with writer.connection() as conn:  # same name, no restart
            conn.execute("INSERT INTO orders VALUES (2)")
            print(f"write  -> port {where(conn)} after the promotion")
        for endpoint in writer.endpoint_stats():
            print(
                f"  {endpoint['endpoint']}: open={endpoint['open']} "
                f"failures={endpoint['failures']} check={endpoint['check']!r}"
            )
        registry.close_all()


if __name__ == "__main__":
    main()
