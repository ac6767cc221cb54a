"""Validators of settings and arguments: each error names what is wrong and never echoes a
value that may hold a secret."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Any

#: The longest wait ``get_connection`` may be given: timeout * (retry_num + 1), in seconds.
MAX_WAIT = 7 * 24 * 3600.0
#: The shortest period of the pool's background work (lifetimes, idle time, keepalive, leak
#: reports, endpoint re-checks): shorter ones would keep the maintenance thread spinning.
MIN_PERIOD = 0.1

Validator = Callable[[Any, Any, Any], None]
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?\Z")


def error_message(exc: BaseException) -> str:
    """An exception's own message: attrs validators add (attribute, ...) to the args, which
    ``str()`` would print as a tuple."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, str) else str(exc)


def integer(minimum: int, maximum: int | None = None) -> Validator:
    """An attrs validator of an int (not a bool) in [minimum, maximum]."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        check_integer(attribute.name, value, minimum, maximum)

    return check


def check_integer(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name!r} must be an int, not {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        span = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name!r} must be {span}, not {value!r}")


def seconds(minimum: float = 0.0, *, above: bool = False, optional: bool = False) -> Validator:
    """An attrs validator of a finite number of seconds >= *minimum* (> with *above*),
    or None if *optional*."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        check_seconds(attribute.name, value, minimum, above=above, optional=optional)

    return check


def check_seconds(
    name: str, value: Any, minimum: float = 0.0, *, above: bool = False, optional: bool = False
) -> None:
    or_none = " or None" if optional else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name!r} must be a number of seconds{or_none}, not {type(value).__name__}"
        )
    if not math.isfinite(value) or value < minimum or (above and value == minimum):
        bound = f"> {minimum:g}" if above else f">= {minimum:g}"
        raise ValueError(
            f"{name!r} must be a finite number of seconds {bound}{or_none}, not {value!r}"
        )


def check_wait(
    timeout: float, retry_num: int, names: tuple[str, str] = ("timeout", "retry_num")
) -> None:
    """Check a wait of *timeout* seconds per try over ``retry_num + 1`` tries."""
    check_seconds(names[0], timeout)
    check_integer(names[1], retry_num, 0)
    if timeout * (retry_num + 1) > MAX_WAIT:
        raise ValueError(
            f"{names[0]} * ({names[1]} + 1) must be at most {MAX_WAIT:g} s (7 days), "
            f"not {timeout:g} * {retry_num + 1}"
        )


def wait_arguments(
    timeout: float | None,
    retry_num: int | None,
    retry_interval: float | None,
    defaults: tuple[float, int],
) -> tuple[float, int]:
    """The checked timeout and retry_num of a ``get_connection`` call, *defaults* (the
    config's) filled in; pymysql-pool 0.5's *retry_interval* stands in for a missing timeout."""
    name = "timeout"
    if timeout is None and retry_interval is not None:
        timeout, name = retry_interval, "retry_interval"
    elif timeout is None:
        timeout = defaults[0]
    if retry_num is None:
        retry_num = defaults[1]
    check_wait(timeout, retry_num, (name, "retry_num"))
    return timeout, retry_num


def check_host(name: str, host: Any) -> None:
    """A host name or IP address: no user, password, port, spaces or brackets in it."""
    if not isinstance(host, str):
        raise TypeError(f"{name!r} must be a host name or IP address, not {type(host).__name__}")
    if "@" in host:  # "user:password@host": never echo it
        raise ValueError(f"{name!r} must be a host name or IP address, without user or password")
    if _HOST_NAME.match(host):
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        shown = host if len(host) <= 80 else host[:77] + "..."
        raise ValueError(f"{name!r} is not a host name or IP address: {shown!r}") from None
