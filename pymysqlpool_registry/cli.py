"""The ``pymysqlpool`` command: ``demo``, ``check``, ``plugins`` and ``stats``."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import NoReturn

import pymysql

from ._checks import error_message
from .configfile import ConfigFileError
from .dsn import USAGE, DsnError, parse_dsn
from .errnos import error_number
from .errors import PluginError, PoolError, UnknownPoolError
from .packs import PACK_GROUP, installed
from .pool import ConnectionPool
from .registry import Registry
from .throwaway.binaries import ServerNotFound
from .throwaway.process import ServerStartError

try:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table
    from rich.text import Text
except ImportError:  # pragma: no cover - exercised only without the cli extra
    Console = None  # type: ignore[assignment,misc]

_DEMO_POOL = "demo"
DSN_VARIABLE = "PYMYSQLPOOL_DSN"
#: Exit codes: 0 success, 1 a check failed, 2 an error (bad input, unreachable server),
#: 3 an unexpected error (a bug), 130 interrupted.
EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 3, 130
_LINE_LIMIT = 200


def printable(text: object, limit: int = _LINE_LIMIT) -> str:
    """*text* as one line of at most *limit* characters, with control and format characters
    (escape sequences, newlines, bidi overrides) shown as escapes instead of acting."""
    line = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text)
    )
    return line if len(line) <= limit else line[: limit - 1] + "…"


def literal(text: object) -> Text:
    """Outside text (a server's error, a name from a config file) for rich, printed as is."""
    return Text(printable(text))


class CliError(Exception):
    """A failure shown to the user as one line, with what to do about it."""


def explain(exc: BaseException) -> str:
    """One line saying what went wrong and how to fix it."""
    cause = exc
    while isinstance(cause, PoolError) and cause.__cause__ is not None:
        cause = cause.__cause__
    errno = error_number(cause)
    if errno == 1045:
        return f"access denied ({cause.args[1]}): check the user and password"
    if errno == 1049:
        return f"{cause.args[1]}: create it or fix 'database'"
    if errno in (2003, 2013, 2006):
        return f"cannot reach the server ({cause.args[1]}): is it running, are host and port right?"
    if isinstance(exc, ConfigFileError):
        return f"bad config: {exc}"
    if isinstance(exc, ServerNotFound):
        return f"{exc}, or give --dsn {USAGE}"
    if isinstance(exc, DsnError):
        return f"bad DSN: {exc}"
    return error_message(exc) or type(exc).__name__


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: *kind* of the text, which must be above zero."""

    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


@contextmanager
def demo_registry(args: argparse.Namespace, console: Console) -> Iterator[tuple[Registry, str]]:
    """A registry with the pool the demo uses: from --config, --dsn, or a throwaway server."""
    registry = Registry(env=args.env)
    with ExitStack() as stack:
        stack.callback(registry.close_all)
        if args.config:
            names = registry.load(args.config)
            name = args.pool or (names[0] if names else None)
            if name is None:
                raise CliError(f"{args.config}: no [pools.NAME] table")
        else:
            dsn = args.dsn or os.environ.get(DSN_VARIABLE)
            if dsn:
                settings = parse_dsn(dsn)
            else:
                from .throwaway import ThrowawayServer

                console.print("starting a throwaway MariaDB in a temporary directory…")
                server = stack.enter_context(ThrowawayServer())
                settings = server.connect_kwargs()
            name = _DEMO_POOL
            settings.setdefault("timeout", 5.0)  # a demo should fail fast on a wrong --dsn
            registry.register(name, max_size=args.max_size, autocommit=True, **settings)
        yield registry, name


def run_workload(
    pool: ConnectionPool, threads: int, seconds: float, progress: Callable[[float], None]
) -> list[float]:
    """*threads* workers doing read-only loans for *seconds*; returns each loan's latency."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []
    stop_at = time.monotonic() + seconds

    def work(mine: list[float]) -> None:
        try:
            while time.monotonic() < stop_at and len(mine) < 10_000_000:
                started = time.perf_counter()
                with pool.connection() as conn, conn.cursor() as cur:
                    cur.execute("SELECT CONNECTION_ID(), %s", (len(mine),))
                    cur.fetchall()
                mine.append(time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(mine,), daemon=True) for mine in latencies]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers) and time.monotonic() < stop_at + 30:
        progress(min(1.0, 1 - (stop_at - time.monotonic()) / seconds))
        time.sleep(0.1)
    if failures:
        raise failures[0]
    return sorted(t for mine in latencies for t in mine)


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    with demo_registry(args, console) as (registry, name):
        pool = registry.get(name)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(f"{args.threads} threads on pool {name!r}", total=1.0)
            latencies = run_workload(
                pool, args.threads, args.seconds, lambda done: bar.update(task, completed=done)
            )
        stats = pool.stats()
    console.print(
        f"{len(latencies)} loans in {args.seconds:g} s ({len(latencies) / args.seconds:,.0f}/s), "
        f"{args.threads} threads, pool {printable(name)!r} of at most {stats['max_size']:g}",
        markup=False,
        highlight=False,
    )
    table = Table("latency", "ms")
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100)
        for label, value in (
            ("p50", cuts[49]),
            ("p90", cuts[89]),
            ("p99", cuts[98]),
            ("max", latencies[-1]),
        ):
            table.add_row(label, f"{value * 1e3:.3f}")
    console.print(table)
    console.print(stats_table({name: stats}))
    return 0


