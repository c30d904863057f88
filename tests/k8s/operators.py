"""`kroute operator` processes against the fake API server (the test's namespace)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.kroute_node import _stop


@contextlib.contextmanager
def operators(
    kubeconfig: Path, *identities: str, lease: float = 3.0
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One operator per identity (short Lease timings); all stopped on exit by PID."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = kubeconfig.parent
    try:
        for identity in identities:
            with open(logs / f"operator-{identity}.log", "ab") as out:
                procs[identity] = subprocess.Popen(
                    [sys.executable, "-m", "bgpd.cli", "operator", "--kubeconfig",
                     str(kubeconfig), "--identity", identity, "--namespace", "kroute-system",
                     "--lease-duration", str(lease), "--renew-deadline", str(lease * 2 / 3),
                     "--retry-period", str(lease / 6), "--health", ""],
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        yield procs
    finally:
        for proc in procs.values():
            _stop(proc)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """kill -9, as a node dying under the leader."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
