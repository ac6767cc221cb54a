"""Finding the MariaDB server, mariadb-install-db and the Galera provider on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess

_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


class ServerNotFound(RuntimeError):
    """No MariaDB server binary (mariadbd and mariadb-install-db) was found."""


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
