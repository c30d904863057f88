"""The configuration reference (docs/configuration.md), generated from the config model.

Keys, types, bounds and defaults come from the pydantic models in bgpd.config.model, so
the page cannot drift from what `check-config` accepts. What a key means comes from
the field's `description=` when it has one, else from MEANINGS below; a key with
neither fails `tests/unit/test_config_reference.py`, and so does a checked-in page
that differs from `kroute config-reference` (regenerate it with
`kroute config-reference --write docs/configuration.md`).
"""

from __future__ import annotations

import ipaddress
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

from annotated_types import Ge, Le, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bgpd.config.model import Config
from bgpd.config.types import CIDR, Community, LargeCommunity

MEANINGS = {
    "node": "this node",
    "node.name": "this node; must be one of `cluster.nodes[].name` (default: `$NODE_NAME`, "
    "else the short hostname)",
    "node.ip": "BGP local address and next hop (default: this node's `cluster.nodes` entry, "
    "else the host's outgoing IPv4 address)",
    "node.routerId": "BGP router ID (default: `node.ip`)",
    "bgp": "BGP: this cluster's AS, timers, topology and external peers",
    "bgp.asn": "the cluster's AS number (iBGP: every node the same)",
    "bgp.holdTime": "seconds; 0 (no keepalives) or 3-65535",
    "bgp.listenPort": "port kroute listens on and connects to",
    "bgp.gracefulRestart": "graceful restart, both ways",
    "bgp.gracefulRestart.enabled": "advertise graceful restart; keep peers' routes through "
    "their restarts",
    "bgp.gracefulRestart.restartTime": "seconds peers wait for us; also how long routes "
    "adopted from the kernel at start are kept",
    "bgp.gracefulRestart.stalePathTime": "seconds a peer back from its restart has to send "
    "End-of-RIB; then the routes it did not send again go (RFC 4724 4.2)",
    "bgp.mesh": (
        "`full`: peer with every cluster node; `none`: only reflectors and `bgp.peers` "
        "(restart-only: see [reload](reload.md))"
    ),
    "bgp.advertiseClusterIPs": "announce `cluster.serviceCIDRs` from this node "
    "(kube-router's `--advertise-cluster-ip`)",
    "bgp.peers": "routers outside the node mesh: upstreams (eBGP) and external reflectors",
    "bgp.peers[].address": "the peer's IP, of node.ip's family (IPv4: sessions run from it)",
    "bgp.peers[].asn": "its AS; different from `bgp.asn` means eBGP",
    "bgp.peers[].port": "the port to connect to",
    "bgp.peers[].description": (
        "shown as the peer's name (default: its address); one line, at most 128 characters"
    ),
    "bgp.peers[].passwordFile": (
        "file holding the TCP MD5 password, one line of at most 80 bytes (never shown anywhere)"
    ),
    "bgp.peers[].ebgpMultihop": "TTL for eBGP peers that are not directly connected",
    "bgp.peers[].passive": "wait for the peer to connect",
    "bgp.peers[].holdTime": "per-peer hold time (default: `bgp.holdTime`)",
    "bgp.peers[].gracefulRestart": "per-peer graceful restart "
    "(default: `bgp.gracefulRestart.enabled`)",
    "bgp.peers[].routeReflectorClient": "(iBGP, on a reflector) treat this peer as a client",
    "bgp.peers[].import": "what is accepted from the peer",
    "bgp.peers[].import.allow": "accept prefixes inside these (default: iBGP the cluster's "
    "pod CIDRs, eBGP nothing)",
    "bgp.peers[].import.allowDefaultRoute": "accept 0.0.0.0/0 (::/0) from this peer",
    "bgp.peers[].import.maxPrefix": "more accepted prefixes than this closes the session "
    "(Cease 2); 0: no limit",
    "bgp.peers[].export": "what the peer gets, and with which attributes",
    "bgp.peers[].export.kinds": "which of our prefixes this peer gets",
    "bgp.peers[].export.communities": "`A:B` standard communities to attach",
    "bgp.peers[].export.largeCommunities": "`A:B:C` large communities to attach",
    "bgp.peers[].export.localPreference": "(iBGP) local preference to send",
    "bgp.peers[].export.med": "MED to send",
    "bgp.peers[].export.asPathPrepend": "(eBGP) extra copies of our ASN",
    "cluster": "the cluster's nodes and service ranges",
    "cluster.source": "`static` (the `cluster.nodes` list), `etcd` (membership; needs "
    "`ipam.mode: cluster-pool`) or `kubernetes` (the API server, see `kubernetes`)",
    "cluster.leaseTTL": "seconds a node's etcd registration outlives its last keepalive",
    "cluster.nodes": "the cluster's nodes (with `cluster.source: static`)",
    "cluster.nodes[].name": "the node's name",
    "cluster.nodes[].ip": "its IPv4 address: BGP endpoint and next hop",
    "cluster.nodes[].podCIDRs": "its pod CIDRs (no host bits, no overlaps between nodes; "
    "empty with `ipam.mode: cluster-pool`)",
    "cluster.nodes[].routeReflectorClusterId": "makes that node a route reflector with this "
    "cluster ID",
    "cluster.serviceCIDRs": "service cluster IP ranges; accepted from iBGP peers, announced "
    "where `bgp.advertiseClusterIPs` is on",
    "status": "the status API (`kroute status`, /metrics, health)",
    "status.listen": 'TCP `HOST:PORT` of the read-only status API; `""` turns it off',
    "status.socket": "unix socket (mode 0600) of the status API and the CLI; the only way "
    "to change the node",
    "runDir": (
        "exabgp's config, log and bridge socket; drain state; caches kept across restarts "
        "(an absolute path of letters, digits and ._/+@:=-)"
    ),
    "ipam": "pod CIDR allocation",
    "ipam.mode": "`static` (`cluster.nodes[].podCIDRs`), `cluster-pool` (node blocks from a "
    "store) or `kubernetes` (each Node's `spec.podCIDRs`; needs `cluster.source: kubernetes`)",
    "ipam.clusterPool": "required with `ipam.mode: cluster-pool`",
    "ipam.clusterPool.cidrs": "IPv4/IPv6 CIDRs node blocks are taken from",
    "ipam.clusterPool.maskSizeV4": "IPv4 block size per node",
    "ipam.clusterPool.maskSizeV6": "IPv6 block size per node",
    "ipam.store": "`file`, `etcd` or `kubernetes` (the ConfigMap `kroute-system/kroute-ipam`)",
    "ipam.file": "the file store (its lock is `FILE.lock`)",
    "etcd": "etcd access; required when `cluster.source` or `ipam.store` is etcd",
    "etcd.endpoints": "etcd client URLs",
    "etcd.caFile": "CA bundle for TLS",
    "etcd.certFile": "client certificate (with `keyFile`)",
    "etcd.keyFile": "client key (with `certFile`)",
    "etcd.username": "etcd user (with `passwordFile`)",
    "etcd.passwordFile": "file holding the etcd password (never shown anywhere)",
    "loadBalancer": "LoadBalancer IPs on bare metal",
    "loadBalancer.pools": "pools in the shape of CiliumLoadBalancerIPPool: `name`, `blocks`, "
    "`serviceSelector`, `disabled`, `allowFirstLastIPs` ([LoadBalancer IPs](loadbalancer.md))",
    "loadBalancer.services": "services: `namespace`, `name`, `labels`, `ports`, `ipFamilies`, "
    "`trafficPolicy`, `nodes`, `annotations` ([LoadBalancer IPs](loadbalancer.md))",
    "kubernetes": "the API server (`cluster.source: kubernetes`)",
    "kubernetes.kubeconfig": "kubeconfig file (default: the pod's service account, in-cluster)",
    "kubernetes.defaultLoadBalancerClass": "serve LoadBalancer services that name no "
    "`loadBalancerClass`",
    "kubernetes.syncTimeout": "seconds to wait for the first list of nodes and services",
    "routing": "how pod traffic crosses nodes ([the datapath](datapath.md))",
    "routing.mode": "`native` (routes as BGP learned them) or `vxlan` (through kroute.vxlan "
    "as `routing.overlay` says)",
    "routing.overlay": "`never`, `crossSubnet`, `always` (default `always` in vxlan); only "
    "with `mode: vxlan`",
    "routing.nativeRoutingCIDR": "IPv4 network reached without NAT; must contain the pod "
    "CIDRs; required for masquerade in native mode",
    "routing.vxlan": "VXLAN settings; only with `mode: vxlan`",
    "routing.vxlan.vni": "VXLAN network identifier",
    "routing.vxlan.port": "VXLAN UDP port",
    "datapath": "the eBPF datapath",
    "datapath.bpf": "kroute's tc programs",
    "datapath.bpf.enabled": "kroute's tc programs forward pod traffic; off: the kernel does, "
    "with `ip_forward=1`",
    "datapath.bpf.pinDir": "where the maps are pinned (bpffs; one directory per node sharing "
    "a kernel)",
    "datapath.masquerade": "source NAT of pod traffic leaving the cluster (BPF, or nftables "
    "when the kernel forwards)",
    "datapath.masquerade.enabled": "masquerade pod traffic",
    "datapath.masquerade.interfaces": "interfaces to masquerade on (default: the underlay)",
    "datapath.masquerade.portRange": "source ports NAT may use",
    "datapath.masquerade.maxEntries": "size of the NAT table",
    "datapath.masquerade.timeouts": "seconds an idle NAT entry lives, per protocol",
    "datapath.masquerade.timeouts.tcp": "TCP",
    "datapath.masquerade.timeouts.udp": "UDP",
    "datapath.masquerade.timeouts.icmp": "ICMP",
    "log": "log lines",
    "log.format": "`text` (key=value) or `json` (one object per line); `--log-format` overrides it",
}

