"""PoolConfig: the frozen, validated settings of one pool (PyMySQL arguments plus pool policy)."""

from __future__ import annotations

import inspect
import ipaddress
from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Any, Literal

import attrs
import pymysql
from attrs import validators as v

from ._checks import MIN_PERIOD, check_host, check_wait, integer, seconds
from .endpoints import Endpoint, parse_all

# PyMySQL's own keyword arguments, read from its signature so a new PyMySQL release needs no edit here.
PYMYSQL_ARGUMENTS = frozenset(
    name
    for name, param in inspect.signature(pymysql.connections.Connection.__init__).parameters.items()
    if param.kind is inspect.Parameter.KEYWORD_ONLY
)
_DEPRECATED_ALIASES = {"db": "database", "passwd": "password"}
_POOL_OWNED = frozenset({"defer_connect"})  # the pool decides when to connect
_TIMEOUT = seconds(0, above=True)
_TIMEOUT_OR_NONE = seconds(0, above=True, optional=True)
_PERIOD = seconds(MIN_PERIOD)
_PERIOD_OR_NONE = seconds(MIN_PERIOD, optional=True)


def _read_only(name: str, mapping: Any) -> Mapping[str, Any]:
    """*mapping* made read-only; the error names the setting *name*."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{name!r} must be a table of options, not {type(mapping).__name__}")
    return MappingProxyType(dict(mapping))


def _ssl_options(value: Any) -> Mapping[str, Any] | None:
    return None if value is None else _read_only("ssl", value)


def _connect_args(value: Any) -> Mapping[str, Any]:
    return _read_only("connect_args", value)


def _redact(value: object) -> str:
    return "None" if value is None else "'***'"


def _check_secret(instance: PoolConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Like instance_of(str, bytes), but the error never echoes the value."""
    if not isinstance(value, (str, bytes)):
        raise TypeError(f"{attribute.name!r} must be str or bytes, not {type(value).__name__}")


def _keys_only(value: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{key!r}: ..." for key in sorted(value)) + "}"


