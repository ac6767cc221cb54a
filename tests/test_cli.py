"""End to end: the real ``pymysqlpool`` console script, run as a subprocess.

Every run has a timeout. The session's throwaway MariaDB is the server; failures are checked
for what a user sees: the exit code, one ``error:`` line on stderr and never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pymysqlpool_registry.throwaway import ThrowawayServer

SCRIPT = Path(sys.executable).parent / "pymysqlpool"
TIMEOUT = 60  # seconds for one run of the command
THROWAWAY_TIMEOUT = 100  # the demo that installs and starts its own server

DEFAULT_PLUGINS = {
    "pymysqlpool_registry.default_plugins.connect": "pymysqlpool_create_connection",
    "pymysqlpool_registry.default_plugins.reusability": "pymysqlpool_classify_error",
    "pymysqlpool_registry.default_plugins.health": "pymysqlpool_pre_ping",
    "pymysqlpool_registry.default_plugins.log": "pymysqlpool_on_checkout",
    "pymysqlpool_registry.default_plugins.endpoints": "pymysqlpool_select_endpoint",
}
PACKS = {"failover", "strict-dev"}

PW_USER = "cli_test_user"
PW_SECRET = "Cli-p@ss/w0rd:9"  # characters a DSN must percent-encode

Run = subprocess.CompletedProcess[str]
Write = Callable[[str], Path]


# --- running the command ----------------------------------------------------------------


def cli_env(**changes: str | None) -> dict[str, str]:
    """This process's environment (autoload off, from testing.py) made predictable for rich.

    A value of None removes the variable.
    """
    env = dict(os.environ)
    for name in (
        "PYMYSQLPOOL_ENV",
        "PYMYSQLPOOL_PACKS",
        "PYMYSQLPOOL_DISABLE_PLUGINS",
        "PYMYSQLPOOL_TRACE_HOOKS",
        "FORCE_COLOR",
        "TTY_COMPATIBLE",
        "TTY_INTERACTIVE",
    ):
        env.pop(name, None)
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run(*args: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> Run:
    """Run the console script with *args*; never waits longer than *timeout*."""
    assert SCRIPT.is_file(), f"console script not installed next to {sys.executable}"
    return subprocess.run(
        [str(SCRIPT), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env() if env is None else env,
        timeout=timeout,
        check=False,
    )


def show(result: Run) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def assert_no_traceback(result: Run) -> None:
    assert "Traceback" not in result.stdout, show(result)
    assert "Traceback" not in result.stderr, show(result)


def assert_success(result: Run) -> None:
    assert result.returncode == 0, show(result)
    assert_no_traceback(result)
    assert result.stderr.strip() == "", show(result)


def error_line(result: Run) -> str:
    """The single ``error:`` line of a failure that exits 2."""
    assert result.returncode == 2, show(result)
    assert_no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, show(result)
    assert lines[0].startswith("error: "), show(result)
    return lines[0]


def table_rows(text: str) -> dict[str, list[str]]:
    """The body rows of the rich tables in *text*, by first cell.

    A row whose first cell is empty continues the row above (a cell of several lines): its
    cells are appended to that row's with a newline.
    """
    rows: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("│"):
            last = None  # a border or a header row ends the cell
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0] == "" and last is not None:
            for i, cell in enumerate(cells[1:], start=1):
                if cell:
                    last[i] = f"{last[i]}\n{cell}" if last[i] else cell
            continue
        rows[cells[0]] = last = cells
    return {key: cells[1:] for key, cells in rows.items()}


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def toml_table(header: str, settings: dict[str, Any]) -> str:
    """A TOML table of str/int/float/bool values (JSON spells those the way TOML does)."""
    lines = [f"[{header}]"]
    lines += [
        f"{key} = {json.dumps(value)}" for key, value in settings.items() if value is not None
    ]
    return "\n".join(lines) + "\n\n"


def dsn_of(server: ThrowawayServer, user: str = "root", password: str = "") -> str:
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"mysql://{auth}@{server.host}:{server.port}/test"


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def write(text: str) -> Path:
        path = tmp_path / "pools.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def good_pool(connect_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Settings of a pool on the session server."""
    return dict(connect_kwargs)


