"""The VXLAN overlay end to end in namespaces: planner + VxlanOverlay + kernel routes.

    pod pa -- node a 192.168.1.10 --+
                                    +-- switch (bridge) -- 192.168.1.1 router 192.168.2.1 --+
    pod pb -- node b 192.168.1.11 --+                      192.168.3.1 (b moves here)       |
                                                           pod pc -- node c 192.168.2.10 ---+

The router forwards underlay traffic but knows no pod CIDR: pod traffic crosses it only
inside VXLAN. nft counters on the router (forward hook) and on the switch (bridge
forward hook) tell VXLAN packets from plain pod packets. Nodes forward with the kernel
(ip_forward=1); the eBPF path over the overlay is tested in test_overlay_bpf.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from datapath.netlink import NetlinkKernelRoutes
from datapath.overlay import VxlanOverlay
from datapath.overlay_plan import (
    LocalNode,
    RemoteNode,
    RoutingSettings,
    overlay_peers,
    plan_routes,
    pod_mtu,
    vxlan_spec,
)
from datapath.routes import KernelRoute, KernelRouteReconciler, Network
from tests.bpf_fixtures import nsenter, run
from tests.netns_fixtures import ip

pytestmark = [pytest.mark.netns]

DEV = "kroute.vxlan"
CROSS = RoutingSettings("vxlan", "crossSubnet")
ALWAYS = RoutingSettings("vxlan", "always")
GATEWAY = "169.254.1.1"
ECHO_PORT = 7777
ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()
while True:
    c, _ = s.accept()
    while d := c.recv(65536):
        c.sendall(d)
    c.close()
"""
ECHO_CLIENT = """
import socket, sys, threading, time
payload = bytes(range(256)) * 4096  # 1 MiB: far beyond one packet, so MTU matters
for _ in range(50):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); break
    except OSError:
        time.sleep(0.1)
def send():
    c.sendall(payload); c.shutdown(socket.SHUT_WR)
threading.Thread(target=send).start()
got = bytearray()
while d := c.recv(65536):
    got += d
print("ok" if got == payload else f"bad {len(got)}")
"""


def sh(*argv: str, check: bool = True) -> str:
    return run(list(argv), check=check).stdout


@dataclass
class Node:
    name: str
    ns: str
    pod_ns: str
    ip: str
    pod_cidr: str
    pod_ip: str
    overlay: VxlanOverlay | None = None
    routes: KernelRouteReconciler | None = None

    @property
    def member(self) -> RemoteNode:
        return RemoteNode(
            self.name, ipaddress.ip_address(self.ip), (ipaddress.ip_network(self.pod_cidr),)
        )


