"""Registry.load: pools from a TOML file, with environments, packs and secrets from the environment."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pymysqlpool_registry import (
    ConfigFileError,
    GetConnectionFromPoolError,
    PluginError,
    PolicyPack,
    Registry,
    configfile,
)
from pymysqlpool_registry.throwaway import ThrowawayServer

SECRET = "Cfg-s3cret-9f41"
SECRET_VAR = "PYMYSQLPOOL_TEST_CFG_PASSWORD"
UNSET_VAR = "PYMYSQLPOOL_TEST_CFG_UNSET"
CFG_USER = "cfgfile_user"

Write = Callable[..., Path]

LAYERS = """
[pools.a]
timeout = 6.0
retry_num = 2
ping_timeout = 1.1

[pools.b]

[env.prod.defaults]
retry_num = 3
ping_timeout = 1.2

[env.prod.pools.a]
ping_timeout = 1.3

[env.dev]
"""


def toml_table(header: str, settings: dict[str, Any]) -> str:
    """A TOML table of str/int/float/bool values (JSON's spelling of them is TOML's too)."""
    lines = [f"[{header}]"]
    lines += [
        f"{key} = {json.dumps(value)}" for key, value in settings.items() if value is not None
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def defaults(connect_kwargs: dict[str, Any]) -> str:
    """A [defaults] table that connects to the session server."""
    return toml_table("defaults", connect_kwargs)


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def write(text: str, name: str = "pools.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def reg() -> Iterator[Registry]:
    registry = Registry()
    yield registry
    registry.close_all()


def select_one(registry: Registry, name: str) -> Any:
    with registry.get(name).connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        return cur.fetchone()[0]


# --- precedence and environments ---


def test_layers_without_an_environment(reg: Registry, write: Write, defaults: str) -> None:
    path = write(defaults + "max_size = 2\nretry_num = 1\nping_timeout = 1.0\n" + LAYERS)
    assert reg.load(path) == ["a", "b"]
    a, b = reg.config("a"), reg.config("b")
    assert (a.max_size, a.timeout, a.retry_num, a.ping_timeout) == (2, 6.0, 2, 1.1)
    assert (b.max_size, b.timeout, b.retry_num, b.ping_timeout) == (2, 30.0, 1, 1.0)
    assert select_one(reg, "a").startswith("root@")


def assert_prod_layers(registry: Registry) -> None:
    a, b = registry.config("a"), registry.config("b")
    # [defaults] < [pools.a] < [env.prod.defaults] < [env.prod.pools.a]
    assert (a.max_size, a.timeout, a.retry_num, a.ping_timeout) == (2, 6.0, 3, 1.3)
    assert (b.max_size, b.timeout, b.retry_num, b.ping_timeout) == (2, 30.0, 3, 1.2)
    assert select_one(registry, "a").startswith("root@")
    assert select_one(registry, "b").startswith("root@")


@pytest.fixture
def layered(write: Write, defaults: str) -> Path:
    path: Path = write(defaults + "max_size = 2\nretry_num = 1\nping_timeout = 1.0\n" + LAYERS)
    return path


def test_environment_by_argument(reg: Registry, layered: Path) -> None:
    assert reg.load(layered, env="prod") == ["a", "b"]
    assert_prod_layers(reg)


def test_environment_of_the_registry(layered: Path) -> None:
    registry = Registry(env="prod")
    try:
        registry.load(layered)
        assert_prod_layers(registry)
    finally:
        registry.close_all()


def test_environment_from_the_environment_variable(
    layered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYMYSQLPOOL_ENV", "prod")
    registry = Registry()
    assert registry.env == "prod"
    try:
        registry.load(layered)
        assert_prod_layers(registry)
    finally:
        registry.close_all()


def test_environment_argument_wins_over_the_registry(layered: Path) -> None:
    registry = Registry(env="prod")
    try:
        registry.load(layered, env="dev")
        assert registry.config("a").ping_timeout == 1.1
        assert registry.config("a").retry_num == 2
    finally:
        registry.close_all()


def test_packs_of_the_environment_are_loaded(reg: Registry, write: Write, defaults: str) -> None:
    path = write(defaults + '[pools.a]\n[env.prod]\npacks = ["failover"]\n')
    reg.load(path, env="prod")
    assert "pack:failover" in reg.manager.names()
    config = reg.config("a")
    assert config.ping_interval == 0.5  # from the pack
    assert config.connect_timeout == 5  # the file set it: the pack's 2.0 does not apply
    assert select_one(reg, "a").startswith("root@")


def test_packs_of_another_environment_are_not_loaded(
    reg: Registry, write: Write, defaults: str
) -> None:
    path = write(defaults + '[pools.a]\n[env.prod]\npacks = ["failover"]\n[env.dev]\n')
    reg.load(path, env="dev")
    assert reg.manager.packs == []
    assert reg.config("a").ping_interval == 1.0


def test_file_size_wins_over_pack_sizes(write: Write, defaults: str) -> None:
    registry = Registry(packs=[PolicyPack(name="big", defaults={"max_size": 8})])
    registry.load(write(defaults + "[pools.fixed]\nsize = 2\n[pools.other]\n"))
    assert registry.config("other").max_size == 8
    config = registry.config("fixed")
    assert (config.min_size, config.max_size) == (2, 2)


# --- secrets ---


@pytest.fixture
def secret_user(server: ThrowawayServer) -> Iterator[str]:
    """A user with a password, allowed everything on the test database."""
    conn = server.admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{CFG_USER}'@'127.0.0.1'")
            cur.execute(f"CREATE USER '{CFG_USER}'@'127.0.0.1' IDENTIFIED BY '{SECRET}'")
            cur.execute(f"GRANT ALL ON test.* TO '{CFG_USER}'@'127.0.0.1'")
        yield CFG_USER
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{CFG_USER}'@'127.0.0.1'")
        conn.close()


def secret_file(write: Write, connect_kwargs: dict[str, Any], user: str, extra: str = "") -> Path:
    settings = {**connect_kwargs, "user": user, "password": None, "password_env": SECRET_VAR}
    path: Path = write(toml_table("defaults", settings) + "[pools.app]\n" + extra)
    return path


def test_password_from_the_environment_connects_and_never_shows(
    reg: Registry,
    write: Write,
    connect_kwargs: dict[str, Any],
    secret_user: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET_VAR, SECRET)
    path = secret_file(write, connect_kwargs, secret_user)
    assert SECRET not in path.read_text()
    reg.load(path)
    config = reg.config("app")
    assert config.password == SECRET
    pool = reg.get("app")
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone()[0] == f"{secret_user}@127.0.0.1"
        shown = [repr(conn), str(conn)]
    read = configfile.read(path, None)
    shown += [repr(reg), str(reg), repr(config), str(config), repr(pool), str(pool)]
    shown += [repr(pool.stats()), repr(reg.stats()), repr(read), str(read)]
    shown += [repr(read.pools["app"]), repr(reg.manager.describe())]
    for text in shown:
        assert SECRET not in text


def test_secret_stays_out_of_errors(
    reg: Registry, write: Write, connect_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_VAR, SECRET)
    path = secret_file(write, connect_kwargs, "nobody", extra="max_size = 0\n")
    with pytest.raises(ConfigFileError) as info:
        reg.load(path)
    assert "max_size" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


def test_wrong_password_from_the_environment_is_refused(
    reg: Registry,
    write: Write,
    connect_kwargs: dict[str, Any],
    secret_user: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET_VAR, "not-" + SECRET)
    reg.load(secret_file(write, connect_kwargs, secret_user, extra="timeout = 0\n"))
    with pytest.raises(GetConnectionFromPoolError, match="1045") as info:
        reg.get("app").get_connection()
    assert SECRET not in str(info.value)


# --- errors: each names the file, the table or key, and the problem ---


def load_error(registry: Registry, path: Path, env: str | None = None) -> str:
    with pytest.raises(ConfigFileError) as info:
        registry.load(path, env=env)
    message = str(info.value)
    assert str(path) in message
    assert registry.names() == []
    return message


def test_missing_file(reg: Registry, tmp_path: Path) -> None:
    message = load_error(reg, tmp_path / "absent.toml")
    assert "cannot read" in message


def test_invalid_toml(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pools.a]\nhost = \n"))
    assert "not valid TOML" in message


def test_unknown_top_level_key(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pool.a]\nhost = 'db1'\n"))
    assert "unknown key 'pool'" in message


def test_unknown_key_under_an_environment(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pools.a]\n[env.prod]\npack = ['failover']\n"), env="prod")
    assert "[env.prod]" in message
    assert "unknown key 'pack'" in message


def test_unknown_pool_option(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pools.a]\nhots = 'db1'\n"))
    assert "[pools.a]" in message
    assert "'hots'" in message


def test_unknown_option_in_defaults_names_the_key(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[defaults]\nmax_sise = 3\n[pools.a]\n"))
    assert "'max_sise'" in message


def test_invalid_value(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pools.a]\nmax_size = 0\n"))
    assert "[pools.a]" in message
    assert "max_size" in message


def test_invalid_value_from_an_environment(reg: Registry, write: Write) -> None:
    text = "[pools.a]\n[env.prod.pools.a]\nport = 'x'\n"
    message = load_error(reg, write(text), env="prod")
    assert "'port'" in message


def test_unknown_environment_lists_the_known_ones(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pools.a]\n[env.prod]\n[env.dev]\n"), env="staging")
    assert "'staging'" in message
    assert "dev, prod" in message


def test_environment_of_a_file_without_environments(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pools.a]\n"), env="prod")
    assert "'prod'" in message
    assert "none" in message


def test_environment_overlay_for_an_unknown_pool(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pools.a]\n[env.prod.pools.ghost]\nmax_size = 2\n"), "prod")
    assert "[env.prod]" in message
    assert "ghost" in message


def test_secret_env_naming_an_unset_variable(
    reg: Registry, write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_VAR, raising=False)
    message = load_error(reg, write(f"[pools.a]\npassword_env = '{UNSET_VAR}'\n"))
    assert "[pools.a]" in message
    assert "password_env" in message
    assert UNSET_VAR not in message  # it may be a password pasted in the wrong place
    assert "not set" in message


def test_env_naming_an_unset_variable_names_it_when_not_secret(
    reg: Registry, write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_VAR, raising=False)
    message = load_error(reg, write(f"[pools.a]\nhost_env = '{UNSET_VAR}'\n"))
    assert f"host_env: environment variable {UNSET_VAR!r} is not set" in message


def test_packs_not_a_list(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("[pools.a]\n[env.prod]\npacks = 'failover'\n"), env="prod")
    assert "[env.prod]" in message
    assert "packs must be a list" in message


def test_unknown_pack_in_a_file(reg: Registry, write: Write) -> None:
    path = write("[pools.a]\n[env.prod]\npacks = ['nope']\n")
    with pytest.raises(PluginError, match=r"'nope'.*failover"):
        reg.load(path, env="prod")
    assert reg.names() == []


def test_pools_not_a_table(reg: Registry, write: Write) -> None:
    message = load_error(reg, write("pools = 3\n"))
    assert "'pools' must be a table" in message


# --- loading twice ---


def test_load_twice_needs_replace(reg: Registry, write: Write, defaults: str) -> None:
    path = write(defaults + "[pools.a]\nmax_size = 2\n")
    reg.load(path)
    old = reg.get("a")
    path.write_text(defaults + "[pools.a]\nmax_size = 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="already registered: a"):
        reg.load(path)
    assert reg.get("a") is old
    assert reg.load(path, replace=True) == ["a"]
    new = reg.get("a")
    assert new is not old
    assert new.config.max_size == 3
    assert select_one(reg, "a").startswith("root@")
