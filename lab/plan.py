"""The lab's address plan and node configs, as pure functions of (name, index, node count).

Lab K (the lowest index free in the registry) gets underlay 172.31.K.0/24 and pod range
10.(200+K).0.0/16, so labs with different names never overlap. Node I is `NAME-nI` at
172.31.K.I. Pod CIDRs are not planned: every node runs `ipam.mode: cluster-pool` over the
lab's pod range (/24 per node), so its block, and the IP of its one pod `NAME-nI-p1`,
come from the IPAM store. `with_allocations` fills them in once the lab allocated them
(see lab.build); until then `pod_cidr` and `pod_ip` are empty. Interface names do not
depend on the lab name (they are limited to 15 chars).

The store is the file `NAME/ipam.json` shared by every node with the static node list
(`--store file`, the default), or an etcd in namespace `NAME-etcd` at 172.31.K.253 with
etcd membership (`--store etcd`): then no config lists the nodes, they find each other.

With `--upstream KIND` the lab also gets `NAME-up`, a third-party router (AS 65000) at
172.31.K.254 on the LAN peering eBGP with every node, and `NAME-ext`, an external host
on 172.30.K.0/24 behind it (upstream .1, host .2, its default route via the upstream);
the upstream originates that subnet. With `--reflectors R` nodes 1..R are iBGP route
reflectors sharing node 1's IP as cluster ID, and no node keeps a full mesh.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from common.errors import KrouteError
from lab.subnets import BRIDGES, OVERLAYS, SUBNET_COUNTS, node_host

LAB_ROOT = Path("/run/kroute/lab")
DEFAULT_NAME = "kr"
DEFAULT_NODES = 3
MAX_INDEX = 55  # pod range 10.(200+K).0.0/16 must stay within 10.255.0.0/16
MAX_NODES = 32
ASN = 64512
STATUS_PORT = 9479
BRIDGE = BRIDGES[0]
NODE_IF = "eth0"  # a node's leg on the LAN; the pod's side of its veth is also eth0
UPSTREAM_ASN = 65000
UPSTREAM_KINDS = ("bird", "frr", "gobgp")
UPSTREAM_HOST = 254  # the upstream's last octet on the underlay
ETCD_HOST = 253  # the lab etcd's last octet on the underlay
ETCD_PORT = 2379
LEASE_TTL = 3  # seconds: short, so a node that leaves is gone quickly
STORES = ("file", "etcd")
DATAPATHS = ("bpf", "legacy")
BPF_PIN_ROOT = "/sys/fs/bpf/kroute-lab"  # each node pins its maps in its own directory
MASK_V4 = 24
EXT_IF = "ext0"  # the upstream's leg towards the external host
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,10}[a-z0-9]$|^[a-z]$")


class LabError(KrouteError):
    """The lab could not be built, inspected, changed or torn down."""


@dataclass(frozen=True)
class NodePlan:
    """One lab node: its namespace, underlay address, pod and files."""

    name: str
    index: int
    ip: str
    pod_ns: str
    lan_if: str  # the node's veth peer on the LAN bridge, inside the LAN namespace
    run_dir: str
    pod_cidr: str = ""  # from the IPAM store: empty until allocated
    pod_ip: str = ""

    @property
    def container_id(self) -> str:
        """The pod's key in the IPAM store (with interface eth0), like a CNI container ID."""
        return f"lab-{self.pod_ns}"

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
    store: str = "file"
    datapath: str = "bpf"
    subnets: int = 1  # 2: two /25 LANs joined by NAME-rt (see lab.subnets)
    overlay: str = "never"  # routing.overlay; anything but never means routing.mode vxlan

    @property
    def router_ns(self) -> str:
        return f"{self.name}-rt"

    @property
    def state_path(self) -> str:
        return f"{self.state_dir}/lab.json"

    @property
    def ipam_file(self) -> str:
        """The file store every node shares (with `--store file`)."""
        return f"{self.state_dir}/ipam.json"

    @property
    def etcd_ns(self) -> str:
        return f"{self.name}-etcd"

    @property
    def etcd_ip(self) -> str:
        return f"172.31.{self.index}.{ETCD_HOST}"

    @property
    def etcd_url(self) -> str:
        return f"http://{self.etcd_ip}:{ETCD_PORT}"

    @property
    def etcd_dir(self) -> str:
        return f"{self.state_dir}/etcd"

    def namespaces(self) -> list[str]:
        """Every namespace of the lab, pods first so teardown goes outside-in."""
        pods = [n.pod_ns for n in self.nodes]
        up = self.upstream
        outer = [up.ext_ns, up.netns] if up else []
        if self.store == "etcd":
            outer.append(self.etcd_ns)
        if self.subnets == 2:
            outer.append(self.router_ns)
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
    store: str = "file",
    datapath: str = "bpf",
    subnets: int = 1,
    overlay: str = "never",
) -> LabPlan:
    """The complete address plan of lab `name` with `nodes` nodes at `index`."""
    check_name(name)
    _check_subnets(subnets, overlay, upstream)
    if store not in STORES:
        raise LabError(f"--store {store!r} is unknown; use one of {', '.join(STORES)}")
    if datapath not in DATAPATHS:
        raise LabError(f"--datapath {datapath!r} is unknown; use one of {', '.join(DATAPATHS)}")
    if store == "etcd" and reflectors:
        raise LabError(
            "--reflectors needs --store file: etcd membership records carry no "
            "route-reflector cluster ID; drop --reflectors or --store etcd"
        )
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
    return LabPlan(
        name=name,
        index=index,
        subnet=f"172.31.{index}.0/24",
        pod_range=f"10.{200 + index}.0.0/16",
        lan_ns=f"{name}-lan",
        state_dir=str(state_dir),
        nodes=tuple(
            _plan_node(name, index, i, str(state_dir), subnets) for i in range(1, nodes + 1)
        ),
        upstream=_plan_upstream(name, index, upstream, state_dir) if upstream else None,
        reflectors=reflectors,
        store=store,
        datapath=datapath,
        subnets=subnets,
        overlay=overlay,
    )