@pytest.fixture
def bad_pool() -> dict[str, Any]:
    """Settings of a pool on a closed port that gives up quickly."""
    return {
        "host": "127.0.0.1",
        "port": closed_port(),
        "user": "root",
        "connect_timeout": 1,
        "timeout": 1,
    }


@pytest.fixture(scope="module")
def pw_user(server: ThrowawayServer) -> Iterator[str]:
    """A user with a password that needs percent-encoding in a DSN."""
    conn = server.admin()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (PW_USER,))
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (PW_USER, PW_SECRET))
            cur.execute("GRANT ALL ON test.* TO %s@'%%'", (PW_USER,))
    finally:
        conn.close()
    yield PW_USER
    server.query(f"DROP USER IF EXISTS '{PW_USER}'@'%'")


@pytest.fixture(scope="module")
def unreachable_and_denied(server: ThrowawayServer, pw_user: str) -> dict[str, Run]:
    """``demo`` to a closed port and with a wrong password, run side by side.

    The demo's pool retries a failing connect until its timeout (30 s by default), so the
    two runs go together to halve the wait.
    """
    commands = {
        "unreachable": ("--dsn", f"mysql://root@127.0.0.1:{closed_port()}/test"),
        "denied": ("--dsn", dsn_of(server, pw_user, "not-" + PW_SECRET)),
    }
    with ThreadPoolExecutor(max_workers=len(commands)) as executor:
        futures = {
            name: executor.submit(run, "demo", *args, "--seconds", "1", "--threads", "2")
            for name, args in commands.items()
        }
        return {name: future.result() for name, future in futures.items()}


# --- demo -------------------------------------------------------------------------------


def assert_demo_report(result: Run, threads: int, max_size: int) -> None:
    """The loan count line, the latency table and the statistics table of a demo run."""
    found = re.search(
        r"^(\d+) loans in 1 s \(.*/s\), (\d+) threads, pool 'demo' of at most (\d+)$",
        result.stdout,
        re.MULTILINE,
    )
    assert found, show(result)
    loans = int(found[1])
    assert loans > 0, show(result)
    assert (int(found[2]), int(found[3])) == (threads, max_size), show(result)

    rows = table_rows(result.stdout)
    latency = [float(rows[label][0]) for label in ("p50", "p90", "p99", "max")]
    assert 0 <= latency[0] <= latency[1] <= latency[2] <= latency[3], show(result)

    assert float(rows["requests"][0]) == loans, show(result)  # one request per loan
    assert float(rows["max_size"][0]) == max_size, show(result)
    assert 1 <= float(rows["created"][0]) <= max_size, show(result)
    assert float(rows["in_use"][0]) == 0, show(result)
    for key in ("idle", "total", "waiting", "timeouts", "connect_errors", "wait_time"):
        assert key in rows, show(result)


@pytest.mark.parametrize(("threads", "max_size"), [(4, None), (3, 2)])
def test_demo_with_dsn(server: ThrowawayServer, threads: int, max_size: int | None) -> None:
    args = ["demo", "--dsn", dsn_of(server), "--seconds", "1", "--threads", str(threads)]
    if max_size is not None:
        args += ["--max-size", str(max_size)]
    result = run(*args)
    assert_success(result)
    assert_demo_report(result, threads, max_size or 4)


def test_demo_with_password_in_dsn(server: ThrowawayServer, pw_user: str) -> None:
    """A percent-encoded password is decoded: the right one gets in."""
    result = run(
        "demo", "--dsn", dsn_of(server, pw_user, PW_SECRET), "--seconds", "1", "--threads", "2"
    )
    assert_success(result)
    assert_demo_report(result, 2, 4)


