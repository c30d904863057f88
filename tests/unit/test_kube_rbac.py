"""The RBAC rules in config/kubernetes/rbac.yaml allow every request the agent and the
operator really make (recorded by the fake API server), and nothing in them is unused."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import yaml

from bgpd.cluster.kube_source import KubeClusterState
from bgpd.config.model import parse_config
from bgpd.kube.api import api_client
from bgpd.kube.lease import LeaseElector
from bgpd.kube.operator import Operator
from tests.k8s import apis
from tests.k8s.fake_apiserver import FakeApiServer, fake_apiserver, route
from tests.k8s.objects import pool, service

RBAC = Path(__file__).resolve().parents[2] / "config" / "kubernetes" / "rbac.yaml"
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def used(server: FakeApiServer, since: int = 0) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource[/sub], verb, name) of every request since the `since`-th."""
    out = set()
    for method, path_qs in server.requests[since:]:
        path, _, query = path_qs.partition("?")
        res, _, name, sub = route(path)
        verb = VERBS.get(method) or ("get" if name else "watch" if "watch=" in query else "list")
        out.add((res.group, res.plural + (f"/{sub}" if sub else ""), verb, name))
    return out


def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
        and (not r.get("resourceNames") or name in r["resourceNames"])
        for r in rules
    )  # fmt: skip


def rules_of(account: str) -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    roles = {
        (d["kind"], d["metadata"]["name"]): d["rules"]
        for d in docs
        if d["kind"] in ("ClusterRole", "Role")
    }
    out: list[dict[str, Any]] = []
    for d in docs:
        if d["kind"].endswith("Binding") and any(s["name"] == account for s in d["subjects"]):
            out.extend(roles[(d["roleRef"]["kind"], d["roleRef"]["name"])])
    return out


async def until(check: Any, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def test_agent_requests_are_all_allowed(tmp_path: Path) -> None:
    with fake_apiserver() as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        ipam = {
            "mode": "cluster-pool",
            "store": "kubernetes",
            "clusterPool": {"cidrs": ["10.244.0.0/16"]},
        }  # uses every grant
        config = parse_config({
            "node": {"name": "n1", "ip": "10.0.0.1"}, "bgp": {"asn": 64512},
            "cluster": {"source": "kubernetes"}, "ipam": ipam,
            "kubernetes": {"kubeconfig": str(kubeconfig)}, "runDir": str(tmp_path),
        }, host_defaults=False)  # fmt: skip
        state = KubeClusterState(config)
        await state.start()
        assert state.store is not None and state.pool is not None
        await state.store.allocate_node_blocks(state.pool, "n2")  # the ConfigMap exists now
        await until(lambda: len(used(server)) >= 15)  # 6 lists, 6 watches, get/create/patch
        await state.close()
        rules = rules_of("kroute-agent")
        requests = used(server)
        assert ("", "configmaps", "patch", "kroute-ipam") in requests
        assert all(allowed(rules, *r) for r in requests), requests
        kinds = {(r[0], r[1], r[2]) for r in requests}
        granted = {(g, res, v) for r in rules for g in r["apiGroups"] for res in r["resources"]
                   for v in r["verbs"]}  # fmt: skip
        assert granted == kinds  # nothing granted that the agent does not use


async def test_operator_requests_are_all_allowed(tmp_path: Path) -> None:
    with fake_apiserver(bookmark_interval=0.2) as server:
        api = api_client(str(server.kubeconfig(tmp_path / "kubeconfig")))
        custom = apis.custom(api)
        custom.create_cluster_custom_object("kroute.io", "v1alpha1", "loadbalancerippools",
                                            pool("blue", "198.51.100.0/28"))  # fmt: skip
        apis.core(api).create_namespaced_service("web", service("web", "www"))
        start = len(server.requests)
        elector = LeaseElector(api, "kroute-system", "kroute-operator", "me", duration=3,
                               renew_deadline=2, retry=0.3)  # fmt: skip
        operator = Operator(api, elector)
        task = asyncio.create_task(operator.run())
        try:
            await until(lambda: operator.writes >= 2)  # the service and the pool
            await until(lambda: sum(1 for r in used(server, start) if r[2] == "patch") >= 3)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        rules = rules_of("kroute-operator")
        requests = used(server, start)
        assert all(allowed(rules, *r) for r in requests), requests
        verbs = {r[2] for r in requests}
        assert {"create", "get", "patch", "list", "watch"} <= verbs
