"""Import policy: which received routes are accepted, and why the others are not.

Pure functions. Some refusals protect the node whatever the config says: its own pod
CIDRs, another node's pod CIDR (or a more-specific of it) with a next hop other than
that node (full mesh and route reflection both keep the owner as next hop), anything
covering a node address, martians, and loops (our ASN in an eBGP AS path, our router
ID as originator, our cluster ID in the cluster list).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.bgp.events import PathAttributes
from bgpd.bgp.peers import Peer
from bgpd.config.types import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MARTIANS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
    )
)

# Reasons, as `kroute routes` and the metrics name them.
OWN_POD_CIDR = "own pod CIDR"
NODE_ADDRESS = "covers a node address"
MARTIAN = "martian"
DEFAULT_ROUTE = "default route not allowed"
AS_PATH_LOOP = "AS-path loop"
ORIGINATOR_LOOP = "originator is this node"
CLUSTER_LOOP = "cluster-list loop"
NOT_ALLOWED = "not in import allow list"
NEXT_HOP_SELF = "next hop is this node"
OTHER_NODE_POD_CIDR = "another node's pod CIDR not via that node"


@dataclass(frozen=True)
class LocalFacts:
    """What import policy needs to know about this node and its cluster."""

    asn: int
    router_id: str
    cluster_id: str | None
    own_cidrs: tuple[Network, ...]
    node_addresses: tuple[IPAddress, ...]
    own_address: IPAddress
    pod_cidr_owners: tuple[tuple[Network, IPAddress], ...] = ()
    """Each other node's pod CIDRs and its address: those routes must lead to that node."""


def _is_default(prefix: Network) -> bool:
    return prefix.prefixlen == 0


def _inside(prefix: Network, networks: Iterable[Network]) -> bool:
    return any(
        prefix.network_address in net and prefix.prefixlen >= net.prefixlen for net in networks
    )


def import_verdict(
    prefix: Network, attrs: PathAttributes, peer: Peer, local: LocalFacts
) -> str | None:
    """None when the route is accepted, else the reason it is refused."""
    if _inside(prefix, local.own_cidrs):  # ours, or a more-specific hijack of it
        return OWN_POD_CIDR
    if _is_default(prefix):
        if not peer.imports.allow_default_route:
            return DEFAULT_ROUTE
    else:
        if any(addr in prefix for addr in local.node_addresses):
            return NODE_ADDRESS
        if _inside(prefix, MARTIANS):
            return MARTIAN
    if attrs.next_hop == local.own_address:
        return NEXT_HOP_SELF
    if peer.ebgp and local.asn in attrs.as_path:
        return AS_PATH_LOOP
    if attrs.originator_id is not None and attrs.originator_id == local.router_id:
        return ORIGINATOR_LOOP
    if local.cluster_id is not None and local.cluster_id in attrs.cluster_list:
        return CLUSTER_LOOP
    for cidr, owner in local.pod_cidr_owners:  # a hijack of another node's pods
        if _inside(prefix, (cidr,)) and attrs.next_hop != owner:
            return OTHER_NODE_POD_CIDR
    if not _is_default(prefix) and not _inside(prefix, peer.imports.allow):
        return NOT_ALLOWED
    return None
