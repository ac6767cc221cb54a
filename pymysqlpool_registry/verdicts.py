"""What hooks answer (Verdict, ConnectVerdict) and why the pool closes a connection (Reason)."""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    """What becomes of a connection after an exception was raised while it was lent."""

    #: Return it as after normal use (a transaction left open is still rolled back).
    REUSE = "reuse"
    #: Roll back unconditionally, then reuse.
    RESET = "reset"
    #: Close it; the pool opens a new one when needed.
    DISCARD = "discard"
    #: Close it and every connection to its endpoint, and skip that endpoint for new ones
    #: for a while (a Galera node without quorum, a writer turned read-only).
    EJECT_ENDPOINT = "eject_endpoint"
    #: Close it and every connection opened before it (e.g. after a failover).
    INVALIDATE_POOL = "invalidate_pool"


class ConnectVerdict(enum.Enum):
    """Whether a failed connect is worth another try."""

    #: It may work later (refused, server full, lost during the handshake): the borrower waits
    #: for a returned connection or its turn to try again, the pool spacing out attempts.
    RETRY = "retry"
    #: No retry can fix it (access denied, unknown database, a failing init_command, TLS
    #: refused): the borrower fails at once, with this error as the cause.
    FAIL = "fail"


class Reason(str, enum.Enum):
    """Why the pool closed a connection: ``pymysqlpool_on_discard``'s *reason*, the log line
    and the Prometheus label. A str, so ``reason == "dead"`` holds for ``Reason.DEAD``."""

    #: An exception's verdict (classify_error) said so.
    ERROR = "error"
    #: The server closed it (restart, KILL, wait_timeout) or a ping or pending reply failed.
    DEAD = "dead"
    #: PyMySQL had closed its socket when it came back (a network error during the loan).
    BROKEN = "broken"
    #: It came back with a streamed result half read.
    UNREAD_RESULT = "unread-result"
    #: Resetting its session on return failed.
    RESET_FAILED = "reset-failed"
    #: invalidate() condemned it, or it came back to a pool invalidated meanwhile.
    INVALIDATED = "invalidated"
    #: The pool was closed.
    POOL_CLOSED = "pool-closed"
    #: It reached max_lifetime (or a fallback endpoint's 30 s).
    EXPIRED = "expired"
    #: It was idle past max_idle while more than min_size were open.
    IDLE = "idle"
    #: Its endpoint failed, was ejected, refused by a check, or removed by set_endpoints().
    ENDPOINT_FAILED = "endpoint-failed"
    #: resize() lowered max_size below what was open.
    RESIZED = "resized"
    #: Its borrower thread died while it was lent.
    ABANDONED = "abandoned"

    def __str__(self) -> str:
        return str(self.value)
