"""Test sessions across the versions users run: ``nox -l`` lists them.

- ``tests-3.10`` ... ``tests-3.13``: the suite on each interpreter found on this machine
  (missing ones are skipped); fast tests by default, ``nox -s tests-3.12 -- -q`` for all.
- ``lowest``: the fast tests with the lowest PyMySQL, pluggy and attrs ``pyproject.toml``
  allows (read from its ``>=`` bounds, so the two cannot drift apart). CI runs this one.
- ``latest``: the fast tests with the newest releases of the three.
"""

from __future__ import annotations

import glob
import re
import sys

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - nox on 3.10
    import tomli as tomllib

nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["lowest"]

PINNED = ("PyMySQL", "pluggy", "attrs")
FAST = ("-m", "not slow", "-q")


def lowest_pins() -> list[str]:
    """``name==version`` for each of PINNED, from pyproject.toml's ``name>=version``."""
    with open("pyproject.toml", "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    pins = []
    for name in PINNED:
        for dependency in dependencies:
            found = re.fullmatch(rf"{name}>=([\w.]+)", dependency.replace(" ", ""), re.IGNORECASE)
            if found:
                pins.append(f"{name}=={found.group(1)}")
                break
        else:
            raise ValueError(f"pyproject.toml declares no lower bound for {name}")
    return pins


def install(session: nox.Session, *extra: str) -> None:
    """The package with its test extras and the plugin distributions, editable."""
    plugins = [arg for path in sorted(glob.glob("plugins/*/")) for arg in ("-e", path)]
    session.install("-e", ".[test,cli,bench]", *plugins, *extra)


@nox.session(python=["3.10", "3.11", "3.12", "3.13"])
def tests(session: nox.Session) -> None:
    install(session)
    session.run("python", "-m", "pytest", *(session.posargs or FAST))


@nox.session
def lowest(session: nox.Session) -> None:
    install(session, *lowest_pins())
    session.run("python", "-m", "pip", "list")
    session.run("python", "-m", "pytest", *(session.posargs or FAST))


@nox.session
def latest(session: nox.Session) -> None:
    install(session)
    session.install("--upgrade", *PINNED)
    session.run("python", "-m", "pytest", *(session.posargs or FAST))
