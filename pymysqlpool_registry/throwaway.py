"""A throwaway MariaDB server in a temporary directory, for tests, demos and benchmarks."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.connections

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "GaleraNode",
    "ServerNotFound",
    "ServerStartError",
    "ThrowawayGalera",
    "ThrowawayReplication",
    "ThrowawayServer",
    "find_galera_provider",
    "find_server_binaries",
]

_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")
_LOG_TAIL_LINES = 20
_POLL_SLEEP = 0.02
_PORT_ATTEMPTS = 10
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class ServerNotFound(RuntimeError):
    """No MariaDB server binary (mariadbd and mariadb-install-db) was found."""


class ServerStartError(RuntimeError):
    """The throwaway server could not be initialised or did not become ready in time."""


def _search_path(basedir: str | None) -> str:
    dirs: list[str] = []
    if basedir is not None:
        dirs += [os.path.join(basedir, sub) for sub in ("bin", "sbin", "scripts")]
    dirs += os.environ.get("PATH", os.defpath).split(os.pathsep)
    dirs += _EXTRA_DIRS
    unique: list[str] = []
    for d in dirs:
        if d and d not in unique:
            unique.append(d)
    return os.pathsep.join(unique)


def _is_mariadb(path: str, *, run_version: bool) -> bool:
    """Tell whether a `mysqld`/`mysql_install_db` fallback name is really MariaDB's."""
    if "mariadb" in os.path.basename(os.path.realpath(path)).lower():
        return True
    if run_version:
        try:
            out = subprocess.run(
                [path, "--no-defaults", "--version"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=10,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return b"mariadb" in out.lower()
    try:
        with open(path, "rb") as f:
            return b"MariaDB" in f.read(1 << 20)
    except OSError:
        return False


def find_server_binaries(basedir: str | None = None) -> tuple[str, str]:
    """Return the paths of (mariadbd, mariadb-install-db).

    Searched in ``basedir``'s bin/sbin/scripts (if given), then PATH, then /usr/sbin,
    /usr/local/sbin and /usr/bin. The names ``mysqld`` and ``mysql_install_db`` are accepted as
    a fallback only when they turn out to be MariaDB's.
    """
    path = _search_path(basedir)
    server = shutil.which("mariadbd", path=path)
    if server is None:
        candidate = shutil.which("mysqld", path=path)
        if candidate is not None and _is_mariadb(candidate, run_version=True):
            server = candidate
    install = shutil.which("mariadb-install-db", path=path)
    if install is None:
        candidate = shutil.which("mysql_install_db", path=path)
        if candidate is not None and _is_mariadb(candidate, run_version=False):
            install = candidate
    if server is None or install is None:
        missing = [
            name
            for name, found in (("mariadbd", server), ("mariadb-install-db", install))
            if found is None
        ]
        raise ServerNotFound(
            f"MariaDB server binaries not found ({', '.join(missing)}); searched PATH and "
            f"{', '.join(_EXTRA_DIRS)}. Install them with "
            "`apt-get install mariadb-server` (Debian/Ubuntu; add --no-install-recommends "
            "to skip extras). Note that mariadbd may be in /usr/sbin, which is not always on PATH."
        )
    return server, install


def _make_preexec(death_signal: int = signal.SIGKILL) -> Callable[[], None] | None:
    """Build a preexec_fn that makes the child die with us (Linux PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    signum = int(death_signal)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent already died before prctl took effect
            os.kill(os.getpid(), signum)

    return preexec


_WATCHDOG = (
    "import os, signal, sys\n"
    "signal.sigwait({signal.SIGTERM})\n"
    "os.kill(int(sys.argv[1]), signal.SIGKILL)\n"
)


def _start_watchdog(pid: int) -> subprocess.Popen[bytes] | None:
    """A helper process that SIGKILLs *pid* when we die (None where that cannot work).

    For a server that dropped root: that clears its own PR_SET_PDEATHSIG. The helper gets
    SIGTERM as its death signal, blocked from before exec on, so it cannot miss it.
    """
    preexec = _make_preexec(signal.SIGTERM)
    if preexec is None:
        return None

    def block_then_preexec() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        preexec()

    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=block_then_preexec,  # noqa: PLW1509 (PR_SET_PDEATHSIG needs it)
    )


def _ephemeral_low() -> int | None:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port() -> int:
    """A free 127.0.0.1 port, preferably below the kernel's ephemeral range.

    A port inside the ephemeral range can be taken as the *local* port of some outgoing
    connection (or by a TCP self-connect of the readiness poll) while the server is down,
    which would make a restart on the same port fail; so try below that range first.
    """
    low = _ephemeral_low()
    if low is not None and low > 20_000:
        for _ in range(20):
            candidate = random.randint(20_000, low - 1)
            if _port_is_free(candidate):
                return candidate
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _all_threads_stopped(pid: int) -> bool:
    """True if every thread of *pid* is in state T (stopped); True where /proc is missing."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"T", b"t"):
            return False
    return True


def _tail(path: str, lines: int = _LOG_TAIL_LINES, start: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(text) if text else "(log is empty)"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _owner_ids(user: str) -> tuple[int, int]:
    """The (uid, gid) of *user*; ServerStartError if there is no such user."""
    import pwd  # POSIX only: imported where needed

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ServerStartError(
            f"user {user!r} does not exist, so the server cannot run as it instead of root; "
            "Debian's mariadb-server package creates the user 'mysql' "
            "(or: useradd --system --no-create-home mysql)"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


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
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_make_preexec(),  # noqa: PLW1509 (PR_SET_PDEATHSIG needs it)
            )
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                raise ServerStartError(
                    f"{os.path.basename(self._install_db)} did not finish in {timeout:.0f} s; "
                    f"last lines of {log}:\n{_tail(log)}"
                ) from None
        if rc != 0:
            raise ServerStartError(
                f"{os.path.basename(self._install_db)} failed with exit code {rc}; "
                f"last lines of {log}:\n{_tail(log, lines=60)}"
            )
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


# -- several servers -------------------------------------------------------------------

_GALERA_PROVIDERS = (
    "/usr/lib/galera/libgalera_smm.so",
    "/usr/lib/galera-4/libgalera_smm.so",
    "/usr/lib64/galera-4/libgalera_smm.so",
    "/usr/lib64/galera/libgalera_smm.so",
)


def find_galera_provider() -> str:
    """The path of Galera's wsrep provider library; ServerNotFound if it (or rsync) is missing."""
    for path in _GALERA_PROVIDERS:
        if os.path.exists(path):
            break
    else:
        raise ServerNotFound(
            f"Galera provider libgalera_smm.so not found (looked at {', '.join(_GALERA_PROVIDERS)}); "
            "install it with `apt-get install galera-4` (mariadb-server depends on it)"
        )
    if shutil.which("rsync", path=_search_path(None)) is None:
        raise ServerNotFound("rsync not found (Galera's rsync SST needs it): apt-get install rsync")
    return path


def _pick_ports(count: int) -> list[int]:
    """*count* distinct free 127.0.0.1 ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = _pick_port()
        if port not in ports:
            ports.append(port)
    return ports


def _credentials(kwargs: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """User, password and database of *kwargs*, updated with *overrides*: the part of a pool's
    settings that does not depend on the host (the pool's own timeouts go beside it)."""
    return {key: kwargs[key] for key in ("user", "password", "database")} | overrides


class _Topology:
    """Several ThrowawayServers started and closed together."""

    def _servers(self) -> list[ThrowawayServer]:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        raise NotImplementedError

    def endpoints(self) -> list[str]:
        """``"127.0.0.1:port"`` of every server, in order."""
        return [f"{srv.host}:{srv.port}" for srv in self._servers()]

    def close(self) -> None:
        """Stop every server and remove its directory. Idempotent."""
        errors: list[Exception] = []
        for srv in reversed(self._servers()):
            try:
                srv.close()
            except (OSError, RuntimeError) as exc:  # close the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]

    def _log_tails(self) -> str:
        """The last lines of each (not yet closed) server's error log."""
        return "\n".join(
            f"--- last lines of {srv.error_log}:\n{_tail(srv.error_log)}"
            for srv in self._servers()
            if srv._tmpdir is not None
        )

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class GaleraNode(ThrowawayServer):
    """One node of a :class:`ThrowawayGalera`: its start waits until ``wsrep_ready`` is ON."""

    def __init__(
        self,
        index: int,
        *,
        bootstrap: bool,
        extra_args: Sequence[str],
        basedir: str | None,
        run_as: str | None,
    ) -> None:
        super().__init__(extra_args=extra_args, basedir=basedir, run_as=run_as)
        self.index = index
        self._bootstrap = bootstrap  # only the very first start of node 1 founds the cluster

    def _install(self, timeout: float) -> None:
        """Only the founder needs system tables: a joiner's datadir is replaced by its SST."""
        if self._bootstrap:
            super()._install(timeout)
            return
        os.makedirs(self.datadir, exist_ok=True)
        self._chown(self.datadir)
        self._installed = True

    def _server_cmd(self) -> list[str]:
        cmd = super()._server_cmd()
        return [*cmd, "--wsrep-new-cluster"] if self._bootstrap else cmd

    def _ready(self, conn: pymysql.connections.Connection) -> bool:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_ready'")
            row = cur.fetchone()
        ready = row is not None and row[1] == "ON"
        if ready:
            self._bootstrap = False
        return ready

    def wsrep_statuses(self) -> dict[str, str]:
        """Every ``wsrep_%`` status variable as text; empty if the node is down, paused or slow."""
        if self.pid is None or self._paused:
            return {}
        try:
            conn = pymysql.connect(
                **self.connect_kwargs(database=None, connect_timeout=1, read_timeout=1)
            )
        except pymysql.err.MySQLError:
            return {}
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep%'")
                return {str(name): str(value) for name, value in cur.fetchall()}
        except pymysql.err.MySQLError:
            return {}
        finally:
            conn.close()

    def wsrep_status(self, name: str) -> str | None:
        """One wsrep status variable as text; None if the node is down, paused or slow."""
        return self.wsrep_statuses().get(name)

    def wsrep_ready(self) -> bool:
        """True if the node is up and accepts queries (``wsrep_ready`` is ON)."""
        return self.wsrep_status("wsrep_ready") == "ON"

    def __repr__(self) -> str:
        return f"<GaleraNode {self.index} {super().__repr__()[1:-1]}>"


class ThrowawayGalera(_Topology):
    """A Galera cluster of *nodes* MariaDB servers on 127.0.0.1, for tests of several hosts.

    Every port (SQL, gcomm, IST, SST) is picked free on 127.0.0.1 and every datadir is fresh.
    As root the nodes run as ``run_as`` (rsync SST fails for root). Root has an empty password
    over TCP on every node; database ``test`` exists.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        basedir: str | None = None,
        run_as: str = "mysql",
        provider: str | None = None,
    ) -> None:
        provider = provider or find_galera_provider()
        aux = _pick_ports(3 * nodes)
        gcomm, ist, sst = aux[0::3], aux[1::3], aux[2::3]
        address = "gcomm://" + ",".join(f"127.0.0.1:{port}" for port in gcomm)
        self.nodes: list[GaleraNode] = []
        try:
            for i in range(nodes):
                options = (
                    f"gmcast.listen_addr=tcp://127.0.0.1:{gcomm[i]};"
                    f"ist.recv_addr=127.0.0.1:{ist[i]};"
                    "evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.install_timeout=PT6S"
                )
                node = GaleraNode(
                    i + 1,
                    bootstrap=i == 0,
                    basedir=basedir,
                    run_as=run_as,
                    extra_args=[
                        "--wsrep-on=ON",
                        f"--wsrep-provider={provider}",
                        f"--wsrep-cluster-address={address}",
                        f"--wsrep-node-address=127.0.0.1:{gcomm[i]}",
                        f"--wsrep-provider-options={options}",
                        "--wsrep-sst-method=rsync",
                        f"--wsrep-sst-receive-address=127.0.0.1:{sst[i]}",
                        "--binlog-format=ROW",
                        "--innodb-autoinc-lock-mode=2",
                    ],
                )
                self.nodes.append(node)
                while node.port in aux:
                    node.port = _pick_port()
        except BaseException:
            self.close()
            raise

    def _servers(self) -> list[ThrowawayServer]:
        return list(self.nodes)

    def start(self, timeout: float = 60.0) -> None:
        """Found the cluster on node 1 (with database ``test``), then join the others one by one.

        Returns when every node is ready in a cluster of them all; ServerStartError with each
        node's log tail after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        first = self.nodes[0]
        try:
            first.start(timeout)
            first.query("CREATE DATABASE IF NOT EXISTS test")  # joiners get it by SST
            for node in self.nodes[1:]:
                node.start(max(deadline - time.monotonic(), 1.0))
        except ServerStartError as exc:
            raise ServerStartError(
                f"Galera cluster did not start: {exc}\n{self._log_tails()}"
            ) from exc
        self.wait_ready(timeout=max(deadline - time.monotonic(), 1.0))
        for node in self.nodes:
            if not node.query("SHOW DATABASES LIKE 'test'"):
                raise ServerStartError(f"database test missing on node {node.index}")

    def wait_ready(self, nodes: Sequence[GaleraNode] | None = None, timeout: float = 60.0) -> None:
        """Wait until each of *nodes* (default: all) is ready in a cluster of exactly them.

        ServerStartError with the nodes' states and log tails after *timeout* seconds.
        """
        nodes = list(self.nodes if nodes is None else nodes)
        deadline = time.monotonic() + timeout
        while True:
            states = [node.wsrep_statuses() for node in nodes]
            # The same configuration id everywhere: a resumed node briefly shows a stale view.
            if len({state.get("wsrep_cluster_conf_id") for state in states}) == 1 and all(
                state.get("wsrep_ready") == "ON"
                and state.get("wsrep_cluster_size") == str(len(nodes))
                for state in states
            ):
                return
            if time.monotonic() >= deadline:
                shown = ", ".join(
                    f"node {node.index}: ready={state.get('wsrep_ready')} "
                    f"size={state.get('wsrep_cluster_size')} "
                    f"conf_id={state.get('wsrep_cluster_conf_id')}"
                    for node, state in zip(nodes, states, strict=True)
                )
                raise ServerStartError(
                    f"Galera nodes not ready in a cluster of {len(nodes)} after {timeout:.0f} s "
                    f"({shown})\n{self._log_tails()}"
                )
            time.sleep(0.1)

    def connect_kwargs(
        self, node: ThrowawayServer | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """``pymysql.connect`` keyword arguments (root, database ``test``) for *node*; without
        a node only user, password and database (for a pool given :meth:`endpoints`)."""
        if node is not None:
            return node.connect_kwargs(**overrides)
        return _credentials(self.nodes[0].connect_kwargs(), overrides)

    def __repr__(self) -> str:
        return f"<ThrowawayGalera {self.endpoints()}>"


class ThrowawayReplication(_Topology):
    """A primary and a read-only replica (GTID replication) on 127.0.0.1, for tests of several hosts.

    Database ``test`` is created on the primary and replicated. Root bypasses ``read_only``,
    so connect as the application user (:meth:`app_connect_kwargs`): the replica refuses its
    writes with error 1290 until :meth:`promote_replica`.
    """

    app_user = "app"
    app_password = "app-secret"
    repl_user = "repl"
    repl_password = "repl-secret"

    def __init__(self, *, basedir: str | None = None) -> None:
        binlog = ["--log-bin=mariadb-bin", "--binlog-format=ROW"]
        self.primary = ThrowawayServer(extra_args=[*binlog, "--server-id=1"], basedir=basedir)
        try:
            self.replica = ThrowawayServer(
                extra_args=[*binlog, "--server-id=2", "--read-only=ON"], basedir=basedir
            )
        except BaseException:
            self.primary.close()
            raise
        self.replica._created_test_db = True  # no local write: it replicates from the primary

    def _servers(self) -> list[ThrowawayServer]:
        return [self.primary, self.replica]

    def start(self, timeout: float = 30.0) -> None:
        """Start both servers, create the users on the primary and replicate until caught up."""
        deadline = time.monotonic() + timeout
        self.primary.start(timeout)
        self.replica.start(max(deadline - time.monotonic(), 1.0))
        repl, app = f"'{self.repl_user}'@'127.0.0.1'", f"'{self.app_user}'@'%'"
        for sql in (
            f"CREATE USER IF NOT EXISTS {repl} IDENTIFIED BY '{self.repl_password}'",
            f"GRANT REPLICATION SLAVE ON *.* TO {repl}",
            f"CREATE USER IF NOT EXISTS {app} IDENTIFIED BY '{self.app_password}'",
            f"GRANT ALL ON test.* TO {app}",
            f"GRANT SLAVE MONITOR ON *.* TO {app}",  # to read the replica's lag
        ):
            self.primary.query(sql)
        self.replica.query(
            f"CHANGE MASTER TO MASTER_HOST='{self.primary.host}', MASTER_PORT={self.primary.port}, "
            f"MASTER_USER='{self.repl_user}', MASTER_PASSWORD='{self.repl_password}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        )
        self.replica.query("START SLAVE")
        self.wait_replicated(max(deadline - time.monotonic(), 1.0))

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until the replica has applied everything the primary has logged so far.

        TimeoutError (with the replica's replication state) after *timeout* seconds.
        """
        position = self.primary.query("SELECT @@gtid_binlog_pos")[0][0]
        conn = pymysql.connect(
            **self.replica.connect_kwargs(database=None, autocommit=True, read_timeout=timeout + 5)
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))
                row = cur.fetchone()
                if row is not None and row[0] == 0:
                    return
                cur.execute("SHOW SLAVE STATUS")
                names = [d[0] for d in cur.description or ()]
                status = dict(zip(names, cur.fetchone() or (), strict=False))
        finally:
            conn.close()
        shown = {
            key: status.get(key)
            for key in ("Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error", "Last_SQL_Error")
        }
        raise TimeoutError(
            f"replica not at the primary's GTID position {position!r} after {timeout:.0f} s: "
            f"{shown}; gtid_slave_pos={self.replica.query('SELECT @@gtid_slave_pos')[0][0]!r}"
        )

    def promote_replica(self) -> None:
        """Make the replica a writable primary (after the test stopped or killed the primary)."""
        self.replica.query("STOP SLAVE")
        self.replica.query("SET GLOBAL read_only=OFF")

    def app_connect_kwargs(
        self, server: ThrowawayServer | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """``pymysql.connect`` keyword arguments for the non-SUPER application user to *server*;
        without a server only user, password and database (for a pool given :meth:`endpoints`)."""
        app = {"user": self.app_user, "password": self.app_password}
        if server is not None:
            return server.connect_kwargs(**app, **overrides)
        return _credentials(self.primary.connect_kwargs(**app), overrides)

    def __repr__(self) -> str:
        return f"<ThrowawayReplication primary={self.primary!r} replica={self.replica!r}>"