@dataclass
class Lab:
    prefix: str
    router: str
    switch: str
    nodes: dict[str, Node]
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def sync(self, settings: RoutingSettings, members: list[str], only: str | None = None) -> None:
        """What each member's kroute (or only `only`'s) does: plan, keep the device,
        reconcile routes. Each learned every other member's pod CIDR with its underlay IP."""
        for name in [only] if only else members:
            node = self.nodes[name]
            assert node.overlay is not None and node.routes is not None
            me = ipaddress.IPv4Address(node.ip)
            under = node.overlay.underlay(me)
            local = LocalNode(
                name, me, under.subnets, (ipaddress.ip_network(node.pod_cidr),), under.mtu
            )
            remotes = [self.nodes[m].member for m in members if m != name]
            desired: dict[Network, KernelRoute] = {
                r.pod_cidrs[0]: KernelRoute.via(r.pod_cidrs[0], r.underlay_ip) for r in remotes
            }
            desired[local.pod_cidrs[0]] = KernelRoute.blackhole(local.pod_cidrs[0])
            spec = vxlan_spec(settings, local)
            assert spec is not None
            synced = node.overlay.sync(spec, overlay_peers(local, remotes))
            result = node.routes.reconcile(
                plan_routes(settings, local, remotes, desired).kernel_routes(), full=True
            )
            assert result.ok, (synced, result)

    def routes(self, name: str) -> dict[str, tuple[str, ...]]:
        out = json.loads(ip("-n", self.nodes[name].ns, "-j", "route", "show", "proto", "bgp"))
        return {
            r["dst"]: (r["type"],) if r.get("type") == "blackhole"
            else (r["gateway"], r["dev"], *(["onlink"] if "onlink" in r.get("flags", []) else []))
            for r in out
        }  # fmt: skip

    def ping(self, src: str, dst: str, *, size: int = 56) -> int:
        argv = ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", str(size)]
        out = sh(*nsenter(self.nodes[src].pod_ns), *argv, self.nodes[dst].pod_ip, check=False)
        line = next((ln for ln in out.splitlines() if "received" in ln), "0, 0 received")
        return int(line.split(",")[1].split()[0])

    def tcp(self, src: str, dst: str) -> str:
        argv = [sys.executable, "-c", ECHO_CLIENT, self.nodes[dst].pod_ip, str(ECHO_PORT)]
        return sh(*nsenter(self.nodes[src].pod_ns), *argv, check=False).strip()

    def counters(self) -> dict[str, int]:
        """VXLAN and plain pod packets seen crossing the router and the switch."""
        out = {}
        for where, ns, family in (
            ("router", self.router, "inet"),
            ("switch", self.switch, "bridge"),
        ):
            for name in ("vxlan", "plain"):
                doc = json.loads(
                    sh(*nsenter(ns), "nft", "-j", "list", "counter", family, "kt", name)
                )
                out[f"{where}_{name}"] = next(
                    e["counter"]["packets"] for e in doc["nftables"] if "counter" in e
                )
        return out


