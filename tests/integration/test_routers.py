"""BIRD, FRR and GoBGP from `lab.routers`, peering for real in network namespaces.

Each test builds a LAN (a bridge in its own namespace) with one namespace per router at
192.0.2.I/24, all named with a unique prefix and removed in teardown, even on failure.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab import net, procs
from lab.routers import KINDS, DaemonRouter, GobgpRouter, NeighborConf, make_router
from lab.routers.gobgp_fib import PROTO as GOBGP_FIB_PROTO

pytestmark = [pytest.mark.netns, pytest.mark.peers]

POD = "10.99.1.0/24"
EXT = "172.30.99.0/24"
Lan = Callable[[int], list[str]]


def ip_of(i: int) -> str:
    return f"192.0.2.{i}"


@pytest.fixture
def lan() -> Iterator[Lan]:
    """lan(n): n namespaces on one bridge, router i at 192.0.2.i; all removed at the end."""
    prefix = "rt" + secrets.token_hex(3)
    made: list[str] = []

    def build(count: int) -> list[str]:
        bridge_ns = f"{prefix}-lan"
        net.add_netns(bridge_ns)
        made.append(bridge_ns)
        net.run(["ip", "-n", bridge_ns, "link", "add", "br0", "type", "bridge"])
        net.run(["ip", "-n", bridge_ns, "link", "set", "br0", "up"])
        names = []
        for i in range(1, count + 1):
            ns = f"{prefix}-r{i}"
            net.add_netns(ns)
            made.append(ns)
            net.add_veth(ns, "eth0", bridge_ns, f"r{i}")
            net.run(["ip", "-n", bridge_ns, "link", "set", f"r{i}", "master", "br0", "up"])
            net.run(["ip", "-n", ns, "addr", "add", f"{ip_of(i)}/24", "dev", "eth0"])
            net.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            names.append(ns)
        return names

    yield build
    for ns in made:
        net.del_netns(ns)
    assert not [ns for ns in made if net.netns_exists(ns)]


@pytest.fixture
def routers() -> Iterator[list[DaemonRouter]]:
    """Routers a test starts; every one is stopped at the end, and no process survives."""
    started: list[DaemonRouter] = []
    yield started
    recorded = [p for r in started for p in r.procs]
    for router in started:
        router.stop()
    assert not [p for p in recorded if procs.is_alive(p)]


def kernel_prefixes(ns: str) -> set[str]:
    out = net.run(["ip", "-n", ns, "-j", "route", "show"])
    return {r["dst"] for r in json.loads(out or "[]")}


def kernel_hops(ns: str, prefix: str, proto: int) -> list[str] | None:
    """The sorted next hops of the kernel route to `prefix` of protocol `proto`, or None."""
    out = net.run(["ip", "-n", ns, "-j", "route", "show", "proto", str(proto)])
    for route in json.loads(out or "[]"):
        if route["dst"] == prefix:
            hops = [route.get("gateway")] + [h.get("gateway") for h in route.get("nexthops", [])]
            return sorted(h for h in hops if h)
    return None


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_two_routers_exchange_routes_over_md5(
    kind: str, lan: Lan, routers: list[DaemonRouter], tmp_path: Path
) -> None:
    up_ns, node_ns = lan(2)
    up = make_router(
        kind,
        netns=up_ns,
        workdir=tmp_path / "up",
        router_id=ip_of(1),
        asn=65000,
        neighbors=[NeighborConf(ip_of(2), 64512, password="s3cret-md5")],
        role="upstream",
        originate=[EXT],
    )
    node = make_router(
        kind,
        netns=node_ns,
        workdir=tmp_path / "node",
        router_id=ip_of(2),
        asn=64512,
        neighbors=[NeighborConf(ip_of(1), 65000, password="s3cret-md5")],
        role="upstream",
        originate=[POD],
    )
    routers += [up, node]
    up.start()
    node.start()
    up.wait_established([ip_of(2)], 30)
    wait_for(lambda: POD in up.routes() and EXT in node.routes(), 15, "routes both ways")
    assert up.routes()[POD] == [ip_of(2)]
    assert up.routes()[EXT] == []  # originated here
    assert node.routes()[EXT] == [ip_of(1)]
    assert up.received_from(ip_of(2)) == [POD]
    assert node.as_path(EXT) == [65000]
    assert up.as_path(POD) == [64512]
    assert up.communities(POD) == []
    assert node.neighbor_state(ip_of(1)) == "established"
    wait_for(lambda: POD in kernel_prefixes(up_ns), 10, f"{POD} in {kind}'s kernel")
    up.stop()
    node.stop()
    assert net.netns_pids(up_ns) == [] and net.netns_pids(node_ns) == []
    assert POD not in kernel_prefixes(up_ns), "the daemon's kernel routes go with it"
    up.stop()  # idempotent


def test_gobgp_upstream_installs_its_multipaths_and_withdrawals_in_the_kernel(
    lan: Lan, routers: list[DaemonRouter], tmp_path: Path
) -> None:
    up_ns, *node_ns = lan(3)
    up = make_router(
        "gobgp",
        netns=up_ns,
        workdir=tmp_path / "up",
        router_id=ip_of(1),
        asn=65000,
        neighbors=[NeighborConf(ip_of(i), 64512) for i in (2, 3)],
        role="upstream",
        originate=[EXT],
    )
    nodes = [  # GoBGP withdraws on request (`global rib del`), its sessions staying up
        GobgpRouter(
            ns,
            tmp_path / f"n{i}",
            ip_of(i),
            64512,
            [NeighborConf(ip_of(1), 65000)],
            "upstream",
            [POD],
        )
        for i, ns in zip((2, 3), node_ns, strict=True)
    ]
    routers += [up, *nodes]
    for router in routers:
        router.start()
    assert len(up.procs) == 2, "gobgpd and its FIB agent"
    up.wait_established([ip_of(2), ip_of(3)], 30)

    def hops() -> list[str] | None:
        return kernel_hops(up_ns, POD, GOBGP_FIB_PROTO)

    wait_for(lambda: hops() == [ip_of(2), ip_of(3)], 15, f"{POD} as ECMP in the kernel")
    assert kernel_hops(up_ns, EXT, GOBGP_FIB_PROTO) is None, "originated here: not installed"
    nodes[0].gobgp(["global", "rib", "del", "-a", "ipv4", POD], "withdrawing")
    wait_for(lambda: hops() == [ip_of(3)], 10, f"{POD} via the remaining path only")
    nodes[0].gobgp(["global", "rib", "add", "-a", "ipv4", POD], "announcing again")
    wait_for(lambda: hops() == [ip_of(2), ip_of(3)], 10, f"{POD} as ECMP again")
    for node in nodes:
        node.gobgp(["global", "rib", "del", "-a", "ipv4", POD], "withdrawing")
    wait_for(lambda: hops() is None, 10, f"{POD} gone from the kernel")
    assert POD not in up.routes()

    nodes[1].gobgp(["global", "rib", "add", "-a", "ipv4", POD], "announcing again")
    wait_for(lambda: hops() == [ip_of(3)], 10, f"{POD} back in the kernel")
    agent = up.procs[1]
    up.stop()
    assert not procs.is_alive(agent) and net.netns_pids(up_ns) == []
    assert kernel_hops(up_ns, POD, GOBGP_FIB_PROTO) is None, "the agent takes its routes along"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_wrong_md5_password_keeps_the_session_down(
    kind: str, lan: Lan, routers: list[DaemonRouter], tmp_path: Path
) -> None:
    a_ns, b_ns = lan(2)
    a = make_router(
        kind,
        netns=a_ns,
        workdir=tmp_path / "a",
        router_id=ip_of(1),
        asn=65000,
        neighbors=[NeighborConf(ip_of(2), 64512, password="right")],
        role="upstream",
    )
    b = make_router(
        kind,
        netns=b_ns,
        workdir=tmp_path / "b",
        router_id=ip_of(2),
        asn=64512,
        neighbors=[NeighborConf(ip_of(1), 65000, password="wrong")],
        role="upstream",
    )
    routers += [a, b]
    a.start()
    b.start()
    time.sleep(6)  # several connect retries (every 2 s)
    assert a.neighbor_state(ip_of(2)) != "established"
    assert b.neighbor_state(ip_of(1)) != "established"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reflector_reflects_between_clients_and_installs_nothing(
    kind: str, lan: Lan, routers: list[DaemonRouter], tmp_path: Path
) -> None:
    rr_ns, c1_ns, c2_ns = lan(3)
    rr = make_router(
        kind,
        netns=rr_ns,
        workdir=tmp_path / "rr",
        router_id=ip_of(1),
        asn=64512,
        neighbors=[NeighborConf(ip_of(i), 64512, rr_client=True) for i in (2, 3)],
        role="reflector",
    )
    clients = [
        make_router(
            "bird",  # a client that installs what it learns, for every reflector kind
            netns=ns,
            workdir=tmp_path / f"c{i}",
            router_id=ip_of(i),
            asn=64512,
            neighbors=[NeighborConf(ip_of(1), 64512)],
            role="upstream",
            originate=[POD] if i == 2 else [],
        )
        for i, ns in ((2, c1_ns), (3, c2_ns))
    ]
    routers += [rr, *clients]
    for router in routers:
        router.start()
    rr.wait_established([ip_of(2), ip_of(3)], 30)
    wait_for(lambda: POD in clients[1].routes(), 15, f"{POD} reflected to the second client")
    assert clients[1].routes()[POD] == [ip_of(2)], "the reflector keeps the next hop"
    assert rr.routes()[POD] == [ip_of(2)]
    wait_for(lambda: POD in kernel_prefixes(c2_ns), 10, f"{POD} in the client's kernel")
    assert POD not in kernel_prefixes(rr_ns), "a reflector is control plane only"


def test_start_failure_names_the_router_and_leaves_nothing(
    lan: Lan, routers: list[DaemonRouter], tmp_path: Path
) -> None:
    (ns,) = lan(1)
    bad = make_router(
        "bird",
        netns=ns,
        workdir=tmp_path / "bad",
        router_id=ip_of(1),
        asn=65000,
        neighbors=[NeighborConf(ip_of(2), 64512, password='a"b')],  # breaks bird.conf
        role="upstream",
    )
    routers.append(bad)
    with pytest.raises(
        Exception, match=r"(?s)bird upstream 192\.0\.2\.1 .*bird\.log.*syntax error"
    ):
        bad.start()
    assert bad.procs == [] and net.netns_pids(ns) == []
