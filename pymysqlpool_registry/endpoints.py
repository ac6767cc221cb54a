"""Endpoints: the servers a pool may connect to, and what the pool has learnt about each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs import validators as v

from ._checks import check_host, integer

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
