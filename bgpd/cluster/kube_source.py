"""The daemon's cluster state from the API server (`cluster.source: kubernetes`).

Informers on Nodes, Services, EndpointSlices, LoadBalancerIPPools and BGPPeers keep a
cache; the effective config is a pure function of the file's config and that cache
(`kube_effective_config`), recomputed after every change and applied with
`Daemon.reconfigure`, so peers, routes and LoadBalancer announcements follow the
cluster without restarts. During an API server outage the cache keeps its last state:
nothing is withdrawn and no kernel route changes; the watches resume (or relist on
410 Gone) when it is back, and whatever changed meanwhile is applied then.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kubernetes import client

from bgpd.cluster.kube_nodes import KubeNode, cluster_nodes, crd_peers, member, parse_node
from bgpd.cluster.state import ClusterState
from bgpd.config.model import ClusterNode, Config
from bgpd.kube.api import GROUP, PEERS, POOLS, VERSION, Obj, api_client
from bgpd.kube.informer import Informer
from bgpd.kube.ipam_store import KEY, NAME, NAMESPACE
from bgpd.kube.services import announced_service_docs, pool_docs
from common.errors import KrouteError
from ipam.allocator import IpamState

if TYPE_CHECKING:
    from bgpd.cluster.state import ClusterFollower

log = logging.getLogger(__name__)

DEBOUNCE = 0.1  # seconds: a burst of watch events becomes one reconfigure


def kube_effective_config(
    base: Config,
    asn: int,
    caches: Mapping[str, Mapping[str, Obj]],
    blocks: Mapping[str, tuple[str, ...]] | None = None,
) -> tuple[Config, dict[str, KubeNode], list[str]]:
    """The file's config with nodes, peers, pools and services from the API objects;
    also the parsed nodes and every problem found (each names its object). `blocks`
    (cluster-pool) replaces the Nodes' `spec.podCIDRs` with the IPAM store's blocks."""
    problems: list[str] = []
    nodes: dict[str, KubeNode] = {}
    for obj in caches["nodes"].values():
        node, found = parse_node(obj)
        problems.extend(found)
        if node is not None:
            if blocks is not None:
                node = dataclasses.replace(node, pod_cidrs=blocks.get(node.name, ()))
            nodes[node.name] = node
    listed, found = cluster_nodes(nodes.values(), base.ipam.mode != "static")
    problems.extend(found)
    me = nodes.get(base.node.name)
    node_cfg = base.node
    if me is not None:  # the Node's InternalIP is this node's address
        router_id = me.ip if base.node.router_id == base.node.ip else base.node.router_id
        node_cfg = base.node.model_copy(update={"ip": me.ip, "router_id": router_id})
    if not any(n.name == base.node.name for n in listed):  # not registered (yet)
        me_listed = ClusterNode.model_validate({"name": base.node.name, "ip": str(node_cfg.ip)})
        listed = sorted([*listed, me_listed], key=lambda n: n.name)
    extra, found = crd_peers(caches["bgppeers"].values(), me)
    problems.extend(found)
    peers = list(base.bgp.peers)
    node_ips = {n.ip for n in listed}
    for peer in [*(me.peers if me else ()), *extra]:
        if peer.address in node_ips:
            problems.append(f"peer {peer.address}: a cluster node (its session is the mesh's)")
        elif node_cfg.ip is not None and peer.address.version != node_cfg.ip.version:
            problems.append(
                f"peer {peer.address}: sessions run from the node's IPv{node_cfg.ip.version} "
                f"address {node_cfg.ip}; use the router's IPv{node_cfg.ip.version} address"
            )
        elif all(p.address != peer.address for p in peers):
            peers.append(peer)
    pools, found = pool_docs(caches["pools"].values())
    problems.extend(found)
    services, found = announced_service_docs(
        caches["services"].values(),
        caches["endpointslices"].values(),
        base.kubernetes.default_load_balancer_class,
    )
    problems.extend(found)
    config = base.model_copy(
        update={
            "node": node_cfg,
            "bgp": base.bgp.model_copy(update={"asn": asn, "peers": tuple(peers)}),
            "cluster": base.cluster.model_copy(update={"nodes": tuple(listed)}),
            "load_balancer": base.load_balancer.model_copy(
                update={"pools": tuple(pools), "services": tuple(services)}
            ),
        }
    )
    return config, nodes, problems


class KubeClusterState(ClusterState):
    """`ClusterState` whose nodes, pod CIDRs and LoadBalancer inputs are API objects."""

    def __init__(self, base: Config) -> None:
        super().__init__(base)
        self.informers: dict[str, Informer] = {}
        self.problems: list[str] = []
        self.asn = base.bgp.asn
        self._changed: asyncio.Event | None = None

    async def start(self) -> Config:
        """This node's blocks (cluster-pool), then the informers; waits
        (`kubernetes.syncTimeout`) for their first lists."""
        await super().start()
        api = api_client(self.base.kubernetes.kubeconfig)
        core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
        custom = client.CustomObjectsApi(api)
        self._changed = asyncio.Event()
        listers: dict[str, Any] = {
            "nodes": core.list_node,
            "services": core.list_service_for_all_namespaces,
            "endpointslices": discovery.list_endpoint_slice_for_all_namespaces,
            "pools": functools.partial(custom.list_cluster_custom_object, GROUP, VERSION, POOLS),
            "bgppeers": functools.partial(custom.list_cluster_custom_object, GROUP, VERSION, PEERS),
        }
        selectors: dict[str, dict[str, str]] = {}
        if self.store is not None:  # cluster-pool: every node's blocks, from the store
            listers["ipam"] = functools.partial(core.list_namespaced_config_map, NAMESPACE)
            selectors["ipam"] = {"field_selector": f"metadata.name={NAME}"}
        for name, lister in listers.items():
            self.informers[name] = Informer(name, lister, self._changed, **selectors.get(name, {}))
            self.informers[name].start()
        timeout = self.base.kubernetes.sync_timeout
        try:
            async with asyncio.timeout(timeout):
                while not all(i.synced for i in self.informers.values()):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            missing = ",".join(n for n, i in self.informers.items() if not i.synced)
            await self.close()
            raise KrouteError(
                f"kubernetes: could not list {missing} within {timeout} s; check that the "
                "API server is reachable and the RBAC rules (config/kubernetes/rbac.yaml)"
            ) from None
        me, _ = parse_node(self.informers["nodes"].objects.get(self.base.node.name) or {})
        if me is not None and me.asn is not None:
            self.asn = me.asn  # the node's annotation; read once, as ASNs change by restart
        return self.effective()

    def preview(self, base: Config) -> Config:
        return self._compute(base)[0]

    def _compute(self, base: Config) -> tuple[Config, dict[str, KubeNode], list[str]]:
        caches = {name: informer.objects for name, informer in self.informers.items()}
        if not caches:
            return base, {}, self.problems
        return kube_effective_config(base, self.asn, caches, self._store_blocks(caches.get("ipam")))

    def effective(self) -> Config:
        if not self.informers:
            return self.base
        config, nodes, problems = self._compute(self.base)
        for problem in sorted(set(problems) - set(self.problems)):
            log.warning("event=kube-object-ignored problem=%r", problem)
        self.problems = problems
        self.members = {name: member(node, self.asn) for name, node in nodes.items()}
        return config

    def _store_blocks(self, cache: Mapping[str, Obj] | None) -> dict[str, tuple[str, ...]] | None:
        """Node -> blocks from the store's ConfigMap; ours as allocated at start."""
        if self.store is None:
            return None
        blocks: dict[str, tuple[str, ...]] = {}
        for obj in (cache or {}).values():
            try:
                state = IpamState.from_json((obj.get("data") or {}).get(KEY, ""))
            except ValueError as exc:
                log.error("event=ipam-state-unreadable where=%s/%s error=%s", NAMESPACE, NAME, exc)
                continue
            blocks = {n: tuple(map(str, bs)) for n, bs in state.node_blocks.items()}
        blocks[self.base.node.name] = tuple(map(str, self.blocks))
        return blocks

    def follow(self, daemon: ClusterFollower) -> None:
        """Reconfigure `daemon` after API changes; the `membership` heartbeat beats while
        that runs (an API server outage included: the informers retry)."""
        task = asyncio.create_task(self._follow(daemon), name="kube-follow")
        self._tasks.append(task)
        timeout = max(3.0 * self.base.cluster.lease_ttl, 30)
        heartbeat = daemon.health.register("membership", timeout)
        self._tasks.append(asyncio.create_task(self._supervise(task, heartbeat)))

    async def _follow(self, daemon: ClusterFollower) -> None:
        assert self._changed is not None
        while True:
            await self._changed.wait()
            await asyncio.sleep(DEBOUNCE)
            self._changed.clear()
            try:
                self._apply(daemon)
            except Exception:  # one bad change must not stop following the cluster
                log.exception("event=kube-reconfigure-failed")

    def _apply(self, daemon: ClusterFollower) -> None:
        config = self.effective()
        if config != daemon.config:
            log.info(
                "event=kube-cluster-changed nodes=%d pools=%d services=%d",
                len(config.cluster.nodes),
                len(config.load_balancer.pools),
                len(config.load_balancer.services),
            )
            daemon.reconfigure(config)

    async def report(self) -> dict[str, Any]:
        return {
            **await super().report(),  # cluster-pool: blocks, usage and store health
            "source": "kubernetes",
            "apiServer": {
                name: "watching" if i.connected else "unreachable (keeping the last state)"
                for name, i in self.informers.items()
            },
            "problems": self.problems,
        }

    async def close(self) -> None:
        await super().close()
        for informer in self.informers.values():
            with contextlib.suppress(Exception):
                await informer.close()
