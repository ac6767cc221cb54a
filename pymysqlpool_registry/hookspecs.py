"""Hook specifications: every decision and event a plugin can take part in.

Plugins implement these with the :data:`hookimpl` marker. Hooks are called with keyword
arguments; an implementation may accept any subset of them. The built-in behaviour is a set of
default plugins (``pymysqlpool_registry.default_plugins``) marked ``trylast``, so a plugin's
answer to a ``firstresult`` hook wins and ``None`` means "let the next plugin decide".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from .verdicts import ConnectVerdict, Reason, Verdict

__all__ = ["ConnectVerdict", "PoolView", "Reason", "Verdict", "hookimpl", "hookspec"]

if TYPE_CHECKING:
    from .config import PoolConfig
    from .connection import Connection
    from .endpoints import Endpoint, EndpointState

PROJECT_NAME = "pymysqlpool_registry"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorator for plugin implementations of the hooks below.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class PoolView(Protocol):
    """What a hook sees of the pool that calls it (a ``pymysqlpool_registry.ConnectionPool``)."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> PoolConfig: ...
    def stats(self) -> dict[str, float]: ...
    def endpoint_stats(self) -> list[dict[str, Any]]: ...


@hookspec(firstresult=True)
def pymysqlpool_create_connection(
    pool: PoolView, reason: str, timeout: float, endpoint: Endpoint
) -> Connection | None:
    """Open a new connection for *pool* to *endpoint* within *timeout* seconds.

    *reason* is ``"fill"`` (min_size) or ``"grow"`` (a borrower needs one).

    Return a :class:`~pymysqlpool_registry.Connection` (or subclass) that is connected, or
    ``None`` to let the next plugin decide. The default builds one from ``pool.config``.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def pymysqlpool_select_endpoint(
    pool: PoolView, candidates: list[EndpointState]
) -> EndpointState | None:
    """Choose the endpoint of the next connection among *candidates*, or ``None`` to abstain.

    *candidates* are the endpoints not ejected nor yet tried by this request, of the role
    this pool prefers most among them, in config order (or, when every endpoint is ejected,
    the one whose ejection ends first). The default applies ``endpoint_policy``. An exception
    here fails the request with :class:`PluginError`. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def pymysqlpool_check_endpoint(
    pool: PoolView, connection: Connection, endpoint: Endpoint
) -> str | None:
    """Vet *endpoint* through *connection*: a new connection before the pool uses it, and
    an idle one every ``endpoint_check_interval`` seconds.

    Return a reason (e.g. ``"read-only"``) to refuse it: the pool closes the connection,
    ejects the endpoint (retiring its other connections) and, for a borrower, tries another;
    return ``""`` to accept, ``None`` to abstain. Reads are bounded by the connect or ping
    timeout. The default refuses a Galera node whose ``wsrep_ready`` is not ON, a read-only
    server for a writer pool and a replica lagging more than ``max_replica_lag`` for a reader
    pool. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def pymysqlpool_classify_error(
    pool: PoolView, connection: Connection, error: BaseException
) -> Verdict | None:
    """Decide what happens to *connection* after *error* was raised while it was lent.

    *error* is the exception that ended the loan (``with conn:``), or else the last server
    error a statement raised during the loan, even one the borrower caught (``close()``).

    Return a :class:`Verdict`, or ``None`` to let the next plugin decide. The default decides
    from the MySQL error number and whether the socket is still open.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def pymysqlpool_classify_connect_error(
    pool: PoolView, error: BaseException
) -> ConnectVerdict | None:
    """Decide whether a connect that raised *error* is worth retrying.

    Return a :class:`ConnectVerdict`, or ``None`` to let the next plugin decide (no answer at
    all means RETRY). The default fails at once on errors no retry can fix: access denied,
    unknown database, privileges, SQL errors of ``init_command``, TLS errors and errors raised
    by PyMySQL before any packet. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def pymysqlpool_pre_ping(
    pool: PoolView, connection: Connection, idle: float, timeout: float
) -> bool | None:
    """Tell whether *connection*, idle for *idle* seconds, is fit to lend, within *timeout* s.

    *timeout* is ``ping_timeout`` or less when the borrower's deadline is nearer; *idle* is
    ``inf`` when the borrower asked for a ping (``get_connection(pre_ping=True)``).

    Return ``True`` to lend it, ``False`` to discard it (the pool then takes or opens another),
    ``None`` to let the next plugin decide. The default checks the socket without a round trip
    and sends COM_PING (bounded by ``ping_timeout``) after ``ping_interval`` seconds idle.
    Stops at first non-None result.
    """


@hookspec
def pymysqlpool_on_checkout(pool: PoolView, connection: Connection, wait: float) -> None:
    """*connection* was lent after the borrower waited *wait* seconds. Must not raise or block."""


@hookspec
def pymysqlpool_on_checkin(
    pool: PoolView, connection: Connection, usage: float, open_transaction: bool
) -> None:
    """*connection* came back after *usage* seconds lent. Must not raise or block.

    *open_transaction* is True if the server reported a transaction still open (uncommitted
    writes or an explicit BEGIN), which the pool then rolled back.
    """


@hookspec
def pymysqlpool_on_connect(
    pool: PoolView, connection: Connection, reason: str, duration: float
) -> None:
    """A connection was opened in *duration* seconds (*reason* as in create_connection)."""


@hookspec
def pymysqlpool_on_discard(pool: PoolView, connection: Connection, reason: Reason) -> None:
    """*connection* was closed for *reason* (a :class:`Reason`, which is also a str)."""


@hookspec
def pymysqlpool_on_timeout(pool: PoolView, waited: float) -> None:
    """A borrower gave up after *waited* seconds without a connection."""


@hookspec
def pymysqlpool_on_leak(
    pool: PoolView, connection: Connection, held: float, stack: str, abandoned: bool
) -> None:
    """*connection* has been lent for *held* seconds, longer than ``leak_threshold``.

    *stack* is where it was taken (empty if leak detection was off then). *abandoned* is True
    when its borrower thread has died: the pool then closes it and frees its slot.
    Called from the maintenance thread once per loan when it becomes overdue, and once
    more if its borrower then dies.
    """


@hookspec
def pymysqlpool_on_reconnect_failed(pool: PoolView, error: BaseException, elapsed: float) -> None:
    """Refilling *pool* to ``min_size`` has failed for *elapsed* seconds (``reconnect_timeout``).

    Called once per outage, from the maintenance thread, with the last connect *error*; the
    pool keeps trying with backoff.
    """
