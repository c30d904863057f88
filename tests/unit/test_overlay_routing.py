"""bgpd.reconcile.overlay: the daemon's routing-mode step against the in-memory overlay, and
overlay routes in the BPF maps."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from bgpd.config.model import Config, parse_config
from bgpd.reconcile.datapath import desired_remote_routes
from bgpd.reconcile.host import HostLink, HostView
from bgpd.reconcile.overlay import OverlayRouting
from datapath.bpf_maps import RemoteRoute
from datapath.overlay_state import Underlay
from datapath.routes import KernelRoute
from tests.fakes.overlay import FakeOverlay
from tests.unit.conftest import CIDR_A, CIDR_B, CIDR_C, NODE_B, NODE_C, cluster_data

LAN = ipaddress.ip_network("10.0.0.0/24")


def config(**routing: Any) -> Config:
    data = cluster_data()
    data["routing"] = routing
    return parse_config(data)


def desired() -> dict[Any, KernelRoute]:
    return {
        CIDR_A: KernelRoute.blackhole(CIDR_A),
        CIDR_B: KernelRoute.via(CIDR_B, NODE_B),
        CIDR_C: KernelRoute.via(CIDR_C, NODE_C),
    }


def test_native_mode_passes_routes_through_and_removes_a_left_device() -> None:
    fake = FakeOverlay()
    fake.devices["kroute.vxlan"] = None  # type: ignore[assignment]  # left by a vxlan run
    routing = OverlayRouting(lambda: fake)
    assert routing.apply(config(), desired()) == desired()
    assert fake.devices == {} and fake.syncs == 0
    assert routing.status(config()) == {"mode": "native", "overlay": "never"}


def test_always_sends_node_routes_through_the_device_with_peers() -> None:
    fake = FakeOverlay()
    routing = OverlayRouting(lambda: fake)
    cfg = config(mode="vxlan", overlay="always")
    out = routing.apply(cfg, desired())
    assert out[CIDR_A] == KernelRoute.blackhole(CIDR_A)
    # next hop: the network address of node B's pod CIDR, on the device, onlink
    assert out[CIDR_B] == KernelRoute.via(CIDR_B, CIDR_B.network_address, dev="kroute.vxlan")
    device = fake.devices["kroute.vxlan"]
    assert device.mtu == 1450 and set(device.neighbours) == {
        CIDR_B.network_address,
        CIDR_C.network_address,
    }
    assert routing.status(cfg)["routes"] == {
        "native": 0,
        "overlay": 2,
        "unreachable": 0,
        "local": 1,
    }


def test_cross_subnet_moves_a_node_to_the_overlay_when_it_leaves_the_subnet() -> None:
    fake = FakeOverlay(underlay_info=Underlay("eth0", 2, 1500, (LAN,)))
    routing = OverlayRouting(lambda: fake)
    cfg = config(mode="vxlan", overlay="crossSubnet")
    assert routing.apply(cfg, desired())[CIDR_B] == KernelRoute.via(CIDR_B, NODE_B)
    # node B now sits on another subnet (membership says so): its routes take the overlay
    data = cluster_data()
    data["routing"] = {"mode": "vxlan", "overlay": "crossSubnet"}
    data["cluster"]["nodes"][1]["ip"] = "10.9.0.2"
    moved = parse_config(data)
    far = {**desired(), CIDR_B: KernelRoute.via(CIDR_B, IPv4Address("10.9.0.2"))}
    out = routing.apply(moved, far)
    assert out[CIDR_B] == KernelRoute.via(CIDR_B, CIDR_B.network_address, dev="kroute.vxlan")
    assert out[CIDR_C] == KernelRoute.via(CIDR_C, NODE_C)  # still on-link: native


def test_overlay_routes_go_to_the_device_in_the_bpf_map() -> None:
    view = HostView(
        links=(HostLink(2, "eth0", b"\1" * 6, "veth"), HostLink(9, "kroute.vxlan", b"\2" * 6, "")),
        connected=((IPv4Network("10.0.0.0/24"), 2),),
    )
    overlay = KernelRoute.via(CIDR_B, CIDR_B.network_address, dev="kroute.vxlan")
    remote, skipped = desired_remote_routes([overlay], view)
    assert remote[CIDR_B] == RemoteRoute(CIDR_B, 9, CIDR_B.network_address)
    assert skipped == []