def _check_connect_args(instance: PoolConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    for key in value:
        if key in _FIELDS or key in _DEPRECATED_ALIASES:
            raise ValueError(f"connect_args: {key!r} is a PoolConfig field; set it directly")
        if key not in PYMYSQL_ARGUMENTS or key in _POOL_OWNED:
            raise ValueError(f"connect_args: {key!r} is not a pymysql.connect() argument it takes")


def _check_charset(instance: PoolConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"'charset' must be str, not {type(value).__name__}")
    if pymysql.charset.charset_by_name(value) is None:
        raise ValueError(f"'charset' {value[:40]!r} is not a character set PyMySQL knows")


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen(kw_only=True)
class PoolConfig:
    """Everything one pool needs: how to connect (PyMySQL's arguments) and how to lend.

    Change a config with :func:`attrs.evolve`, which validates again; build one from the
    keyword arguments of the old ``ConnectionPool(**kwargs)`` with :meth:`from_kwargs`.
    """

    # --- how to connect: passed to pymysql.connect() ---
    host: str = attrs.field(
        default="localhost", validator=lambda _, a, value: check_host(a.name, value)
    )
    port: int = attrs.field(default=3306, validator=integer(1, 65535))
    user: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))
    password: str | bytes = attrs.field(default="", repr=_redact, validator=_check_secret)
    database: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))
    unix_socket: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))
    charset: str = attrs.field(default="utf8mb4", validator=_check_charset)
    autocommit: bool = attrs.field(default=False, validator=v.instance_of(bool))
    init_command: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))
    #: Seconds to open the socket *and* finish the handshake (a server that never greets is bounded).
    connect_timeout: float = attrs.field(default=10.0, validator=_TIMEOUT)
    read_timeout: float | None = attrs.field(default=None, validator=_TIMEOUT_OR_NONE)
    write_timeout: float | None = attrs.field(default=None, validator=_TIMEOUT_OR_NONE)
    ssl: Mapping[str, Any] | None = attrs.field(
        default=None, repr=_redact, converter=_ssl_options, hash=False
    )
    #: ``None``: TLS off for loopback hosts and unix sockets (saves ~40 ms a connect), PyMySQL's
    #: default (TLS if the server offers it) elsewhere.
    ssl_disabled: bool | None = attrs.field(default=None, validator=v.optional(v.instance_of(bool)))
    #: Any other ``pymysql.connect()`` keyword argument (cursorclass, sql_mode, ssl_ca, ...).
    connect_args: Mapping[str, Any] = attrs.field(
        factory=dict,
        converter=_connect_args,
        repr=_keys_only,
        hash=False,
        validator=_check_connect_args,
    )

    #: Several servers instead of host/port: "host:port" strings, tables or Endpoint objects.
    endpoints: tuple[Endpoint, ...] = attrs.field(default=(), converter=parse_all)
    #: How to choose among endpoints: "failover" (the first usable, in order), "round-robin"
    #: (by weight) or "least-in-use" (fewest open connections per weight).
    endpoint_policy: Literal["failover", "round-robin", "least-in-use"] = attrs.field(
        default="failover", validator=v.in_(("failover", "round-robin", "least-in-use"))
    )
    #: What this pool is for: "writer" prefers writer endpoints and checks that a new
    #: connection can write; "reader" prefers reader endpoints, falling back to writers only
    #: when no reader is usable; "any" uses the endpoints as listed.
    role: Literal["any", "writer", "reader"] = attrs.field(
        default="any", validator=v.in_(("any", "writer", "reader"))
    )
    #: ``"galera"``: a node is used only while it reports ``wsrep_ready`` ON, and error 1047
    #: (no quorum) ejects it.
    cluster: Literal["galera"] | None = attrs.field(
        default=None, validator=v.optional(v.in_(("galera",)))
    )
    #: A reader pool skips a replica more than this many seconds behind (None: no check).
    max_replica_lag: float | None = attrs.field(default=None, validator=seconds(0, optional=True))
    #: Connect failures in a row after which an endpoint is skipped (ejected) for a while.
    eject_after: int = attrs.field(default=1, validator=integer(1))
    #: Seconds of the first ejection; each further one doubles it, up to 30 s.
    eject_backoff: float = attrs.field(default=1.0, validator=seconds(0.01))
    #: Seconds between re-checks of each endpoint (the check_endpoint hooks on one of its
    #: idle connections) in pools with several endpoints, a role or a cluster; a refusal
    #: ejects it. None: only new connections are checked.
    endpoint_check_interval: float | None = attrs.field(default=5.0, validator=_PERIOD_OR_NONE)
    #: Seconds a connect to one endpoint may take while another is left to try, so that a
    #: hung server (one that accepts but never answers) costs this, not connect_timeout.
    failover_timeout: float = attrs.field(default=1.0, validator=_TIMEOUT)

    # --- how to lend ---
    #: Connections opened when the pool is created and kept open.
    min_size: int = attrs.field(default=0, validator=integer(0))
    #: Most connections open at once, lent and idle together.
    max_size: int = attrs.field(default=10, validator=integer(1))
    #: Seconds :meth:`ConnectionPool.get_connection` waits per try (0: don't wait).
    timeout: float = attrs.field(default=30.0, validator=seconds(0))
    #: Further tries after the first one times out.
    retry_num: int = attrs.field(default=0, validator=integer(0))
    #: Lend the most recently returned connection first (keeps few connections hot).
    lifo: bool = attrs.field(default=True, validator=v.instance_of(bool))
    #: Ping a connection before lending it if it sat idle longer than this (0: always, None: never).
    ping_interval: float | None = attrs.field(default=1.0, validator=seconds(0, optional=True))
    #: Seconds the pool's own round trips may take (pre-ping, keepalive, a reset on return)
    #: before the connection counts as dead.
    ping_timeout: float = attrs.field(default=3.0, validator=_TIMEOUT)
    #: On return: ``"rollback"`` ends an open transaction; ``"session"`` also clears session
    #: state (user variables, locks, temporary tables) with COM_RESET_CONNECTION when any
    #: statement ran.
    reset: Literal["rollback", "session"] = attrs.field(
        default="rollback", validator=v.in_(("rollback", "session"))
    )
    #: Only the borrowing thread may use or return a connection (catches stale references);
    #: a connection whose borrower thread died is then reclaimed.
    check_owner_thread: bool = attrs.field(default=True, validator=v.instance_of(bool))

    # --- how long connections live (run by the pool's maintenance thread) ---
    #: Close a connection this long after it was opened, less up to 10 % jitter so that
    #: connections opened together do not expire together (None: never).
    max_lifetime: float | None = attrs.field(default=3600.0, validator=_PERIOD_OR_NONE)
    #: Close a connection idle longer than this while more than min_size are open.
    max_idle: float | None = attrs.field(default=600.0, validator=_PERIOD_OR_NONE)
    #: Ping idle connections this often, so no firewall or wait_timeout drops them (None: off).
    keepalive_interval: float | None = attrs.field(default=None, validator=_PERIOD_OR_NONE)
    #: Report a connection lent longer than this, once, with where it was taken (None: off).
    leak_threshold: float | None = attrs.field(default=None, validator=_PERIOD_OR_NONE)
    #: After refilling to min_size has failed this long, call pymysqlpool_on_reconnect_failed.
    reconnect_timeout: float = attrs.field(default=300.0, validator=_PERIOD)

    @endpoints.validator
    def _check_endpoints(
        self, attribute: attrs.Attribute[Any], value: tuple[Endpoint, ...]
    ) -> None:
        if value and self.unix_socket:
            raise ValueError("give 'endpoints' or 'unix_socket', not both")

    @max_size.validator
    def _check_sizes(self, attribute: attrs.Attribute[int], value: int) -> None:
        if self.min_size > value:
            raise ValueError(f"min_size ({self.min_size}) must not exceed max_size ({value})")

    @retry_num.validator
    def _check_wait(self, attribute: attrs.Attribute[int], value: int) -> None:
        check_wait(self.timeout, value)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> PoolConfig:
        """Build a config from flat keyword arguments, as ``pymysql.connect()`` takes them.

        The old pymysql-pool keywords are mapped to fields (see :func:`translate_legacy`);
        other PyMySQL arguments go to ``connect_args``; anything else is an error.
        """
        fields_set(kwargs)  # names every unknown or conflicting option
        kwargs = translate_legacy(kwargs)
        own: dict[str, Any] = {}
        extra: dict[str, Any] = dict(_connect_args(kwargs.pop("connect_args", {})))
        for key, value in kwargs.items():
            key = _DEPRECATED_ALIASES.get(key, key)
            if key in PYMYSQL_ARGUMENTS and key not in _FIELDS:
                extra[key] = value
            else:
                own[key] = value
        return cls(connect_args=extra, **own)

    def updated(self, **kwargs: Any) -> PoolConfig:
        """A copy with *kwargs* applied, taken as :meth:`from_kwargs` takes them."""
        base = attrs.asdict(self, recurse=False)
        for key in kwargs:
            for name in _REPLACES.get(key, (key,)):
                base.pop(name, None)
        return PoolConfig.from_kwargs(**{**base, **kwargs})

    def connect_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``pymysql.connect()``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "unix_socket": self.unix_socket,
            "charset": self.charset,
            "autocommit": self.autocommit,
            "init_command": self.init_command,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "write_timeout": self.write_timeout,
            "ssl": self.ssl,
            "ssl_disabled": self.ssl_disabled,
        }
        if self.ssl_disabled is None and self.ssl is None:
            wants_tls = any(key.startswith("ssl") for key in self.connect_args)
            if not wants_tls and (self.unix_socket or _is_local(self.host)):
                kwargs["ssl_disabled"] = True
        kwargs.update(self.connect_args)
        return kwargs


