"""ThrowawayServer: one MariaDB server in a temporary directory, on a free loopback port,
that dies with the process that started it."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.connections

if TYPE_CHECKING:
    from typing_extensions import Self
from .binaries import find_server_binaries
from .process import (
    ServerStartError,
    _all_threads_stopped,
    _file_size,
    _is_root,
    _make_preexec,
    _owner_ids,
    _pick_port,
    _run_to_completion,
    _start_watchdog,
    _tail,
)

_POLL_SLEEP = 0.02
_PORT_ATTEMPTS = 10


class ThrowawayServer:
    """A MariaDB server in a temporary datadir on a free 127.0.0.1 port, for tests, demos and benchmarks.

    Root has an empty password over TCP; database ``test`` exists. The server process gets
    PR_SET_PDEATHSIG=SIGKILL (Linux): it dies when the *thread* that started it exits, so call
    :meth:`start` from a long-lived thread (normally the main one). Not thread-safe.

    ``run_as``: when this process is root, run mariadbd as that user instead of root (the
    temporary directory is handed to it); ignored otherwise. Dropping root clears the server's
    PR_SET_PDEATHSIG, so a small watchdog process that keeps it kills the server if we die.
    """

    host: str
    port: int

    def __init__(
        self,
        *,
        extra_args: Sequence[str] = (),
        basedir: str | None = None,
        run_as: str | None = None,
    ) -> None:
        self._mariadbd, self._install_db = find_server_binaries(basedir)
        self._owner = _owner_ids(run_as) if run_as is not None and _is_root() else None
        self._user = run_as if self._owner is not None else ("root" if _is_root() else None)
        self._extra_args = list(extra_args)
        self._basedir = basedir
        self.host = "127.0.0.1"
        self.port = _pick_port()
        self._port_fixed = False  # becomes True after the first successful start
        self._tmpdir: str | None = tempfile.mkdtemp(prefix="pymysqlpool-mariadb-")
        self._chown(self._tmpdir)
        self._installed = False
        self._created_test_db = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None  # with run_as only
        self._paused = False
        self._atexit_registered = False
        self._last_connect_error: BaseException | None = None

    # -- paths -------------------------------------------------------------------------

    def _dir(self) -> str:
        if self._tmpdir is None:
            raise RuntimeError("ThrowawayServer is closed")
        return self._tmpdir

    @property
    def datadir(self) -> str:
        return os.path.join(self._dir(), "data")

    @property
    def socket_path(self) -> str:
        """The server's unix socket."""
        return os.path.join(self._dir(), "sock")

    @property
    def error_log(self) -> str:
        return os.path.join(self._dir(), "err.log")

    @property
    def pid(self) -> int | None:
        """The pid of the running mariadbd (also while paused), or None."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    # -- lifecycle ---------------------------------------------------------------------

    def _as_root_args(self) -> list[str]:
        return [] if self._user is None else [f"--user={self._user}"]

    def _chown(self, path: str) -> None:
        """Hand *path* to the ``run_as`` user (no-op without one)."""
        if self._owner is not None:
            os.chown(path, *self._owner)

    def _install(self, timeout: float) -> None:
        log = os.path.join(self._dir(), "install.log")
        cmd = [
            self._install_db,
            "--no-defaults",
            *self._as_root_args(),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            f"--datadir={self.datadir}",
            f"--tmpdir={self._private_tmp()}",
        ]
        if self._basedir is not None:
            cmd.append(f"--basedir={self._basedir}")
        _run_to_completion(cmd, log, timeout)
        self._installed = True

    def _private_tmp(self) -> str:
        """A tmpdir of this server's own: a starting mariadbd deletes the ``#sql*`` files in its
        tmpdir, which in a shared /tmp are other running servers' temporary tables."""
        path = os.path.join(self._dir(), "tmp")
        if not os.path.isdir(path):
            os.makedirs(path)
            self._chown(path)
        return path

    def _server_cmd(self) -> list[str]:
        d = self._dir()
        cmd = [
            self._mariadbd,
            "--no-defaults",
            *self._as_root_args(),
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket_path}",
            f"--pid-file={os.path.join(d, 'mariadbd.pid')}",
            f"--log-error={self.error_log}",
            f"--tmpdir={self._private_tmp()}",
            "--skip-name-resolve",
            "--max-connect-errors=1000000",
            "--innodb-buffer-pool-size=32M",
            "--skip-innodb-buffer-pool-dump-at-shutdown",
        ]
        if self._basedir is not None:
            cmd.append(f"--basedir={self._basedir}")
        cmd += self._extra_args
        return cmd

    def _try_ping(self) -> bool:
        try:
            conn = pymysql.connect(
                **self.connect_kwargs(database=None, connect_timeout=1, read_timeout=2)
            )
        except pymysql.err.MySQLError as exc:
            self._last_connect_error = exc
            return False
        try:
            return self._ready(conn)
        finally:
            conn.close()

    def _ready(self, conn: pymysql.connections.Connection) -> bool:
        """Called with a fresh root connection during start: is the server ready for use?"""
        if not self._created_test_db:
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE IF NOT EXISTS test")
            conn.commit()
            self._created_test_db = True
        return True

    def _launch_once(self, deadline: float) -> str | None:
        """Start mariadbd and wait for it; return None when ready, "port" if the port was taken."""
        log_start = _file_size(self.error_log)
        self._proc = subprocess.Popen(
            self._server_cmd(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_make_preexec(),  # noqa: PLW1509 (PR_SET_PDEATHSIG needs it)
        )
        if self._owner is not None:
            self._watchdog = _start_watchdog(self._proc.pid)
        self._paused = False
        while True:
            rc = self._proc.poll()
            if rc is not None:
                self._stop_watchdog()
                self._proc = None
                new_log = _tail(self.error_log, lines=1000, start=log_start)
                if "Address already in use" in new_log or "error: 98" in new_log:
                    return "port"
                raise ServerStartError(
                    f"mariadbd exited with code {rc} during start on port {self.port}; "
                    f"last lines of {self.error_log}:\n{_tail(self.error_log)}"
                )
            if self._try_ping():
                return None
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(
                    f"mariadbd on port {self.port} did not accept connections in time "
                    f"(last connect error: {self._last_connect_error!r}); last lines of {self.error_log}:\n{_tail(self.error_log)}"
                )
            time.sleep(_POLL_SLEEP)

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (installing the datadir on first use); no-op if already running.

        ``timeout`` bounds the datadir installation and, separately, the wait until a
        connection succeeds. The first successful start fixes the port; later starts reuse it.
        """
        if self.pid is not None:
            return
        self._dir()
        if not self._atexit_registered:
            atexit.register(self.close)
            self._atexit_registered = True
        if not self._installed:
            self._install(max(timeout, 60.0))
        deadline = time.monotonic() + timeout
        attempts = 0
        while self._launch_once(deadline) == "port":
            attempts += 1
            if time.monotonic() >= deadline or (
                not self._port_fixed and attempts >= _PORT_ATTEMPTS
            ):
                raise ServerStartError(
                    f"could not bind 127.0.0.1:{self.port} (address in use); "
                    f"last lines of {self.error_log}:\n{_tail(self.error_log)}"
                )
            if self._port_fixed:
                time.sleep(0.1)  # same port required: wait for it to be released
            else:
                self.port = _pick_port()
        self._port_fixed = True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server and wait; SIGKILL it if it does not exit in time. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        self._stop_watchdog()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
                proc.send_signal(signal.SIGCONT)  # a paused server must run to handle SIGTERM
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._sigkill_and_wait(proc)
        self._proc = None
        self._paused = False

    def _stop_watchdog(self) -> None:
        """End the watchdog before the server: it must never outlive the server's pid."""
        dog, self._watchdog = self._watchdog, None
        if dog is not None:
            self._sigkill_and_wait(dog)

    def _sigkill_and_wait(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        try:
            proc.wait(30.0)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"mariadbd pid {proc.pid} did not exit 30 s after SIGKILL") from None

    def kill(self) -> None:
        """SIGKILL the server (a crash) and wait for it to exit; the datadir is kept."""
        proc = self._proc
        if proc is None:
            return
        self._stop_watchdog()
        if proc.poll() is None:
            self._sigkill_and_wait(proc)
        self._proc = None
        self._paused = False

    def restart(self, timeout: float = 30.0) -> None:
        """Stop (SIGTERM) and start again on the same port with the same datadir."""
        self.stop()
        self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its sockets open but answers nothing (a hung server)."""
        pid = self._require_pid()
        os.kill(pid, signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + 5.0  # SIGSTOP is asynchronous: wait until every thread stops
        while time.monotonic() < deadline and not _all_threads_stopped(pid):
            time.sleep(0.005)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        pid = self._require_pid()
        os.kill(pid, signal.SIGCONT)
        self._paused = False

    def _require_pid(self) -> int:
        pid = self.pid
        if pid is None:
            raise RuntimeError("the throwaway server is not running")
        return pid

    def close(self) -> None:
        """Stop the server and remove its temporary directory. Idempotent."""
        try:
            self.stop()
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            if self._atexit_registered:
                atexit.unregister(self.close)
                self._atexit_registered = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.pid is not None else "stopped")
        return f"<ThrowawayServer {self.host}:{self.port} {state} dir={self._tmpdir}>"

    # -- clients -----------------------------------------------------------------------

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` to this server, updated with ``overrides``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": "root",
            "password": "",
            "database": "test",
            "ssl_disabled": True,
            "connect_timeout": 5,
            "read_timeout": 10,
            "write_timeout": 10,
        }
        kwargs.update(overrides)
        return kwargs

    def admin(self) -> pymysql.connections.Connection:
        """A fresh autocommit root connection (no default database); the caller closes it."""
        return pymysql.connect(**self.connect_kwargs(database=None, autocommit=True))

    def query(self, sql: str) -> tuple[tuple[Any, ...], ...]:
        """Run one statement on a short-lived admin connection and return its rows."""
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall()
        finally:
            conn.close()
        return tuple(tuple(row) for row in rows)

    def sessions(self, user: str) -> int:
        """The sessions the server has now for *user* (its processlist, killed ones left out)."""
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.processlist "
                    "WHERE user = %s AND command <> 'Killed'",
                    (user,),
                )
                row = cur.fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else 0

    def status(self, name: str) -> int:
        """``SHOW GLOBAL STATUS LIKE name`` as an int (e.g. "Threads_connected")."""
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
                row = cur.fetchone()
        finally:
            conn.close()
        if row is None:
            raise KeyError(f"no global status variable named {name!r}")
        return int(row[1])
