"""The lab's address plan and node configs, as pure functions of (name, index, node count).

Lab K (the lowest index free in the registry) gets underlay 172.31.K.0/24 and pod range
10.(200+K).0.0/16, so labs with different names never overlap. Node I is `NAME-nI` at
172.31.K.I with pod CIDR 10.(200+K).I.0/24; its one pod `NAME-nI-p1` holds the .10 of
that /24. Interface names do not depend on the lab name (they are limited to 15 chars).

With `--upstream KIND` the lab also gets `NAME-up`, a third-party router (AS 65000) at
172.31.K.254 on the LAN peering eBGP with every node, and `NAME-ext`, an external host
on 172.30.K.0/24 behind it (upstream .1, host .2, its default route via the upstream);
the upstream originates that subnet. With `--reflectors R` nodes 1..R are iBGP route
reflectors sharing node 1's IP as cluster ID, and no node keeps a full mesh.
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
UPSTREAM_ASN = 65000
UPSTREAM_KINDS = ("bird", "frr", "gobgp")
UPSTREAM_HOST = 254  # the upstream's last octet on the underlay
EXT_IF = "ext0"  # the upstream's leg towards the external host
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
class UpstreamPlan:
    """The upstream router and the external host behind it."""

    kind: str
    netns: str
    ip: str
    lan_if: str
    ext_ns: str
    ext_subnet: str
    ext_gateway: str  # the upstream's address on the external link
    ext_ip: str
    workdir: str


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
    upstream: UpstreamPlan | None = None
    reflectors: int = 0

    @property
    def state_path(self) -> str:
        return f"{self.state_dir}/lab.json"

    def namespaces(self) -> list[str]:
        """Every namespace of the lab, pods first so teardown goes outside-in."""
        pods = [n.pod_ns for n in self.nodes]
        up = self.upstream
        outer = [up.ext_ns, up.netns] if up else []
        return [*pods, *(n.netns for n in self.nodes), *outer, self.lan_ns]

    @property
    def cluster_id(self) -> str | None:
        """The route reflectors' shared cluster ID: the first reflector's IP."""
        return self.nodes[0].ip if self.reflectors else None

    def is_reflector(self, node: NodePlan) -> bool:
        return node.index <= self.reflectors

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


def plan_lab(
    name: str,
    index: int,
    nodes: int,
    root: Path = LAB_ROOT,
    *,
    upstream: str | None = None,
    reflectors: int = 0,
) -> LabPlan:
    """The complete address plan of lab `name` with `nodes` nodes at `index`."""
    check_name(name)
    if upstream is not None and upstream not in UPSTREAM_KINDS:
        raise LabError(
            f"--upstream {upstream!r} is unknown; use one of {', '.join(UPSTREAM_KINDS)}"
        )
    if not 0 <= reflectors <= nodes:
        raise LabError(f"--reflectors {reflectors} is out of range; the lab has {nodes} nodes")
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
        upstream=_plan_upstream(name, index, upstream, state_dir) if upstream else None,
        reflectors=reflectors,
    )


def _plan_upstream(name: str, index: int, kind: str, state_dir: Path) -> UpstreamPlan:
    return UpstreamPlan(
        kind=kind,
        netns=f"{name}-up",
        ip=f"172.31.{index}.{UPSTREAM_HOST}",
        lan_if="up0",
        ext_ns=f"{name}-ext",
        ext_subnet=f"172.30.{index}.0/24",
        ext_gateway=f"172.30.{index}.1",
        ext_ip=f"172.30.{index}.2",
        workdir=str(state_dir / f"{name}-up"),
    )


def render_config(plan: LabPlan, node: NodePlan) -> str:
    """The kroute config of one node: iBGP over the LAN (full mesh, or through the route
    reflectors), plus an eBGP peer accepting only the external subnet with an upstream."""
    prefix = ipaddress.ip_network(plan.subnet).prefixlen
    bgp: dict[str, Any] = {
        "asn": ASN,
        "holdTime": 9,
        "gracefulRestart": {"enabled": True, "restartTime": 9},
    }
    if plan.reflectors:
        bgp["mesh"] = "none"
    if plan.upstream:
        up = plan.upstream
        bgp["peers"] = [
            {
                "address": up.ip,
                "asn": UPSTREAM_ASN,
                "description": "upstream",
                "import": {"allow": [up.ext_subnet]},
            }
        ]
    data: dict[str, Any] = {
        "node": {"name": node.name, "ip": node.ip},
        "bgp": bgp,
        "cluster": {"nodes": [_cluster_node(plan, n) for n in plan.nodes]},
        "status": {"listen": f"{node.ip}:{STATUS_PORT}", "socket": node.socket_path},
        "runDir": node.run_dir,
    }
    header = f"# kroute lab {plan.name}: node {node.name} on {node.ip}/{prefix}\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def _cluster_node(plan: LabPlan, node: NodePlan) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": node.name, "ip": node.ip, "podCIDRs": [node.pod_cidr]}
    if plan.is_reflector(node):
        entry["routeReflectorClusterId"] = plan.cluster_id
    return entry


def plan_to_dict(plan: LabPlan) -> dict[str, Any]:
    """The JSON form stored in lab.json (camelCase, like the daemon's config)."""
    return {
        "name": plan.name,
        "index": plan.index,
        "subnet": plan.subnet,
        "podRange": plan.pod_range,
        "lanNamespace": plan.lan_ns,
        "stateDir": plan.state_dir,
        "reflectors": plan.reflectors,
        "upstream": _upstream_to_dict(plan.upstream) if plan.upstream else None,
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
            upstream=_upstream_from_dict(data["upstream"]) if data.get("upstream") else None,
            reflectors=int(data.get("reflectors", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LabError(f"lab state is missing or has a bad field ({exc!r})") from None


def _upstream_to_dict(up: UpstreamPlan) -> dict[str, Any]:
    return {
        "kind": up.kind,
        "namespace": up.netns,
        "ip": up.ip,
        "asn": UPSTREAM_ASN,
        "lanInterface": up.lan_if,
        "extNamespace": up.ext_ns,
        "extSubnet": up.ext_subnet,
        "extGateway": up.ext_gateway,
        "extIP": up.ext_ip,
        "workdir": up.workdir,
    }


def _upstream_from_dict(data: dict[str, Any]) -> UpstreamPlan:
    return UpstreamPlan(
        kind=data["kind"],
        netns=data["namespace"],
        ip=data["ip"],
        lan_if=data["lanInterface"],
        ext_ns=data["extNamespace"],
        ext_subnet=data["extSubnet"],
        ext_gateway=data["extGateway"],
        ext_ip=data["extIP"],
        workdir=data["workdir"],
    )
