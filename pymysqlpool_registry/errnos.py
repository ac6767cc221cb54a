"""MySQL error numbers the pool and its default plugins act on, and :func:`error_number`."""

from __future__ import annotations

import pymysql

#: After these a connection is dead even if its socket still looks open: server gone/lost,
#: commands out of sync, 2045/2055 (lost during handshake or read), 4031 (MySQL 8 idle
#: disconnect), 1927 (MariaDB connection killed), 1053 (server shutdown).
DISCONNECT_ERRNOS = frozenset({2006, 2013, 2014, 2045, 2055, 4031, 1927, 1053})
#: --read-only / --super-read-only (1290) and read-only mode (1836): in a writer pool, a sign
#: that the writer moved.
READ_ONLY_ERRNOS = frozenset({1290, 1836})
#: Galera's "WSREP has not yet prepared node for application use" (no quorum).
GALERA_NOT_READY = 1047
#: A server that works but takes no more connections: too many connections (1040), the
#: user's limit (1203), max_user_connections (1226).
SERVER_FULL_ERRNOS = frozenset({1040, 1203, 1226})
#: Connect errors no retry can fix: access denied (1044, 1045), unknown database (1049),
#: host blocked or not allowed (1129, 1130), unknown system variable (1193), a privilege an
#: init_command needs (1227), unknown charset or collation (1115, 1273), authentication
#: method unsupported (1251, 2059), TLS required but not offered (2026).
CONNECT_FAIL_ERRNOS = frozenset(
    {1044, 1045, 1049, 1115, 1129, 1130, 1193, 1227, 1251, 1273, 2026, 2059}
)


def error_number(error: BaseException | None) -> int | None:
    """The MySQL error number of a PyMySQL error, or None."""
    if isinstance(error, pymysql.err.Error) and error.args and isinstance(error.args[0], int):
        return error.args[0]
    return None
