"""Endpoints: the servers a pool may connect to, and what the pool has learnt about each."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, Protocol

import attrs
from attrs import validators as v

from ._checks import check_host, integer
from .errnos import SERVER_FULL_ERRNOS, error_number
from .errors import NoEndpointError, PluginError

Role = Literal["any", "writer", "reader"]
_EJECT_BACKOFF_MAX = 30.0


@attrs.frozen
class Endpoint:
    """One server: ``host:port``, a weight for round-robin and least-in-use, and a role."""

    host: str = attrs.field(validator=lambda _, a, value: check_host("endpoint host", value))
    port: int = attrs.field(default=3306, validator=integer(1, 65535))
    weight: int = attrs.field(default=1, validator=integer(1))
    role: Role = attrs.field(default="any", validator=v.in_(("any", "writer", "reader")))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | Endpoint) -> Endpoint:
        """An Endpoint from ``"host"``, ``"host:port"``, ``"[v6]:port"`` or a mapping."""
        if isinstance(value, Endpoint):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        if not isinstance(value, str):
            raise TypeError(f"an endpoint is 'host:port' or a table, not {type(value).__name__}")
        if "@" in value:  # "user:password@host": never echo it
            raise ValueError("an endpoint is 'host:port', without user or password")
        if value.startswith("["):  # [IPv6]:port
            host, bracket, rest = value[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"endpoint {value!r}: expected '[IPv6]' or '[IPv6]:port'")
            port = rest.removeprefix(":")
        elif value.count(":") == 1:
            host, port = value.split(":")
        else:  # a host name, or an IPv6 address without a port
            host, port = value, ""
        if port and not (port.isascii() and port.isdigit()):
            raise ValueError(f"endpoint {value!r}: the port must be a number")
        return cls(host=host, port=int(port) if port else 3306)


def parse_all(values: Any) -> tuple[Endpoint, ...]:
    """The ``endpoints`` setting as a tuple of Endpoint."""
    if isinstance(values, str):  # "db1:3306,db2:3306", as from an environment variable
        values = [value.strip() for value in values.split(",")]
        if not any(values):
            raise ValueError("'endpoints' is empty: give 'host:port' entries, or leave it out")
    elif isinstance(values, (Mapping, Endpoint)):
        values = [values]
    elif not isinstance(values, (list, tuple)):
        raise TypeError(
            f"'endpoints' must be a list or 'host:port,...', not {type(values).__name__}"
        )
    return tuple(Endpoint.parse(value) for value in values)


class EndpointState:
    """The pool's view of one endpoint: open connections, connect failures, ejection.

    Changed only under the pool's lock.
    """

    __slots__ = (
        "backoff",
        "check",
        "checked_at",
        "chosen",
        "ejected_until",
        "endpoint",
        "epoch",
        "failures",
        "last_error",
        "open",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.open = 0  # connections open to it (lent and idle)
        self.chosen = 0  # connections ever opened to it (round-robin's counter)
        self.failures = 0  # connect failures in a row
        self.ejected_until = 0.0  # monotonic time until which it is skipped
        self.backoff = 0.0
        self.last_error = ""
        self.epoch = 0  # bumped when its connections are condemned; older ones are not lent
        self.check = ""  # the check_endpoint hooks' last verdict: "ok" or why not
        self.checked_at = 0.0  # monotonic time of that verdict

    def __repr__(self) -> str:
        return f"<EndpointState {self.endpoint} open={self.open} failures={self.failures}>"

    def ejected(self, now: float) -> bool:
        """True while the endpoint is skipped after connect failures."""
        return now < self.ejected_until

    def failed(self, error: BaseException, now: float, eject_after: int, backoff: float) -> None:
        """Count a failure; eject after *eject_after* in a row, backing off each time (a
        failure while ejected, of a connect begun before, does not eject it again)."""
        self.failures += 1
        self.last_error = str(error) or type(error).__name__
        if self.failures >= eject_after and not self.ejected(now):
            self.backoff = min(self.backoff * 2 if self.backoff else backoff, _EJECT_BACKOFF_MAX)
            self.ejected_until = now + self.backoff

    def succeeded(self) -> None:
        """A connect worked: forget the failures."""
        self.failures = 0
        self.backoff = 0.0
        self.ejected_until = 0.0

    def describe(self, now: float) -> dict[str, Any]:
        """What stats() reports for this endpoint."""
        return {
            "endpoint": str(self.endpoint),
            "role": self.endpoint.role,
            "open": self.open,
            "failures": self.failures,
            "ejected_for": max(self.ejected_until - now, 0.0),
            "last_error": self.last_error,
            "check": self.check,
            "chosen": self.chosen,
        }


#: Endpoint roles in the order a pool of each role prefers them.
_ROLE_PREFERENCE = {
    "any": ("writer", "any", "reader"),  # only order among groups; roles are usually unset
    "writer": ("writer", "any", "reader"),
    "reader": ("reader", "any", "writer"),
}

Select = Callable[[list[EndpointState]], "EndpointState | None"]


class EndpointSettings(Protocol):
    """What an EndpointSet reads of a pool's settings (a PoolConfig has it all)."""

    @property
    def endpoints(self) -> tuple[Endpoint, ...]: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def role(self) -> Role: ...
    @property
    def cluster(self) -> str | None: ...
    @property
    def eject_after(self) -> int: ...
    @property
    def eject_backoff(self) -> float: ...


