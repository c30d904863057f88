"""Node and BGPPeer objects -> cluster nodes, members and peers (pure functions).

A Node is a cluster member when it has an IPv4 InternalIP. Its `spec.podCIDRs` are its
pod CIDRs (`ipam.mode: kubernetes`, set by kube-controller-manager's node IPAM). Node
annotations with the `kroute.io/` prefix, as kube-router's `kube-router.io/` ones:
- `kroute.io/asn`: this node's own ASN (it must match the other nodes' for iBGP);
- `kroute.io/route-reflector-cluster-id`: makes the node a route reflector;
- `kroute.io/peers`: a JSON list of extra `bgp.peers` entries for this node only.
BGPPeer objects (`kroute.io/v1alpha1`) hold a `bgp.peers` entry in `spec`, plus an
optional `nodeSelector` (`matchLabels`) choosing the nodes that peer with it.
A bad annotation or object is skipped with a log line naming it; it never stops kroute.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bgpd.cluster.membership import Member
from bgpd.config.model import ClusterNode
from bgpd.config.peers import PeerConfig
from bgpd.kube.api import Obj

log = logging.getLogger(__name__)

ASN = "kroute.io/asn"
RR_CLUSTER_ID = "kroute.io/route-reflector-cluster-id"
PEERS = "kroute.io/peers"


@dataclass(frozen=True)
class KubeNode:
    """What kroute takes from one Node object."""

    name: str
    ip: ipaddress.IPv4Address
    pod_cidrs: tuple[str, ...] = ()
    labels: Mapping[str, str] | None = None
    asn: int | None = None
    route_reflector_cluster_id: ipaddress.IPv4Address | None = None
    peers: tuple[PeerConfig, ...] = ()


def parse_node(obj: Obj) -> tuple[KubeNode | None, list[str]]:
    """The node, or None when it has no IPv4 InternalIP; problems name the annotation."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name"))
    annotations: dict[str, str] = meta.get("annotations") or {}
    problems: list[str] = []
    addresses = (obj.get("status") or {}).get("addresses") or []
    ip = None
    for addr in addresses:
        if addr.get("type") == "InternalIP":
            try:
                found = ipaddress.ip_address(addr.get("address", ""))
            except ValueError:
                continue
            if isinstance(found, ipaddress.IPv4Address):
                ip = found
                break
    if ip is None:
        return None, [f"node {name}: no IPv4 InternalIP in status.addresses; not a member yet"]
    asn = None
    if ASN in annotations:
        text = annotations[ASN]
        if text.isdigit() and 1 <= int(text) <= 4294967295:
            asn = int(text)
        else:
            problems.append(f"node {name}: annotation {ASN}={text!r} is not an ASN 1-4294967295")
    cluster_id = None
    if RR_CLUSTER_ID in annotations:
        try:
            cluster_id = ipaddress.IPv4Address(annotations[RR_CLUSTER_ID])
        except ValueError:
            problems.append(
                f"node {name}: annotation {RR_CLUSTER_ID}={annotations[RR_CLUSTER_ID]!r} "
                "is not an IPv4 cluster ID"
            )
    peers = _annotation_peers(name, annotations.get(PEERS), problems)
    cidrs = tuple(str(c) for c in (obj.get("spec") or {}).get("podCIDRs") or ())
    labels = dict(meta.get("labels") or {})
    return KubeNode(name, ip, cidrs, labels, asn, cluster_id, peers), problems


def _annotation_peers(name: str, text: str | None, problems: list[str]) -> tuple[PeerConfig, ...]:
    if not text:
        return ()
    try:
        docs = json.loads(text)
    except ValueError:
        problems.append(f"node {name}: annotation {PEERS} is not JSON; write a list of peers")
        return ()
    if not isinstance(docs, list):
        problems.append(f"node {name}: annotation {PEERS} must be a JSON list of peers")
        return ()
    peers = []
    for i, doc in enumerate(docs):
        peer = peer_config(doc, f"node {name}: annotation {PEERS}[{i}]", problems)
        if peer is not None:
            peers.append(peer)
    return tuple(peers)


def peer_config(doc: Any, where: str, problems: list[str]) -> PeerConfig | None:
    try:
        return PeerConfig.model_validate(doc)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = ".".join(str(p) for p in err["loc"])
            problems.append(f"{where}.{path}: {err['msg']}")
        return None


def crd_peers(objects: Iterable[Obj], node: KubeNode | None) -> tuple[list[PeerConfig], list[str]]:
    """The BGPPeer objects whose `nodeSelector` selects `node` (none: every node)."""
    peers: list[PeerConfig] = []
    problems: list[str] = []
    labels = (node.labels if node is not None else None) or {}
    for obj in sorted(objects, key=lambda o: str(o.get("metadata", {}).get("name"))):
        name = obj.get("metadata", {}).get("name")
        spec = dict(obj.get("spec") or {})
        selector = spec.pop("nodeSelector", None) or {}
        wanted = selector.get("matchLabels") or {}
        if any(labels.get(k) != v for k, v in wanted.items()):
            continue
        peer = peer_config(spec, f"BGPPeer {name}: spec", problems)
        if peer is not None:
            peers.append(peer)
    return peers, problems


def cluster_nodes(
    nodes: Iterable[KubeNode], with_cidrs: bool
) -> tuple[list[ClusterNode], list[str]]:
    """Cluster nodes by name; a node reusing an earlier node's IP or overlapping its pod
    CIDRs is left out (named in the problems) rather than breaking the others."""
    out: list[ClusterNode] = []
    problems: list[str] = []
    ips: dict[ipaddress.IPv4Address, str] = {}
    owned: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for node in sorted(nodes, key=lambda n: n.name):
        doc: dict[str, Any] = {"name": node.name, "ip": str(node.ip)}
        if with_cidrs:
            doc["podCIDRs"] = list(node.pod_cidrs)
        if node.route_reflector_cluster_id is not None:
            doc["routeReflectorClusterId"] = str(node.route_reflector_cluster_id)
        try:
            cn = ClusterNode.model_validate(doc)
        except ValidationError as exc:
            problems.append(f"node {node.name}: {exc.errors(include_url=False)[0]['msg']}")
            continue
        if cn.ip in ips:
            problems.append(f"node {node.name}: InternalIP {cn.ip} is also node {ips[cn.ip]}'s")
            continue
        clash = next(
            (f"{c} overlaps {o} of node {who}" for c in cn.pod_cidrs for o, who in owned
             if c.version == o.version and c.overlaps(o)),
            None,
        )  # fmt: skip
        if clash:
            problems.append(f"node {node.name}: podCIDR {clash}")
            continue
        ips[cn.ip] = node.name
        owned.extend((c, node.name) for c in cn.pod_cidrs)
        out.append(cn)
    return out, problems


def member(node: KubeNode, default_asn: int) -> Member:
    """The node as `bgpd.cluster.membership` sees members (for `kroute nodes`)."""
    return Member(node.name, str(node.ip), str(node.ip), node.asn or default_asn, node.pod_cidrs)
