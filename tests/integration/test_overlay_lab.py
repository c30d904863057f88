"""VXLAN crossSubnet in running daemons: a lab on two subnets joined by a router namespace
that knows no pod routes (`--subnets 2 --overlay crossSubnet`, etcd membership, BPF,
ip_forward=0 on the nodes). Nodes on the same subnet route each other's pods natively,
the others through kroute.vxlan; routes, BPF maps, FDB and neighbours follow a node
joining and leaving."""

from __future__ import annotations

import json

import pytest

from lab import nodes as labnodes
from lab.plan import NodePlan
from tests.integration.conftest import LabFactory
from tests.integration.test_datapath import (
    kroute_cli,
    pings,
    remote_items,
    route_to,
    sh,
    tcp_transfer,
)
from tests.kroute_node import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.exabgp, pytest.mark.bpf, pytest.mark.etcd]


def ifindex(node: NodePlan, dev: str) -> int:
    return int(json.loads(sh(node.netns, "ip", "-j", "link", "show", dev))[0]["ifindex"])


def fdb_destinations(node: NodePlan) -> set[str]:
    shown = json.loads(sh(node.netns, "bridge", "-j", "fdb", "show", "dev", "kroute.vxlan"))
    return {entry["dst"] for entry in shown if "dst" in entry}


def wait_carried(node: NodePlan, other: NodePlan, dev: str) -> None:
    """`node` routes `other`'s pods through `dev`, in the kernel and in its BPF map."""
    wait_until(
        lambda: f"dev {dev}" in route_to(node, other.pod_cidr),
        60,
        f"{node.name}: {other.name}'s pods via {dev}",
    )
    index = ifindex(node, dev)
    wait_until(
        lambda: remote_items(node).get(other.pod_cidr, {}).get("ifindex") == index,
        60,
        f"{node.name}'s map routing {other.name}'s pods to {dev}",
    )


def assert_talk(src: NodePlan, dst: NodePlan) -> None:
    assert pings(src, dst.pod_ip) == 3 and pings(dst, src.pod_ip) == 3
    assert tcp_transfer(src, dst.pod_ns, dst.pod_ip) == src.pod_ip  # the source is kept


def test_cross_subnet_pods_go_over_vxlan_same_subnet_natively(make_lab: LabFactory) -> None:
    lab = make_lab(3, store="etcd", subnets=2, overlay="crossSubnet")
    a, b, c = lab.plan.nodes  # a and c on 172.31.K.0/25, b on 172.31.K.128/25
    assert (a.ip.split(".")[3], b.ip.split(".")[3], c.ip.split(".")[3]) == ("1", "130", "3")
    for node in (a, b, c):
        assert sh(node.netns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
    wait_carried(a, b, "kroute.vxlan")
    wait_carried(a, c, "eth0")
    wait_carried(b, c, "kroute.vxlan")
    assert f"via {c.ip} dev eth0" in route_to(a, c.pod_cidr)
    assert "onlink" in route_to(a, b.pod_cidr)
    assert_talk(a, b)  # across the router, encapsulated
    assert_talk(a, c)  # on the subnet, native
    assert_talk(b, c)
    status = kroute_cli(a, "status")
    assert "Routing:       vxlan (overlay crossSubnet): 1 native, 1 overlay" in status, status
    assert b.ip in fdb_destinations(a)
    router = lab.plan.router_ns
    assert "10.2" not in sh(router, "ip", "route")  # the router never learns a pod route

    # A node joins subnet B: a (subnet A) reaches it over VXLAN, b (subnet B) natively.
    d = labnodes.add_node(lab.plan.name, 90, say=lambda _: None)
    assert d.ip.endswith(".132")
    wait_carried(a, d, "kroute.vxlan")
    wait_carried(b, d, "eth0")
    assert_talk(a, d)
    assert pings(b, d.pod_ip) == 3
    assert d.ip in fdb_destinations(a)
    wait_until(lambda: "1 native, 2 overlay" in kroute_cli(a, "status"), 30, "a's counts with d")

    # It leaves: its routes, FDB entry and neighbour go from every node.
    labnodes.remove_node(lab.plan.name, d.name, 90, say=lambda _: None)
    for node in (a, b, c):
        wait_until(lambda n=node: not route_to(n, d.pod_cidr), 30, f"{node.name}: d's route")
    wait_until(lambda: d.ip not in fdb_destinations(a), 30, "d's FDB entry on a")
    overlay_ip = d.pod_cidr.split("/")[0]
    assert overlay_ip not in sh(a.netns, "ip", "neigh", "show", "dev", "kroute.vxlan")
    assert d.pod_cidr not in remote_items(a)
    assert_talk(a, b)