class EndpointSet:
    """A pool's endpoints and what it has learnt of each: the order its role prefers them
    in, which to connect to next, ejection after failures, replacement at run time, and
    their description.

    It shares the pool's lock: methods marked "under the lock" expect the caller to hold it,
    the others take it.
    """

    def __init__(self, lock: threading.Lock, config: EndpointSettings) -> None:
        self._lock = lock
        self.states: list[EndpointState] = []
        self.adopt(config, {})

    def adopt(
        self, config: EndpointSettings, kept: dict[Endpoint, EndpointState]
    ) -> list[EndpointState]:
        """Under the lock: take *config*'s endpoints, reusing the states in *kept*; return the
        states no longer listed."""
        endpoints = config.endpoints or (Endpoint(host=config.host, port=config.port),)
        self._preference = _ROLE_PREFERENCE[config.role]
        self._eject_after, self._eject_backoff = config.eject_after, config.eject_backoff
        self.states = [kept.pop(e) if e in kept else EndpointState(e) for e in endpoints]
        self._best_rank = min(self.rank(state) for state in self.states)
        #: Re-check endpoints periodically only where a check can tell them apart.
        self.rechecks = len(endpoints) > 1 or config.cluster is not None or config.role != "any"
        return list(kept.values())

    def replace(self, config: EndpointSettings) -> None:
        """Use *config*'s endpoints from now on; connections to the others retire."""
        with self._lock:
            kept = {state.endpoint: state for state in self.states}
            for state in self.adopt(config, kept):
                state.epoch += 1

    @property
    def several(self) -> bool:
        return len(self.states) > 1

    def rank(self, state: EndpointState) -> int:
        """How far down this pool's role preference *state*'s endpoint comes (0: first)."""
        return self._preference.index(state.endpoint.role)

    def is_fallback(self, state: EndpointState) -> bool:
        """True for an endpoint of a role the pool uses only when none better is usable."""
        return self.rank(state) > self._best_rank

    def left_to_try(self, tried: Collection[EndpointState]) -> bool:
        return len(tried) < len(self.states)

    def choose(
        self, now: float, tried: Collection[EndpointState], select: Select
    ) -> tuple[EndpointState, int]:
        """The endpoint of the next connection and its epoch now: *select*'s choice among
        those not ejected nor *tried*, in the best role group (all ejected: the one whose
        ejection ends first). Raises NoEndpointError when every one was tried, PluginError
        when *select* fails or chooses one it was not offered."""
        with self._lock:
            states = [s for s in self.states if s not in tried]
            usable = [s for s in states if not s.ejected(now)]
            if usable:  # the best role group only: a reader pool reads from the writer last
                best = min(self.rank(s) for s in usable)
                candidates = [s for s in usable if self.rank(s) == best]
            else:
                candidates = [min(states, key=lambda s: s.ejected_until)] if states else []
        if not candidates:
            raise NoEndpointError(0, f"no usable endpoint: {self.summary(now)}")
        try:
            chosen = select(candidates)
        except Exception as exc:
            raise PluginError(f"pymysqlpool_select_endpoint failed: {exc!r}") from exc
        if chosen is None:
            chosen = candidates[0]
        elif chosen not in candidates:
            raise PluginError("pymysqlpool_select_endpoint chose an endpoint not offered to it")
        with self._lock:
            if chosen in self.states:
                chosen.chosen += 1
                return chosen, chosen.epoch
        return self.choose(now, tried, select)  # replaced meanwhile

    def joined(self, state: EndpointState) -> None:
        """Under the lock: a new connection to *state*'s endpoint is open."""
        if state.failures:  # rejoining: round-robin must not pile onto it
            others = (s.chosen for s in self.states if s is not state)
            state.chosen = max(state.chosen, min(others, default=0))
        state.succeeded()
        state.open += 1

    def failed(self, state: EndpointState, error: BaseException, now: float, health: bool) -> None:
        """Under the lock: count a failure of *state*'s endpoint. A failed health check
        (*health*) ejects it at once; an ejection retires the connections open to it, unless
        it is the only one or the server is only full (its open connections are fine)."""
        state.failed(error, now, 1 if health else self._eject_after, self._eject_backoff)
        full = error_number(error) in SERVER_FULL_ERRNOS
        if health or (state.ejected(now) and self.several and not full):
            state.epoch += 1

    def checked(self, state: EndpointState, verdict: str, now: float) -> None:
        """Under the lock: the check_endpoint hooks' *verdict* on *state* ("ok" or why not)."""
        state.check = verdict
        state.checked_at = now

    def after_fork(self, lock: threading.Lock) -> None:
        """In a forked child: share the pool's new *lock*; no connection is open any more."""
        self._lock = lock
        for state in self.states:
            state.open = 0

    def describe(self, now: float) -> list[dict[str, Any]]:
        """Each endpoint as ``endpoint_stats()`` reports it."""
        with self._lock:
            return [state.describe(now) for state in self.states]

    def summary(self, now: float) -> str:
        """One line on each endpoint: role, open connections, ejection and its last error."""
        with self._lock:
            parts = [
                f"{s.endpoint} ({s.endpoint.role}, {s.open} open"
                + (f", ejected for {s.ejected_until - now:.1f} s" if s.ejected(now) else "")
                + (f": {s.last_error}" if s.failures else "")
                + ")"
                for s in self.states
            ]
        return "; ".join(parts)
