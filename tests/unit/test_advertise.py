"""bgpd.bgp.advertise.desired_advertisements: our prefixes per export policy, drain, and
route reflection as RFC 4456 says."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

import pytest

from bgpd.bgp.advertise import (
    DRAIN_LOCAL_PREF,
    GRACEFUL_SHUTDOWN,
    Advertisement,
    Reflector,
    desired_advertisements,
)
from bgpd.bgp.events import PathAttributes
from bgpd.bgp.peers import EXTERNAL, IBGP_PEER, REFLECTOR, RR_CLIENT, ExportRules, Peer
from bgpd.bgp.rib import IPAddress, Network, Path
from bgpd.config.peers import ALL_KINDS, PrefixKind

ASN = 64512
CLUSTER_ID = "10.0.0.1"
POD = ip_network("10.244.1.0/24")
LB = ip_network("10.96.0.10/32")
LOCAL: dict[Network, PrefixKind] = {POD: "podCIDR", LB: "loadBalancerIP"}

CLIENT_B = IPv4Address("10.0.0.2")
CLIENT_C = IPv4Address("10.0.0.3")
RR_D = IPv4Address("10.0.0.4")  # another reflector: a non-client
RR_E = IPv4Address("10.0.0.5")  # and one more
UPSTREAM = IPv4Address("192.0.2.1")


def peer(address: IPv4Address, kind: str, **exports: Any) -> Peer:
    ebgp = kind == EXTERNAL
    return Peer(
        address=address,
        asn=65000 if ebgp else ASN,
        name=str(address),
        type=kind,
        ebgp=ebgp,
        rr_client=kind == RR_CLIENT,
        hold_time=9,
        graceful_restart=True,
        exports=ExportRules(
            kinds=frozenset(exports.pop("kinds", ALL_KINDS)),
            **exports,
        ),
    )


B = peer(CLIENT_B, RR_CLIENT)
C = peer(CLIENT_C, RR_CLIENT)
D = peer(RR_D, REFLECTOR)
E = peer(RR_E, REFLECTOR)
UP = peer(UPSTREAM, EXTERNAL)
ALL = (B, C, D, E, UP)
ROUTER_IDS: dict[IPAddress, str] = {
    CLIENT_B: "10.0.0.2",
    CLIENT_C: "10.0.0.3",
    RR_D: "10.0.0.4",
    RR_E: "10.0.0.5",
}
REFLECT = Reflector(CLUSTER_ID, ROUTER_IDS)


def path(
    source: IPAddress,
    *,
    ebgp: bool = False,
    router_id: str | None = None,
    **attrs: object,
) -> Path:
    attributes = PathAttributes(next_hop=attrs.pop("next_hop", source), **attrs)  # type: ignore[arg-type]
    return Path(source, router_id or ROUTER_IDS.get(source, str(source)), attributes, ebgp=ebgp)


def desired(
    peers: tuple[Peer, ...] = ALL,
    local: dict[Network, PrefixKind] | None = None,
    paths: dict[Network, list[Path]] | None = None,
    **kw: Any,
) -> dict[IPAddress, dict[Network, Advertisement]]:
    return desired_advertisements(
        peers,
        LOCAL if local is None else local,
        paths or {},
        local_asn=ASN,
        **kw,
    )


# -- our own prefixes ------------------------------------------------------------------------


def test_every_peer_has_an_entry_even_when_empty() -> None:
    assert desired(local={}) == {p.address: {} for p in ALL}


def test_local_prefixes_to_every_peer_with_default_attributes() -> None:
    result = desired(reflector=None)
    for address in (CLIENT_B, CLIENT_C, RR_D, RR_E, UPSTREAM):
        assert result[address] == {POD: Advertisement(POD), LB: Advertisement(LB)}


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [(("podCIDR",), {POD}), (("loadBalancerIP",), {LB}), ((), set())],
)
def test_export_kinds(kinds: tuple[PrefixKind, ...], expected: set[Network]) -> None:
    up = peer(UPSTREAM, EXTERNAL, kinds=kinds)
    assert set(desired((up,))[UPSTREAM]) == expected


def test_ibgp_export_attributes() -> None:
    target = peer(
        RR_D,
        IBGP_PEER,
        communities=("64512:7",),
        large_communities=("64512:1:2",),
        local_preference=200,
        med=5,
        as_path_prepend=3,  # eBGP only
    )
    assert desired((target,))[RR_D][POD] == Advertisement(
        POD,
        local_pref=200,
        med=5,
        communities=("64512:7",),
        large_communities=("64512:1:2",),
    )


def test_ebgp_export_attributes_never_carry_local_pref() -> None:
    up = peer(
        UPSTREAM,
        EXTERNAL,
        communities=("64512:7",),
        large_communities=("64512:1:2",),
        local_preference=200,
        med=5,
    )
    assert desired((up,))[UPSTREAM][POD] == Advertisement(
        POD, med=5, communities=("64512:7",), large_communities=("64512:1:2",)
    )


@pytest.mark.parametrize("prepend", [1, 2, 10])
def test_ebgp_as_path_prepend_is_explicit(prepend: int) -> None:
    """ExaBGP does not prepend our ASN to an explicit as-path: it must be all there."""
    up = peer(UPSTREAM, EXTERNAL, as_path_prepend=prepend)
    adv = desired((up,))[UPSTREAM][POD]
    assert adv.as_path == (ASN,) * (1 + prepend)


def test_ebgp_without_prepend_leaves_as_path_to_the_speaker() -> None:
    assert desired((UP,))[UPSTREAM][POD].as_path is None


# -- drain ----------------------------------------------------------------------------------


def test_draining_adds_graceful_shutdown_and_lowest_local_pref() -> None:
    assert GRACEFUL_SHUTDOWN == "65535:0"
    assert DRAIN_LOCAL_PREF == 0
    ibgp = peer(RR_D, IBGP_PEER, communities=("64512:7",), local_preference=200, med=5)
    up = peer(UPSTREAM, EXTERNAL, communities=("64512:7",), as_path_prepend=1)
    result = desired((ibgp, up), draining=True)
    assert result[RR_D][POD] == Advertisement(
        POD, local_pref=0, med=5, communities=("64512:7", "65535:0")
    )
    assert result[UPSTREAM][POD] == Advertisement(
        POD, as_path=(ASN, ASN), communities=("64512:7", "65535:0")
    )
    assert result[UPSTREAM][POD].local_pref is None  # never on eBGP


def test_withdrawn_sends_none_of_our_prefixes() -> None:
    assert desired(withdrawn=True) == {p.address: {} for p in ALL}
    assert desired(withdrawn=True, draining=True) == {p.address: {} for p in ALL}


def test_withdrawn_still_reflects() -> None:
    other = ip_network("10.244.2.0/24")
    result = desired(paths={other: [path(CLIENT_B)]}, reflector=REFLECT, withdrawn=True)
    assert set(result[CLIENT_C]) == {other}
    assert set(result[RR_D]) == {other}
    assert result[UPSTREAM] == {}


def test_reflected_routes_are_not_drained() -> None:
    other = ip_network("10.244.2.0/24")
    result = desired(paths={other: [path(CLIENT_B)]}, reflector=REFLECT, draining=True)
    assert result[CLIENT_C][other].communities == ()
    assert result[CLIENT_C][other].local_pref == 100


# -- reflection -----------------------------------------------------------------------------

OTHER = ip_network("10.244.2.0/24")


def reflected_to(paths: list[Path], peers: tuple[Peer, ...] = ALL) -> set[IPAddress]:
    result = desired(peers, local={}, paths={OTHER: paths}, reflector=REFLECT)
    return {address for address, advs in result.items() if OTHER in advs}


def test_no_reflection_without_a_reflector() -> None:
    result = desired(local={}, paths={OTHER: [path(CLIENT_B)]}, reflector=None)
    assert all(advs == {} for advs in result.values())


def test_from_a_client_to_every_other_ibgp_peer() -> None:
    assert reflected_to([path(CLIENT_B)]) == {CLIENT_C, RR_D, RR_E}


def test_from_a_non_client_to_clients_only() -> None:
    assert reflected_to([path(RR_D)]) == {CLIENT_B, CLIENT_C}


def test_ibgp_peer_without_client_flag_is_a_non_client() -> None:
    ibgp = peer(IPv4Address("10.0.0.9"), IBGP_PEER)
    assert reflected_to([path(ibgp.address)], (*ALL, ibgp)) == {CLIENT_B, CLIENT_C}
    assert ibgp.address not in reflected_to([path(RR_D)], (*ALL, ibgp))
    assert ibgp.address in reflected_to([path(CLIENT_B)], (*ALL, ibgp))


def test_ebgp_learned_routes_are_never_reflected() -> None:
    assert reflected_to([path(UPSTREAM, ebgp=True)]) == set()


def test_path_from_an_unknown_peer_is_not_reflected() -> None:
    assert reflected_to([path(IPv4Address("10.0.0.99"))]) == set()


def test_our_own_prefixes_are_not_reflected() -> None:
    result = desired(local={POD: "podCIDR"}, paths={POD: [path(CLIENT_B)]}, reflector=REFLECT)
    assert result[CLIENT_C][POD] == Advertisement(POD)  # ours, next-hop self


def test_only_the_best_path_is_reflected() -> None:
    worse = path(CLIENT_B, local_pref=50)
    better = path(CLIENT_C, local_pref=200)
    result = desired(local={}, paths={OTHER: [worse, better]}, reflector=REFLECT)
    # C's path wins: reflected to everyone but C (B gets it too: B is a client)
    assert {a for a, advs in result.items() if OTHER in advs} == {CLIENT_B, RR_D, RR_E}
    assert result[RR_D][OTHER].next_hop == CLIENT_C
    assert result[RR_D][OTHER].local_pref == 200


def test_reflected_attributes() -> None:
    source = path(
        CLIENT_B,
        next_hop=IPv4Address("10.0.0.22"),
        as_path=(65010,),
        med=7,
        communities=("64512:7",),
        large_communities=("64512:1:2",),
    )
    adv = desired(local={}, paths={OTHER: [source]}, reflector=REFLECT)[RR_D][OTHER]
    assert adv == Advertisement(
        OTHER,
        next_hop=IPv4Address("10.0.0.22"),  # unchanged, never self
        as_path=(65010,),
        local_pref=100,  # the default made explicit
        med=7,
        communities=("64512:7",),
        large_communities=("64512:1:2",),
        originator_id="10.0.0.2",  # the source's router ID
        cluster_list=(CLUSTER_ID,),
    )


def test_existing_originator_and_cluster_list_are_kept() -> None:
    source = path(RR_D, originator_id="10.0.0.42", cluster_list=("10.0.0.4",))
    adv = desired(local={}, paths={OTHER: [source]}, reflector=REFLECT)[CLIENT_B][OTHER]
    assert adv.originator_id == "10.0.0.42"
    assert adv.cluster_list == (CLUSTER_ID, "10.0.0.4")  # ours prepended
    assert adv.next_hop == RR_D


def test_not_sent_to_the_peer_whose_router_id_is_the_originator() -> None:
    source = path(RR_D, originator_id=ROUTER_IDS[CLIENT_C])
    assert reflected_to([source]) == {CLIENT_B}


def test_originator_by_router_id_not_address() -> None:
    """The source peer's router ID may differ from its address."""
    source = path(CLIENT_B, router_id="192.168.0.2")
    result = desired(local={}, paths={OTHER: [source]}, reflector=REFLECT)
    assert result[CLIENT_C][OTHER].originator_id == "192.168.0.2"


