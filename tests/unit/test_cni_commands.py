"""kroute-cni ADD/DEL/CHECK against an in-memory store and a fake netlink side.

Synchronous tests: `run` owns its event loop, as the real one-shot process does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from bgpd.cni import Deps, run
from bgpd.config.model import Config, parse_config
from common.errors import DatapathError
from datapath.cni_net import PodWiring, Wired
from ipam.allocator import ClusterPool, IpamState, allocate_node_blocks
from ipam.store import IpamStore
from tests.fakes.ipam_store import MemoryIpamStore

V4 = ipaddress.IPv4Network("10.244.0.0/16")
V6 = ipaddress.IPv6Network("fd00:244::/48")


class FakePodNetwork:
    """Pod veths as a dict: host_if -> wiring."""

    def __init__(self) -> None:
        self.links: dict[str, PodWiring] = {}
        self.fail = False

    def add(self, wiring: PodWiring) -> Wired:
        if self.fail:
            raise DatapathError("netlink said no")
        self.links[wiring.host_if] = wiring
        return Wired("ee:ee:ee:ee:ee:01", "02:00:00:00:00:01")

    def delete(self, host_if: str) -> bool:
        return self.links.pop(host_if, None) is not None

    def check(self, wiring: PodWiring) -> list[str]:
        have = self.links.get(wiring.host_if)
        return [] if have == wiring else [f"{wiring.host_if} differs"]


class World:
    """One node: its config, store, netlink fake, and a netns path that exists."""

    def __init__(self, tmp_path: Path, cidrs: list[str], mode: str = "cluster-pool") -> None:
        ipam: dict[str, Any] = {"mode": mode}
        if mode == "cluster-pool":
            ipam["clusterPool"] = {"cidrs": cidrs}
        data = {"node": {"name": "node-a", "ip": "10.0.0.1"}, "bgp": {"asn": 64512}, "ipam": ipam}
        self.config = parse_config(data)
        pool = ClusterPool(tuple(ipaddress.ip_network(c) for c in cidrs))
        state, _ = allocate_node_blocks(IpamState(), pool, "node-a")
        self.store = MemoryIpamStore(state)
        self.net = FakePodNetwork()
        self.netns = tmp_path / "netns"
        self.netns.write_text("")

    def deps(self) -> Deps:
        def load(path: str) -> Config:
            assert path == "/etc/kroute/kroute.yaml"
            return self.config

        def store(_: Config) -> IpamStore:
            self.store._closed = False  # the plugin closes it after every call
            return self.store

        return Deps(load, store, lambda: self.net)

    def call(self, command: str, cid: str = "c1", **conf: Any) -> tuple[int, dict[str, Any]]:
        environ = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": str(self.netns),
            "CNI_IFNAME": "eth0",
        }
        stdin = json.dumps({"cniVersion": "1.0.0", "name": "kroute", **conf})
        code, out = run(environ, stdin, self.deps())
        return code, json.loads(out) if out else {}

    def pod_ips(self) -> dict[str, str]:
        state = asyncio.run(self.store.snapshot())
        return {k: str(ip) for k, ip in state.pod_ips.get("node-a", {}).items()}


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, [str(V4)])


def test_add_builds_the_result(world: World) -> None:
    code, result = world.call("ADD", mtu=1450)
    assert code == 0
    (host,) = world.net.links
    assert result == {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": host, "mac": "ee:ee:ee:ee:ee:01"},
            {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": str(world.netns)},
        ],
        "ips": [{"address": "10.244.0.1/32", "interface": 1, "gateway": "169.254.1.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
        "dns": {},
    }
    assert world.net.links[host].mtu == 1450


def test_add_is_idempotent_and_pods_differ(world: World) -> None:
    first = world.call("ADD")
    writes = world.store.writes
    assert world.call("ADD") == first
    assert world.store.writes == writes  # the same IP, nothing new written
    code, other = world.call("ADD", cid="c2")
    assert code == 0
    assert other["ips"][0]["address"] == "10.244.0.2/32"
    assert other["interfaces"][0]["name"] != first[1]["interfaces"][0]["name"]
    assert world.pod_ips() == {"c1/eth0/v4": "10.244.0.1", "c2/eth0/v4": "10.244.0.2"}


def test_del_releases_and_repeats(world: World) -> None:
    world.call("ADD")
    assert world.call("DEL") == (0, {})
    assert world.net.links == {}
    assert world.pod_ips() == {}
    assert world.call("DEL") == (0, {})
    assert world.call("DEL", cid="never-added") == (0, {})


def test_check(world: World) -> None:
    code, err = world.call("CHECK")
    assert code == 1 and err["code"] == 102 and "holds no IP" in err["msg"]
    _, result = world.call("ADD")
    assert world.call("CHECK", prevResult=result) == (0, {})
    world.net.links.clear()  # someone removed the veth
    code, err = world.call("CHECK", prevResult=result)
    assert code == 1 and err["code"] == 102 and "differs" in err["details"]


def test_check_compares_prev_result(world: World) -> None:
    _, result = world.call("ADD")
    result["ips"][0]["address"] = "10.244.0.99/32"
    code, err = world.call("CHECK", prevResult=result)
    assert code == 1 and "prevResult" in err["details"]


def test_dual_stack(tmp_path: Path) -> None:
    world = World(tmp_path, [str(V4), str(V6)])
    code, result = world.call("ADD")
    assert code == 0
    assert [ip["address"] for ip in result["ips"]] == ["10.244.0.1/32", "fd00:244::1/128"]
    assert result["routes"][1] == {"dst": "::/0", "gw": "fe80::1"}
    assert world.call("DEL") == (0, {})
    assert world.pod_ips() == {}


def test_old_versions_name_the_family(world: World) -> None:
    environ = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": str(world.netns),
        "CNI_IFNAME": "eth0",
    }
    code, out = run(environ, json.dumps({"cniVersion": "0.4.0"}), world.deps())
    assert code == 0
    result = json.loads(out)
    assert result["cniVersion"] == "0.4.0" and result["ips"][0]["version"] == "4"


def test_static_mode_refuses_add(tmp_path: Path) -> None:
    world = World(tmp_path, [str(V4)], mode="static")
    code, err = world.call("ADD")
    assert code == 1 and err["code"] == 7
    assert "cluster-pool" in err["details"]
    assert world.call("DEL") == (0, {})  # nothing to release, still fine


def test_missing_netns_on_add(world: World) -> None:
    world.netns.unlink()
    code, err = world.call("ADD")
    assert code == 1 and err["code"] == 3
    assert world.call("DEL") == (0, {})


def test_no_node_block_yet_is_try_again(tmp_path: Path) -> None:
    world = World(tmp_path, [str(V4)])
    world.store = MemoryIpamStore()
    code, err = world.call("ADD")
    assert code == 1 and err["code"] == 11 and "start kroute" in err["details"]


def test_failed_wiring_gives_the_ip_back(world: World) -> None:
    world.net.fail = True
    code, err = world.call("ADD")
    assert code == 1 and err["code"] == 101 and "netlink said no" in err["details"]
    assert world.pod_ips() == {}


def test_exhaustion_is_plugin_code(tmp_path: Path) -> None:
    world = World(tmp_path, [str(V4)])
    pool = ClusterPool((V4,), mask_v4=30)  # a /30 block: two pod IPs
    world.store = MemoryIpamStore(allocate_node_blocks(IpamState(), pool, "node-a")[0])
    assert world.call("ADD", cid="a")[0] == 0
    assert world.call("ADD", cid="b")[0] == 0
    code, err = world.call("ADD", cid="c")
    assert code == 1 and err["code"] == 100 and "exhausted" in err["details"]


def test_invalid_kroute_config_is_code_7(world: World) -> None:
    environ = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": str(world.netns),
        "CNI_IFNAME": "eth0",
    }
    stdin = json.dumps({"cniVersion": "1.0.0", "kroute": {"config": "/nonexistent/k.yaml"}})
    code, out = run(environ, stdin)  # the real loader
    err = json.loads(out)
    assert code == 1 and err["code"] == 7 and "/nonexistent/k.yaml" in err["msg"]


class FakeDaemon:
    """The node's kroute as kroute-cni sees it: maps pods, or is unreachable."""

    def __init__(self) -> None:
        self.pods: dict[str, str] = {}
        self.up = True

    def add(self, socket: str, ip: str, host_if: str) -> str:
        from common.errors import KrouteError

        if not self.up:
            raise KrouteError(f"cannot reach kroute at {socket}")
        self.pods[ip] = host_if
        return "BPF"

    def remove(self, socket: str, ip: str) -> None:
        self.pods.pop(ip, None)