def stats_table(all_stats: dict[str, dict[str, float]]) -> Table:
    """Pool statistics, one column per pool."""
    table = Table("statistic")
    for name in all_stats:
        table.add_column(literal(name))
    keys = next(iter(all_stats.values()), {})
    for key in keys:
        table.add_row(key, *(_number(stats[key]) for stats in all_stats.values()))
    return table


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    registry = Registry(env=args.env)
    names = registry.load(args.config)
    table = Table("pool", "server", "result")
    failed = 0
    try:
        for name in names:
            config = registry.config(name)
            where = config.unix_socket or f"{config.host}:{config.port}"
            try:
                with registry.get(name).connection(timeout=config.connect_timeout) as conn:
                    conn.ping_within(config.ping_timeout)
                result = Text("ok", style="green")
            except Exception as exc:  # noqa: BLE001 - each pool's failure is one row
                failed += 1
                result = Text.assemble(("failed", "red"), ": ", printable(explain(exc)))
            table.add_row(literal(name), literal(where), result)
    finally:
        registry.close_all()
    console.print(table)
    return EXIT_CHECK_FAILED if failed else 0


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    manager = Registry(env=args.env).manager
    plugins = manager.describe()
    loaded_packs = {pack.name for pack in manager.packs}
    packs = [
        {"name": name, "entry_point": entry.value, "selected": name in loaded_packs}
        for name, entry in sorted(installed(PACK_GROUP).items())
    ]
    if args.json:
        print(json.dumps({"plugins": plugins, "packs": packs}, indent=2))
        return 0
    table = Table("plugin", "kind", "hooks")
    for column in table.columns:
        column.overflow = "fold"
    for plugin in plugins:
        hooks = "\n".join(printable(hook) for hook in plugin["hooks"])
        table.add_row(literal(plugin["name"]), literal(plugin["kind"]), Text(hooks))
    console.print(table)
    pack_table = Table("installed pack", "entry point", "selected")
    for column in pack_table.columns:
        column.overflow = "fold"
    for pack in packs:
        pack_table.add_row(
            literal(pack["name"]), literal(pack["entry_point"]), "yes" if pack["selected"] else ""
        )
    console.print(pack_table)
    return 0


def cmd_stats(args: argparse.Namespace, console: Console) -> int:
    registry = Registry(env=args.env)
    try:
        names = registry.load(args.config)
        all_stats = {name: registry.get(name).stats() for name in names}
    finally:
        registry.close_all()
    if args.json:
        print(json.dumps(all_stats, indent=2))
    else:
        console.print(stats_table(all_stats))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {printable(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = _Parser(prog="pymysqlpool", description="PyMySQL connection pools")
    commands = top.add_subparsers(
        dest="command", required=True, metavar="{demo,check,plugins,stats}"
    )
    demo = commands.add_parser(
        "demo", help="a threaded workload through a pool, then its statistics"
    )
    demo.add_argument(
        "--dsn",
        help=f"{USAGE} (default: ${DSN_VARIABLE}, which other local users cannot read as they "
        "can a command line; else a throwaway MariaDB)",
    )
    demo.add_argument("--config", help="a TOML config file instead of --dsn")
    demo.add_argument("--pool", help="the pool of --config to use (default: the first)")
    demo.add_argument("--threads", type=_positive(int), default=16)
    demo.add_argument("--seconds", type=_positive(float), default=3.0)
    demo.add_argument("--max-size", type=_positive(int), default=4)
    check = commands.add_parser("check", help="validate a config file and ping every pool")
    check.add_argument("config")
    plugins = commands.add_parser("plugins", help="list plugins, packs and their hooks")
    plugins.add_argument("--json", action="store_true")
    stats = commands.add_parser(
        "stats", help="build the pools of a config file and show their statistics"
    )
    stats.add_argument("config")
    stats.add_argument("--json", action="store_true")
    for command in (demo, check, plugins, stats):
        command.add_argument("--env", help="environment (default: $PYMYSQLPOOL_ENV)")
    return top


COMMANDS = {"demo": cmd_demo, "check": cmd_check, "plugins": cmd_plugins, "stats": cmd_stats}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a failure is one line on stderr and an exit code: 1 a check failed,
    2 an error, 3 an unexpected error (a bug), 130 interrupted."""
    args = parser().parse_args(argv)
    if Console is None:
        print(
            "error: the command needs rich: pip install 'pymysqlpool-registry[cli]'",
            file=sys.stderr,
        )
        return 2
    try:
        return COMMANDS[args.command](args, Console())
    except BrokenPipeError:  # e.g. piped into head: nothing left to say
        return 1
    except (
        CliError,
        ConfigFileError,
        PluginError,
        UnknownPoolError,
        PoolError,
        pymysql.err.Error,
        ServerNotFound,
        ServerStartError,
        OSError,
        ValueError,
        TypeError,
    ) as exc:
        print(f"error: {printable(explain(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, with its own exit code
        print(f"error: unexpected {type(exc).__name__}: {printable(exc)}", file=sys.stderr)
        return EXIT_BUG
