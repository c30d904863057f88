"""kroute agents with `cluster.source: kubernetes` against the fake API server: real
exabgp sessions and kernel routes follow Node objects; LoadBalancer services from
Services, EndpointSlices and pools; an API server outage withdraws nothing."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from tests.k8s.cluster import KubeCluster, kube_cluster
from tests.k8s.fake_apiserver import fake_apiserver
from tests.k8s.objects import endpoint_slice, pool, service, with_ingress
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


def test_loadbalancer_services_local_endpoints_and_api_outage(cluster: KubeCluster) -> None:
    n1, n2, n3 = (cluster.add_node(i) for i in (1, 2, 3))
    wait_for(cluster, lambda: converged(cluster), 60, "the mesh")
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
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

    # Local: only the nodes with a ready endpoint announce it (to the upstream routers:
    # nodes neither exchange nor install each other's LB /32s, see README).
    local = service("web", "api", policy="Local", port=8080)
    core.create_namespaced_service("web", local)
    core.patch_namespaced_service_status("api", "web", with_ingress({}, "198.51.100.2"),
                                         _content_type="application/merge-patch+json")  # fmt: skip
    discovery = client.DiscoveryV1Api(cluster.api)
    discovery.create_namespaced_endpoint_slice(
        "web", endpoint_slice("web", "api", {"n1": True, "n2": False})
    )
    lb = "198.51.100.2"
    wait_for(
        cluster, lambda: "198.51.100.2" in n1.served() and lb not in n2.served(), 30, "n1 alone"
    )
    discovery.replace_namespaced_endpoint_slice(
        "api-a", "web", endpoint_slice("web", "api", {"n1": False, "n2": True})
    )
    wait_for(
        cluster, lambda: lb in n2.served() and lb not in n1.served(), 30, "the endpoints to move"
    )
    assert lb not in n3.kernel() and lb not in n1.kernel()

    # The API server goes away: nothing is withdrawn and no kernel route changes.
    before = {a.name: (a.kernel(), a.served()) for a in (n1, n2, n3)}
    cluster.server.down()
    wait_for(cluster, lambda: "unreachable" in str(n1.status().get("ipam")), 30, "n1 to notice")
    for agent in (n1, n2, n3):
        assert (agent.kernel(), agent.served()) == before[agent.name]
    # Changes made meanwhile are applied within seconds of its return.
    cluster.server.store.delete(NODES, "", "n3")
    cluster.server.up()
    wait_for(cluster, lambda: n3.pod_cidr not in n1.kernel(), 30, "n3's removal to reach n1")
    assert n2.kernel().get(n1.pod_cidr) == before["n2"][0][n1.pod_cidr]
