"""Connection: a PyMySQL connection that goes back to its pool on close() or at the end of ``with``."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import pymysql
from pymysql.constants import COMMAND, SERVER_STATUS

from .errors import ConnectionReturnedError
from .legacy import LegacyMethods

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from .config import PoolConfig
    from .entry import PoolEntry

_Base: Any = pymysql.connections.Connection
_COM_RESET_CONNECTION = 0x1F
#: Connection._rollback: the pool owes the server a ROLLBACK (sent with the next command, or by
#: the maintenance thread once the connection idles ROLLBACK_WITHIN seconds), or it sent one
#: whose OK it has not read yet. Either way nothing has run since the loan that needed it.
OWED, SENT = 1, 2
#: Seconds an idle connection may keep the transaction of its last loan (a snapshot, locks)
#: before the maintenance thread sends the ROLLBACK it owes (README: "Autocommit off").
ROLLBACK_WITHIN = 0.005
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
current_thread = threading.current_thread
logger = logging.getLogger("pymysqlpool_registry")


class Lender(Protocol):
    """What a pooled connection asks of the pool that lent it."""

    @property
    def name(self) -> str: ...
    def _give_back(self, conn: Connection, error: BaseException | None) -> None: ...
    def _take_back(self, conn: Connection) -> None: ...


class Connection(LegacyMethods, _Base):  # type: ignore[misc]
    """A ``pymysql.connections.Connection`` that knows its pool.

    Without a pool it behaves exactly like PyMySQL's. Lent by a pool, ``close()`` and the end
    of a ``with conn:`` block give it back instead of closing the socket, and using it after
    that raises :class:`~pymysqlpool_registry.ConnectionReturnedError`.
    """

    # What a command reads lives in class defaults, so a plain connection needs no extra
    # __init__; what only the pool reads is in its PoolEntry (_entry, set when adopted).
    _pool: Lender | None = None
    _entry: PoolEntry
    _lent = False  # lent to a borrower (or held by the maintenance thread)
    _blocks = 0  # how many ``with conn:`` blocks of this loan are open (nested ones count)
    _borrower: threading.Thread | None = None
    _check_owner = True  # the pool's check_owner_thread
    _dirty = False  # a statement ran since the last COMMIT/ROLLBACK
    _rollback = 0  # 0, OWED or SENT (see OWED)
    _used = False  # a statement ran since the pool last reset the session
    _last_error: BaseException | None = None  # a server error raised during this loan
    _poller: Any = None
    _read_timeout: float | None  # PyMySQL's, declared for the type checker
    _write_timeout: float | None
    _next_seq_id: int

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if not self.unix_socket else self.unix_socket
        pool = self._pool
        if pool is None:
            state = "open" if self.open else "closed"
            return f"<{type(self).__name__} {where} {state}>"
        state = "lent" if self._lent else "idle"
        return f"<{type(self).__name__} {where} pool={pool.name!r} {state}>"

    # --- giving back ---

    def close(self) -> None:
        """Give the connection back to its pool, or close it if it has none."""
        pool = self._pool
        if pool is None:
            super().close()
        else:
            pool._give_back(self, None)

    @property
    def open(self) -> bool:
        """True if the socket is open and, for a pooled connection, lent to the caller:
        a handle that was given back reads False, as a closed PyMySQL connection does."""
        if not self.socket_open:
            return False
        return self._pool is None or self._lent_to_caller()

    def _lent_to_caller(self) -> bool:
        """True if this pooled connection is on loan and the calling thread may use it."""
        return self._lent and (not self._check_owner or self._borrower is current_thread())

    def __enter__(self) -> Self:
        """Enter ``with conn:``; a connection already given back is taken out again for the block.

        That is pymysql-pool's context-manager "multiplexing": ``conn.close()`` and later
        ``with conn:`` work as long as no other borrower holds the connection meanwhile.
        The loan ends where the outermost block ends.
        """
        if self._pool is not None:
            if self._lent:
                self._check_borrower()
            else:
                self._pool._take_back(self)
            self._blocks += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Give the connection back at the end of the outermost block.

        When the block raised, its exception is what propagates: a failure to give the
        connection back is logged and noted on it, never raised in its place.
        """
        pool = self._pool
        if pool is None:
            super().__exit__(exc_type, exc, tb)
            return
        blocks = self._blocks
        if blocks > 1 and self._lent_to_caller():
            self._blocks = blocks - 1  # an inner block of this loan
            return
        if exc is None:
            pool._give_back(self, None)
            return
        try:
            pool._give_back(self, exc)
        except Exception as failure:  # noqa: BLE001 - the block's own exception must win
            logger.warning(
                "Could not give the connection back to pool(%s) after %s: %s",
                pool.name,
                type(exc).__name__,
                failure,
            )
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(
                    f"(giving the connection back to pool({pool.name}) failed too: {failure})"
                )

    # --- guarding and tracking every command ---

    def _check_borrower(self) -> None:
        """Raise unless the calling thread may use this pooled connection now."""
        pool = self._pool
        if pool is None:
            return
        if not self._lent:
            raise ConnectionReturnedError(
                0,
                f"this connection was already returned to pool({pool.name}); "
                "take another with get_connection()",
            )
        if self._check_owner and self._borrower is not current_thread():
            raise ConnectionReturnedError(
                0,
                f"this connection is lent to another thread by pool({pool.name}); it was "
                "returned already, or set check_owner_thread=False to pass connections "
                "between threads",
            )

    def _execute_command(self, command: int, sql: Any) -> Any:
        if self._pool is not None and (
            not self._lent or (self._check_owner and self._borrower is not current_thread())
        ):
            self._check_borrower()  # raises, saying which
        if command != COMMAND.COM_PING:
            self._dirty = self._used = True
        if self._rollback == OWED:
            self._send_after_rollback(command, sql)
        else:
            _Base._execute_command(self, command, sql)
        if self._rollback:  # pipelined: the ROLLBACK's OK comes before this command's reply
            self.read_pending_reply()

    def _send_after_rollback(self, command: int, sql: Any) -> None:
        """Send the ROLLBACK the pool owes and then *command*, in one write: PyMySQL's writes
        go to a buffer while it frames both."""
        chunks: list[bytes] = []
        self._write_bytes = chunks.append  # an instance attribute, over PyMySQL's method
        try:
            _Base._execute_command(self, COMMAND.COM_QUERY, b"ROLLBACK")
            _Base._execute_command(self, command, sql)
        finally:
            del self._write_bytes
        self._rollback = SENT
        self._write_bytes(b"".join(chunks))

    def query(self, sql: Any, unbuffered: bool = False) -> int:
        try:
            result: int = _Base.query(self, sql, unbuffered)  # not super(): it costs per query
        except pymysql.err.DatabaseError as exc:  # the server's: kept for the pool
            self._last_error = exc
            raise
        return result

    def commit(self) -> None:
        try:
            super().commit()
        except pymysql.err.DatabaseError as exc:
            self._last_error = exc
            raise
        self._dirty = False

    def rollback(self) -> None:
        super().rollback()
        self._dirty = False

    # --- helpers the pool and its default plugins use ---

    @property
    def socket_open(self) -> bool:
        """True while the socket is open, whoever holds the connection (PyMySQL's ``open``)."""
        return self._sock is not None

    @property
    def in_transaction(self) -> bool:
        """True if a transaction may be open, so COMMIT or ROLLBACK is needed to end it.

        The server's flag misses the implicit transaction a plain SELECT opens with
        autocommit off, so then any statement since the last COMMIT/ROLLBACK counts. While
        the pool owes a ROLLBACK or has not read its reply, nothing has run since, so: False.
        """
        if self._rollback:
            return False
        status = self.server_status
        if status & _IN_TRANS:
            return True
        return self._dirty and not status & _AUTOCOMMIT

    def end_loan(self, config: PoolConfig, force: bool) -> bool:
        """End what a borrower left open, as *config* says (``reset``, ``autocommit``); with
        *force* whether or not anything seems open. True if that took a command."""
        if config.reset == "session":
            if not (force or self._used):  # _dirty is cleared by a COMMIT; session state isn't
                return False
            with self.bounded(config.ping_timeout):
                self.reset_session(config)
            return True
        if self._rollback:
            return False  # no command since the last borrower's ROLLBACK was owed
        did = False
        if force or self.in_transaction:
            self._rollback = OWED  # no I/O now: the next command carries it
            self._dirty = False
            did = True
        if bool(self.server_status & _AUTOCOMMIT) is not config.autocommit:
            with self.bounded(config.ping_timeout):
                self.autocommit(config.autocommit)
            self._dirty = False
            did = True
        return did

    def send_owed_rollback(self) -> None:
        """Send the ROLLBACK the pool owes without waiting for its reply (the maintenance
        thread, for a connection idle ROLLBACK_WITHIN seconds); the reply is read at the next
        command or checkout, or by the next maintenance round."""
        _Base._execute_command(self, COMMAND.COM_QUERY, b"ROLLBACK")
        self._rollback = SENT

    def read_pending_reply(self) -> None:
        """Read the OK of a ROLLBACK sent earlier; close the socket if that fails."""
        self._rollback = 0
        expected, self._next_seq_id = self._next_seq_id, 1
        try:
            self._read_ok_packet()
        except BaseException:
            self._force_close()
            raise
        self._next_seq_id = expected

    def server_closed(self) -> bool:
        """True if the server closed or broke this idle connection, judged without a round trip.

        An idle socket with data or EOF waiting is dead, unless the data is the reply to a
        ROLLBACK sent earlier, which is then read and the socket looked at again.
        """
        poller = self._poller  # readable(), inlined: this runs at every checkout
        if poller is None or self._sock is None:
            if not self.readable():
                return False
        elif not poller.poll(0):
            return False
        if self._rollback != SENT:
            return True
        try:
            self.read_pending_reply()
        except Exception:  # noqa: BLE001 - a failed reply means a dead connection
            return True
        return self.readable()

    def readable(self) -> bool:
        """True if data or EOF waits on the socket, or it is closed (nothing is read)."""
        sock = self._sock
        if sock is None:
            return True
        poller = self._poller
        if poller is None:
            if not hasattr(select, "poll"):  # pragma: no cover - Windows
                return bool(select.select([sock], [], [], 0)[0])
            poller = self._poller = select.poll()
            poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))

    @contextmanager
    def bounded(self, timeout: float) -> Iterator[None]:
        """Bound every read and write in the block by *timeout* seconds (or the tighter
        timeout the connection already has)."""
        saved = self._read_timeout, self._write_timeout
        self._read_timeout = min(saved[0] or timeout, timeout)
        self._write_timeout = min(saved[1] or timeout, timeout)
        try:
            yield
        finally:
            self._read_timeout, self._write_timeout = saved

    def ping_within(self, timeout: float) -> None:
        """COM_PING bounded by *timeout* seconds; raises if it fails."""
        with self.bounded(timeout):
            self.ping(reconnect=False)

    @property
    def has_unread_result(self) -> bool:
        """True if a streamed (unbuffered) result was left half read."""
        result = self._result
        return result is not None and bool(result.unbuffered_active)

    def reset_session(self, config: PoolConfig) -> None:
        """COM_RESET_CONNECTION, then put back what *config* sets up at connect.

        The reset clears user variables, temporary tables, locks and session variables but
        keeps the current database and puts autocommit to the server's default.
        """
        self._execute_command(_COM_RESET_CONNECTION, b"")
        self._read_ok_packet()
        collation = config.connect_args.get("collation")
        names = config.charset if collation is None else f"{config.charset} COLLATE {collation}"
        settings = [f"NAMES {names}", f"autocommit={int(config.autocommit)}"]
        sql_mode = config.connect_args.get("sql_mode")
        if sql_mode is not None:
            settings.append(f"sql_mode={self.escape(sql_mode)}")
        self._execute_command(COMMAND.COM_QUERY, "SET " + ", ".join(settings))
        self._read_ok_packet()
        if config.database:
            self.select_db(config.database)
        if config.init_command is not None:
            self.query(config.init_command)
        self._dirty = self._used = False

    def _move(self) -> Connection:
        """A new object holding this connection's state; this one is left a returned,
        closed handle (what check_owner_thread=False lends each loan anew)."""
        moved = object.__new__(type(self))
        moved.__dict__ = self.__dict__
        self.__dict__ = {
            "_pool": moved._pool,
            "_sock": None,
            "_check_owner": False,
            **{name: getattr(moved, name) for name in ("host", "port", "unix_socket")},
        }
        self.__class__ = _ReturnedHandle  # a class of its own: __getattr__ slows every lookup
        return moved

    def discard(self) -> None:
        """Close the socket for good (politely if it is still open)."""
        self._lent = False
        if self.socket_open:
            try:
                super().close()
            except Exception:  # noqa: BLE001 - the socket is going away either way
                self._force_close()


class _ReturnedHandle(Connection):
    """What a handle becomes when check_owner_thread=False moves its loan's state away (see
    Connection._move): any use raises ConnectionReturnedError."""

    def __getattr__(self, name: str) -> Any:
        self._check_borrower()  # raises: the loan this handle held has ended
        raise AttributeError(name)  # pragma: no cover - _check_borrower raised
