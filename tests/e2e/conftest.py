"""Fixtures for driving `kroute lab` as a user would: the CLI, and labs that always go down."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

KROUTE = Path(sys.executable).parent / "kroute"


def kroute(
    *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the `kroute` CLI; on an unexpected exit code, fail with its output."""
    argv = [str(KROUTE)] if KROUTE.exists() else [sys.executable, "-m", "bgpd.cli"]
    done = subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"kroute {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


@pytest.fixture
def lab_up() -> Iterator[Callable[[int], str]]:
    """Start labs with unique names (`e2e` + 4 hex digits); each goes down at teardown."""
    names: list[str] = []

    def start(nodes: int) -> str:
        name = f"e2e{secrets.token_hex(2)}"
        names.append(name)
        kroute("lab", "up", "--name", name, "--nodes", str(nodes))
        return name

    yield start
    for name in names:
        kroute("lab", "down", "--name", name, check=False)
