"""What to advertise to each peer: a pure function of config, RIB and drain state.

Local prefixes go to every peer whose export policy takes their kind, with that
policy's attributes. A route reflector also passes on the best iBGP path of each
prefix as RFC 4456 says: from a client to everyone else, from a non-client to the
clients only, with ORIGINATOR_ID and CLUSTER_LIST set and the next hop unchanged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from bgpd.bgp.peers import Peer
from bgpd.bgp.rib import DEFAULT_LOCAL_PREF, Path, best_paths
from bgpd.config.peers import PrefixKind
from bgpd.config.types import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

GRACEFUL_SHUTDOWN = "65535:0"  # RFC 8326
DRAIN_LOCAL_PREF = 0


@dataclass(frozen=True)
class Advertisement:
    """One prefix as sent to one peer. `next_hop` None means next-hop self; `as_path`
    None lets the speaker apply the default (empty for iBGP, our ASN for eBGP)."""

    prefix: Network
    next_hop: IPAddress | None = None
    as_path: tuple[int, ...] | None = None
    local_pref: int | None = None
    med: int | None = None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reflector:
    """This node as a route reflector."""

    cluster_id: str
    peer_router_ids: Mapping[IPAddress, str]


PeerAdvertisements = dict[IPAddress, dict[Network, Advertisement]]


def local_advertisement(
    prefix: Network, peer: Peer, local_asn: int, draining: bool
) -> Advertisement:
    """Our own prefix to `peer`, shaped by its export policy (and by a drain)."""
    rules = peer.exports
    communities = rules.communities + ((GRACEFUL_SHUTDOWN,) if draining else ())
    if peer.ebgp:
        prepend = rules.as_path_prepend
        return Advertisement(
            prefix,
            as_path=(local_asn,) * (1 + prepend) if prepend else None,
            med=rules.med,
            communities=communities,
            large_communities=rules.large_communities,
        )
    return Advertisement(
        prefix,
        local_pref=DRAIN_LOCAL_PREF if draining else rules.local_preference,
        med=rules.med,
        communities=communities,
        large_communities=rules.large_communities,
    )


def reflected_advertisement(path: Path, reflector: Reflector, prefix: Network) -> Advertisement:
    attrs = path.attributes
    return Advertisement(
        prefix,
        next_hop=attrs.next_hop,
        as_path=attrs.as_path,
        local_pref=DEFAULT_LOCAL_PREF if attrs.local_pref is None else attrs.local_pref,
        med=attrs.med,
        communities=attrs.communities,
        large_communities=attrs.large_communities,
        originator_id=attrs.originator_id or path.peer_router_id,
        cluster_list=(reflector.cluster_id, *attrs.cluster_list),
    )


def desired_advertisements(
    peers: tuple[Peer, ...],
    local: Mapping[Network, PrefixKind],
    paths: Mapping[Network, list[Path]],
    *,
    local_asn: int,
    reflector: Reflector | None = None,
    draining: bool = False,
    withdrawn: bool = False,
) -> PeerAdvertisements:
    """For every peer, every prefix to advertise to it. `withdrawn` (a finished drain)
    sends none of our own prefixes; reflected routes keep flowing. A session carries
    its own address family only (exabgp.conf): IPv6 prefixes go to IPv6 peers."""
    result: PeerAdvertisements = {peer.address: {} for peer in peers}
    if not withdrawn:
        for peer in peers:
            for prefix, kind in local.items():
                if kind in peer.exports.kinds and prefix.version == peer.address.version:
                    result[peer.address][prefix] = local_advertisement(
                        prefix, peer, local_asn, draining
                    )
    if reflector is not None:
        _reflect(peers, local, paths, reflector, result)
    return result


def _reflect(
    peers: tuple[Peer, ...],
    local: Mapping[Network, PrefixKind],
    paths: Mapping[Network, list[Path]],
    reflector: Reflector,
    result: PeerAdvertisements,
) -> None:
    by_address = {p.address: p for p in peers}
    ibgp = [p for p in peers if not p.ebgp]
    for prefix, candidates in paths.items():
        if prefix in local:
            continue
        best = best_paths(candidates)
        if not best:
            continue
        path = best[0]
        source = by_address.get(path.peer)
        if source is None or source.ebgp:
            continue  # eBGP routes are not ours to pass on: every node peers upstream itself
        advertisement = reflected_advertisement(path, reflector, prefix)
        for target in ibgp:
            if target.address == source.address or target.address.version != prefix.version:
                continue
            if not (source.rr_client or target.rr_client):
                continue  # non-client to non-client: never reflected
            if reflector.peer_router_ids.get(target.address) == advertisement.originator_id:
                continue  # it would drop its own route anyway
            result[target.address][prefix] = advertisement