def test_demo_starts_its_own_server() -> None:
    """No --dsn: a throwaway MariaDB is started, used, and removed with its directory."""
    with tempfile.TemporaryDirectory(prefix="pmpcli-") as tmp:  # short: holds a unix socket
        result = run(
            "demo",
            "--seconds",
            "1",
            "--threads",
            "2",
            env=cli_env(TMPDIR=tmp),
            timeout=THROWAWAY_TIMEOUT,
        )
        leftovers = sorted(p.name for p in Path(tmp).iterdir())
    assert_success(result)
    assert "starting a throwaway MariaDB" in result.stdout, show(result)
    assert_demo_report(result, 2, 4)
    assert leftovers == [], f"the demo left {leftovers} in TMPDIR\n{show(result)}"


def test_python_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pymysqlpool_registry", "plugins", "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env(),
        timeout=TIMEOUT,
        check=False,
    )
    assert_success(result)
    assert json.loads(result.stdout) == json.loads(run("plugins", "--json").stdout)


def test_demo_unreachable_server(unreachable_and_denied: dict[str, Run]) -> None:
    line = error_line(unreachable_and_denied["unreachable"])
    assert "cannot reach the server" in line
    assert "is it running, are host and port right?" in line


def test_demo_wrong_password(unreachable_and_denied: dict[str, Run], pw_user: str) -> None:
    line = error_line(unreachable_and_denied["denied"])
    assert line.startswith("error: access denied"), line
    assert pw_user in line
    assert line.endswith("check the user and password"), line
    assert PW_SECRET not in line


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("postgres://root@127.0.0.1/test", "mysql://user:password@host:port/database"),
        ("localhost:3306", "mysql://user:password@host:port/database"),
        ("mysql://", "mysql://user:password@host:port/database"),
        ("mysql:///test", "mysql://user:password@host:port/database"),
        ("mysql://root@127.0.0.1:notaport/test", "port"),
        ("mysql://root@127.0.0.1:99999/test", "port"),
        ("mysql://root@[::1/test", "ipv6"),
    ],
)
def test_demo_malformed_dsn(dsn: str, says: str) -> None:
    line = error_line(run("demo", "--dsn", dsn, "--seconds", "1"))
    assert says in line.lower(), line


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_demo_rejects_a_duration_that_is_not_positive(
    server: ThrowawayServer, seconds: str
) -> None:
    """--seconds must be > 0: an argparse usage error (exit 2), not a crash or a bogus report."""
    result = run("demo", "--dsn", dsn_of(server), "--seconds", seconds, "--threads", "1")
    assert result.returncode == 2, show(result)
    assert_no_traceback(result)
    assert "error" in result.stderr and "seconds" in result.stderr, show(result)


def test_no_subcommand_is_a_usage_error() -> None:
    line = error_line(run())
    assert "required: {demo,check,plugins,stats}" in line and "pymysqlpool --help" in line


# --- check ------------------------------------------------------------------------------


def test_check_good_and_bad_pool(
    write: Write, good_pool: dict[str, Any], bad_pool: dict[str, Any]
) -> None:
    path = write(
        toml_table("pools.good", good_pool) + toml_table("pools.bad", bad_pool) + "[env.dev]\n"
    )
    result = run("check", str(path), "--env", "dev")
    assert result.returncode == 1, show(result)
    assert_no_traceback(result)
    assert result.stderr.strip() == "", show(result)
    rows = table_rows(result.stdout)
    assert rows["good"] == [f"127.0.0.1:{good_pool['port']}", "ok"], show(result)
    where, outcome = rows["bad"]
    assert where == f"127.0.0.1:{bad_pool['port']}", show(result)
    assert outcome.startswith("failed: cannot reach the server"), show(result)


def test_check_only_good_pools(write: Write, good_pool: dict[str, Any]) -> None:
    path = write(toml_table("defaults", good_pool) + "[pools.a]\n\n[pools.b]\nmax_size = 2\n")
    result = run("check", str(path))
    assert_success(result)
    rows = table_rows(result.stdout)
    assert {name: cells[1] for name, cells in rows.items()} == {"a": "ok", "b": "ok"}


