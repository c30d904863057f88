"""`kroute operator` processes against the fake API server: IPs assigned and written to
status, pool status, failover to the standby with no service changing its IP, and an
API server outage longer than the Lease."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bgpd.kube.api import api_client
from tests.k8s import apis
from tests.k8s.fake_apiserver import FakeApiServer, fake_apiserver
from tests.k8s.objects import pool, service
from tests.k8s.operators import kill, operators
from tests.kroute_node import wait_until

GROUP, VERSION = "kroute.io", "v1alpha1"


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with fake_apiserver() as srv:
        yield srv


def ingress(core: Any) -> dict[str, list[str]]:
    out = {}
    for svc in core.list_service_for_all_namespaces().items:
        lb = svc.status.load_balancer if svc.status else None
        out[svc.metadata.name] = [i.ip for i in (lb.ingress or [])] if lb else []
    return out


def holder(coord: Any) -> Any:
    try:
        return coord.read_namespaced_lease("kroute-operator", "kroute-system").spec.holder_identity
    except client.ApiException:
        return None


def test_failover_keeps_every_address(server: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
    api = api_client(str(kubeconfig))
    core, coord = apis.core(api), apis.coordination(api)
    custom = apis.custom(api)
    custom.create_cluster_custom_object(
        GROUP, VERSION, "loadbalancerippools", pool("blue", "198.51.100.0/28")
    )
    for name in ("c", "b", "a"):
        core.create_namespaced_service("web", service("web", name))
    with operators(kubeconfig, "op1", "op2") as procs:
        wait_until(lambda: holder(coord) in procs, 30, "a leader")
        wait_until(lambda: all(ingress(core).values()), 30, "every service to get an address")
        before = ingress(core)
        assert sorted(ip for ips in before.values() for ip in ips) == [
            "198.51.100.1", "198.51.100.2", "198.51.100.3"]  # fmt: skip
        blue = custom.get_cluster_custom_object(GROUP, VERSION, "loadbalancerippools", "blue")
        wait_until(
            lambda: custom.get_cluster_custom_object(
                GROUP, VERSION, "loadbalancerippools", "blue"
            ).get("status", {}).get("ipsUsed") == 3,
            30, "pool status")  # fmt: skip
        assert blue["spec"]["blocks"] == [{"cidr": "198.51.100.0/28"}]
        leader = holder(coord)
        standby = next(i for i in procs if i != leader)
        kill(procs[leader])
        wait_until(lambda: holder(coord) == standby, 30, f"{standby} to take the Lease")
        core.create_namespaced_service("aa", service("aa", "first"))  # sorts first
        wait_until(lambda: ingress(core).get("first"), 30, "the new leader to assign")
        after = ingress(core)
        assert {k: v for k, v in after.items() if k != "first"} == before
        assert after["first"] == ["198.51.100.4"]
        lease = coord.read_namespaced_lease("kroute-operator", "kroute-system")
        assert lease.spec.lease_transitions >= 1

        # The API server away for longer than the Lease: back, nothing moved, work resumes.
        server.down()
        time.sleep(5)
        server.up()
        core.create_namespaced_service("aa", service("aa", "second"))
        wait_until(lambda: ingress(core).get("second"), 30, "an address after the outage")
        assert {k: v for k, v in ingress(core).items() if k != "second"} == after
        assert ingress(core)["second"] == ["198.51.100.5"]
