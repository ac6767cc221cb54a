"""The ``failover`` policy pack: a read-only error means the writer moved, so start afresh."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pymysqlpool_registry import PolicyPack, Verdict, hookimpl
from pymysqlpool_registry.errnos import error_number

if TYPE_CHECKING:
    from pymysqlpool_registry import ConnectionPool

__all__ = ["PACK", "READ_ONLY_ERRNOS", "FailoverPolicy"]

#: ER_OPTION_PREVENTS_STATEMENT (--read-only / --super-read-only), ER_READ_ONLY_MODE.
READ_ONLY_ERRNOS = frozenset({1290, 1836})


class FailoverPolicy:
    """Invalidate the pool on a read-only error; leave every other error to the next plugin."""

    @hookimpl(tryfirst=True)
    def pymysqlpool_classify_error(
        self, pool: ConnectionPool, error: BaseException
    ) -> Verdict | None:
        """INVALIDATE_POOL for 1290/1836, else no opinion."""
        return Verdict.INVALIDATE_POOL if error_number(error) in READ_ONLY_ERRNOS else None


PACK = PolicyPack(
    name="failover",
    description="read-only errors (a moved writer) invalidate the pool; short timeouts",
    defaults={"connect_timeout": 2.0, "ping_interval": 0.5, "ping_timeout": 1.0},
    plugin=FailoverPolicy(),
)