@pytest.mark.parametrize("how", ["--env", "PYMYSQLPOOL_ENV"])
def test_check_environment_overlay_fixes_a_pool(
    write: Write, good_pool: dict[str, Any], bad_pool: dict[str, Any], how: str
) -> None:
    """[env.fixed.pools.bad] points the bad pool at the server: that environment passes."""
    path = write(
        toml_table("pools.bad", bad_pool)
        + toml_table("env.fixed.pools.bad", {"port": good_pool["port"]})
    )
    if how == "--env":
        result = run("check", str(path), "--env", "fixed")
    else:
        result = run("check", str(path), env=cli_env(PYMYSQLPOOL_ENV="fixed"))
    assert_success(result)
    assert table_rows(result.stdout)["bad"] == [f"127.0.0.1:{good_pool['port']}", "ok"]


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("[pools.main]\nhots = 'db1'\n", "[pools.main]"),
        ("[defaults]\nhots = 'db1'\n\n[pools.main]\n", "[defaults]"),
        ("[pools.main]\n\n[env.dev.defaults]\nhots = 'db1'\n", "[env.dev] defaults"),
        ("[pools.main]\n\n[env.dev.pools.main]\nhots = 'db1'\n", "[env.dev] pools.main"),
    ],
)
def test_check_typo_key(write: Write, text: str, table: str) -> None:
    path = write(text)
    line = error_line(run("check", str(path), "--env", "dev"))
    assert str(path) in line
    assert table in line
    assert "'hots'" in line


def test_check_typo_top_level_table(write: Write) -> None:
    path = write("[pool.main]\nhost = 'db1'\n")
    line = error_line(run("check", str(path)))
    assert str(path) in line
    assert "'pool'" in line


def test_check_unknown_environment(write: Write, good_pool: dict[str, Any]) -> None:
    path = write(toml_table("pools.main", good_pool) + "[env.dev]\n\n[env.prod]\n")
    line = error_line(run("check", str(path), "--env", "staging"))
    assert str(path) in line
    assert "'staging'" in line
    assert "dev, prod" in line


def test_check_pack_not_installed(write: Write, good_pool: dict[str, Any]) -> None:
    path = write(toml_table("pools.main", good_pool) + "[env.dev]\npacks = ['nope']\n")
    line = error_line(run("check", str(path), "--env", "dev"))
    assert "'nope'" in line
    assert "installed packs" in line
    for pack in PACKS:
        assert pack in line


def test_check_installed_pack_is_fine(write: Write, good_pool: dict[str, Any]) -> None:
    path = write(toml_table("pools.main", good_pool) + "[env.dev]\npacks = ['failover']\n")
    result = run("check", str(path), "--env", "dev")
    assert_success(result)
    assert table_rows(result.stdout)["main"][1] == "ok"


def test_check_password_env_not_set(write: Write, good_pool: dict[str, Any]) -> None:
    variable = "PYMYSQLPOOL_TEST_CLI_UNSET_PASSWORD"
    settings = {k: v for k, v in good_pool.items() if k != "password"}
    path = write(toml_table("pools.main", {**settings, "password_env": variable}))
    line = error_line(run("check", str(path), env=cli_env(**{variable: None})))
    assert str(path) in line
    assert "password_env: the environment variable it names is not set" in line
    assert variable not in line  # a secret's variable is never shown: it may be a password


def test_check_password_env_set(write: Write, server: ThrowawayServer, pw_user: str) -> None:
    """The counterpart: with the variable set, the password comes from it."""
    variable = "PYMYSQLPOOL_TEST_CLI_PASSWORD"
    settings = server.connect_kwargs(user=pw_user, password=None, password_env=variable)
    path = write(toml_table("pools.main", settings))
    result = run("check", str(path), env=cli_env(**{variable: PW_SECRET}))
    assert_success(result)
    assert table_rows(result.stdout)["main"][1] == "ok"


def test_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    line = error_line(run("check", str(path)))
    assert str(path) in line


def test_check_invalid_toml(write: Write) -> None:
    path = write("[pools.main\nhost = \n")
    line = error_line(run("check", str(path)))
    assert str(path) in line
    assert "not valid TOML" in line


