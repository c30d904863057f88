"""The lab's address plan and node configs, as pure functions of (name, index, node count).

Lab K (the lowest index free in the registry) gets underlay 172.31.K.0/24 and pod range
10.(200+K).0.0/16, so labs with different names never overlap. Node I is `NAME-nI` at
172.31.K.I with pod CIDR 10.(200+K).I.0/24; its one pod `NAME-nI-p1` holds the .10 of
that /24. Interface names do not depend on the lab name (they are limited to 15 chars).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bgpd.errors import KrouteError

LAB_ROOT = Path("/run/kroute/lab")
DEFAULT_NAME = "kr"
DEFAULT_NODES = 3
MAX_INDEX = 55  # pod range 10.(200+K).0.0/16 must stay within 10.255.0.0/16
MAX_NODES = 32
ASN = 64512
STATUS_PORT = 9479
BRIDGE = "br0"
NODE_IF = "eth0"  # a node's leg on the LAN; the pod's side of its veth is also eth0
POD_IF = "p1"  # the node's side of its pod's veth
GATEWAY = "169.254.1.1"  # the pods' default gateway, answered by proxy ARP (Calico style)
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,10}[a-z0-9]$|^[a-z]$")


class LabError(KrouteError):
    """The lab could not be built, inspected, changed or torn down."""


@dataclass(frozen=True)
class NodePlan:
    """One lab node: its namespace, underlay address, pod and files."""

    name: str
    index: int
    ip: str
    pod_cidr: str
    pod_ns: str
    pod_ip: str
    lan_if: str  # the node's veth peer on the LAN bridge, inside the LAN namespace
    run_dir: str

    @property
    def netns(self) -> str:
        return self.name

    @property
    def config_path(self) -> str:
        return f"{self.run_dir}/kroute.yaml"

    @property
    def log_path(self) -> str:
        return f"{self.run_dir}/kroute.log"

    @property
    def socket_path(self) -> str:
        return f"{self.run_dir}/kroute.sock"


@dataclass(frozen=True)
class LabPlan:
    """Everything `lab up` builds, derived from the name, the index and the node count."""

    name: str
    index: int
    subnet: str
    pod_range: str
    lan_ns: str
    state_dir: str
    nodes: tuple[NodePlan, ...]

    @property
    def state_path(self) -> str:
        return f"{self.state_dir}/lab.json"

    def namespaces(self) -> list[str]:
        """Every namespace of the lab, pods first so teardown goes outside-in."""
        pods = [n.pod_ns for n in self.nodes]
        return [*pods, *(n.netns for n in self.nodes), self.lan_ns]

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if name in (node.name, f"n{node.index}"):
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise LabError(f"lab {self.name!r} has no node {name!r}; its nodes are {known}")


def check_name(name: str) -> str:
    """Lab names become namespace and file names: short, lowercase, no surprises."""
    if not _NAME_RE.match(name):
        raise LabError(
            f"lab name {name!r} is invalid; use 1-12 characters a-z, 0-9 and '-', "
            "starting with a letter and not ending with '-'"
        )
    return name


def lowest_free_index(used: set[int]) -> int:
    """The first lab index no existing lab holds."""
    for index in range(MAX_INDEX + 1):
        if index not in used:
            return index
    raise LabError(
        f"all {MAX_INDEX + 1} lab indexes are in use; "
        "remove a lab with `kroute lab down --name NAME`"
    )


def plan_lab(name: str, index: int, nodes: int, root: Path = LAB_ROOT) -> LabPlan:
    """The complete address plan of lab `name` with `nodes` nodes at `index`."""
    check_name(name)
    if not 0 <= index <= MAX_INDEX:
        raise LabError(f"lab index {index} is out of range 0-{MAX_INDEX}")
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes {nodes} is out of range; a lab has 1-{MAX_NODES} nodes")
    state_dir = root / name
    octet = 200 + index
    node_plans = tuple(
        NodePlan(
            name=f"{name}-n{i}",
            index=i,
            ip=f"172.31.{index}.{i}",
            pod_cidr=f"10.{octet}.{i}.0/24",
            pod_ns=f"{name}-n{i}-p1",
            pod_ip=f"10.{octet}.{i}.10",
            lan_if=f"n{i}",
            run_dir=str(state_dir / f"{name}-n{i}"),
        )
        for i in range(1, nodes + 1)
    )
    return LabPlan(
        name=name,
        index=index,
        subnet=f"172.31.{index}.0/24",
        pod_range=f"10.{octet}.0.0/16",
        lan_ns=f"{name}-lan",
        state_dir=str(state_dir),
        nodes=node_plans,
    )


def render_config(plan: LabPlan, node: NodePlan) -> str:
    """The kroute config of one node: iBGP full mesh over the LAN, short timers."""
    prefix = ipaddress.ip_network(plan.subnet).prefixlen
    data: dict[str, Any] = {
        "node": {"name": node.name, "ip": node.ip},
        "bgp": {
            "asn": ASN,
            "holdTime": 9,
            "gracefulRestart": {"enabled": True, "restartTime": 9},
        },
        "cluster": {
            "nodes": [{"name": n.name, "ip": n.ip, "podCIDRs": [n.pod_cidr]} for n in plan.nodes],
        },
        "status": {"listen": f"{node.ip}:{STATUS_PORT}", "socket": node.socket_path},
        "runDir": node.run_dir,
    }
    header = f"# kroute lab {plan.name}: node {node.name} on {node.ip}/{prefix}\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def plan_to_dict(plan: LabPlan) -> dict[str, Any]:
    """The JSON form stored in lab.json (camelCase, like the daemon's config)."""
    return {
        "name": plan.name,
        "index": plan.index,
        "subnet": plan.subnet,
        "podRange": plan.pod_range,
        "lanNamespace": plan.lan_ns,
        "stateDir": plan.state_dir,
        "nodes": [
            {
                "name": n.name,
                "index": n.index,
                "namespace": n.netns,
                "ip": n.ip,
                "podCIDR": n.pod_cidr,
                "podNamespace": n.pod_ns,
                "podIP": n.pod_ip,
                "lanInterface": n.lan_if,
                "runDir": n.run_dir,
                "config": n.config_path,
                "log": n.log_path,
                "socket": n.socket_path,
            }
            for n in plan.nodes
        ],
    }


def plan_from_dict(data: dict[str, Any]) -> LabPlan:
    """Read back what `plan_to_dict` wrote; names and addresses are taken as stored."""
    try:
        nodes = tuple(
            NodePlan(
                name=n["name"],
                index=int(n["index"]),
                ip=n["ip"],
                pod_cidr=n["podCIDR"],
                pod_ns=n["podNamespace"],
                pod_ip=n["podIP"],
                lan_if=n["lanInterface"],
                run_dir=n["runDir"],
            )
            for n in data["nodes"]
        )
        return LabPlan(
            name=data["name"],
            index=int(data["index"]),
            subnet=data["subnet"],
            pod_range=data["podRange"],
            lan_ns=data["lanNamespace"],
            state_dir=data["stateDir"],
            nodes=nodes,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LabError(f"lab state is missing or has a bad field ({exc!r})") from None
