"""The operator's pure decisions: Lease leader election steps and the status plan
(assignment from the services' own ingress, conflicts, counts, no-op when current)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
from pathlib import Path
from typing import Any

from bgpd.kube.api import MERGE_PATCH, api_client
from bgpd.kube.assign import ASSIGNED, CONFLICT, plan
from bgpd.kube.lease import LeaseElector, Observed, decide
from bgpd.kube.operator import Operator
from tests.k8s import apis
from tests.k8s.fake_apiserver import fake_apiserver
from tests.k8s.objects import pool, service, with_ingress

STAMP = "2026-11-23T00:00:00.000000Z"


def test_lease_decisions() -> None:
    held = Observed("a", "t1", 15.0, changed_at=100.0)
    assert decide(None, False, "b", 0.0) == "create"
    assert decide(held, True, "a", 200.0) == "renew"
    assert decide(held, True, "b", 110.0) == "follow"  # seen unchanged for 10 s < 15 s
    assert decide(held, True, "b", 116.0) == "acquire"  # unchanged longer than its duration
    assert decide(Observed("", "t1", 15.0, 100.0), True, "b", 100.0) == "acquire"  # released


def stamped(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, obj in enumerate(objs):
        meta = obj.setdefault("metadata", {})
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:0{i}Z")
        meta.setdefault("resourceVersion", str(i + 1))
    return objs


def apply(objs: list[dict[str, Any]], writes: dict[str, Any], by_name: bool = False) -> None:
    for obj in objs:
        meta = obj["metadata"]
        k = meta["name"] if by_name else f"{meta['namespace']}/{meta['name']}"
        if k in writes:
            obj["status"] = copy.deepcopy(writes[k])


def test_plan_assigns_keeps_and_reports_pools() -> None:
    pools = stamped([pool("blue", "198.51.100.0/30"), pool("late", "198.51.100.0/29")])
    services = stamped([service("web", "www"), service("web", "api", port=81),
                        service("web", "other", lb_class="example.com/lb")])  # fmt: skip
    first = plan(services, [], pools, default_class=True, stamp=STAMP)
    assert sorted(first.services) == ["web/api", "web/www"]  # not the other class
    assert first.services["web/api"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.1"}]
    assert first.services["web/www"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.2"}]
    assert first.services["web/www"]["conditions"][0]["type"] == ASSIGNED
    blue, late = first.pools["blue"], first.pools["late"]
    assert (blue["ipsTotal"], blue["ipsUsed"], blue["ipsAvailable"]) == (2, 2, 0)
    assert late["conditions"][0]["type"] == CONFLICT
    assert late["conditions"][0]["status"] == "True" and "blue" in late["conditions"][0]["message"]
    apply(services, first.services)
    apply(pools, first.pools, by_name=True)
    assert plan(services, [], pools, default_class=True, stamp="later").services == {}  # current

    # Another operator (failover) with a service it has not seen before: nobody moves.
    services.insert(0, stamped([service("aaa", "first")])[0])
    pools[0]["spec"]["blocks"] = [{"cidr": "198.51.100.0/29"}]
    again = plan(services, [], pools, default_class=True, stamp=STAMP)
    assert sorted(again.services) == ["aaa/first"]
    assert again.services["aaa/first"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.3"}]


def test_plan_pending_and_revoked() -> None:
    pools = stamped([pool("blue", "198.51.100.0/30", selector={"matchLabels": {"tier": "web"}})])
    services = stamped([with_ingress(service("web", "www"), "198.51.100.1")])
    result = plan(services, [], pools, default_class=True, stamp=STAMP)
    status = result.services["web/www"]
    assert status["loadBalancer"]["ingress"] == []  # the pool no longer selects it
    cond = status["conditions"][0]
    assert cond["status"] == "False" and cond["reason"] in ("NoMatchingPool", "Revoked")


async def test_operator_in_process_conflict_is_not_overwritten(tmp_path: Path) -> None:
    with fake_apiserver(bookmark_interval=0.2) as server:
        api = api_client(str(server.kubeconfig(tmp_path / "kubeconfig")))
        core, custom = apis.core(api), apis.custom(api)
        elector = LeaseElector(api, "kroute-system", "op", "me", duration=3, renew_deadline=2,
                               retry=0.5)  # fmt: skip
        operator = Operator(api, elector)
        task = asyncio.create_task(operator.run())
        try:
            custom.create_cluster_custom_object(
                "kroute.io", "v1alpha1", "loadbalancerippools", pool("blue", "198.51.100.0/28")
            )
            await asyncio.to_thread(core.create_namespaced_service, "web", service("web", "www"))

            def www() -> Any:
                return core.read_namespaced_service("www", "web")

            async with asyncio.timeout(20):
                while not (www().status and www().status.load_balancer.ingress):
                    await asyncio.sleep(0.1)
            assert operator.elector.leading
            stale = operator.informers["services"].objects["web/www"]
            core.patch_namespaced_service("www", "web", {"metadata": {"labels": {"x": "y"}}},
                                          _content_type=MERGE_PATCH)  # fmt: skip
            write = functools.partial(core.patch_namespaced_service_status, "www", "web")
            other = {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}}
            before = operator.conflicts  # (its own loop may meet 409s too, and replan)
            assert not await operator._patch("service web/www", write, stale, other)
            assert operator.conflicts > before
            assert www().status.load_balancer.ingress[0].ip == "198.51.100.1"  # not overwritten
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