NAMED_TYPES: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    str: "string",
    ipaddress.IPv4Address: "IPv4 address",
    ipaddress.IPv6Address: "IPv6 address",
    CIDR: "CIDR",
    Community: "community `A:B`",
    LargeCommunity: "large community `A:B:C`",
    Any: "mapping",
}


def _type(annotation: Any) -> str:
    if annotation in NAMED_TYPES:
        return NAMED_TYPES[annotation]
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is tuple:
        return f"list of {_type(args[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section" if not annotation.model_fields else "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldInfo) -> str:
    low = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in info.metadata if isinstance(m, Le)), None)
    at_least = next((m.min_length for m in info.metadata if isinstance(m, MinLen)), None)
    if low is not None and high is not None:
        return f"{low}-{high}"
    if low is not None:
        return f">= {low}"
    if at_least:
        return f"at least {at_least}"
    return ""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if value is PydanticUndefined or value is None:
        return "none"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, tuple):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f'`"{value}"`' if value == "" else f"`{value}`"


def _model(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def rows(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, ...]]:
    """(key, type, bounds, default, meaning) for every key, depth first."""
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        annotation = info.annotation
        listed = typing.get_origin(annotation) is tuple
        nested = _model(typing.get_args(annotation)[0] if listed else annotation)
        meaning = info.description or MEANINGS.get(key, "")
        shown = f"{key}[]" if listed and nested else key
        kind = f"list of {'mapping' if nested else '?'}" if listed and nested else _type(annotation)
        yield shown, kind, _bounds(info), _default(info), meaning
        if nested is not None:
            yield from rows(nested, f"{key}[]." if listed else f"{key}.")


def reference() -> str:
    """docs/configuration.md."""
    lines = [
        "# kroute configuration reference",
        "",
        "<!-- generated by `kroute config-reference --write docs/configuration.md` from the",
        "     config model (bgpd/config/model.py); edit the model or bgpd/config/reference.py -->",
        "",
        "YAML with camelCase keys; unknown keys are errors. `kroute check-config FILE`",
        "validates a file (every error, with its key); `kroute run` and a reload refuse an",
        "invalid file the same way. A commented example is `config/kroute.yaml`.",
        "",
        "| key | type | range | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, kind, bounds, default, meaning in rows():
        lines.append(f"| `{key}` | {kind} | {bounds} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def undocumented() -> list[str]:
    """Keys with no meaning: neither a field description nor an entry in MEANINGS."""
    return [key for key, *_, meaning in rows() if not meaning]
