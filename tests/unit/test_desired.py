"""bgpd.reconcile.desired.desired_kernel_routes: own CIDRs are blackholes and win; learned routes
replace adopted ones; adopted routes stay otherwise."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from bgpd.reconcile.desired import desired_kernel_routes
from datapath.routes import KernelRoute

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

OWN: Network = IPv4Network("10.244.1.0/24")
B: Network = IPv4Network("10.244.2.0/24")
C: Network = IPv4Network("10.244.3.0/24")
D: Network = IPv4Network("10.244.4.0/24")
NH_B: Address = IPv4Address("10.0.0.2")
NH_C: Address = IPv4Address("10.0.0.3")


def test_nothing() -> None:
    assert desired_kernel_routes([], {}, {}) == {}


def test_own_cidrs_are_blackholes() -> None:
    v6 = ip_network("fd00:244:1::/64")
    assert desired_kernel_routes([OWN, v6], {}, {}) == {
        OWN: KernelRoute.blackhole(OWN),
        v6: KernelRoute.blackhole(v6),
    }


def test_learned_routes_via_their_next_hops() -> None:
    desired = desired_kernel_routes([OWN], {B: (NH_B,), C: (NH_B, NH_C)}, {})
    assert desired == {
        OWN: KernelRoute.blackhole(OWN),
        B: KernelRoute.via(B, NH_B),
        C: KernelRoute.via(C, NH_C, NH_B),
    }
    assert desired[C].nexthops == (NH_B, NH_C)


def test_own_cidr_wins_over_learned_and_adopted() -> None:
    desired = desired_kernel_routes([OWN], {OWN: (NH_B,)}, {OWN: KernelRoute.via(OWN, NH_C)})
    assert desired == {OWN: KernelRoute.blackhole(OWN)}


def test_learned_replaces_adopted() -> None:
    desired = desired_kernel_routes([], {B: (NH_C,)}, {B: KernelRoute.via(B, NH_B)})
    assert desired == {B: KernelRoute.via(B, NH_C)}


def test_adopted_kept_when_nothing_replaces_it() -> None:
    adopted = {D: KernelRoute.via(D, NH_B), C: KernelRoute.blackhole(C)}
    desired = desired_kernel_routes([OWN], {B: (NH_B,)}, adopted)
    assert desired == {
        OWN: KernelRoute.blackhole(OWN),
        B: KernelRoute.via(B, NH_B),
        C: KernelRoute.blackhole(C),
        D: KernelRoute.via(D, NH_B),
    }


def test_learned_without_next_hops_leaves_adopted_route() -> None:
    adopted = {B: KernelRoute.via(B, NH_B)}
    assert desired_kernel_routes([], {B: ()}, adopted) == adopted
    assert desired_kernel_routes([], {B: ()}, {}) == {}


def test_own_cidrs_iterable_is_consumed_once() -> None:
    desired = desired_kernel_routes(iter([OWN]), {OWN: (NH_B,)}, {})
    assert desired == {OWN: KernelRoute.blackhole(OWN)}


def test_inputs_are_not_modified() -> None:
    learned = {B: (NH_B,)}
    adopted = {B: KernelRoute.via(B, NH_C), OWN: KernelRoute.via(OWN, NH_C)}
    before = (dict(learned), dict(adopted))
    desired_kernel_routes([OWN], learned, adopted)
    assert (learned, adopted) == before
