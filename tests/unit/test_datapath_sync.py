"""bgpd.reconcile.datapath: desired BPF maps as pure functions of the node's view, and the
reconciler against the in-memory datapath and host, also wired into the daemon."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from bgpd.bgp.events import PathAttributes, PeerOpen, PeerState, RoutesUpdate
from bgpd.config.model import Config, parse_config
from bgpd.daemon import Daemon
from bgpd.reconcile.datapath import (
    DatapathSync,
    desired_local_pods,
    desired_remote_routes,
    device_for,
    underlay_devices,
)
from bgpd.reconcile.host import GatewayRoute, HostLink, HostView, StaticHost
from common.errors import DatapathError
from datapath.bpf_maps import LocalPod, RemoteRoute
from datapath.routes import KernelRoute
from tests.fakes.bpf import FakeBpfDatapath
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.fakes.lb_store import MemoryLbStore
from tests.fakes.loopback import FakeLoopback
from tests.unit.conftest import (
    CIDR_A,
    CIDR_B,
    CIDR_C,
    NODE_A,
    NODE_B,
    NODE_C,
    FakeSpeaker,
    cluster_data,
    settle,
)

MAC_ETH0, MAC_POD1, MAC_POD2 = (bytes.fromhex(f"0200000000{n}") for n in ("01", "11", "12"))
LAN, UPSTREAM = IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.254")
POD1 = IPv4Address("10.244.1.5")
POD2 = IPv4Address("10.244.1.6")
FOREIGN = IPv4Address("192.168.7.7")  # a /32 route to a veth outside our pod CIDR


def view(**changes: Any) -> HostView:
    base: dict[str, Any] = {
        "links": (
            HostLink(1, "lo", b"\0" * 6, ""),
            HostLink(2, "eth0", MAC_ETH0, "veth"),
            HostLink(7, "kr1", MAC_POD1, "veth"),
            HostLink(8, "kr2", MAC_POD2, "veth"),
            HostLink(9, "dummy0", MAC_POD2, "dummy"),
        ),
        "pod_routes": ((POD1, 7), (POD2, 8), (FOREIGN, 8), (IPv4Address("10.244.1.9"), 9)),
        "connected": ((LAN, 2),),
        "gateway_routes": (),
        "local_addresses": ((IPv4Address("127.0.0.1"), 1), (NODE_A, 2)),
        "ip_forward": False,
    }
    base.update(changes)
    return HostView(**base)


def test_local_pods_are_veth_routes_inside_own_cidrs() -> None:
    pods = desired_local_pods(view(), [CIDR_A])
    assert pods == {POD1: LocalPod(POD1, 7, MAC_POD1), POD2: LocalPod(POD2, 8, MAC_POD2)}
    assert desired_local_pods(view(), [CIDR_B]) == {}


def test_learned_routes_resolve_to_the_underlay_device() -> None:
    routes = [
        KernelRoute.via(CIDR_B, NODE_B),
        KernelRoute.via(CIDR_C, NODE_B, NODE_C),  # ECMP: the kernel's FIB picks
        KernelRoute.blackhole(CIDR_A),
        KernelRoute.via(IPv4Network("10.50.0.0/16"), IPv4Address("172.16.0.1")),  # not on-link
    ]
    remote, skipped = desired_remote_routes(routes, view())
    own = IPv4Network(f"{NODE_A}/32")
    assert remote == {
        CIDR_B: RemoteRoute(CIDR_B, 2, NODE_B),
        CIDR_C: RemoteRoute(CIDR_C, 2, None),
        LAN: RemoteRoute(LAN, 2, None),  # other nodes' addresses: neighbours on eth0
        own: RemoteRoute(own, 1, None),  # the node itself, inside LAN: its stack, via lo
    }
    assert skipped == ["10.50.0.0/16: next hop 172.16.0.1 not on one connected subnet"]


def test_default_route_is_mapped_and_own_addresses_go_to_lo() -> None:
    default = IPv4Network("0.0.0.0/0")
    v = view(gateway_routes=(GatewayRoute(default, (UPSTREAM,)),))
    remote, _ = desired_remote_routes([KernelRoute.via(CIDR_B, NODE_B)], v)
    assert remote[default] == RemoteRoute(default, 2, UPSTREAM)
    # the node's own address would match the default route: it goes to the stack via lo
    assert remote[IPv4Network(f"{NODE_A}/32")] == RemoteRoute(IPv4Network(f"{NODE_A}/32"), 1)
    assert IPv4Network("127.0.0.1/32") not in remote
    # without a route covering it, the node's address is simply not in the map
    remote, _ = desired_remote_routes([KernelRoute.via(CIDR_B, NODE_B)], view(connected=()))
    assert IPv4Network(f"{NODE_A}/32") not in remote


def test_device_for_takes_the_longest_match_and_refuses_split_devices() -> None:
    connected = [(IPv4Network("10.0.0.0/16"), 3), (LAN, 2), (IPv4Network("10.1.0.0/24"), 4)]
    assert device_for([NODE_B], connected) == 2
    assert device_for([NODE_B, IPv4Address("10.1.0.9")], connected) is None
    assert device_for([], connected) is None


def test_underlay_devices_are_where_routes_leave_and_the_node_ip_lives() -> None:
    remote = {CIDR_B: RemoteRoute(CIDR_B, 2, NODE_B)}
    assert underlay_devices(view(), remote, NODE_A) == ["eth0"]
    assert underlay_devices(view(), {}, NODE_A) == ["eth0"]
    assert underlay_devices(view(), {}, IPv4Address("10.9.9.9")) == []


def config(**datapath: Any) -> Config:
    data = cluster_data()
    data["datapath"] = datapath
    return parse_config(data)


def bpf_sync(host: StaticHost) -> tuple[DatapathSync, FakeBpfDatapath]:
    fake = FakeBpfDatapath(ifindexes={"eth0": 2, "kr1": 7, "kr2": 8, "kr9": 10})
    sync = DatapathSync(config(bpf={"enabled": True}), host, lambda _: fake)
    sync.start()
    return sync, fake


def test_sync_fills_maps_attaches_programs_and_removes_what_went() -> None:
    host = StaticHost(view())
    sync, fake = bpf_sync(host)
    assert sync.host_routing == "BPF" and host.view.ip_forward is False
    result = sync.sync([KernelRoute.via(CIDR_B, NODE_B)], [CIDR_A])
    assert (result.pods, result.remote_routes) == (2, 3)  # node B, the LAN, the node
    assert fake.attached == {"eth0": "from_netdev", "kr1": "from_pod", "kr2": "from_pod"}
    assert set(fake.pods) == {POD1, POD2}
    assert fake.routes[CIDR_B] == RemoteRoute(CIDR_B, 2, NODE_B)
    # pod 2 deleted, node B's route withdrawn
    host.view = view(pod_routes=((POD1, 7),))
    sync.sync([], [CIDR_A])
    assert set(fake.pods) == {POD1} and CIDR_B not in fake.routes


def test_programs_removed_behind_our_back_are_attached_again_within_the_interval() -> None:
    now = [0.0]
    fake = FakeBpfDatapath(ifindexes={"eth0": 2, "kr1": 7, "kr2": 8})
    sync = DatapathSync(
        config(bpf={"enabled": True}), StaticHost(view()), lambda _: fake, lambda: now[0]
    )
    sync.start()
    sync.sync([], [CIDR_A])
    fake.detach("kr1")  # someone ran `tc filter del`
    sync.sync([], [CIDR_A])
    assert "kr1" not in fake.attached  # attachments are remembered, not re-read every sync
    now[0] = 31.0
    sync.sync([], [CIDR_A])
    assert fake.attached["kr1"] == "from_pod"


def test_cni_add_maps_the_pod_at_once_and_sync_keeps_it() -> None:
    host = StaticHost(view(pod_routes=()))
    sync, fake = bpf_sync(host)
    assert sync.add_pod("10.244.1.20", "kr9") == "BPF"
    assert fake.attached["kr9"] == "from_pod"
    assert IPv4Address("10.244.1.20") in fake.pods
    assert sync.remove_pod("10.244.1.20") is True
    assert sync.remove_pod("10.244.1.20") is False


def test_cni_add_waits_for_the_programs_to_load() -> None:
    import threading

    host = StaticHost(view(pod_routes=()))
    fake = FakeBpfDatapath(ifindexes={"kr9": 10})
    sync = DatapathSync(config(bpf={"enabled": True}), host, lambda _: fake)
    answers: list[str] = []
    waiter = threading.Thread(target=lambda: answers.append(sync.add_pod("10.244.1.20", "kr9")))
    waiter.start()
    waiter.join(0.1)
    assert answers == [] and fake.pods == {}  # still waiting: no "Legacy" answer
    sync.start()
    waiter.join(5)
    assert answers == ["BPF"] and IPv4Address("10.244.1.20") in fake.pods


def test_bpf_disabled_falls_back_to_kernel_forwarding() -> None:
    host = StaticHost(view())
    sync = DatapathSync(config(), host, lambda _: FakeBpfDatapath())
    assert sync.status()["hostRouting"] == "Starting"
    sync.start()
    assert host.view.ip_forward is True
    assert sync.status()["hostRouting"] == "Legacy"
    assert sync.status()["reason"] == "datapath.bpf.enabled=false"
    assert sync.add_pod("10.244.1.20", "kr9") == "Legacy"
    # someone turned forwarding off: the next sync turns it on again
    host.view = view(ip_forward=False)
    sync.sync([], [CIDR_A])
    assert host.view.ip_forward is True


def test_legacy_start_removes_programs_a_bpf_run_left() -> None:
    host = StaticHost(view(), programs={"eth0": "from_netdev", "kr1": "from_pod"})
    DatapathSync(config(), host, None).start()
    assert host.programs == {} and host.view.ip_forward is True


def test_a_crashed_start_answers_the_cni_with_an_error() -> None:
    def crash(_: str) -> FakeBpfDatapath:
        raise KeyError("bcc said something odd")

    sync = DatapathSync(config(bpf={"enabled": True}), StaticHost(view()), crash)
    with pytest.raises(KeyError):
        sync.start()
    with pytest.raises(DatapathError, match="did not start"):
        sync.add_pod("10.244.1.20", "kr9")


def test_unloadable_bpf_falls_back_and_says_why() -> None:
    def broken(_: str) -> FakeBpfDatapath:
        raise DatapathError("cannot import bcc (No module named 'bcc')")

    host = StaticHost(view())
    sync = DatapathSync(config(bpf={"enabled": True}), host, broken)
    sync.start()
    assert sync.host_routing == "Legacy"
    assert sync.reason == "BPF unavailable: cannot import bcc (No module named 'bcc')"
    assert host.view.ip_forward is True


async def test_daemon_programs_learned_routes_into_the_maps(
    tmp_path: Path, fake_speaker_class: type[FakeSpeaker]
) -> None:
    host = StaticHost(view())
    fake = FakeBpfDatapath(ifindexes={"eth0": 2})
    cfg = parse_config({**cluster_data(tmp_path), "datapath": {"bpf": {"enabled": True}}})
    sync = DatapathSync(cfg, host, lambda _: fake)
    daemon = Daemon(
        cfg,
        FakeKernelRoutes(),
        fake_speaker_class,
        datapath=sync,
        loopback=FakeLoopback(),
        lb_store=MemoryLbStore(),
    )
    await daemon.start()
    try:
        daemon.handle_event(PeerState(NODE_B, "connected"))
        daemon.handle_event(PeerOpen(NODE_B, str(NODE_B), 64512, 9, 1))
        daemon.handle_event(PeerState(NODE_B, "up"))
        attrs = PathAttributes(next_hop=NODE_B)
        daemon.handle_event(RoutesUpdate(NODE_B, announced=((CIDR_B, attrs),)))
        assert await settle(lambda: CIDR_B in fake.routes, timeout=2.0)
        assert fake.routes[CIDR_B] == RemoteRoute(CIDR_B, 2, NODE_B)
        assert set(fake.pods) == {POD1, POD2}
        assert daemon.datapath is not None
        assert daemon.datapath.status()["attached"]["eth0"] == "from_netdev"
    finally:
        daemon.request_stop()
        await asyncio.wait_for(daemon.stop(), 5)


def test_masquerade_uses_bpf_when_loaded_else_nftables_with_the_node_spec() -> None:
    from tests.fakes.masq import FakeMasquerader

    masq: dict[str, Any] = {"enabled": True}
    data = cluster_data()
    data["datapath"] = {"bpf": {"enabled": True}, "masquerade": masq}
    data["routing"] = {"nativeRoutingCIDR": "10.244.0.0/16"}
    cfg = parse_config(data)

    class BpfWithNat(FakeBpfDatapath, FakeMasquerader):
        pass

    bpf = BpfWithNat(ifindexes={"eth0": 2, "kr1": 7, "kr2": 8})
    bpf.spec, bpf.entries = None, []  # the second dataclass's fields (one __init__ ran)
    sync = DatapathSync(cfg, StaticHost(view()), lambda _: bpf)
    sync.start()
    sync.sync([], [CIDR_A])
    assert sync.status()["masquerade"]["active"] == "BPF [eth0] 10.244.1.0/24"
    assert bpf.spec is not None and str(bpf.spec.native_routing_cidrs[0]) == "10.244.0.0/16"

    nft = FakeMasquerader(kind="nftables")
    data["datapath"]["bpf"]["enabled"] = False
    legacy = DatapathSync(parse_config(data), StaticHost(view()), None, make_nft=lambda: nft)
    legacy.start()
    legacy.sync([], [CIDR_A])
    assert legacy.status()["masquerade"]["active"] == "nftables [eth0] 10.244.1.0/24"