_FIELDS = frozenset(attrs.fields_dict(PoolConfig))


#: Keywords that only pymysql-pool 0.4/0.5 took: code that passes one was written for 0.5.
V05_KEYWORDS = frozenset({"maxsize", "pre_create_num", "con_lifetime"})
_V05_DEFAULT_MAXSIZE = 100


def _legacy_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name!r} must be an int >= {minimum}, not {value!r}")
    return value


#: The fields each old keyword stands for.
_REPLACES = {
    "size": ("min_size", "max_size"),
    "maxsize": ("max_size",),
    "pre_create_num": ("min_size",),
    "con_lifetime": ("max_lifetime",),
    **{alias: (name,) for alias, name in _DEPRECATED_ALIASES.items()},
}


def _check_legacy_conflicts(keys: AbstractSet[str]) -> bool:
    """Raise TypeError if *keys* set a size or lifetime twice; True if they are 0.5's."""
    if not keys & V05_KEYWORDS:
        if "size" in keys and keys & {"min_size", "max_size"}:
            raise TypeError("give 'size' or 'min_size'/'max_size', not both")
        return False
    for theirs in V05_KEYWORDS & keys:
        (ours,) = _REPLACES[theirs]
        if ours in keys:
            raise TypeError(f"give {ours!r} or pymysql-pool 0.5's {theirs!r}, not both")
    return True


