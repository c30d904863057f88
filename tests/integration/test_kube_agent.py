"""kroute agents with `cluster.source: kubernetes` against the fake API server: real
exabgp sessions and kernel routes follow Node objects; LoadBalancer services from
Services, EndpointSlices and pools, addresses assigned by a real `kroute operator`
process; an API server outage withdraws nothing."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from bgpd.cli.tables import format_status
from bgpd.kube.api import MERGE_PATCH
from tests.k8s import apis
from tests.k8s.cluster import KubeCluster, kube_cluster
from tests.k8s.fake_apiserver import fake_apiserver
from tests.k8s.objects import bgp_peer, endpoint_slice, pool, service, with_ingress
from tests.k8s.operators import operators
from tests.k8s.store import RESOURCES
from tests.kroute_node import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

GROUP, VERSION = "kroute.io", "v1alpha1"
NODES = next(r for r in RESOURCES if r.plural == "nodes")


@pytest.fixture
def cluster(unique_name: str) -> Iterator[KubeCluster]:
    with (
        fake_apiserver() as server,
        kube_cluster(server, unique_name, f"10.{secrets.randbelow(200) + 20}.7") as made,
    ):
        yield made


def wait_for(
    cluster: KubeCluster, predicate: Callable[[], object], timeout: float, what: str
) -> None:
    """Poll until true (daemons still starting count as not yet); logs on timeout."""
    try:
        wait_until(predicate, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None


def converged(cluster: KubeCluster) -> bool:
    """Every agent peers with every other and routes to every other's pod CIDR."""
    agents = list(cluster.agents.values())
    for agent in agents:
        others = sorted(a.ip for a in agents if a is not agent)
        if agent.established() != others:
            return False
        routes = agent.kernel()
        if any(o.pod_cidr not in routes for o in agents if o is not agent):
            return False
    return True


def test_nodes_added_and_removed_peers_and_routes_follow(cluster: KubeCluster) -> None:
    n1 = cluster.add_node(1)
    n2 = cluster.add_node(2)
    wait_for(cluster, lambda: converged(cluster), 60, "n1 and n2 to peer and route")
    assert f"via {n2.ip}" in n1.kernel()[n2.pod_cidr]
    n3 = cluster.add_node(3)
    wait_for(cluster, lambda: converged(cluster), 60, "n3 to join")
    assert f"via {n3.ip}" in n1.kernel()[n3.pod_cidr]
    cluster.core().delete_node("n3")  # the node is gone from the cluster
    cluster.stop(n3)
    del cluster.agents["n3"]
    wait_for(cluster, lambda: n3.pod_cidr not in n1.kernel() and n3.pod_cidr not in n2.kernel(), 60,
             "n3's pod CIDR to be withdrawn")  # fmt: skip
    wait_for(cluster, lambda: converged(cluster), 30, "n1 and n2 alone")
    assert [p["address"] for p in n1.status()["peers"]] == [n2.ip]
    assert sorted(row["name"] for row in n1.get("/nodes")["nodes"]) == ["n1", "n2"]


API_OUTAGE = 60.0