def bpf_world(tmp_path: Path) -> tuple[World, FakeDaemon]:
    world = World(tmp_path, [str(V4)])
    world.config = world.config.model_copy(
        update={"datapath": world.config.datapath.model_copy(update={"bpf": _bpf_on()})}
    )
    daemon = FakeDaemon()
    plain = world.deps

    def deps() -> Deps:
        d = plain()
        return Deps(d.load_config, d.make_store, d.network, daemon.add, daemon.remove)

    world.deps = deps  # type: ignore[method-assign]
    return world, daemon


def _bpf_on() -> Any:
    from bgpd.config.datapath import BpfConfig

    return BpfConfig(enabled=True)


def test_bpf_add_maps_the_pod_through_the_daemon_before_returning(tmp_path: Path) -> None:
    world, daemon = bpf_world(tmp_path)
    code, result = world.call("ADD")
    assert code == 0, result
    (host,) = world.net.links
    assert daemon.pods == {"10.244.0.1": host}
    assert world.net.links[host].kernel_forwarding is False  # BPF answers ARP, forwards
    assert world.call("DEL") == (0, {})
    assert daemon.pods == {}


def test_bpf_add_without_a_running_daemon_is_try_again_and_rolled_back(tmp_path: Path) -> None:
    world, daemon = bpf_world(tmp_path)
    daemon.up = False
    code, err = world.call("ADD")
    assert code == 1 and err["code"] == 11
    assert "start it, then retry" in err["details"]
    assert world.net.links == {} and world.pod_ips() == {}


def test_legacy_add_keeps_kernel_forwarding_on_the_veth(world: World) -> None:
    assert world.call("ADD")[0] == 0
    (wiring,) = world.net.links.values()
    assert wiring.kernel_forwarding is True


def test_overlay_lowers_the_pod_mtu_to_the_underlay_minus_vxlan(tmp_path: Path) -> None:
    world = World(tmp_path, [str(V4)])
    routing = {"mode": "vxlan", "overlay": "crossSubnet"}
    world.config = world.config.model_copy(
        update={"routing": world.config.routing.model_validate(routing)}
    )
    plain = world.deps

    def deps() -> Deps:
        d = plain()
        return Deps(d.load_config, d.make_store, d.network, underlay_mtu=lambda _: 1500)

    world.deps = deps  # type: ignore[method-assign]
    assert world.call("ADD", mtu=9000)[0] == 0
    (wiring,) = world.net.links.values()
    assert wiring.mtu == 1450
    assert world.call("CHECK")[0] == 0  # CHECK expects the same lowered MTU
