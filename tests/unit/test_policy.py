"""bgpd.bgp.policy.import_verdict: every refusal reason, acceptance, and properties: a prefix
inside an allow entry that trips no protection is accepted; nothing equal to or inside our
own pod CIDRs ever is. A less-specific that merely covers our pod CIDR (an aggregate, the
default route) is judged by the other rules: our blackhole stays the longer match."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bgpd.bgp.events import PathAttributes
from bgpd.bgp.peers import EXTERNAL, MESH, ImportRules, Peer
from bgpd.bgp.policy import (
    AS_PATH_LOOP,
    CLUSTER_LOOP,
    DEFAULT_ROUTE,
    MARTIAN,
    MARTIANS,
    NEXT_HOP_SELF,
    NODE_ADDRESS,
    NOT_ALLOWED,
    ORIGINATOR_LOOP,
    OTHER_NODE_POD_CIDR,
    OWN_POD_CIDR,
    LocalFacts,
    import_verdict,
)

Network = IPv4Network | IPv6Network

ME = IPv4Address("10.0.0.1")
NODE_B = IPv4Address("10.0.0.2")
UPSTREAM = IPv4Address("192.0.2.1")
OWN = (ip_network("10.244.1.0/24"), ip_network("fd00:244:1::/64"))
CLUSTER = (
    ip_network("10.244.0.0/16"),
    ip_network("fd00:244::/32"),
)

LOCAL = LocalFacts(
    asn=64512,
    router_id="10.0.0.1",
    cluster_id="10.0.0.100",
    own_cidrs=OWN,
    node_addresses=(ME, NODE_B, IPv4Address("10.0.0.3"), IPv6Address("fd00::2")),
    own_address=ME,
)

IBGP = Peer(
    address=NODE_B,
    asn=64512,
    name="node-b",
    type=MESH,
    ebgp=False,
    rr_client=False,
    hold_time=9,
    graceful_restart=True,
    imports=ImportRules(CLUSTER, False, 0),
)
EBGP = Peer(
    address=UPSTREAM,
    asn=65000,
    name="upstream",
    type=EXTERNAL,
    ebgp=True,
    rr_client=False,
    hold_time=9,
    graceful_restart=True,
    imports=ImportRules(
        (ip_network("0.0.0.0/0"), ip_network("::/0")), allow_default_route=False, max_prefix=0
    ),
)


def attrs(next_hop: object = NODE_B, **kw: object) -> PathAttributes:
    return PathAttributes(next_hop=next_hop, **kw)  # type: ignore[arg-type]


def verdict(prefix: str, peer: Peer = IBGP, **kw: Any) -> str | None:
    next_hop = kw.pop("next_hop", peer.address)
    return import_verdict(ip_network(prefix), attrs(next_hop, **kw), peer, LOCAL)


def with_allow(peer: Peer, *allow: str, default: bool = False) -> Peer:
    rules = ImportRules(tuple(ip_network(a) for a in allow), default, 0)
    return dataclasses.replace(peer, imports=rules)


# -- acceptance ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["10.244.2.0/24", "10.244.2.128/25"])
def test_cluster_prefix_from_ibgp_peer_accepted(prefix: str) -> None:
    assert verdict(prefix) is None


def test_ipv6_prefix_accepted() -> None:
    assert verdict("fd00:244:2::/64", next_hop=IPv6Address("fd00::2")) is None


def test_ebgp_route_with_other_as_path_accepted() -> None:
    assert verdict("198.51.100.0/24", EBGP, as_path=(65000, 65001)) is None


# -- protections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "10.244.1.0/24",  # exactly ours
        "10.244.1.0/25",  # more-specific
        "10.244.1.200/32",
        "fd00:244:1::/64",
        "fd00:244:1:0:1::/80",
    ],
)
def test_own_pod_cidr_refused_whatever_the_allow_list(prefix: str) -> None:
    assert verdict(prefix) == OWN_POD_CIDR
    assert verdict(prefix, with_allow(IBGP, "0.0.0.0/0", "::/0")) == OWN_POD_CIDR
    assert verdict(prefix, EBGP) == OWN_POD_CIDR
    assert OWN_POD_CIDR == "own pod CIDR"


@pytest.mark.parametrize("prefix", ["10.244.0.0/16", "10.244.0.0/23", "fd00:244::/48"])
def test_aggregate_covering_own_pod_cidr_is_not_refused_as_ours(prefix: str) -> None:
    """Only our CIDR and its more-specifics are protected; an aggregate covering it is
    accepted when allowed (the kernel keeps the longer blackhole for our pods)."""
    assert verdict(prefix) is None
    assert verdict(prefix, with_allow(EBGP, "10.0.0.0/8", "fd00:244::/32")) is None
    assert verdict(prefix, with_allow(EBGP)) == NOT_ALLOWED


@pytest.mark.parametrize("prefix", ["10.0.0.0/24", "10.0.0.2/32", "10.0.0.0/8", "fd00::/64"])
def test_prefix_covering_a_node_address_refused(prefix: str) -> None:
    peer = with_allow(EBGP, "10.0.0.0/8", "fd00::/8")
    assert verdict(prefix, peer) == NODE_ADDRESS


@pytest.mark.parametrize(
    "prefix",
    [
        "0.0.0.0/8",
        "0.1.0.0/16",
        "127.0.0.1/32",
        "169.254.10.0/24",
        "224.0.0.0/4",
        "239.1.1.1/32",
        "240.0.0.0/8",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fe80::/64",
        "ff02::1/128",
    ],
)
def test_martians_refused_even_when_allowed(prefix: str) -> None:
    assert verdict(prefix, EBGP) == MARTIAN
    assert MARTIAN == "martian"


@pytest.mark.parametrize("prefix", ["0.0.0.0/0", "::/0"])
def test_default_route_only_when_allowed(prefix: str) -> None:
    assert verdict(prefix, EBGP) == DEFAULT_ROUTE
    assert verdict(prefix, with_allow(EBGP, "0.0.0.0/0", "::/0")) == DEFAULT_ROUTE
    # allowDefaultRoute suffices: the allow list need not hold /0
    assert verdict(prefix, with_allow(EBGP, default=True)) is None


def test_default_route_is_not_a_martian_node_address_or_own_cidr() -> None:
    """0.0.0.0/0 covers every node address, 0.0.0.0/8 and our pod CIDR; allowed, it is
    still accepted."""
    assert verdict("0.0.0.0/0", with_allow(EBGP, default=True)) is None
    assert verdict("0.0.0.0/0", with_allow(IBGP, default=True)) is None


def test_as_path_loop_only_for_ebgp() -> None:
    assert verdict("198.51.100.0/24", EBGP, as_path=(65000, 64512)) == AS_PATH_LOOP
    # iBGP paths carry our ASN legitimately (e.g. reflected eBGP-learned routes elsewhere)
    assert verdict("10.244.2.0/24", IBGP, as_path=(64512, 65000)) is None


def test_originator_is_this_node() -> None:
    assert verdict("10.244.2.0/24", originator_id="10.0.0.1") == ORIGINATOR_LOOP
    assert verdict("10.244.2.0/24", originator_id="10.0.0.2") is None


def test_cluster_list_loop() -> None:
    assert verdict("10.244.2.0/24", cluster_list=("10.0.0.7", "10.0.0.100")) == CLUSTER_LOOP
    assert verdict("10.244.2.0/24", cluster_list=("10.0.0.7",)) is None


def test_cluster_list_ignored_when_not_a_reflector() -> None:
    local = dataclasses.replace(LOCAL, cluster_id=None)
    prefix = ip_network("10.244.2.0/24")
    got = import_verdict(prefix, attrs(cluster_list=("10.0.0.100",)), IBGP, local)
    assert got is None


@pytest.mark.parametrize(
    ("prefix", "peer"),
    [
        ("10.96.0.10/32", IBGP),  # a LoadBalancer IP from a cluster peer
        ("10.245.0.0/24", IBGP),
        ("10.96.0.0/12", with_allow(EBGP, "10.96.0.0/16")),  # less specific than the entry
        ("198.51.100.0/24", with_allow(EBGP)),  # eBGP default: nothing
        ("fd00:245::/64", IBGP),
    ],
)
def test_not_in_allow_list(prefix: str, peer: Peer) -> None:
    assert verdict(prefix, peer) == NOT_ALLOWED


def test_ipv4_allow_entry_does_not_admit_ipv6() -> None:
    peer = with_allow(EBGP, "0.0.0.0/1", "128.0.0.0/1")
    assert verdict("2001:db8::/32", peer, next_hop=IPv6Address("2001:db8::1")) == NOT_ALLOWED


def test_next_hop_is_this_node() -> None:
    assert verdict("10.244.2.0/24", next_hop=ME) == NEXT_HOP_SELF


@pytest.mark.parametrize(
    ("prefix", "kw", "reason"),
    [
        # own pod CIDR beats everything else
        ("10.244.1.0/24", {"next_hop": ME, "originator_id": "10.0.0.1"}, OWN_POD_CIDR),
        # protections come before the allow list
        ("127.0.0.0/8", {}, MARTIAN),
        ("10.96.0.0/24", {"next_hop": ME}, NEXT_HOP_SELF),
        ("10.96.0.0/24", {"originator_id": "10.0.0.1"}, ORIGINATOR_LOOP),
        ("10.96.0.0/24", {"cluster_list": ("10.0.0.100",)}, CLUSTER_LOOP),
    ],
)
def test_reason_precedence(prefix: str, kw: dict[str, Any], reason: str) -> None:
    assert verdict(prefix, **kw) == reason


def test_reasons_are_distinct() -> None:
    reasons = [
        OWN_POD_CIDR,
        NODE_ADDRESS,
        MARTIAN,
        DEFAULT_ROUTE,
        AS_PATH_LOOP,
        ORIGINATOR_LOOP,
        CLUSTER_LOOP,
        NOT_ALLOWED,
        NEXT_HOP_SELF,
        OTHER_NODE_POD_CIDR,
    ]
    assert len(set(reasons)) == len(reasons)


WITH_OWNERS = dataclasses.replace(LOCAL, pod_cidr_owners=((ip_network("10.244.2.0/24"), NODE_B),))


@pytest.mark.parametrize(
    ("prefix", "peer", "next_hop", "reason"),
    [
        ("10.244.2.0/24", IBGP, NODE_B, None),  # from its owner (full mesh)
        ("10.244.2.0/24", with_allow(IBGP, "10.244.0.0/16"), NODE_B, None),  # reflected
        ("10.244.2.0/24", EBGP, UPSTREAM, OTHER_NODE_POD_CIDR),  # an upstream claims it
        ("10.244.2.128/25", EBGP, UPSTREAM, OTHER_NODE_POD_CIDR),  # a more-specific hijack
        ("10.244.2.0/24", IBGP, IPv4Address("10.0.0.3"), OTHER_NODE_POD_CIDR),  # wrong node
        ("10.244.0.0/16", EBGP, UPSTREAM, None),  # a covering aggregate is not a hijack
    ],
)
def test_another_nodes_pod_cidr_only_via_that_node(
    prefix: str, peer: Peer, next_hop: IPv4Address, reason: str | None
) -> None:
    assert import_verdict(ip_network(prefix), attrs(next_hop), peer, WITH_OWNERS) == reason


# -- properties ----------------------------------------------------------------------------------

PROTECTED: tuple[Network, ...] = (
    *OWN,
    *MARTIANS,
    *(ip_network(a) for a in LOCAL.node_addresses),
)


def _overlaps_protected(prefix: Network) -> bool:
    return any(prefix.version == p.version and prefix.overlaps(p) for p in PROTECTED)


@st.composite
def v4_prefixes(draw: st.DrawFn) -> IPv4Network:
    length = draw(st.integers(1, 32))
    address = draw(st.integers(0, 2**32 - 1))
    return IPv4Network((address, length), strict=False)


@st.composite
def v6_prefixes(draw: st.DrawFn) -> IPv6Network:
    length = draw(st.integers(1, 128))
    address = draw(st.integers(0, 2**128 - 1))
    return IPv6Network((address, length), strict=False)


prefixes = st.one_of(v4_prefixes(), v6_prefixes())


@st.composite
def inside(draw: st.DrawFn, prefix: Network) -> Network:
    """A prefix inside `prefix` (itself or a more-specific)."""
    length = draw(st.integers(prefix.prefixlen, prefix.max_prefixlen))
    offset = draw(st.integers(0, prefix.num_addresses - 1))
    return type(prefix)((int(prefix.network_address) + offset, length), strict=False)


@settings(suppress_health_check=[HealthCheck.filter_too_much])  # protected ranges are common
@given(data=st.data(), entry=prefixes, ebgp=st.booleans())
def test_prefix_inside_an_allow_entry_without_protection_is_accepted(
    data: st.DataObject, entry: Network, ebgp: bool
) -> None:
    prefix = data.draw(inside(entry))
    assume(not _overlaps_protected(prefix))
    peer = with_allow(EBGP if ebgp else IBGP, str(entry))
    next_hop = IPv4Address("192.0.2.254") if prefix.version == 4 else IPv6Address("2001:db8::fe")
    assert import_verdict(prefix, attrs(next_hop, as_path=(65000,)), peer, LOCAL) is None


@given(
    data=st.data(),
    own=st.sampled_from(OWN),
    allow_all=st.booleans(),
    default=st.booleans(),
    ebgp=st.booleans(),
)
def test_nothing_inside_own_pod_cidrs_is_ever_accepted(
    data: st.DataObject, own: Network, allow_all: bool, default: bool, ebgp: bool
) -> None:
    prefix = data.draw(inside(own))  # our CIDR or a more-specific of it
    allow = ("0.0.0.0/0", "::/0") if allow_all else ()
    peer = with_allow(EBGP if ebgp else IBGP, *allow, default=default)
    next_hop = NODE_B if prefix.version == 4 else IPv6Address("fd00::2")
    assert import_verdict(prefix, attrs(next_hop), peer, LOCAL) == OWN_POD_CIDR


@given(prefix=prefixes, ebgp=st.booleans(), default=st.booleans())
def test_any_prefix_inside_own_is_refused_and_accepted_ones_are_inside_allow(
    prefix: Network, ebgp: bool, default: bool
) -> None:
    peer = with_allow(EBGP if ebgp else IBGP, "10.0.0.0/8", "fd00::/8", default=default)
    next_hop = IPv4Address("192.0.2.254") if prefix.version == 4 else IPv6Address("2001:db8::fe")
    got = import_verdict(prefix, attrs(next_hop), peer, LOCAL)
    if any(prefix.version == o.version and prefix.subnet_of(o) for o in OWN):  # type: ignore[arg-type]
        assert got == OWN_POD_CIDR
    if got is None:
        assert prefix.prefixlen == 0 or any(
            prefix.version == a.version and prefix.subnet_of(a)  # type: ignore[arg-type]
            for a in peer.imports.allow
        )