def test_loadbalancer_services_local_endpoints_and_api_outage(cluster: KubeCluster) -> None:
    n1, n2, n3 = (cluster.add_node(i) for i in (1, 2, 3))
    wait_for(cluster, lambda: converged(cluster), 60, "the mesh")
    core, custom = cluster.core(), apis.custom(cluster.api)
    custom.create_cluster_custom_object(
        GROUP, VERSION, "loadbalancerippools", pool("blue", "198.51.100.0/28")
    )
    www = core.create_namespaced_service("web", service("web", "www"))
    # No address assigned yet (the operator assigns them): nobody announces anything.
    wait_for(cluster, lambda: len(n1.get("/pools")) == 1, 30, "the pool to reach n1")
    assert all(a.served() == [] for a in (n1, n2, n3))
    body = with_ingress({}, "198.51.100.1")
    core.patch_namespaced_service_status("www", "web", body,
                                         _content_type="application/merge-patch+json")  # fmt: skip
    wait_for(cluster, lambda: all(a.served() == ["198.51.100.1"] for a in (n1, n2, n3)), 30,
             "a Cluster service served by every node")  # fmt: skip
    assert www.metadata.name == "www"

    # Local: only the nodes with a ready endpoint announce it; the others route to them.
    local = service("web", "api", policy="Local", port=8080)
    core.create_namespaced_service("web", local)
    core.patch_namespaced_service_status("api", "web", with_ingress({}, "198.51.100.2"),
                                         _content_type="application/merge-patch+json")  # fmt: skip
    discovery = apis.discovery(cluster.api)
    discovery.create_namespaced_endpoint_slice(
        "web", endpoint_slice("web", "api", {"n1": True, "n2": False})
    )
    lb = "198.51.100.2"
    wait_for(
        cluster, lambda: "198.51.100.2" in n1.served() and lb not in n2.served(), 30, "n1 alone"
    )
    wait_for(cluster, lambda: f"via {n1.ip}" in n3.kernel().get(lb, ""), 30, "n3 to route it to n1")
    discovery.replace_namespaced_endpoint_slice(
        "api-a", "web", endpoint_slice("web", "api", {"n1": False, "n2": True})
    )
    wait_for(
        cluster, lambda: lb in n2.served() and lb not in n1.served(), 30, "the endpoints to move"
    )
    wait_for(cluster, lambda: f"via {n2.ip}" in n3.kernel().get(lb, ""), 30, "n3 to route it to n2")

    # The API server goes away: nothing is withdrawn and no kernel route changes.
    before = {a.name: (a.kernel(), a.served()) for a in (n1, n2, n3)}
    cluster.server.down()
    wait_for(cluster, lambda: "unreachable" in str(n1.status().get("ipam")), 30, "n1 to notice")
    time.sleep(API_OUTAGE)  # a minute without the API server (issue: reliability)
    for agent in (n1, n2, n3):
        assert (agent.kernel(), agent.served()) == before[agent.name]
    assert "Kubernetes: UNREACHABLE" in " ".join(format_status(n1.status()).split())
    # Changes made meanwhile are applied within seconds of its return.
    cluster.server.store.delete(NODES, "", "n3")
    cluster.server.up()
    wait_for(cluster, lambda: n3.pod_cidr not in n1.kernel(), 30, "n3's removal to reach n1")
    assert n2.kernel().get(n1.pod_cidr) == before["n2"][0][n1.pod_cidr]


def test_operator_assigns_agents_announce_and_pool_selector_change(cluster: KubeCluster) -> None:
    n1, n2 = cluster.add_node(1), cluster.add_node(2)
    wait_for(cluster, lambda: converged(cluster), 60, "the mesh")
    core, custom = cluster.core(), apis.custom(cluster.api)
    for name, cidr, tier in (("blue", "198.51.100.0/28", "web"), ("green", "203.0.113.0/28", "db")):
        body = pool(name, cidr, selector={"matchLabels": {"tier": tier}})
        custom.create_cluster_custom_object(GROUP, VERSION, "loadbalancerippools", body)
    core.create_namespaced_service("web", service("web", "www", policy="Local",
                                                  labels={"tier": "web"}))  # fmt: skip
    apis.discovery(cluster.api).create_namespaced_endpoint_slice(
        "web", endpoint_slice("web", "www", {"n2": True})
    )
    kubeconfig = cluster.server.kubeconfig(cluster.workdir / "kubeconfig")

    def ingress() -> list[str]:
        status = core.read_namespaced_service("www", "web").status
        lb = status.load_balancer if status else None
        return [i.ip for i in lb.ingress or []] if lb else []

    with operators(kubeconfig, "op1"):
        wait_for(cluster, lambda: ingress() == ["198.51.100.1"], 30, "the operator to assign")
        wait_for(cluster, lambda: n2.served() == ["198.51.100.1"] and n1.served() == [], 30,
                 "n2 (the endpoint's node) alone to announce it")  # fmt: skip
        wait_for(cluster, lambda: f"via {n2.ip}" in n1.kernel().get("198.51.100.1", ""), 30,
                 "n1 to route the address to n2")  # fmt: skip
        wait_for(cluster, lambda: custom.get_cluster_custom_object(
            GROUP, VERSION, "loadbalancerippools", "blue")["status"]["ipsUsed"] == 1, 30,
            "blue's status")  # fmt: skip

        # The selectors swap: the address moves to green's range, the old one is withdrawn.
        for name, tier in (("blue", "db"), ("green", "web")):
            custom.patch_cluster_custom_object(
                GROUP, VERSION, "loadbalancerippools", name,
                {"spec": {"serviceSelector": {"matchLabels": {"tier": tier}}}},
                _content_type=MERGE_PATCH,
            )  # fmt: skip
        wait_for(cluster, lambda: ingress() == ["203.0.113.1"], 30, "the address to move")
        wait_for(cluster, lambda: n2.served() == ["203.0.113.1"], 30, "n2 to announce it")
        wait_for(cluster, lambda: "198.51.100.1" not in n1.kernel()
                 and f"via {n2.ip}" in n1.kernel().get("203.0.113.1", ""), 30,
                 "n1 to follow")  # fmt: skip


