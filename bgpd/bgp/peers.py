"""Who this node peers with, and how: the topology as a pure function of the config.

Cluster nodes give the iBGP sessions (full mesh, or reflectors and their clients with
`bgp.mesh: none`); `bgp.peers` adds upstream routers and external reflectors. Each
resolved `Peer` carries the policy that applies to it, defaults filled in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.config.model import Config
from bgpd.config.peers import ALL_KINDS, PrefixKind
from bgpd.config.types import Network
from lbipam import Pool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MESH = "node-to-node mesh"
REFLECTOR = "route reflector"
RR_CLIENT = "rr client"
EXTERNAL = "external"
IBGP_PEER = "ibgp peer"


@dataclass(frozen=True)
class ImportRules:
    """Import policy with defaults resolved: `allow` is never None here."""

    allow: tuple[Network, ...]
    allow_default_route: bool
    max_prefix: int


@dataclass(frozen=True)
class ExportRules:
    kinds: frozenset[PrefixKind]
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    local_preference: int | None = None
    med: int | None = None
    as_path_prepend: int = 0


@dataclass(frozen=True)
class Peer:
    """One BGP session as the daemon and the speaker see it."""

    address: IPAddress
    asn: int
    name: str
    type: str
    ebgp: bool
    rr_client: bool
    hold_time: int
    graceful_restart: bool
    port: int = 179
    password_file: str | None = None
    multihop: int | None = None
    passive: bool = False
    imports: ImportRules = ImportRules((), False, 0)
    exports: ExportRules = ExportRules(frozenset(ALL_KINDS))


def cluster_prefixes(config: Config, lb_pools: Iterable[Pool] | None = None) -> tuple[Network, ...]:
    """What nodes announce to each other: their pod CIDRs, the service CIDRs and LB IPs
    from `lb_pools` (the pools in effect, store-applied ones too; the config's if None)."""
    pods = tuple(cidr for node in config.cluster.nodes for cidr in node.pod_cidrs)
    pool = config.ipam.cluster_pool.cidrs if config.ipam.cluster_pool else ()
    if lb_pools is None:
        from bgpd.config.stores import parse_lb_pools

        lb_pools = parse_lb_pools(list(config.load_balancer.pools))
    return pods + pool + config.cluster.service_cidrs + load_balancer_ranges(lb_pools)


def load_balancer_ranges(pools: Iterable[Pool]) -> tuple[Network, ...]:
    """Every LoadBalancer pool block as CIDRs."""
    nets: list[Network] = []
    for pool in pools:
        for block in pool.blocks:
            if block.cidr is not None:
                nets.append(block.cidr)
            else:
                nets.extend(ipaddress.summarize_address_range(block.first, block.last))
    return tuple(nets)


def own_cluster_id(config: Config) -> ipaddress.IPv4Address | None:
    """Our route-reflector cluster ID, when this node is a reflector."""
    me = config.self_node()
    return me.route_reflector_cluster_id if me else None


def resolve_peers(config: Config, lb_pools: Iterable[Pool] | None = None) -> tuple[Peer, ...]:
    """Every session this node should have, in config order. `lb_pools`: see
    `cluster_prefixes`."""
    bgp = config.bgp
    gr = bgp.graceful_restart.enabled
    ibgp_imports = ImportRules(cluster_prefixes(config, lb_pools), False, 0)
    cluster_exports = ExportRules(frozenset(ALL_KINDS))
    i_reflect = own_cluster_id(config) is not None
    peers: list[Peer] = []
    for node in config.peers():
        node_reflects = node.route_reflector_cluster_id is not None
        if bgp.mesh == "full":
            kind, client = MESH, False
        elif i_reflect:
            kind, client = (REFLECTOR, False) if node_reflects else (RR_CLIENT, True)
        elif node_reflects:
            kind, client = REFLECTOR, False
        else:
            continue  # mesh none: clients talk to reflectors only
        peers.append(
            Peer(
                address=node.ip,
                asn=bgp.asn,
                name=node.name,
                type=kind,
                ebgp=False,
                rr_client=client,
                hold_time=bgp.hold_time,
                graceful_restart=gr,
                port=bgp.listen_port,
                imports=ibgp_imports,
                exports=cluster_exports,
            )
        )
    for conf in bgp.peers:
        ebgp = conf.asn != bgp.asn
        policy = conf.import_
        default_allow = () if ebgp else ibgp_imports.allow
        peers.append(
            Peer(
                address=conf.address,
                asn=conf.asn,
                name=conf.description or str(conf.address),
                type=EXTERNAL
                if ebgp
                else (RR_CLIENT if conf.route_reflector_client else IBGP_PEER),
                ebgp=ebgp,
                rr_client=conf.route_reflector_client,
                hold_time=bgp.hold_time if conf.hold_time is None else conf.hold_time,
                graceful_restart=gr if conf.graceful_restart is None else conf.graceful_restart,
                port=conf.port,
                password_file=conf.password_file,
                multihop=conf.ebgp_multihop,
                passive=conf.passive,
                imports=ImportRules(
                    allow=default_allow if policy.allow is None else policy.allow,
                    allow_default_route=policy.allow_default_route,
                    max_prefix=policy.max_prefix,
                ),
                exports=ExportRules(
                    kinds=frozenset(conf.export.kinds),
                    communities=conf.export.communities,
                    large_communities=conf.export.large_communities,
                    local_preference=conf.export.local_preference,
                    med=conf.export.med,
                    as_path_prepend=conf.export.as_path_prepend,
                ),
            )
        )
    return tuple(peers)