# --- plugins ----------------------------------------------------------------------------


def plugins_json(env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run("plugins", "--json", env=env)
    assert_success(result)
    data = json.loads(result.stdout)
    assert set(data) == {"plugins", "packs"}, data
    return data


def test_plugins_table_lists_default_plugins_and_hooks() -> None:
    result = run("plugins")
    assert_success(result)
    rows = table_rows(result.stdout)
    for name, hook in DEFAULT_PLUGINS.items():
        assert name in rows, show(result)
        kind, hooks = rows[name]
        assert kind == "default"
        assert hook in hooks.splitlines(), show(result)
    assert "prometheus" not in rows  # autoload is off in this environment
    for pack in PACKS:
        assert rows[pack][1] == "", show(result)  # installed, not selected


def test_plugins_json() -> None:
    data = plugins_json()
    by_name = {plugin["name"]: plugin for plugin in data["plugins"]}
    assert set(by_name) == set(DEFAULT_PLUGINS)
    for name, hook in DEFAULT_PLUGINS.items():
        assert by_name[name]["kind"] == "default"
        assert by_name[name]["default"] is True
        assert hook in by_name[name]["hooks"]
    packs = {pack["name"]: pack for pack in data["packs"]}
    assert set(packs) >= PACKS
    for pack in PACKS:
        assert packs[pack]["selected"] is False
        assert packs[pack]["entry_point"].endswith(":PACK")


def test_plugins_autoload_lists_prometheus() -> None:
    env = cli_env(PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD=None)
    result = run("plugins", env=env)
    assert_success(result)
    rows = table_rows(result.stdout)
    assert "prometheus" in rows, show(result)
    kind, hooks = rows["prometheus"]
    assert kind.startswith("entry point of pymysqlpool-registry-prometheus"), show(result)
    assert "pymysqlpool_on_checkout" in hooks.splitlines(), show(result)
    for name in DEFAULT_PLUGINS:
        assert name in rows

    by_name = {plugin["name"]: plugin for plugin in plugins_json(env)["plugins"]}
    assert by_name["prometheus"]["default"] is False
    assert by_name["prometheus"]["hooks"], by_name["prometheus"]


def test_plugins_selected_pack_from_environment() -> None:
    env = cli_env(PYMYSQLPOOL_PACKS="failover")
    data = plugins_json(env)
    selected = {pack["name"]: pack["selected"] for pack in data["packs"]}
    assert selected["failover"] is True
    assert selected["strict-dev"] is False
    kinds = {plugin["name"]: plugin["kind"] for plugin in data["plugins"]}
    assert kinds.get("pack:failover") == "pack", kinds

    result = run("plugins", env=env)
    assert_success(result)
    rows = table_rows(result.stdout)
    assert rows["failover"][1] == "yes", show(result)
    assert rows["strict-dev"][1] == "", show(result)


def test_plugins_unknown_pack_from_environment() -> None:
    line = error_line(run("plugins", env=cli_env(PYMYSQLPOOL_PACKS="nope")))
    assert "'nope'" in line
    for pack in PACKS:
        assert pack in line


def test_plugins_table_is_readable_in_80_columns() -> None:
    """An 80-column terminal (or a pipe: rich then assumes 80) must not cut names off.

    Cut to "pymysqlpool_registry.default_pl…", the four default plugins look the same.
    """
    result = run("plugins", env=cli_env(COLUMNS="80", PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD=None))
    assert_success(result)
    assert "…" not in result.stdout, show(result)


# --- stats ------------------------------------------------------------------------------


@pytest.fixture
def stats_config(write: Write, good_pool: dict[str, Any], bad_pool: dict[str, Any]) -> Path:
    """A warm pool on the server (2 connections opened at start) and a cold one elsewhere."""
    return write(
        toml_table("pools.warm", {**good_pool, "min_size": 2, "max_size": 3})
        + toml_table("pools.cold", bad_pool)
    )


STAT_KEYS = {"idle", "in_use", "total", "waiting", "min_size", "max_size", "requests", "created"}


def test_stats_json(stats_config: Path) -> None:
    result = run("stats", str(stats_config), "--json")
    assert_success(result)
    stats = json.loads(result.stdout)
    assert set(stats) == {"warm", "cold"}
    for name in stats:
        assert set(stats[name]) >= STAT_KEYS, stats[name]
    warm, cold = stats["warm"], stats["cold"]
    assert (warm["idle"], warm["in_use"], warm["total"]) == (2, 0, 2), warm
    assert (warm["min_size"], warm["max_size"], warm["created"]) == (2, 3, 2), warm
    assert (cold["idle"], cold["total"], cold["max_size"], cold["created"]) == (0, 0, 10, 0), cold


def test_stats_table(stats_config: Path) -> None:
    result = run("stats", str(stats_config))
    assert_success(result)
    header = next(line for line in result.stdout.splitlines() if "statistic" in line)
    assert header.index("cold") < header.index("warm"), show(result)  # one column per pool
    rows = table_rows(result.stdout)
    assert set(rows) >= STAT_KEYS, show(result)
    assert rows["total"] == ["0", "2"], show(result)
    assert rows["max_size"] == ["10", "3"], show(result)


def test_stats_pool_that_cannot_fill(write: Write, bad_pool: dict[str, Any]) -> None:
    """min_size connections are opened when the pool is built: a closed port is one error line."""
    path = write(toml_table("pools.cold", {**bad_pool, "min_size": 1}))
    line = error_line(run("stats", str(path), "--json"))
    assert "cannot reach the server" in line


def test_stats_typo_key(write: Write) -> None:
    path = write("[pools.main]\nmax_szie = 3\n")
    line = error_line(run("stats", str(path)))
    assert str(path) in line
    assert "'max_szie'" in line


# --- hostile and malformed input: one line, its exit code, no secret ---------------------

SECRET = "s3cr3t-PW"
HOSTILE = "[/]\x1b[2J\x1b]0;owned\x07"  # rich markup, clear screen, set the terminal title


def assert_clean_failure(result: Run, code: int, secret: str = SECRET) -> str:
    """One line on stderr under about 200 characters, exit *code*, no secret, no escapes."""
    assert result.returncode == code, show(result)
    assert_no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, show(result)
    assert len(lines[0]) <= 210, lines[0]
    for text in (result.stdout, result.stderr):
        assert secret not in text, show(result)
        assert "\x1b" not in text and "\x07" not in text, show(result)
    return lines[0]


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        (f"mysql://app:{SECRET}/x@127.0.0.1:0/test", "port must be a number from 1 to 65535"),
        (f"mysql://app:{SECRET}@127.0.0.1:0/test", "port must be a number from 1 to 65535"),
        (f"mysql://app:{SECRET}/db", "port must be a number"),  # no '@': all of it is host:port
        (f"mysql://app:{SECRET}@127.0.0.1/test#frag", "no '#' after the host"),
        (f"mysql://app:{SECRET}@127.0.0.1/test?sslmode=on", "unknown DSN option 'sslmode'"),
        (f"mysql://app:{SECRET}@127.0.0.1/test?ssl_mode=PREFERRED", "ssl_mode must be one of"),
        (f"mysql://app:{SECRET}@127.0.0.1/test?ssl_mode=VERIFY_CA", "needs ssl_ca"),
        (f"mysql://app:{SECRET}@127.0.0.1/test?unix_socket=", "unix_socket is empty"),
        (f"mysql://app:{SECRET}@/test", "names no host"),
        (f"mysql://:{SECRET}@127.0.0.1/test", "a password but no user"),
    ],
)
def test_a_bad_dsn_is_refused_without_echoing_the_password(dsn: str, says: str) -> None:
    line = assert_clean_failure(run("demo", "--dsn", dsn, "--seconds", "1"), 2)
    assert says in line, line


