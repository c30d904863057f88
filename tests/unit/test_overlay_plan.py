"""Overlay planning: settings, MAC/address/MTU derivation, and per-route decisions."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ConfigError
from datapath.overlay_plan import (
    LocalNode,
    OverlayPeer,
    RemoteNode,
    RoutingSettings,
    overlay_address,
    overlay_mtu,
    overlay_peers,
    plan_routes,
    pod_mtu,
    vxlan_mac,
    vxlan_spec,
)
from datapath.routes import Address, KernelRoute, Network

net = ipaddress.ip_network
addr = ipaddress.ip_address
V4 = ipaddress.IPv4Address

# Node a (this one) and b on 192.168.1.0/24, c on 192.168.2.0/24 behind a router.
A = LocalNode("a", addr("192.168.1.10"), (net("192.168.1.0/24"),), (net("10.244.1.0/24"),))
B = RemoteNode("b", addr("192.168.1.11"), (net("10.244.2.0/24"),))
C = RemoteNode("c", addr("192.168.2.10"), (net("10.244.3.0/24"), net("fd00:3::/64")))
ROUTER = addr("192.168.1.1")
CROSS = RoutingSettings("vxlan", "crossSubnet")
ALWAYS = RoutingSettings("vxlan", "always")
NATIVE = RoutingSettings()
DEV = "kroute.vxlan"


def learned(*pairs: tuple[str, tuple[str, ...]]) -> dict[Network, KernelRoute]:
    return {net(p): KernelRoute.via(p, *hops) for p, hops in pairs}


ROUTES = learned(
    ("10.244.2.0/24", (str(B.underlay_ip),)),
    ("10.244.3.0/24", (str(C.underlay_ip),)),
)


def test_settings_refuse_impossible_combinations_naming_the_field() -> None:
    with pytest.raises(
        ConfigError, match=r"routing.overlay: crossSubnet needs routing.mode: vxlan"
    ):
        RoutingSettings("native", "crossSubnet")
    with pytest.raises(ConfigError) as err:
        RoutingSettings("vxlan", "always", device="x" * 16, vni=0, port=70000)
    assert [e.split(":")[0] for e in err.value.errors] == [
        "routing.vxlan.device",
        "routing.vxlan.vni",
        "routing.vxlan.port",
    ]
    with pytest.raises(ConfigError, match=r"routing\.mode: 'overlay'"):
        RoutingSettings("overlay")  # type: ignore[arg-type]
    assert not RoutingSettings("vxlan", "never").uses_overlay
    assert CROSS.uses_overlay and ALWAYS.uses_overlay and not NATIVE.uses_overlay


def test_vxlan_mac_is_derived_from_the_underlay_address() -> None:
    assert vxlan_mac(addr("192.168.1.10")) == "02:6b:c0:a8:01:0a"
    with pytest.raises(ValueError, match="needs IPv4"):
        vxlan_mac(addr("2001:db8::1"))


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_vxlan_macs_are_unicast_local_and_distinct(x: int, y: int) -> None:
    mx, my = vxlan_mac(V4(x)), vxlan_mac(V4(y))
    first = int(mx.split(":")[0], 16)
    assert first & 1 == 0 and first & 2 == 2  # unicast, locally administered
    assert (mx == my) == (x == y)


def test_overlay_address_is_the_lowest_ipv4_pod_cidr_network_address() -> None:
    assert overlay_address([net("fd00::/64"), net("10.9.0.0/24"), net("10.2.0.64/26")]) == V4(
        "10.2.0.64"
    )
    assert overlay_address([net("fd00::/64")]) is None
    assert overlay_address([net("10.0.0.0/31")]) is None  # no room besides pods
    assert overlay_address([]) is None


def test_mtus() -> None:
    assert overlay_mtu(1500) == 1450 and overlay_mtu(9000) == 8950
    assert pod_mtu(NATIVE, 1500) == 1500
    assert pod_mtu(RoutingSettings("vxlan", "never"), 1500) == 1500
    assert pod_mtu(CROSS, 1500) == 1450 and pod_mtu(ALWAYS, 9000) == 8950
    with pytest.raises(ValueError, match="raise the underlay MTU"):
        pod_mtu(CROSS, 1300)


def test_vxlan_spec_only_when_the_overlay_is_used() -> None:
    assert vxlan_spec(NATIVE, A) is None
    assert vxlan_spec(RoutingSettings("vxlan", "never"), A) is None
    spec = vxlan_spec(RoutingSettings("vxlan", "crossSubnet", vni=7, port=8472), A)
    assert spec is not None
    assert (spec.name, spec.vni, spec.port, spec.mtu) == (DEV, 7, 8472, 1450)
    assert (spec.local, spec.mac, spec.address) == (
        V4("192.168.1.10"),
        "02:6b:c0:a8:01:0a",
        V4("10.244.1.0"),
    )
    v6 = LocalNode("a", addr("2001:db8::1"), (net("2001:db8::/64"),))
    with pytest.raises(ConfigError, match=r"node\.ip: 2001:db8::1 is IPv6"):
        vxlan_spec(CROSS, v6)


def test_peers_per_remote_node_skip_self_clashes_and_nodes_without_ipv4_pods() -> None:
    no_pods = RemoteNode("d", addr("192.168.2.20"), (net("fd00:4::/64"),))
    clash = RemoteNode("e", C.underlay_ip, (net("10.244.9.0/24"),))  # same VTEP as c
    me = RemoteNode("a", A.underlay_ip, A.pod_cidrs)
    assert overlay_peers(A, [clash, no_pods, C, B, me]) == (
        OverlayPeer("b", "02:6b:c0:a8:01:0b", V4("192.168.1.11"), V4("10.244.2.0")),
        OverlayPeer("c", "02:6b:c0:a8:02:0a", V4("192.168.2.10"), V4("10.244.3.0")),
    )


def test_cross_subnet_same_subnet_native_other_subnet_over_vxlan() -> None:
    plan = plan_routes(CROSS, A, [B, C], ROUTES)
    assert plan.kernel_routes() == {
        net("10.244.2.0/24"): KernelRoute.via("10.244.2.0/24", "192.168.1.11"),
        net("10.244.3.0/24"): KernelRoute.via("10.244.3.0/24", "10.244.3.0", dev=DEV),
    }
    assert plan.counts() == {"native": 1, "overlay": 1, "unreachable": 0, "local": 0}
    # The native route is the very object passed in: nothing rebuilt for native routes.
    assert plan.kernel_routes()[net("10.244.2.0/24")] is ROUTES[net("10.244.2.0/24")]


def test_always_puts_same_subnet_nodes_over_vxlan_but_never_routers() -> None:
    routes = {**ROUTES, **learned(("0.0.0.0/0", (str(ROUTER),)))}
    plan = plan_routes(ALWAYS, A, [B, C], routes)
    assert plan.kernel_routes() == {
        net("10.244.2.0/24"): KernelRoute.via("10.244.2.0/24", "10.244.2.0", dev=DEV),
        net("10.244.3.0/24"): KernelRoute.via("10.244.3.0/24", "10.244.3.0", dev=DEV),
        net("0.0.0.0/0"): KernelRoute.via("0.0.0.0/0", ROUTER),
    }


def test_native_mode_marks_off_subnet_routes_unreachable_with_a_reason() -> None:
    for mode in (NATIVE, RoutingSettings("vxlan", "never")):
        plan = plan_routes(mode, A, [B, C], ROUTES)
        assert set(plan.kernel_routes()) == {net("10.244.2.0/24")}
        reason = plan.unreachable()[net("10.244.3.0/24")]
        assert reason.startswith("next hop 192.168.2.10 not on a connected subnet")


def test_vxlan_cannot_reach_an_off_subnet_router() -> None:
    plan = plan_routes(CROSS, A, [B, C], learned(("203.0.113.0/24", ("198.51.100.1",))))
    assert plan.unreachable() == {
        net("203.0.113.0/24"): "next hop 198.51.100.1 neither on a connected subnet "
        "nor a cluster node reachable over the overlay"
    }


def test_mixed_ecmp_goes_all_overlay_and_leaves_routers_out() -> None:
    routes = learned(("10.96.0.1/32", (str(B.underlay_ip), str(C.underlay_ip), str(ROUTER))))
    entry = plan_routes(CROSS, A, [B, C], routes).entry(net("10.96.0.1/32"))
    assert entry.path == "overlay"
    assert entry.route == KernelRoute.via("10.96.0.1/32", "10.244.2.0", "10.244.3.0", dev=DEV)
    assert entry.dropped == (ROUTER,)
    assert "192.168.1.1" in entry.reason


def test_native_ecmp_keeps_the_usable_hops() -> None:
    routes = learned(("10.96.0.2/32", (str(B.underlay_ip), str(C.underlay_ip))))
    entry = plan_routes(NATIVE, A, [B, C], routes).entry(net("10.96.0.2/32"))
    assert entry.route == KernelRoute.via("10.96.0.2/32", str(B.underlay_ip))
    assert entry.dropped == (C.underlay_ip,)


def test_blackholes_ipv6_and_adopted_overlay_routes_pass_or_stay_native() -> None:
    adopted = KernelRoute.via("10.244.7.0/24", "10.244.7.0", dev=DEV)
    v6 = KernelRoute.via("fd00:2::/64", "fe80::1")
    own = KernelRoute.blackhole("10.244.1.0/24")
    local6 = LocalNode("a", A.underlay_ip, (*A.subnets, net("fe80::/64")), A.pod_cidrs)
    plan = plan_routes(ALWAYS, local6, [B, C], {r.prefix: r for r in (adopted, v6, own)})
    assert plan.kernel_routes() == {r.prefix: r for r in (adopted, v6, own)}
    assert plan.counts()["local"] == 2 and plan.counts()["native"] == 1


def test_membership_changes_move_routes() -> None:
    before = plan_routes(CROSS, A, [B, C], ROUTES).kernel_routes()
    moved_b = RemoteNode("b", addr("192.168.2.11"), B.pod_cidrs)  # b moves to c's subnet
    routes = learned(("10.244.2.0/24", ("192.168.2.11",)), ("10.244.3.0/24", ("192.168.2.10",)))
    after = plan_routes(CROSS, A, [moved_b, C], routes).kernel_routes()
    assert before[net("10.244.2.0/24")].dev is None
    assert after[net("10.244.2.0/24")] == KernelRoute.via("10.244.2.0/24", "10.244.2.0", dev=DEV)
    assert overlay_peers(A, [moved_b])[0].mac == "02:6b:c0:a8:02:0b"
    # c removed from membership: its routes (if BGP still had them) cannot use the overlay.
    gone = plan_routes(CROSS, A, [B], ROUTES)
    assert net("10.244.3.0/24") in gone.unreachable()


# -- properties ----------------------------------------------------------------------------

SUBNETS = [net(f"192.168.{i}.0/24") for i in range(4)]


@st.composite
def topologies(draw: st.DrawFn) -> tuple[LocalNode, list[RemoteNode], dict[Network, KernelRoute]]:
    count = draw(st.integers(1, 8))
    hosts = draw(st.lists(st.integers(0, 4 * 256 - 1), min_size=count + 1, max_size=count + 1))
    ips = [V4(int(SUBNETS[0].network_address) + h) for h in hosts]
    local = LocalNode(
        "n0", ips[0], (SUBNETS[draw(st.integers(0, 3))], SUBNETS[0]), (net("10.0.0.0/24"),)
    )
    remotes = [
        RemoteNode(f"n{i}", ips[i], (net(f"10.{i}.0.0/24"),) if draw(st.booleans()) else ())
        for i in range(1, count + 1)
    ]
    candidates = [*ips[1:], V4("192.168.0.1"), V4("172.16.0.1")]
    routes: dict[Network, KernelRoute] = {}
    for i in range(draw(st.integers(0, 12))):
        hops = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3))
        prefix = net(f"10.200.{i}.0/24")
        routes[prefix] = KernelRoute.via(prefix, *hops)
    return local, remotes, routes


@settings(max_examples=300, deadline=None)
@given(topologies(), st.sampled_from([NATIVE, CROSS, ALWAYS]), st.randoms())
def test_every_route_is_decided_once_and_every_programmed_hop_is_reachable(
    topo: tuple[LocalNode, list[RemoteNode], dict[Network, KernelRoute]],
    mode: RoutingSettings,
    rnd: random.Random,
) -> None:
    local, remotes, routes = topo
    plan = plan_routes(mode, local, remotes, routes)
    assert set(plan.decisions) == set(routes)
    peers: dict[Address, OverlayPeer] = {p.overlay_ip: p for p in overlay_peers(local, remotes)}
    by_ip = {p.underlay_ip: p for p in peers.values()}
    for prefix in routes:
        entry = plan.entry(prefix)
        route = entry.route
        if route is None:
            assert entry.path == "unreachable" and entry.reason
            assert not any(any(h in s for s in local.subnets) for h in routes[prefix].nexthops)
            continue
        if route.dev is None:
            assert all(any(h in s for s in local.subnets) for h in route.nexthops)
            if mode is ALWAYS:
                assert not any(h in by_ip for h in route.nexthops)
        else:
            assert mode.uses_overlay and route.dev == DEV
            assert all(h in peers for h in route.nexthops)
        # Nothing is invented: every next hop stands for one BGP gave.
        given_hops = set(routes[prefix].nexthops)
        assert all(h in given_hops or peers[h].underlay_ip in given_hops for h in route.nexthops)
    shuffled = list(remotes)
    rnd.shuffle(shuffled)
    assert plan_routes(mode, local, shuffled, routes) == plan
