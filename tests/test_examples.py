"""The README's runnable examples run and print what the README says they show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.slow
def test_primary_replica_example() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "primary_replica.py")],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    ports = lines[0].split()
    primary, replica = ports[3].rstrip(","), ports[-1]
    assert lines[1] == f"write  -> port {primary}"
    assert lines[2] == f"read   -> port {replica}: 1 order(s)"
    assert lines[3].startswith("write refused at once:") and "read-only" in lines[3]
    assert lines[4] == f"write  -> port {replica} after the promotion"