def test_the_dsn_comes_from_the_environment(server: ThrowawayServer, pw_user: str) -> None:
    env = cli_env(PYMYSQLPOOL_DSN=dsn_of(server, pw_user, PW_SECRET))
    result = run("demo", "--seconds", "1", "--threads", "2", env=env)
    assert_demo_report(result, threads=2, max_size=4)


def test_the_dsn_takes_a_unix_socket(server: ThrowawayServer) -> None:
    dsn = f"mysql://root@/test?unix_socket={quote(server.socket_path, safe='')}"
    assert_demo_report(run("demo", "--dsn", dsn, "--seconds", "1", "--threads", "2"), 2, 4)


def test_the_dsn_asks_for_tls_and_does_not_silently_drop_it(server: ThrowawayServer) -> None:
    dsn = f"mysql://root@{server.host}:{server.port}/test?ssl_mode=REQUIRED"
    line = assert_clean_failure(run("demo", "--dsn", dsn, "--seconds", "1"), 2)
    assert "2026" in line or "SSL" in line, line  # the throwaway server has no TLS


def test_server_text_is_printed_literally(server: ThrowawayServer, write: Write) -> None:
    kwargs = server.connect_kwargs(database=HOSTILE)
    pools = toml_table(
        "pools.hostile", {k: kwargs[k] for k in ("host", "port", "user", "database")}
    )
    result = run("check", str(write(pools)))
    assert result.returncode == 1, show(result)  # a check failed: not a crash
    assert_no_traceback(result)
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout, show(result)
    assert "Unknown database '[/]" in result.stdout  # markup shown, not parsed
    user = quote(HOSTILE, safe="")
    demo = run("demo", "--dsn", f"mysql://{user}@{server.host}:{server.port}/test")
    assert "owned" in assert_clean_failure(demo, 2)  # the name, with its escapes defused


