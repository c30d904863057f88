"""A single kroute node facing BGP speakers the test controls, in fresh namespaces.

`node_with_injectors` builds a node namespace and an injector namespace joined by a
veth, runs `kroute run` in the node and one real exabgp per injector address in the
other, each announcing the static routes the test gives it. Everything is removed on
exit, also on failure; processes are ended by the PIDs started here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bgpd.api.client import fetch_status
from common.errors import KrouteError
from tests.netns_fixtures import ip, netns

NODE_IP = "10.88.0.1"
NODE_CIDR = "10.250.1.0/24"


@dataclass(frozen=True)
class Injector:
    """One BGP speaker in the injector namespace: its address, AS and static routes
    (exabgp `route` statements without the leading keyword)."""

    address: str
    asn: int
    routes: tuple[str, ...]
    md5: str | None = None


@dataclass
class NodeUnderTest:
    node_ns: str
    injector_ns: str
    socket: str
    workdir: Path
    pid: int  # the kroute daemon's

    def status(self) -> dict[str, Any]:
        return fetch_status(self.socket)

    def peer(self, address: str) -> dict[str, Any]:
        return next(p for p in self.status()["peers"] if p["address"] == address)

    def kernel(self) -> str:
        return ip("-n", self.node_ns, "route", "show", "proto", "bgp")


def _exabgp_config(injector: Injector, workdir: Path) -> Path:
    routes = "\n".join(f"        route {r};" for r in injector.routes)
    text = f"""neighbor {NODE_IP} {{
    router-id {injector.address};
    local-address {injector.address};
    local-as {injector.asn};
    peer-as 64512;
    hold-time 9;
    {f'md5-password "{injector.md5}";' if injector.md5 else ""}
    family {{ ipv4 unicast; }}
    static {{
{routes}
    }}
}}
"""
    path = workdir / f"injector-{injector.address}.conf"
    path.write_text(text)
    return path


def _start(argv: list[str], ns: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{ns}", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KrouteError, StopIteration, KeyError):
            if predicate():
                return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def node_with_injectors(
    injectors: list[Injector],
    peers: list[dict[str, Any]],
    cluster_id: str | None = None,
    *,
    env: dict[str, str] | None = None,
    wrapper: tuple[str, ...] = (),
    edit: Callable[[dict[str, Any], Path], None] | None = None,
) -> Iterator[NodeUnderTest]:
    """A kroute node peering with `peers` (bgp.peers entries), the injectors answering.
    `env` is added to kroute's environment; `wrapper` runs before it (e.g. setpriv);
    `edit(config, workdir)` changes the config before kroute starts."""
    with (
        netns("krn-") as node_ns,
        netns("kri-") as inj_ns,
        tempfile.TemporaryDirectory(prefix="kroute-node-") as tmp,
    ):
        workdir = Path(tmp)
        ip("link", "add", "krn0", "netns", node_ns, "type", "veth", "peer", "kri0", "netns", inj_ns)
        ip("-n", node_ns, "addr", "add", f"{NODE_IP}/24", "dev", "krn0")
        ip("-n", node_ns, "link", "set", "krn0", "up")
        for injector in injectors:
            ip("-n", inj_ns, "addr", "add", f"{injector.address}/24", "dev", "kri0")
        ip("-n", inj_ns, "link", "set", "kri0", "up")
        node: dict[str, Any] = {"name": "n1", "ip": NODE_IP, "podCIDRs": [NODE_CIDR]}
        if cluster_id is not None:
            node["routeReflectorClusterId"] = cluster_id
        config = {
            "node": {"name": "n1"},
            "bgp": {
                "asn": 64512,
                "holdTime": 9,
                "gracefulRestart": {"enabled": True, "restartTime": 9},
                "peers": peers,
            },
            "cluster": {"nodes": [node]},
            "status": {"listen": "", "socket": str(workdir / "kroute.sock")},
            "runDir": str(workdir),
        }
        if edit is not None:
            edit(config, workdir)
        (workdir / "kroute.yaml").write_text(yaml.safe_dump(config))
        procs = []
        try:
            procs.append(
                _start(
                    [
                        *wrapper,
                        sys.executable,
                        "-m",
                        "bgpd.cli",
                        "run",
                        "--config",
                        str(workdir / "kroute.yaml"),
                    ],
                    node_ns,
                    workdir / "kroute.log",
                    env or {},
                )
            )
            for injector in injectors:
                conf = _exabgp_config(injector, workdir)
                env = {
                    "exabgp_tcp_bind": injector.address,
                    "exabgp_daemon_user": "root",
                    "exabgp_daemon_drop": "false",
                    "exabgp_api_cli": "false",
                }
                procs.append(
                    _start(
                        [sys.executable, "-m", "exabgp", "server", str(conf)],
                        inj_ns,
                        workdir / f"injector-{injector.address}.log",
                        env,
                    )
                )
            yield NodeUnderTest(
                node_ns, inj_ns, str(workdir / "kroute.sock"), workdir, procs[0].pid
            )
        finally:
            for proc in reversed(procs):
                _stop(proc)
