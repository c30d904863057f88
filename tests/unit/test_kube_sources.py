"""Node, BGPPeer, Service, EndpointSlice and LoadBalancerIPPool objects -> kroute's
effective config (pure), and the config rules of `cluster.source: kubernetes`."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from bgpd.bgp.peers import resolve_peers
from bgpd.cli.kube_status import kube_status_lines
from bgpd.cluster.kube_source import kube_effective_config
from bgpd.config.model import Config, parse_config
from bgpd.config.stores import parse_lb_pools, parse_lb_services
from bgpd.kube.services import announced_service_docs, handled, pool_docs
from common.errors import ConfigError
from tests.k8s.objects import (
    bgp_peer,
    endpoint_slice,
    node,
    peers_annotation,
    pool,
    service,
    with_ingress,
)

BASE: dict[str, Any] = {
    "node": {"name": "n1", "ip": "10.0.0.1"},
    "bgp": {"asn": 64512},
    "cluster": {"source": "kubernetes"},
    "ipam": {"mode": "kubernetes"},
}


def base() -> Config:
    return parse_config(BASE, host_defaults=False)


def caches(**objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in ("nodes", "services", "endpointslices", "pools", "bgppeers"):
        out[kind] = {}
        for i, obj in enumerate(objects.get(kind, [])):
            obj.setdefault("metadata", {}).setdefault(
                "creationTimestamp", f"2026-01-01T00:00:0{i}Z"
            )
            meta = obj["metadata"]
            out[kind][f"{meta.get('namespace', '')}/{meta['name']}"] = obj
    return out


def test_config_rules_of_the_kubernetes_source() -> None:
    assert base().cluster.source == "kubernetes"
    for bad, field in (
        ({**BASE, "ipam": {"mode": "static"}}, "ipam.mode"),
        ({**BASE, "cluster": {"source": "static"}}, "ipam.mode"),
        ({**BASE, "cluster": {"source": "kubernetes",
                              "nodes": [{"name": "n1", "ip": "10.0.0.1"}]}}, "cluster.nodes"),
        ({**BASE, "loadBalancer": {"pools": [{"name": "p", "blocks": [{"cidr": "10.9.0.0/24"}]}]}},
         "loadBalancer.pools"),
        ({**BASE, "kubernetes": {"kubeconfig": "/nonexistent/kubeconfig"}},
         "kubernetes.kubeconfig"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as exc:
            parse_config(bad, host_defaults=False)
        assert any(line.startswith(field) for line in exc.value.errors), exc.value.errors


def test_node_name_from_the_downward_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "worker-7")
    config = parse_config({**BASE, "node": {"ip": "10.0.0.7"}})
    assert config.node.name == "worker-7"


def test_nodes_become_cluster_nodes_with_annotations() -> None:
    objs = caches(
        nodes=[
            node("n1", "10.0.0.1", ["10.244.1.0/24"], {"kroute.io/asn": "64513"} | peers_annotation(
                {"address": "10.0.0.254", "asn": 65000})),
            node("n2", "10.0.0.2", ["10.244.2.0/24"],
                 {"kroute.io/route-reflector-cluster-id": "1.1.1.1"}),
            node("n3", "10.0.0.2", ["10.244.3.0/24"]),  # reuses n2's IP: left out
            node("n4", "10.0.0.4", ["10.244.2.128/25"]),  # overlaps n2: left out
            {"metadata": {"name": "n5"}, "status": {}},  # no InternalIP yet
            node("n6", "10.0.0.6", [], {"kroute.io/asn": "x", "kroute.io/peers": "[{]"}),
        ]
    )  # fmt: skip
    config, nodes, problems = kube_effective_config(base(), 64513, objs)
    assert [n.name for n in config.cluster.nodes] == ["n1", "n2", "n6"]
    assert config.cluster.nodes[1].route_reflector_cluster_id == ipaddress.IPv4Address("1.1.1.1")
    assert [str(c) for c in config.cluster.nodes[0].pod_cidrs] == ["10.244.1.0/24"]
    assert config.bgp.asn == 64513
    assert [str(p.address) for p in config.bgp.peers] == ["10.0.0.254"]
    assert sorted(nodes) == ["n1", "n2", "n3", "n4", "n6"]
    text = "\n".join(problems)
    for expected in (
        "n3: InternalIP 10.0.0.2",
        "n4: podCIDR",
        "n5: no IPv4 InternalIP",
        "n6: annotation kroute.io/asn",
        "n6: annotation kroute.io/peers",
    ):
        assert expected in text, text  # fmt: skip
    peers = {str(p.address): p.type for p in resolve_peers(config)}
    assert peers == {"10.0.0.2": "node-to-node mesh", "10.0.0.6": "node-to-node mesh",
                     "10.0.0.254": "external"}  # fmt: skip


def test_own_node_missing_still_lists_itself() -> None:
    config, _, _ = kube_effective_config(base(), 64512, caches(nodes=[node("n2", "10.0.0.2")]))
    assert [n.name for n in config.cluster.nodes] == ["n1", "n2"]
    assert config.self_node() is not None


def test_bgp_peer_objects_by_node_selector() -> None:
    objs = caches(
        nodes=[node("n1", "10.0.0.1", labels={"rack": "a"})],
        bgppeers=[
            bgp_peer("tor-a", "10.0.0.253", 65001, {"rack": "a"}),
            bgp_peer("tor-b", "10.0.0.252", 65002, {"rack": "b"}),
            bgp_peer("everyone", "10.0.0.251", 65003),
            bgp_peer("broken", "not-an-ip", 65003),
        ],
    )
    config, _, problems = kube_effective_config(base(), 64512, objs)
    assert sorted(str(p.address) for p in config.bgp.peers) == ["10.0.0.251", "10.0.0.253"]
    assert any("BGPPeer broken: spec.address" in p for p in problems), problems


def test_services_announced_only_with_an_assigned_address_and_our_class() -> None:
    mine = with_ingress(service("web", "www"), "198.51.100.1")
    other_class = with_ingress(service("web", "b", lb_class="example.com/lb"), "198.51.100.2")
    ours = with_ingress(service("web", "c", lb_class="kroute.io/bgp"), "198.51.100.3")
    pending = service("web", "d")
    cluster_ip = with_ingress(service("web", "e", kind="ClusterIP"), "198.51.100.5")
    docs, problems = announced_service_docs(
        [mine, other_class, ours, pending, cluster_ip], [], default_class=True
    )
    assert [d["name"] for d in docs] == ["c", "www"] and not problems
    assert docs[1]["annotations"] == {"lbipam.kroute.io/ips": "198.51.100.1"}
    docs, _ = announced_service_docs([mine, ours], [], default_class=False)
    assert [d["name"] for d in docs] == ["c"]
    assert not handled(pending, default_class=False) and handled(pending, default_class=True)


def test_local_service_is_served_by_nodes_with_ready_endpoints() -> None:
    svc = with_ingress(service("web", "www", policy="Local"), "198.51.100.1")
    slices = [
        endpoint_slice("web", "www", {"n1": True, "n2": False}),
        endpoint_slice("web", "www", {"n3": True}, suffix="b"),
        endpoint_slice("other", "www", {"n4": True}),
    ]
    docs, _ = announced_service_docs([svc], slices, default_class=True)
    assert docs[0]["nodes"] == ["n1", "n3"] and docs[0]["trafficPolicy"] == "Local"
    (parsed,) = parse_lb_services(docs)
    assert parsed.requested_ips == (ipaddress.ip_address("198.51.100.1"),)


def test_pools_oldest_first_and_bad_ones_skipped() -> None:
    objs = caches(pools=[pool("old", "198.51.100.0/28"), pool("new", "198.51.100.0/29"),
                         pool("bad", "198.51.100.1/28")])  # fmt: skip
    docs, problems = pool_docs(objs["pools"].values())
    assert [d["name"] for d in docs] == ["old", "new"]
    assert any("host bits" in p for p in problems), problems
    assert [p.name for p in parse_lb_pools(docs)] == ["old", "new"]


def test_cluster_pool_blocks_from_the_api_store_replace_node_pod_cidrs() -> None:
    pool_base = parse_config({**BASE, "ipam": {"mode": "cluster-pool", "store": "kubernetes",
                                               "clusterPool": {"cidrs": ["10.244.0.0/16"]}}},
                             host_defaults=False)  # fmt: skip
    objs = caches(nodes=[node("n1", "10.0.0.1", ["10.99.1.0/24"]), node("n2", "10.0.0.2")])
    blocks = {"n1": ("10.244.5.0/24",), "n2": ("10.244.6.0/24",)}
    config, _, _ = kube_effective_config(pool_base, 64512, objs, blocks)
    assert {n.name: [str(c) for c in n.pod_cidrs] for n in config.cluster.nodes} == {
        "n1": ["10.244.5.0/24"], "n2": ["10.244.6.0/24"]}  # fmt: skip
    with pytest.raises(ConfigError) as exc:
        parse_config({**BASE, "ipam": {"mode": "static", "store": "kubernetes"}},
                     host_defaults=False)  # fmt: skip
    assert any("ipam.store" in line for line in exc.value.errors), exc.value.errors


def test_status_lines_say_when_the_api_server_is_away() -> None:
    watching = {"ipam": {"apiServer": {"nodes": "watching", "services": "watching"}}}
    assert kube_status_lines(watching) == [("Kubernetes", "watching nodes, services")]
    away = {"ipam": {"apiServer": {"nodes": "unreachable", "services": "watching"},
                     "problems": ["node n5: no IPv4 InternalIP"]}}  # fmt: skip
    lines = kube_status_lines(away)
    assert lines[0][1].startswith("UNREACHABLE for nodes") and "1 objects ignored" in lines[1][1]
    assert kube_status_lines({"ipam": {"mode": "static"}}) == []


def test_a_peer_object_naming_a_cluster_node_is_ignored() -> None:
    objs = caches(nodes=[node("n1", "10.0.0.1"), node("n2", "10.0.0.2")],
                  bgppeers=[bgp_peer("dup", "10.0.0.2", 64512)])  # fmt: skip
    config, _, problems = kube_effective_config(base(), 64512, objs)
    assert config.bgp.peers == ()
    assert any("peer 10.0.0.2: a cluster node" in p for p in problems), problems


def test_an_ipv6_peer_object_is_ignored_as_sessions_run_from_ipv4() -> None:
    objs = caches(nodes=[node("n1", "10.0.0.1")],
                  bgppeers=[bgp_peer("v6", "2001:db8::1", 65001),
                            bgp_peer("v4", "10.0.0.254", 65001)])  # fmt: skip
    config, _, problems = kube_effective_config(base(), 64512, objs)
    assert [str(p.address) for p in config.bgp.peers] == ["10.0.0.254"]
    assert any(
        p.startswith("peer 2001:db8::1: sessions run from the node's IPv4") for p in problems
    )