def test_printable_defuses_control_characters() -> None:
    from pymysqlpool_registry.cli import printable

    assert printable("a\x1b[2Jb\x07\nc\u202ed") == "a\\x1b[2Jb\\x07\\nc\\u202ed"
    assert printable("x" * 500) == "x" * 199 + "…"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[pools.a]\nautocommit = "yes"\n', "[pools.a]: 'autocommit' must be"),
        ('[pools.a]\nssl = "yes"\n', "[pools.a]: 'ssl' must be a table of options, not str"),
        ('[pools.a]\nconnect_args = "x"\n', "[pools.a]: 'connect_args' must be a table"),
        ("[pools.a]\nendpoints = 5\n", "[pools.a]: 'endpoints' must be a list"),
        ("[pools.a]\nport = true\n", "[pools.a]: 'port' must be an int, not bool"),
        ("[pools.a]\ntimeout = inf\n", "[pools.a]: 'timeout' must be a finite number"),
        (f'[pools.a]\nhost = "app:{SECRET}@db1"\n', "[pools.a]: 'host' must be a host name"),
        (f'[pools.a]\nendpoints = ["app:{SECRET}@db1:3306"]\n', "without user or password"),
        ('[pools.a]\npassword_env = "s3cr3tPW"\n', "[pools.a]: password_env: the environment"),
        (f'[pools.a]\npassword_env = "x {SECRET}"\n', "password_env must be the name of an"),
    ],
)
def test_config_errors_are_one_line_naming_file_table_and_key(
    write: Write, text: str, names: str
) -> None:
    path = write(text)
    line = assert_clean_failure(run("check", str(path)), 2)
    assert str(path) in line and names in line, line
    assert "s3cr3tPW" not in line  # a password pasted where the variable's name goes


def test_an_empty_password_variable_is_an_error(write: Write) -> None:
    path = write("[pools.a]\npassword_env = 'PYMYSQLPOOL_TEST_EMPTY'\n")
    result = run("check", str(path), env=cli_env(PYMYSQLPOOL_TEST_EMPTY=""))
    assert "password_env: the environment variable it names is empty" in assert_clean_failure(
        result, 2
    )


