"""PoolConfig: defaults, validation, from_kwargs, immutability, redaction, connect_kwargs()."""

from __future__ import annotations

from typing import Any

import attrs
import pymysql
import pytest

from pymysqlpool_registry import PoolConfig
from pymysqlpool_registry.config import PYMYSQL_ARGUMENTS

SECRET = "s3cret-Pa55"


def test_defaults() -> None:
    config = PoolConfig()
    assert (config.host, config.port, config.user, config.password) == ("localhost", 3306, None, "")
    assert (config.database, config.unix_socket, config.charset) == (None, None, "utf8mb4")
    assert config.autocommit is False
    assert config.connect_timeout == 10.0
    assert config.read_timeout is None and config.write_timeout is None
    assert config.ssl is None and config.ssl_disabled is None
    assert config.connect_args == {}
    assert (config.min_size, config.max_size, config.timeout, config.retry_num) == (0, 10, 30.0, 0)
    assert config.lifo is True
    assert (config.ping_interval, config.ping_timeout) == (1.0, 3.0)
    assert config.reset == "rollback"
    assert config.check_owner_thread is True


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_size": -1}, "min_size"),
        ({"max_size": 0}, "max_size"),
        ({"min_size": 5, "max_size": 2}, "min_size"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"timeout": -1}, "timeout"),
        ({"ping_timeout": 0}, "ping_timeout"),
        ({"reset": "bogus"}, "reset"),
        ({"connect_args": {"no_such_arg": 1}}, "connect_args"),
        ({"connect_args": {"host": "elsewhere"}}, "connect_args"),
        ({"connect_args": {"passwd": "x"}}, "connect_args"),
    ],
)
def test_invalid_value_raises_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        PoolConfig(**kwargs)


def test_connect_args_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"'no_such_arg' is not a pymysql\.connect\(\) argument"):
        PoolConfig(connect_args={"no_such_arg": 1})
    with pytest.raises(ValueError, match="'host' is a PoolConfig field"):
        PoolConfig(connect_args={"host": "elsewhere"})


def test_from_kwargs_size_sets_min_and_max() -> None:
    config = PoolConfig.from_kwargs(size=3)
    assert (config.min_size, config.max_size) == (3, 3)


def test_from_kwargs_deprecated_aliases() -> None:
    config = PoolConfig.from_kwargs(db="app", passwd=SECRET)
    assert config.database == "app"
    assert config.password == SECRET
    assert config.connect_args == {}


def test_from_kwargs_unknown_option_names_it_without_its_value() -> None:
    with pytest.raises(TypeError, match="'pasword'") as info:
        PoolConfig.from_kwargs(host="db", pasword=SECRET)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.args)


def test_from_kwargs_other_pymysql_args_go_to_connect_args() -> None:
    config = PoolConfig.from_kwargs(
        host="db", max_size=4, cursorclass=pymysql.cursors.DictCursor, sql_mode="ANSI"
    )
    assert (config.host, config.max_size) == ("db", 4)
    assert config.connect_args == {"cursorclass": pymysql.cursors.DictCursor, "sql_mode": "ANSI"}


def test_from_kwargs_validates() -> None:
    with pytest.raises(ValueError, match="min_size"):
        PoolConfig.from_kwargs(size=-1)


def test_frozen() -> None:
    config = PoolConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.max_size = 20  # type: ignore[misc]
    assert config.max_size == 10


def test_evolve_makes_a_new_validated_config() -> None:
    config = PoolConfig(max_size=5)
    bigger = attrs.evolve(config, max_size=8)
    assert (config.max_size, bigger.max_size) == (5, 8)
    with pytest.raises(ValueError, match="max_size"):
        attrs.evolve(config, max_size=0)
    with pytest.raises(ValueError, match="min_size"):
        attrs.evolve(config, min_size=6)


def test_password_and_ssl_are_redacted() -> None:
    config = PoolConfig(
        password=SECRET,
        ssl={"key": "/secret/key.pem", "key_password": "ssl-" + SECRET},
        connect_args={"ssl_key_password": "arg-" + SECRET},
    )
    for text in (repr(config), str(config)):
        assert SECRET not in text
        assert "/secret/key.pem" not in text
        assert "password='***'" in text
        assert "ssl='***'" in text
        assert "'ssl_key_password'" in text  # connect_args shows its keys only


def test_empty_password_and_no_ssl_show_as_such() -> None:
    assert "ssl=None" in repr(PoolConfig())


def test_password_of_wrong_type_is_not_echoed_in_the_error() -> None:
    with pytest.raises(TypeError, match="password") as info:
        PoolConfig(password=31415926)  # type: ignore[arg-type]
    assert "31415926" not in str(info.value)
    assert "31415926" not in repr(info.value.args)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_connect_kwargs_disables_tls_for_loopback(host: str) -> None:
    assert PoolConfig(host=host).connect_kwargs()["ssl_disabled"] is True


def test_connect_kwargs_disables_tls_for_unix_socket() -> None:
    kwargs = PoolConfig(host="db.example.com", unix_socket="/run/mysqld.sock").connect_kwargs()
    assert kwargs["ssl_disabled"] is True
    assert kwargs["unix_socket"] == "/run/mysqld.sock"


def test_connect_kwargs_leaves_tls_alone_for_remote_host() -> None:
    assert PoolConfig(host="db.example.com").connect_kwargs()["ssl_disabled"] is None


@pytest.mark.parametrize(
    "tls",
    [
        {"ssl": {"ca": "/etc/ca.pem"}},
        {"connect_args": {"ssl_ca": "/etc/ca.pem"}},
        {"connect_args": {"ssl_verify_cert": True}},
    ],
)
def test_connect_kwargs_keeps_tls_when_asked_for(tls: dict[str, Any]) -> None:
    for host in ("127.0.0.1", "localhost", "db.example.com"):
        assert PoolConfig(host=host, **tls).connect_kwargs()["ssl_disabled"] is None


def test_connect_kwargs_explicit_ssl_disabled_wins() -> None:
    local = PoolConfig(host="127.0.0.1", ssl_disabled=False)
    remote = PoolConfig(host="db.example.com", ssl_disabled=True)
    assert local.connect_kwargs()["ssl_disabled"] is False
    assert remote.connect_kwargs()["ssl_disabled"] is True


def test_connect_kwargs_content_and_connect_args_merged() -> None:
    config = PoolConfig(
        host="db.example.com",
        port=3307,
        user="app",
        password=SECRET,
        database="shop",
        read_timeout=5,
        connect_args={"sql_mode": "ANSI", "local_infile": True},
    )
    kwargs = config.connect_kwargs()
    assert kwargs["host"] == "db.example.com"
    assert kwargs["port"] == 3307
    assert kwargs["user"] == "app"
    assert kwargs["password"] == SECRET
    assert kwargs["database"] == "shop"
    assert kwargs["read_timeout"] == 5.0
    assert kwargs["sql_mode"] == "ANSI"
    assert kwargs["local_infile"] is True
    assert set(kwargs) <= PYMYSQL_ARGUMENTS


def test_connect_kwargs_connect(connect_kwargs: dict[str, Any]) -> None:
    config = PoolConfig.from_kwargs(**connect_kwargs)
    with pymysql.connect(**config.connect_kwargs()) as conn, conn.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == (connect_kwargs["database"],)
