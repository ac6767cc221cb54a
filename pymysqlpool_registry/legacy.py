"""LegacyMethods: pymysql-pool 0.3's conveniences on a pooled connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pymysql


class LegacyMethods:
    """``execute``/``fetch*`` on a cursor kept for the loan, and ``execute_query``: what
    pymysql-pool 0.3 code calls on a connection. Mixed into :class:`Connection`."""

    _shared_cursor: Any = None
    _pool: Any
    _blocks: int

    if TYPE_CHECKING:  # what the mixin uses of Connection

        def cursor(self, cursor: Any = None) -> Any: ...
        def commit(self) -> None: ...
        @property
        def in_transaction(self) -> bool: ...
        def __enter__(self) -> Any: ...
        def __exit__(self, *exc_info: Any) -> None: ...

    def execute(self, query: str, args: Any = None) -> int:
        """Run *query* on a cursor kept for this loan; read rows with ``fetch*``.

        Lets pymysql-pool 0.3 code written as ``with conn as cur: cur.execute(...)`` keep
        working. Returns the number of affected (or selected) rows.
        """
        if self._shared_cursor is None:
            self._shared_cursor = self.cursor()
        return int(self._shared_cursor.execute(query, args))

    def executemany(self, query: str, args: Sequence[Any]) -> int:
        """``executemany`` on the cursor that :meth:`execute` uses."""
        if self._shared_cursor is None:
            self._shared_cursor = self.cursor()
        return int(self._shared_cursor.executemany(query, args))

    def fetchone(self) -> Any:
        """The next row of the last :meth:`execute`."""
        return self._shared_cursor.fetchone()

    def fetchmany(self, size: int | None = None) -> Any:
        """The next *size* rows of the last :meth:`execute`."""
        return self._shared_cursor.fetchmany(size)

    def fetchall(self) -> Any:
        """The remaining rows of the last :meth:`execute`."""
        return self._shared_cursor.fetchall()

    def execute_query(
        self,
        query: str,
        args: Any = (),
        dictcursor: bool = False,
        return_one: bool = False,
        exec_many: bool = False,
    ) -> Any:
        """Run one query, commit, and return its rows (one row with *return_one*), as
        pymysql-pool did.

        Inside a ``with conn:`` block the connection stays with the caller. Anywhere else the
        call is a ``with conn:`` block of its own: a lent connection goes back afterwards
        (pymysql-pool 0.3's whole loan), one already given back is taken out for the call.
        """
        if self._pool is None or self._blocks:
            return self._query(query, args, dictcursor, return_one, exec_many)
        with self:
            return self._query(query, args, dictcursor, return_one, exec_many)

    def _query(
        self, query: str, args: Any, dictcursor: bool, return_one: bool, exec_many: bool
    ) -> Any:
        with self.cursor(pymysql.cursors.DictCursor if dictcursor else None) as cur:
            if exec_many:
                cur.executemany(query, args)
            else:
                cur.execute(query, args)
            rows = cur.fetchone() if return_one else cur.fetchall()
        if self.in_transaction:
            self.commit()
        return rows
