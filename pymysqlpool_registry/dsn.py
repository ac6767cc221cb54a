"""``mysql://`` DSNs, as the command line takes them: parsed strictly, never echoed.

    mysql://user:password@host:port/database?unix_socket=PATH&ssl_mode=VERIFY_IDENTITY&ssl_ca=PATH

The password may hold any character but must be percent-encoded where it would end the
user information (``@`` is fine: the last one ends it). An error says what is wrong without
quoting the DSN, since any part of a malformed one may be the password.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

USAGE = "mysql://user:password@host:port/database[?unix_socket=PATH&ssl_mode=MODE&ssl_ca=PATH]"
#: ssl_mode values, as MySQL's clients name them, and the PyMySQL ``ssl`` options each means.
SSL_MODES: dict[str, dict[str, Any] | None] = {
    "DISABLED": None,
    "REQUIRED": {"check_hostname": False, "verify_mode": False},  # encrypted, not verified
    "VERIFY_CA": {"check_hostname": False, "verify_mode": True},
    "VERIFY_IDENTITY": {"check_hostname": True, "verify_mode": True},
}
_FILE_OPTIONS = {"ssl_ca": "ca", "ssl_cert": "cert", "ssl_key": "key"}
_OPTIONS = {"unix_socket", "ssl_mode", "charset", *_FILE_OPTIONS}


class DsnError(ValueError):
    """A DSN the parser does not understand; the message never quotes the DSN."""


def parse_dsn(dsn: str) -> dict[str, Any]:
    """The PoolConfig keyword arguments a DSN stands for."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme.lower() not in ("mysql", "mariadb"):
        raise DsnError(f"a DSN starts with mysql:// or mariadb://; use {USAGE}")
    userinfo, at, location = rest.rpartition("@")
    if not at:
        userinfo, location = "", rest
    if "#" in location:
        raise DsnError("a DSN has no '#' after the host (percent-encode it as %23)")
    location, _, query = location.partition("?")
    hostport, _, path = location.partition("/")
    settings: dict[str, Any] = {}
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if not user:
            raise DsnError("the DSN has a password but no user")
        settings["user"] = unquote(user, errors="strict")
        if colon:
            settings["password"] = unquote(password, errors="strict")
    settings.update(_host_and_port(hostport))
    database = unquote(path)
    if "/" in database:
        raise DsnError("the database name must not contain '/'")
    if database:
        settings["database"] = database
    settings.update(_options(query))
    if "host" not in settings and "unix_socket" not in settings:
        raise DsnError(f"the DSN names no host (nor ?unix_socket=PATH); use {USAGE}")
    return settings


def _host_and_port(hostport: str) -> dict[str, Any]:
    if not hostport:
        return {}
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise DsnError("an IPv6 host is written [address] or [address]:port")
        port = rest[1:] if rest else None
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
    if not host:
        raise DsnError("the DSN's host is empty")
    result: dict[str, Any] = {"host": unquote(host)}
    if port is not None:
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            raise DsnError("the DSN's port must be a number from 1 to 65535")
        result["port"] = int(port)
    return result


def _options(query: str) -> dict[str, Any]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise DsnError("the DSN's ?options are not name=value pairs joined by &") from None
    given: dict[str, str] = {}
    for raw_name, value in pairs:
        name = raw_name.replace("-", "_").lower()
        if name not in _OPTIONS:
            known = ", ".join(sorted(_OPTIONS))
            raise DsnError(f"unknown DSN option {raw_name[:40]!r} (known: {known})")
        if name in given:
            raise DsnError(f"the DSN gives {name} twice")
        if not value:
            raise DsnError(f"the DSN's {name} is empty")
        given[name] = value
    settings: dict[str, Any] = {}
    if "unix_socket" in given:
        settings["unix_socket"] = given.pop("unix_socket")
    if "charset" in given:
        settings["charset"] = given.pop("charset")
    files = {_FILE_OPTIONS[name]: given.pop(name) for name in list(given) if name in _FILE_OPTIONS}
    mode = given.pop("ssl_mode", "VERIFY_IDENTITY" if files else None)
    if mode is None:
        return settings
    mode = mode.upper()
    if mode not in SSL_MODES:
        raise DsnError(
            f"ssl_mode must be one of {', '.join(SSL_MODES)} (PREFERRED: PyMySQL cannot fall back)"
        )
    options = SSL_MODES[mode]
    if options is None:
        if files:
            raise DsnError("ssl_mode=DISABLED with ssl_ca/ssl_cert/ssl_key: choose one")
        settings["ssl_disabled"] = True
        return settings
    if mode.startswith("VERIFY") and "ca" not in files:
        raise DsnError(
            f"ssl_mode={mode} needs ssl_ca=PATH, the CA that signed the server's certificate"
        )
    settings["ssl"] = {**options, **files}
    settings["ssl_disabled"] = False
    return settings
