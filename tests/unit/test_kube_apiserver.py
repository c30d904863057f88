"""The fake API server, driven by the real `kubernetes` client: the protocol details
kroute relies on (resourceVersion, selectors, watch with bookmarks and 410 Gone, 409 on
a stale resourceVersion, the status subresource, patches)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client import ApiException

from bgpd.kube.api import api_client
from tests.k8s import apis
from tests.k8s.fake_apiserver import FakeApiServer, fake_apiserver

GROUP, VERSION = "kroute.io", "v1alpha1"


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with fake_apiserver(bookmark_interval=0.2) as srv:
        yield srv


@pytest.fixture
def api(server: FakeApiServer, tmp_path: Path) -> client.ApiClient:
    return api_client(str(server.kubeconfig(tmp_path / "kubeconfig")))


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]},
    }


def service(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    }


def test_crud_resource_versions_and_conflicts(api: client.ApiClient) -> None:
    core = apis.core(api)
    created = core.create_node(node("n1", {"role": "a"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.status is None  # status goes through the subresource only
    with pytest.raises(ApiException) as exc:
        core.create_node(node("n1"))
    assert exc.value.status == 409
    stale = created.metadata.resource_version
    current = core.read_node("n1")
    current.metadata.labels["role"] = "b"
    updated = core.replace_node("n1", current)
    assert int(updated.metadata.resource_version) > int(stale)
    current.metadata.resource_version = stale
    with pytest.raises(ApiException) as exc:
        core.replace_node("n1", current)
    assert exc.value.status == 409
    core.patch_node("n1", {"metadata": {"labels": {"role": "c"}}},
                    _content_type="application/merge-patch+json")  # fmt: skip
    assert core.read_node("n1").metadata.labels == {"role": "c"}
    core.patch_node("n1", [{"op": "replace", "path": "/metadata/labels/role", "value": "d"}])
    assert core.read_node("n1").metadata.labels == {"role": "d"}
    core.delete_node("n1")
    with pytest.raises(ApiException) as exc:
        core.read_node("n1")
    assert exc.value.status == 404


def test_status_subresource_and_selectors(api: client.ApiClient) -> None:
    core = apis.core(api)
    for name in ("web", "db"):
        core.create_namespaced_service("default", service(name))
    status = {"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}}
    core.patch_namespaced_service_status(
        "web", "default", status, _content_type="application/merge-patch+json"
    )
    web = core.read_namespaced_service("web", "default")
    assert web.status.load_balancer.ingress[0].ip == "198.51.100.1"
    web.status.load_balancer.ingress = []  # a spec write cannot change status
    web.spec.ports[0].port = 81
    core.replace_namespaced_service("web", "default", web)
    web = core.read_namespaced_service("web", "default")
    assert web.status.load_balancer.ingress[0].ip == "198.51.100.1"
    assert web.spec.ports[0].port == 81
    picked = core.list_service_for_all_namespaces(label_selector="app in (db, cache)")
    assert [s.metadata.name for s in picked.items] == ["db"]
    picked = core.list_namespaced_service("default", field_selector="metadata.name!=db")
    assert [s.metadata.name for s in picked.items] == ["web"]
    assert core.list_namespaced_service("other").items == []


def test_custom_objects_with_status(api: client.ApiClient) -> None:
    custom = apis.custom(api)
    pool = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LoadBalancerIPPool",
        "metadata": {"name": "blue"},
        "spec": {"blocks": [{"cidr": "198.51.100.0/28"}]},
    }
    made = custom.create_cluster_custom_object(GROUP, VERSION, "loadbalancerippools", pool)
    made["status"] = {"conditions": [{"type": "Conflict", "status": "False"}]}
    custom.replace_cluster_custom_object_status(GROUP, VERSION, "loadbalancerippools", "blue", made)
    got = custom.get_cluster_custom_object(GROUP, VERSION, "loadbalancerippools", "blue")
    assert got["status"]["conditions"][0]["type"] == "Conflict"
    assert got["metadata"]["generation"] == 1
    got["spec"]["disabled"] = True
    custom.replace_cluster_custom_object(GROUP, VERSION, "loadbalancerippools", "blue", got)
    with pytest.raises(ApiException) as exc:  # the same resourceVersion again: stale
        custom.replace_cluster_custom_object(GROUP, VERSION, "loadbalancerippools", "blue", got)
    assert exc.value.status == 409


def test_watch_resumes_with_bookmarks_and_gets_410_when_compacted(
    api: client.ApiClient, server: FakeApiServer
) -> None:
    core = apis.core(api)
    core.create_node(node("n1"))
    listed = core.list_node()
    rv = listed.metadata.resource_version
    core.create_node(node("n2"))
    events = []
    stream = apis.watch_stream(
        core.list_node, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=2
    )
    for event in stream:
        events.append((event["type"], event["raw_object"]["metadata"].get("name")))
        if event["type"] == "BOOKMARK":
            break
    assert events == [("ADDED", "n2"), ("BOOKMARK", None)]
    server.store.compact()
    with pytest.raises(ApiException) as exc:
        for _ in apis.watch_stream(core.list_node, resource_version=rv, timeout_seconds=2):
            pass
    assert exc.value.status == 410
    # without a resourceVersion a watch starts with every object as ADDED
    first = next(iter(apis.watch_stream(core.list_node, timeout_seconds=2)))
    assert first["type"] == "ADDED"


def test_leases_conflict_on_stale_resource_version(api: client.ApiClient) -> None:
    coord = apis.coordination(api)
    lease = {"metadata": {"name": "op"}, "spec": {"holderIdentity": "a"}}
    made = coord.create_namespaced_lease("kroute-system", lease)
    made.spec.holder_identity = "b"
    coord.replace_namespaced_lease("op", "kroute-system", made)
    made.spec.holder_identity = "c"
    with pytest.raises(ApiException) as exc:
        coord.replace_namespaced_lease("op", "kroute-system", made)
    assert exc.value.status == 409
    assert coord.read_namespaced_lease("op", "kroute-system").spec.holder_identity == "b"


def test_down_and_up_on_the_same_port(api: client.ApiClient, server: FakeApiServer) -> None:
    core = apis.core(api)
    core.create_node(node("n1"))
    server.down()
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.list_node(_request_timeout=2)
    server.up()
    assert [n.metadata.name for n in core.list_node().items] == ["n1"]
