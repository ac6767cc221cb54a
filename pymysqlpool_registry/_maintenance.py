"""The maintenance thread a pool runs for its periodic work, and fork safety for all pools."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pool import ConnectionPool

logger = logging.getLogger("pymysqlpool_registry")

#: Every pool alive in this process, so a forked child can make them forget their sockets.
_POOLS: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


class Maintenance:
    """A daemon thread calling ``pool._maintain()`` until the pool is closed or collected.

    It starts with the pool's first connection (:meth:`start`), or when woken: a pool that
    has none has nothing to maintain, so a process can build thousands of pools (``pymysqlpool
    stats`` on a large config file) without a thread each. It holds the pool only through a
    weak reference, so a pool nobody uses any more can go. ``_maintain`` returns how long to
    sleep; :meth:`wake` cuts the sleep short.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = weakref.ref(pool)
        self._wakeup = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def start(self) -> None:
        """Start the thread unless it runs already (or the pool was stopped)."""
        if self._thread is not None or self._stopped:
            return
        with self._starting:
            pool = self._pool()
            if self._thread is None and not self._stopped and pool is not None:
                self._thread = threading.Thread(
                    target=self._run, name=f"pymysqlpool-maintenance({pool.name})", daemon=True
                )
                self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for the thread to end; True if it is not running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def wake(self) -> None:
        """Run the next round now."""
        self.start()
        self._wakeup.set()

    def stop(self) -> None:
        """End the thread after its current round."""
        self._stopped = True
        self._wakeup.set()

    def _run(self) -> None:
        while not self._stopped:
            pool = self._pool()
            if pool is None:
                return
            try:
                delay = pool._maintain()
            except Exception:
                logger.exception("maintenance of pool(%s) failed", pool.name)
                delay = 1.0
            del pool
            if delay is None:
                return
            self._wakeup.wait(delay)
            self._wakeup.clear()


def _forget_parent_connections() -> None:
    for pool in list(_POOLS):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_connections)
