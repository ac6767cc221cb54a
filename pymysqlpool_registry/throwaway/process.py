"""The processes and ports of throwaway servers: a child that dies with its parent, a
watchdog, free loopback ports, log tails and the user to run as."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

_LOG_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class ServerStartError(RuntimeError):
    """The throwaway server could not be initialised or did not become ready in time."""


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


def _run_to_completion(cmd: list[str], log: str, timeout: float) -> None:
    """Run *cmd* (a setup step such as mariadb-install-db) with its output in *log*; raise
    ServerStartError, with the log's last lines, if it fails or takes over *timeout* s."""
    name = os.path.basename(cmd[0])
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
                f"{name} did not finish in {timeout:.0f} s; last lines of {log}:\n{_tail(log)}"
            ) from None
    if rc != 0:
        raise ServerStartError(
            f"{name} failed with exit code {rc}; last lines of {log}:\n{_tail(log, lines=60)}"
        )