def test_option_env_converts_to_the_option_type(write: Write, good_pool: dict[str, Any]) -> None:
    settings = {k: v for k, v in good_pool.items() if k != "port"}
    text = toml_table("pools.a", settings) + "port_env = 'PYMYSQLPOOL_TEST_PORT'\n"
    env = cli_env(PYMYSQLPOOL_TEST_PORT=str(good_pool["port"]))
    assert_success(run("check", str(write(text)), env=env))
    bad = assert_clean_failure(
        run("check", str(write(text)), env=cli_env(PYMYSQLPOOL_TEST_PORT="x")), 2
    )
    assert "port_env: environment variable 'PYMYSQLPOOL_TEST_PORT' is not a valid port" in bad


def test_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[pools.a]\nhost = '\xe9'\n")
    line = assert_clean_failure(run("check", str(path)), 2)
    assert f"{path}: not UTF-8 text" in line, line


def test_special_files_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pools.fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero", str(tmp_path)):
        line = assert_clean_failure(run("check", path, timeout=20), 2)
        assert "not a regular file" in line or "cannot read" in line, line


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("# padding\n" * 200_000)
    assert "larger than 1024 KiB" in assert_clean_failure(run("check", str(path)), 2)


def test_stats_on_thousands_of_pools_needs_no_thread_each(write: Write) -> None:
    text = '[defaults]\nhost = "127.0.0.1"\nport = 1\n' + "".join(
        f"[pools.p{i}]\n" for i in range(5000)
    )
    result = run("stats", str(write(text)), "--json")
    assert result.returncode == 0, show(result)
    assert len(json.loads(result.stdout)) == 5000


def test_pools_without_connections_start_no_thread(connect_kwargs: dict[str, Any]) -> None:
    import threading

    from pymysqlpool_registry import Registry

    registry = Registry()
    before = threading.active_count()
    for i in range(200):
        registry.register(f"p{i}", **connect_kwargs)
        registry.get(f"p{i}")
    assert threading.active_count() == before
    with registry.get("p0").connection():
        assert threading.active_count() == before + 1  # its first connection starts it
    registry.close_all()


def test_a_usage_error_is_one_line() -> None:
    line = assert_clean_failure(run("demo", "--threads", "many"), 2)
    assert line.startswith("error: ") and "--threads" in line, line


@pytest.mark.parametrize(
    ("dsn", "settings"),
    [  # the README's DSN forms, as the parser reads them
        (
            "mysql://user:password@host:3307/database",
            {
                "user": "user",
                "password": "password",
                "host": "host",
                "port": 3307,
                "database": "database",
            },
        ),
        ("mariadb://u@db/x", {"user": "u", "host": "db", "database": "x"}),
        ("mysql://user:password@[::1]:3307/database", {"host": "::1", "port": 3307}),
        (
            "mysql://user:password@/database?unix_socket=/run/mysqld/mysqld.sock",
            {"unix_socket": "/run/mysqld/mysqld.sock", "database": "database"},
        ),
        (
            "mysql://u:p@host/db?ssl_mode=VERIFY_IDENTITY&ssl_ca=/etc/ssl/db-ca.pem",
            {
                "ssl": {"check_hostname": True, "verify_mode": True, "ca": "/etc/ssl/db-ca.pem"},
                "ssl_disabled": False,
            },
        ),
        (
            "mysql://u:p@host/db?ssl-ca=/ca.pem",
            {"ssl": {"check_hostname": True, "verify_mode": True, "ca": "/ca.pem"}},
        ),
        ("mysql://u:p%40w%3Ad@host/db", {"password": "p@w:d"}),
        ("mysql://u:p@w@host/db", {"password": "p@w", "host": "host"}),  # the last @ ends it
        ("mysql://u@host/db?ssl_mode=DISABLED", {"ssl_disabled": True}),
    ],
)
def test_the_readme_dsn_forms_parse(dsn: str, settings: dict[str, Any]) -> None:
    from pymysqlpool_registry.dsn import parse_dsn

    parsed = parse_dsn(dsn)
    assert {key: parsed.get(key) for key in settings} == settings