def test_unknown_target_router_id_does_not_block() -> None:
    reflector = Reflector(CLUSTER_ID, {})
    result = desired(local={}, paths={OTHER: [path(CLIENT_B)]}, reflector=reflector)
    assert {a for a, advs in result.items() if OTHER in advs} == {CLIENT_C, RR_D, RR_E}


def test_reflection_ignores_export_kinds_of_local_prefixes() -> None:
    """Export `kinds` filter our own prefixes; reflected routes are not ours."""
    c = dataclasses.replace(C, exports=ExportRules(frozenset()))
    result = desired((B, c), local=LOCAL, paths={OTHER: [path(CLIENT_B)]}, reflector=REFLECT)
    assert result[CLIENT_C] == {OTHER: result[CLIENT_C][OTHER]}


def test_a_session_gets_the_prefixes_of_its_own_family_only() -> None:
    """An IPv4 session carries IPv4 unicast only (the family exabgp.conf gives it):
    an IPv6 pod CIDR sent there is a command exabgp refuses, and it must not be counted
    as advertised either."""
    pod6 = ip_network("fd00:244:1::/64")
    reflected6 = ip_network("fd00:251::/48")
    paths = {reflected6: [path(CLIENT_B, next_hop=ip_address("fd00::2"))]}
    result = desired_advertisements(
        ALL, {**LOCAL, pod6: "podCIDR"}, paths, local_asn=ASN, reflector=REFLECT
    )
    for peer_address, advertisements in result.items():
        assert {p.version for p in advertisements} == {4}, peer_address
    assert set(result[UPSTREAM]) == {POD, LB}
