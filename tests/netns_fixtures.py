"""Network namespaces for tests and benches: uniquely named, always removed.

A plain module (not conftest.py) so tests and `bench/` can share it without fixture
conflicts with other suites; wrap `netns()` in a local pytest fixture.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator


def ip(*args: str, check: bool = True) -> str:
    """Run `ip ARGS...` and return its stdout; raise with stderr on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


@contextlib.contextmanager
def netns(prefix: str) -> Iterator[str]:
    """A fresh namespace named PREFIX + random suffix, with lo up; deleted on exit."""
    name = f"{prefix}{secrets.token_hex(4)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        ip("netns", "del", name, check=False)


def add_link(ns: str, v4: str = "10.99.0.1/24", v6: str = "2001:db8:99::1/64") -> None:
    """A veth pair inside `ns` (v0 carries the addresses), so gateways on its subnets resolve.

    veth rather than dummy: some kernels here are built without the dummy driver.
    """
    ip("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    ip("-n", ns, "link", "set", "v0", "up")
    ip("-n", ns, "link", "set", "v1", "up")
    ip("-n", ns, "addr", "add", v4, "dev", "v0")
    ip("-n", ns, "addr", "add", v6, "dev", "v0", "nodad")
