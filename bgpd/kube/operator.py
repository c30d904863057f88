"""`kroute operator`: one leader (Lease) assigns LoadBalancer IPs for the cluster.

Informers on Services, EndpointSlices and LoadBalancerIPPools feed `assign.plan`; the
leader writes the statuses that differ: `status.loadBalancer.ingress` plus a
`kroute.io/IPAssigned` condition on Services, conflict condition and address counts on
pools. Every write is a merge patch carrying the resourceVersion it was computed from:
a 409 means the object moved on, so the operator waits for the watch to bring the new
version and plans again; it never overwrites. Followers only watch. `/healthz` answers
while the loop runs, `/readyz` once the caches are synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import urllib3
from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bgpd.kube.api import GROUP, MERGE_PATCH, POOLS, REQUEST_TIMEOUT, VERSION, Obj
from bgpd.kube.assign import plan
from bgpd.kube.informer import Informer
from bgpd.kube.lease import LeaseElector, micro_time

log = logging.getLogger(__name__)

RESYNC = 30.0  # seconds between full plans even without events
RETRY = 1.0  # seconds before planning again after a failed or conflicting write


class Operator:
    def __init__(
        self, api: client.ApiClient, elector: LeaseElector, *, default_class: bool = True
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._discovery = client.DiscoveryV1Api(api)
        self.elector = elector
        self.default_class = default_class
        self.informers: dict[str, Informer] = {}
        self.writes = 0
        self.conflicts = 0
        self._wake = asyncio.Event()

    @property
    def synced(self) -> bool:
        return bool(self.informers) and all(i.synced for i in self.informers.values())

    async def run(self) -> None:
        listers: dict[str, Any] = {
            "services": self._core.list_service_for_all_namespaces,
            "endpointslices": self._discovery.list_endpoint_slice_for_all_namespaces,
            "pools": functools.partial(
                self._custom.list_cluster_custom_object, GROUP, VERSION, POOLS
            ),
        }
        for name, lister in listers.items():
            self.informers[name] = Informer(name, lister, self._wake)
            self.informers[name].start()
        election = asyncio.create_task(self.elector.run(), name="lease")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESYNC):
                        await _either(self._wake, self.elector.changed)
                self._wake.clear()
                self.elector.changed.clear()
                if self.elector.leading and self.synced and not await self.reconcile():
                    await asyncio.sleep(RETRY)
                    self._wake.set()
        finally:
            election.cancel()
            for informer in self.informers.values():
                await informer.close()

    async def reconcile(self) -> bool:
        """Plan and write; False when a write failed or conflicted (plan again later)."""
        caches = {n: list(i.objects.values()) for n, i in self.informers.items()}
        todo = plan(caches["services"], caches["endpointslices"], caches["pools"],
                    default_class=self.default_class, stamp=micro_time())  # fmt: skip
        for problem in todo.problems:
            log.warning("event=kube-object-ignored problem=%r", problem)
        ok = True
        services = {f"{(s['metadata'].get('namespace'))}/{s['metadata']['name']}": s
                    for s in caches["services"]}  # fmt: skip
        for key, status in todo.services.items():
            ns, _, name = key.partition("/")
            write: Any = functools.partial(self._core.patch_namespaced_service_status, name, ns)
            ok &= await self._patch(f"service {key}", write, services[key], status)
        pools = {p["metadata"]["name"]: p for p in caches["pools"]}
        for name, status in todo.pools.items():
            write = functools.partial(
                self._custom.patch_cluster_custom_object_status, GROUP, VERSION, POOLS, name
            )
            ok &= await self._patch(f"pool {name}", write, pools[name], status)
        return ok

    async def _patch(self, what: str, write: Any, obj: Obj, status: Obj) -> bool:
        if not self.elector.leading:
            return False  # lost the Lease while planning: the new leader decides
        body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": status}  # fmt: skip
        try:
            await asyncio.to_thread(write, body, _content_type=MERGE_PATCH,
                                    _request_timeout=REQUEST_TIMEOUT)  # fmt: skip
        except ApiException as exc:
            if exc.status == 409:
                self.conflicts += 1
                log.info("event=status-conflict object=%r action=replan", what)
            else:
                log.warning("event=status-write-failed object=%r status=%s", what, exc.status)
            return False
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("event=status-write-failed object=%r error=%r", what, exc)
            return False
        self.writes += 1
        ips = ",".join(i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or [])
        log.info("event=status-written object=%r ips=%s", what, ips or "-")
        return True


async def _either(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


def health_app(operator: Operator) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"leading": operator.elector.leading})

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response(
            {"synced": operator.synced}, status=200 if operator.synced else 503
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    return app