def test_cluster_pool_blocks_in_the_api_server(cluster: KubeCluster) -> None:
    cluster.ipam = {"mode": "cluster-pool", "store": "kubernetes",
                    "clusterPool": {"cidrs": ["10.245.0.0/16"], "maskSizeV4": 24}}  # fmt: skip
    n1, n2 = cluster.add_node(1), cluster.add_node(2)
    core = cluster.core()

    def blocks() -> dict[str, list[str]]:
        try:
            cm = core.read_namespaced_config_map("kroute-ipam", "kroute-system")
        except client.ApiException:
            return {}  # no node has allocated yet
        return dict(json.loads(cm.data["state"])["nodeBlocks"])

    wait_for(cluster, lambda: sorted(blocks()) == ["n1", "n2"], 60, "both nodes' blocks")
    got = blocks()
    assert sorted(b for bs in got.values() for b in bs) == ["10.245.0.0/24", "10.245.1.0/24"]
    n1.pod_cidr, n2.pod_cidr = got["n1"][0], got["n2"][0]  # not the Nodes' spec.podCIDRs
    wait_for(cluster, lambda: converged(cluster), 60, "routes to the store's blocks")
    assert f"via {n2.ip}" in n1.kernel()[n2.pod_cidr]
    assert "10.244.2.0/24" not in n1.kernel()


def test_bgp_peer_objects_choose_nodes_by_label(cluster: KubeCluster) -> None:
    n1 = cluster.add_node(1, labels={"rack": "a"})
    n2 = cluster.add_node(2, labels={"rack": "b"})
    wait_for(cluster, lambda: converged(cluster), 60, "the mesh")
    router = cluster.add_router(200, 65000, [n1, n2], ["203.0.113.0/24"])
    custom = apis.custom(cluster.api)
    peer = bgp_peer("tor-a", router, 65000, {"rack": "a"})
    peer["spec"]["import"] = {"allow": ["203.0.113.0/24"]}
    custom.create_cluster_custom_object(GROUP, VERSION, "bgppeers", peer)
    wait_for(cluster, lambda: f"via {router}" in n1.kernel().get("203.0.113.0/24", ""), 60,
             "n1 (rack a) to learn the router's route")  # fmt: skip
    assert router in n1.established()
    assert router not in [p["address"] for p in n2.status()["peers"]]  # rack b: no session
    custom.delete_cluster_custom_object(GROUP, VERSION, "bgppeers", "tor-a")
    wait_for(cluster, lambda: "203.0.113.0/24" not in n1.kernel(), 60, "the peer to go")
    assert router not in [p["address"] for p in n1.status()["peers"]]


def test_route_reflector_from_the_node_annotation(cluster: KubeCluster) -> None:
    cluster.mesh = "none"  # only reflectors and their clients peer
    reflector = {"kroute.io/route-reflector-cluster-id": "10.255.0.1"}
    n1 = cluster.add_node(1, annotations=reflector)
    n2, n3 = cluster.add_node(2), cluster.add_node(3)
    wait_for(cluster, lambda: n1.established() == sorted([n2.ip, n3.ip]), 60, "n1 to reflect")
    assert [p["address"] for p in n2.status()["peers"]] == [n1.ip]  # clients: no mesh
    assert n1.status()["routeReflectorClusterId"] == "10.255.0.1"
    # n3's pod CIDR reaches n2 through the reflector, next hop kept
    wait_for(cluster, lambda: f"via {n3.ip}" in n2.kernel().get(n3.pod_cidr, ""), 60,
             "n3's route reflected to n2")  # fmt: skip
