"""The ``strict-dev`` policy pack: make pool misuse loud during development."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import TYPE_CHECKING

import pluggy

import pymysqlpool_registry
from pymysqlpool_registry import PolicyPack, hookimpl

if TYPE_CHECKING:
    from pymysqlpool_registry import ConnectionPool

__all__ = ["PACK", "OpenTransactionWarning", "StrictDevPolicy"]

_INTERNAL = (
    *(
        os.path.dirname(module.__file__ or "") + os.sep
        for module in (pymysqlpool_registry, pluggy, sys.modules[__name__])
    ),
    contextlib.__file__,  # the pool.connection() context manager
)


class OpenTransactionWarning(UserWarning):
    """A connection came back to its pool with a transaction still open; it was rolled back."""


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside the pool, pluggy and this pack."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


class StrictDevPolicy:
    """Warn where a connection is given back mid-transaction."""

    @hookimpl
    def pymysqlpool_on_checkin(self, pool: ConnectionPool, open_transaction: bool) -> None:
        """Raise OpenTransactionWarning at the caller's line when a transaction was left open."""
        if open_transaction:
            warnings.warn(
                f"connection given back to pool({pool.name}) with an open transaction; "
                "the pool rolled it back (commit or roll back before closing)",
                OpenTransactionWarning,
                stacklevel=_caller_stacklevel(),
            )


PACK = PolicyPack(
    name="strict-dev",
    description="leak detection, pre-ping always, short timeouts, warnings on open transactions",
    defaults={"leak_threshold": 10.0, "ping_interval": 0.0, "timeout": 5.0, "connect_timeout": 3.0},
    plugin=StrictDevPolicy(),
)