def _veth(ns: str, name: str, peer_ns: str, peer: str) -> None:
    ip("-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns)
    ip("-n", ns, "link", "set", name, "up")
    ip("-n", peer_ns, "link", "set", peer, "up")


def _sysctl(ns: str, *settings: str) -> None:
    sh(*nsenter(ns), "sysctl", "-q", "-w", *settings)


def _counters(ns: str, family: str, hook: str) -> None:
    """Named counters `vxlan` (UDP 4789) and `plain` (pod addresses, unencapsulated)."""
    rules = f"""
table {family} kt {{
    counter vxlan {{}}
    counter plain {{}}
    chain watch {{
        type filter hook {hook} priority 0; policy accept;
        udp dport 4789 counter name "vxlan"
        ip saddr 10.244.0.0/16 counter name "plain"
        ip daddr 10.244.0.0/16 counter name "plain"
    }}
}}
"""
    subprocess.run([*nsenter(ns), "nft", "-f", "-"], input=rules, text=True, check=True)


def _underlay(node: Node, gw: str) -> None:
    ip("-n", node.ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
    ip("-n", node.ns, "route", "replace", "default", "via", gw)


def _pod(node: Node, mtu: int) -> None:
    ip("netns", "add", node.pod_ns)
    ip("-n", node.pod_ns, "link", "set", "lo", "up")
    _veth(node.ns, "pod0", node.pod_ns, "eth0")
    _sysctl(node.ns, "net.ipv4.conf.pod0.proxy_arp=1", "net.ipv4.neigh.pod0.proxy_delay=0")
    ip("-n", node.ns, "route", "add", f"{node.pod_ip}/32", "dev", "pod0", "scope", "link")
    ip("-n", node.pod_ns, "link", "set", "eth0", "mtu", str(mtu))
    ip("-n", node.pod_ns, "addr", "add", f"{node.pod_ip}/32", "dev", "eth0")
    ip("-n", node.pod_ns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link")
    ip("-n", node.pod_ns, "route", "add", "default", "via", GATEWAY, "dev", "eth0")


@contextlib.contextmanager
def lab(settings: RoutingSettings) -> Iterator[Lab]:
    p = f"ko{secrets.token_hex(3)}"  # unique per test: names stay within 15 chars
    nodes = {
        n: Node(n, f"{p}{n}", f"{p}p{n}", f"192.168.{s}.{h}", f"10.244.{i}.0/24", f"10.244.{i}.10")
        for i, (n, s, h) in enumerate((("a", 1, 10), ("b", 1, 11), ("c", 2, 10)), start=1)
    }
    t = Lab(p, f"{p}r", f"{p}s", nodes)
    spaces = [
        t.router,
        t.switch,
        *(n.ns for n in nodes.values()),
        *(n.pod_ns for n in nodes.values()),
    ]
    try:
        for ns in (t.router, t.switch, *(n.ns for n in nodes.values())):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            _sysctl(ns, "net.ipv4.ip_forward=1")
        ip("-n", t.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", t.switch, "link", "set", "br0", "up")
        for port, ns, ifname in (
            ("sw-a", nodes["a"].ns, "eth0"),
            ("sw-b", nodes["b"].ns, "eth0"),
            ("sw-r", t.router, "eth1"),
        ):
            _veth(t.switch, port, ns, ifname)
            ip("-n", t.switch, "link", "set", port, "master", "br0")
        _veth(t.router, "eth2", nodes["c"].ns, "eth0")
        ip("-n", t.router, "addr", "add", "192.168.1.1/24", "dev", "eth1")
        ip("-n", t.router, "addr", "add", "192.168.2.1/24", "dev", "eth2")
        for node in nodes.values():
            _underlay(node, "192.168.2.1" if node.name == "c" else "192.168.1.1")
            _pod(node, pod_mtu(settings, 1500))
            node.overlay = VxlanOverlay(node.ns)
            node.routes = KernelRouteReconciler(NetlinkKernelRoutes(node.ns))
        _counters(t.router, "inet", "forward")
        _counters(t.switch, "bridge", "forward")
        yield t
    finally:
        for srv in t.servers:
            srv.kill()
            srv.wait()
        for node in nodes.values():
            if node.overlay:
                node.overlay.close()
            if node.routes:
                node.routes.close()
        for ns in spaces:
            ip("netns", "del", ns, check=False)


def serve(t: Lab, *names: str) -> None:
    for name in names:
        node = t.nodes[name]
        argv = [
            *nsenter(node.pod_ns),
            sys.executable,
            "-c",
            ECHO_SERVER,
            node.pod_ip,
            str(ECHO_PORT),
        ]
        t.servers.append(
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        )


def test_cross_subnet_native_on_the_subnet_vxlan_across_the_router() -> None:
    with lab(CROSS) as t:
        # Without kroute, pods on different nodes cannot talk at all: the test can fail.
        assert t.ping("a", "c") == 0
        t.sync(CROSS, ["a", "b", "c"])
        assert t.routes("a") == {
            "10.244.1.0/24": ("blackhole",),
            "10.244.2.0/24": ("192.168.1.11", "eth0"),
            "10.244.3.0/24": ("10.244.3.0", DEV, "onlink"),
        }
        assert t.routes("c") == {
            "10.244.1.0/24": ("10.244.1.0", DEV, "onlink"),
            "10.244.2.0/24": ("10.244.2.0", DEV, "onlink"),
            "10.244.3.0/24": ("blackhole",),
        }
        serve(t, "a", "b", "c")
        for src, dst in (("a", "c"), ("c", "a"), ("b", "c"), ("a", "b"), ("b", "a")):
            assert t.ping(src, dst) == 3, (src, dst)
            assert t.tcp(src, dst) == "ok", (src, dst)
        # The pod MTU is exactly what fits the overlay: 1422 + 28 = 1450 passes with DF.
        assert t.ping("a", "c", size=1422) == 3
        seen = t.counters()
        # At least the 24 pings that crossed the router (TCP counts vary with GSO).
        assert seen["router_vxlan"] >= 24 and seen["router_plain"] == 0, seen
        assert seen["switch_plain"] >= 12, seen  # a <-> b natively: at least the 12 pings


def test_always_puts_the_same_subnet_neighbour_over_vxlan_too() -> None:
    with lab(ALWAYS) as t:
        t.sync(ALWAYS, ["a", "b", "c"])
        assert t.routes("a")["10.244.2.0/24"] == ("10.244.2.0", DEV, "onlink")
        serve(t, "b")
        assert t.ping("a", "b") == 3 and t.tcp("a", "b") == "ok"
        seen = t.counters()
        assert seen["switch_plain"] == 0 and seen["switch_vxlan"] >= 6, seen
        # Back to crossSubnet: the route moves back to native, the device stays.
        before = t.nodes["a"].overlay.state(DEV)  # type: ignore[union-attr]
        t.sync(CROSS, ["a", "b", "c"])
        assert t.routes("a")["10.244.2.0/24"] == ("192.168.1.11", "eth0")
        assert t.ping("a", "b") == 3
        after = t.nodes["a"].overlay.state(DEV)  # type: ignore[union-attr]
        assert before is not None and after is not None and after.ifindex == before.ifindex
        assert t.counters()["switch_plain"] > 0


def test_membership_changes_move_and_remove_routes_fdb_and_neighbours() -> None:
    with lab(CROSS) as t:
        t.sync(CROSS, ["a", "b", "c"])
        assert t.ping("a", "b") == 3
        # b moves to a third subnet behind the router: native -> overlay everywhere.
        b = t.nodes["b"]
        ip("-n", b.ns, "link", "del", "eth0")
        _veth(t.router, "eth3", b.ns, "eth0")
        ip("-n", t.router, "addr", "add", "192.168.3.1/24", "dev", "eth3")
        b.ip = "192.168.3.11"
        _underlay(b, "192.168.3.1")
        t.sync(CROSS, ["a", "b", "c"])
        assert t.routes("a")["10.244.2.0/24"] == ("10.244.2.0", DEV, "onlink")
        state = t.nodes["a"].overlay.state(DEV)  # type: ignore[union-attr]
        assert state is not None
        assert state.fdb == {
            "02:6b:c0:a8:03:0b": frozenset({ipaddress.IPv4Address("192.168.3.11")}),
            "02:6b:c0:a8:02:0a": frozenset({ipaddress.IPv4Address("192.168.2.10")}),
        }
        assert t.ping("a", "b") == 3 and t.ping("b", "c") == 3
        # c leaves: its route, FDB entry and neighbour go from a and b.
        t.sync(CROSS, ["a", "b"])
        for name in ("a", "b"):
            assert "10.244.3.0/24" not in t.routes(name)
            state = t.nodes[name].overlay.state(DEV)  # type: ignore[union-attr]
            assert state is not None
            assert "02:6b:c0:a8:02:0a" not in state.fdb
            assert ipaddress.IPv4Address("10.244.3.0") not in state.neighbours
        assert t.ping("a", "c") == 0 and t.ping("a", "b") == 3


def test_a_restarted_kroute_adopts_the_device_without_losing_a_packet() -> None:
    with lab(CROSS) as t:
        t.sync(CROSS, ["a", "b", "c"])
        a = t.nodes["a"]
        assert a.overlay is not None and a.routes is not None
        before = a.overlay.state(DEV)
        argv = ["ping", "-n", "-q", "-c", "150", "-i", "0.02", "-W", "1", t.nodes["c"].pod_ip]
        with subprocess.Popen(
            [*nsenter(a.pod_ns), *argv], stdout=subprocess.PIPE, text=True
        ) as ping:
            try:
                for _ in range(3):  # kroute restarts on a: fresh netlink state, full resync
                    a.overlay.close()
                    a.routes.close()
                    a.overlay = VxlanOverlay(a.ns)
                    a.routes = KernelRouteReconciler(NetlinkKernelRoutes(a.ns))
                    t.sync(CROSS, ["a", "b", "c"], only="a")
                out, _ = ping.communicate(timeout=60)
            finally:
                ping.kill()
        assert " 150 received" in out, out
        after = a.overlay.state(DEV)
        assert before is not None and after == before