def translate_legacy(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """*kwargs* with pymysql-pool's ``size`` (0.3) or 0.4/0.5 keywords replaced by fields.

    0.3's ``size=N`` is a fixed pool: ``min_size = max_size = N``. With any of ``maxsize``,
    ``pre_create_num`` or ``con_lifetime`` the code was written for 0.5, so 0.5's meanings
    and defaults apply: ``max_size = maxsize`` (100), ``min_size = pre_create_num`` (0, at
    most maxsize), ``max_lifetime = con_lifetime`` (0 or less: none) and ``autocommit``
    True unless given; 0.5's ``size`` (its soft limit) has no equivalent and is only checked.
    """
    result = dict(kwargs)
    if not _check_legacy_conflicts(result.keys()):
        if "size" in result:
            result["min_size"] = result["max_size"] = result.pop("size")
        return result
    if "size" in result:
        _legacy_int("size", result.pop("size"), 0)
    if "maxsize" in result:
        result["max_size"] = _legacy_int("maxsize", result.pop("maxsize"), 1)
    result.setdefault("max_size", _V05_DEFAULT_MAXSIZE)
    if "pre_create_num" in result:
        pre_create = _legacy_int("pre_create_num", result.pop("pre_create_num"), 0)
        limit = result["max_size"]
        result["min_size"] = min(pre_create, limit) if isinstance(limit, int) else pre_create
    result.setdefault("min_size", 0)
    if "con_lifetime" in result:
        lifetime = result.pop("con_lifetime")
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool):
            raise ValueError(f"'con_lifetime' must be a number of seconds, not {lifetime!r}")
        result["max_lifetime"] = float(lifetime) if lifetime > 0 else None
    result.setdefault("autocommit", True)
    return result


def fields_set(kwargs: Collection[str]) -> frozenset[str]:
    """The PoolConfig fields that ``PoolConfig.from_kwargs(**kwargs)`` sets (from the names
    alone, old pymysql-pool keywords included).

    Raises TypeError naming an unknown option, or two options that set the same field.
    """
    keys = set(kwargs)
    if _check_legacy_conflicts(keys):
        keys = (keys - V05_KEYWORDS - {"size"}) | {"min_size", "max_size", "autocommit"}
        if "con_lifetime" in kwargs:
            keys.add("max_lifetime")
    elif "size" in keys:
        keys = (keys - {"size"}) | {"min_size", "max_size"}
    for alias, name in _DEPRECATED_ALIASES.items():
        if alias in keys and name in keys:
            raise TypeError(f"give {name!r} or its old name {alias!r}, not both")
    result = set()
    for key in keys:
        key = _DEPRECATED_ALIASES.get(key, key)
        if key in _FIELDS:
            result.add(key)
        elif key in PYMYSQL_ARGUMENTS:
            result.add("connect_args")
        else:
            raise TypeError(
                f"unknown option {key!r}: neither a pool setting nor a pymysql.connect() argument"
            )
    return frozenset(result)