def _check_subnets(subnets: int, overlay: str, upstream: str | None) -> None:
    if subnets not in SUBNET_COUNTS:
        raise LabError(f"--subnets {subnets} is out of range; use 1 or 2")
    if overlay not in OVERLAYS:
        raise LabError(f"--overlay {overlay!r} is unknown; use one of {', '.join(OVERLAYS)}")
    if subnets == 2 and overlay == "never":
        raise LabError(
            "--subnets 2 needs --overlay crossSubnet or always: the router between the "
            "subnets knows no pod routes, so only the VXLAN overlay carries pods across"
        )
    if subnets == 2 and upstream:
        raise LabError("--upstream needs --subnets 1: the upstream peers on a single LAN")


def _plan_node(name: str, index: int, i: int, state_dir: str, subnets: int) -> NodePlan:
    return NodePlan(
        name=f"{name}-n{i}",
        index=i,
        ip=f"172.31.{index}.{node_host(i, subnets)}",
        pod_ns=f"{name}-n{i}-p1",
        lan_if=f"n{i}",
        run_dir=f"{state_dir}/{name}-n{i}",
    )


def plan_added_node(plan: LabPlan) -> LabPlan:
    """`plan` with one more node, numbered after the highest (numbers are never reused
    while a lab runs, so a removed node's namespaces and files never meet a new one's)."""
    if plan.upstream is not None:
        raise LabError(
            f"lab {plan.name} has an upstream router, which add-node does not reconfigure; "
            "start a lab with more --nodes instead"
        )
    if len(plan.nodes) >= MAX_NODES:
        raise LabError(f"lab {plan.name} already has {MAX_NODES} nodes, the most a lab holds")
    i = max((n.index for n in plan.nodes), default=0) + 1
    if i >= ETCD_HOST:
        raise LabError(f"lab {plan.name}: node numbers are used up; rebuild the lab")
    node = _plan_node(plan.name, plan.index, i, plan.state_dir, plan.subnets)
    return replace(plan, nodes=(*plan.nodes, node))


def plan_removed_node(plan: LabPlan, name: str) -> LabPlan:
    """`plan` without node `name` (the last node and reflectors cannot go)."""
    node = plan.node(name)
    if len(plan.nodes) == 1:
        raise LabError(f"{node.name} is the last node of lab {plan.name}; use `kroute lab down`")
    if plan.upstream is not None:
        raise LabError(
            f"lab {plan.name} has an upstream router, which remove-node does not reconfigure; "
            f"stop the daemon only with `kroute lab exec {node.name} -- ...` or rebuild the lab"
        )
    if plan.is_reflector(node):
        raise LabError(
            f"{node.name} is a route reflector; removing it would change the cluster ID of "
            "the others: remove a client, or rebuild the lab"
        )
    return replace(plan, nodes=tuple(n for n in plan.nodes if n is not node))


def with_allocations(plan: LabPlan, allocated: Mapping[str, tuple[str, str]]) -> LabPlan:
    """`plan` with the (pod CIDR, pod IP) the IPAM store gave each named node."""
    unknown = sorted(set(allocated) - {n.name for n in plan.nodes})
    if unknown:
        raise LabError(f"lab {plan.name} has no node {unknown[0]!r} to take an allocation")
    nodes = tuple(
        replace(n, pod_cidr=allocated[n.name][0], pod_ip=allocated[n.name][1])
        if n.name in allocated
        else n
        for n in plan.nodes
    )
    return replace(plan, nodes=nodes)


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
