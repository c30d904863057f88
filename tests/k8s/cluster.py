"""kroute agents in network namespaces on one LAN, their cluster in the fake API server.

`kube_cluster()` makes a LAN bridge namespace and starts nothing else; `add_node`
builds a node namespace on the LAN, opens a fake-API-server listener inside it (the
daemon reaches 127.0.0.1:PORT in its own namespace), creates the Node object and starts
`kroute run` (real exabgp) with `cluster.source: kubernetes`. Everything is removed on
exit, also on failure; processes are ended by the PIDs started here.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bgpd.api.client import call, fetch_status
from bgpd.kube.api import MERGE_PATCH, api_client
from tests.k8s import apis
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.objects import node as node_object
from tests.kroute_node import _start, _stop
from tests.netns_fixtures import ip, netns

ASN = 64512


@dataclass
class Agent:
    name: str
    ns: str
    ip: str
    pod_cidr: str
    socket: str
    proc: subprocess.Popen[bytes] | None = None

    def status(self) -> dict[str, Any]:
        return fetch_status(self.socket)

    def get(self, endpoint: str) -> Any:
        return call(self.socket, endpoint)

    def established(self) -> list[str]:
        return sorted(p["address"] for p in self.status()["peers"] if p["state"] == "established")

    def kernel(self) -> dict[str, str]:
        """prefix -> the rest of the line, for `proto bgp` routes."""
        out = ip("-n", self.ns, "route", "show", "proto", "bgp")
        return {line.split()[0]: line for line in out.splitlines() if line.strip()}

    def served(self) -> list[str]:
        return sorted(ip for row in self.get("/services") for ip in row["servedHere"])


@dataclass
class KubeCluster:
    server: FakeApiServer
    lan: str
    workdir: Path
    subnet: str  # first three octets
    ipam: dict[str, Any] = field(default_factory=lambda: {"mode": "kubernetes"})
    mesh: str = "full"
    agents: dict[str, Agent] = field(default_factory=dict)
    routers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def api(self) -> client.ApiClient:
        return api_client(str(self.server.kubeconfig(self.workdir / "kubeconfig")))

    def core(self) -> Any:
        return apis.core(self.api)

    def _join_lan(self, kind: str, index: int) -> tuple[str, str]:
        """A new namespace with eth0 on the LAN bridge at SUBNET.<index>."""
        ns = self._stack.enter_context(netns(f"{self.lan[:7]}{kind}{index}-"))
        lan_if = f"{self.lan[:8]}{kind}{index}"
        ip("link", "add", lan_if, "netns", self.lan, "type", "veth", "peer", "eth0", "netns", ns)
        ip("-n", self.lan, "link", "set", lan_if, "master", "br0", "up")
        address = f"{self.subnet}.{index}"
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        return ns, address

    def add_node(self, index: int, *, start: bool = True, **node_fields: Any) -> Agent:
        """Node `n<index>` at SUBNET.<index> with pod CIDR 10.244.<index>.0/24."""
        name = f"n{index}"
        ns, address = self._join_lan("n", index)
        self.server.listen(ns)
        agent = Agent(name, ns, address, f"10.244.{index}.0/24", str(self.workdir / f"{name}.sock"))
        self.agents[name] = agent
        obj = node_object(name, address, [agent.pod_cidr], **node_fields)
        core = self.core()
        core.create_node(obj)  # as the kubelet does: the object, then its status
        core.patch_node_status(name, {"status": obj["status"]}, _content_type=MERGE_PATCH)
        if start:
            self.start(agent)
        return agent

    def add_router(self, index: int, asn: int, nodes: list[Agent], routes: list[str]) -> str:
        """A real exabgp at SUBNET.<index> peering with `nodes`, announcing `routes`."""
        ns, address = self._join_lan("r", index)
        static = "\n".join(f"        route {r} next-hop self;" for r in routes)
        conf = "".join(
            f"""neighbor {node.ip} {{
    router-id {address};
    local-address {address};
    local-as {asn};
    peer-as {ASN};
    hold-time 9;
    family {{ ipv4 unicast; }}
    static {{
{static}
    }}
}}
"""
            for node in nodes
        )
        path = self.workdir / f"router{index}.conf"
        path.write_text(conf)
        env = {"exabgp_tcp_bind": address, "exabgp_daemon_user": "root",
               "exabgp_daemon_drop": "false", "exabgp_api_cli": "false"}  # fmt: skip
        argv = [sys.executable, "-m", "exabgp", "server", str(path)]
        self.routers.append(_start(argv, ns, self.workdir / f"router{index}.log", env))
        return address

    def start(self, agent: Agent) -> None:
        kubeconfig = self.server.kubeconfig(self.workdir / "kubeconfig")
        run_dir = self.workdir / agent.name
        run_dir.mkdir(exist_ok=True)
        config = {
            "node": {"name": agent.name, "ip": agent.ip},
            "bgp": {"asn": ASN, "holdTime": 9, "mesh": self.mesh,
                    "gracefulRestart": {"enabled": True, "restartTime": 9}},
            "cluster": {"source": "kubernetes"},
            "ipam": self.ipam,
            "kubernetes": {"kubeconfig": str(kubeconfig), "syncTimeout": 30},
            "status": {"listen": "", "socket": agent.socket},
            "runDir": str(run_dir),
        }  # fmt: skip
        path = self.workdir / f"{agent.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "bgpd.cli", "run", "--config", str(path)]
        agent.proc = _start(argv, agent.ns, self.workdir / f"{agent.name}.log", {})

    def stop(self, agent: Agent) -> None:
        if agent.proc is not None:
            _stop(agent.proc)
            agent.proc = None

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-30:])
            for p in sorted(self.workdir.glob("*.log"))
        )


@contextlib.contextmanager
def kube_cluster(server: FakeApiServer, prefix: str, subnet: str) -> Iterator[KubeCluster]:
    with (
        netns(f"{prefix}l-") as lan,
        tempfile.TemporaryDirectory(prefix="kroute-kube-") as tmp,
    ):
        ip("-n", lan, "link", "add", "br0", "type", "bridge")
        ip("-n", lan, "link", "set", "br0", "up")
        cluster = KubeCluster(server, lan, Path(tmp), subnet)
        try:
            yield cluster
        finally:
            for agent in cluster.agents.values():
                cluster.stop(agent)
            for router in cluster.routers:
                _stop(router)
            cluster._stack.close()
