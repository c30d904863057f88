"""Cluster state that is not in the config file: this node's pod CIDR blocks (IPAM
cluster-pool) and the other nodes (membership through etcd).

The daemon always runs on an *effective* config: the file's, with `cluster.nodes`
filled from the allocation and the membership. When either changes, the daemon is
reconfigured with a new effective config; nothing restarts. A store that cannot be
reached never costs a route: the last known blocks are cached in runDir and used.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bgpd.config.model import ClusterNode, Config
from bgpd.config.types import Network
from bgpd.files import write_atomic
from common.errors import KrouteError
from ipam.allocator import ClusterPool, IpamState, usage
from ipam.store import IpamStore

if TYPE_CHECKING:
    from bgpd.cluster.membership import Member, Membership
    from bgpd.health import Health, Heartbeat

log = logging.getLogger(__name__)


class ClusterFollower(Protocol):
    """What a cluster source drives when the cluster changes: the daemon hands itself
    in (it imports the sources; they never import it back)."""

    @property
    def config(self) -> Config: ...

    @property
    def health(self) -> Health: ...

    def reconfigure(self, config: Config) -> None: ...

    def session_held(self, ip: str) -> bool:
        """Whether the BGP session with `ip` is established, or restarting with its
        routes held by graceful restart."""
        ...


RETRY_MAX = 30.0
STATUS_STORE_TIMEOUT = 1.0


def cluster_pool(config: Config) -> ClusterPool | None:
    pool = config.ipam.cluster_pool
    if config.ipam.mode != "cluster-pool" or pool is None:
        return None
    return ClusterPool(pool.cidrs, pool.mask_size_v4, pool.mask_size_v6)


def effective_config(
    base: Config, blocks: tuple[Network, ...], members: Mapping[str, Member]
) -> Config:
    """The file's config with this node's blocks and the members as cluster nodes."""
    if base.ipam.mode != "cluster-pool":
        return base
    assert base.node.ip is not None
    listed = base.self_node()  # keeps what the file says about us (reflector cluster ID)
    me = (
        listed.model_copy(update={"pod_cidrs": blocks})
        if listed is not None
        else ClusterNode.model_validate(
            {"name": base.node.name, "ip": base.node.ip, "podCIDRs": [str(b) for b in blocks]}
        )
    )
    nodes: dict[str, ClusterNode] = {}
    if base.cluster.source == "etcd":
        for member in members.values():
            nodes[member.name] = ClusterNode.model_validate(
                {"name": member.name, "ip": member.ip, "podCIDRs": list(member.pod_cidrs)}
            )
    else:
        nodes = {n.name: n for n in base.cluster.nodes}
    nodes[me.name] = me
    cluster = base.cluster.model_copy(update={"nodes": tuple(nodes.values())})
    return base.model_copy(update={"cluster": cluster})


def visible_members(
    watched: Mapping[str, Member],
    previous: Mapping[str, Member],
    established: Callable[[str], bool],
) -> dict[str, Member]:
    """The members the store shows, plus those it stopped showing whose BGP session is
    still established (or restarting under graceful restart): a lease lost to a store
    outage is not a node gone. A node that really left loses its session too, and goes
    at the next check."""
    kept = {
        name: member
        for name, member in previous.items()
        if name not in watched and established(member.ip)
    }
    return {**watched, **kept}


def make_store(config: Config) -> IpamStore:
    if config.ipam.store == "kubernetes":
        from bgpd.kube.api import api_client
        from bgpd.kube.ipam_store import KubeIpamStore

        return KubeIpamStore(api_client(config.kubernetes.kubeconfig))
    if config.ipam.store == "etcd":
        from ipam.etcd_store import EtcdIpamStore

        assert config.etcd is not None
        return EtcdIpamStore(config.etcd.endpoints, **etcd_credentials(config))
    from ipam.file_store import FileIpamStore

    Path(config.ipam.file).parent.mkdir(parents=True, exist_ok=True)
    return FileIpamStore(Path(config.ipam.file))


def etcd_credentials(config: Config) -> dict[str, Any]:
    """TLS files and credentials for the etcd clients (the password read from its file)."""
    from bgpd.config.peers import read_password

    etcd = config.etcd
    assert etcd is not None
    return {
        "ca_file": etcd.ca_file,
        "cert_file": etcd.cert_file,
        "key_file": etcd.key_file,
        "username": etcd.username,
        "password": read_password(etcd.password_file) if etcd.password_file else None,
    }


class ClusterState:
    """Owns the IPAM store and the membership for one daemon."""

    def __init__(self, base: Config) -> None:
        self.base = base
        self.pool = cluster_pool(base)
        self.store = make_store(base) if self.pool is not None else None
        self.membership: Membership | None = None
        self.blocks: tuple[Network, ...] = ()
        self.members: dict[str, Member] = {}
        self.watched: dict[str, Member] = {}  # what the store shows right now
        self.store_error = ""
        self.snapshot: IpamState | None = None
        self._cache = Path(base.run_dir) / "ipam-blocks.json"
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Config:
        """This node's blocks (from the store, else from the cache) and registration."""
        if self.store is None:
            return self.base
        self.blocks = self._cached_blocks()
        try:
            await self._allocate()
        except KrouteError as exc:
            self.store_error = str(exc)
            if not self.blocks:
                raise KrouteError(
                    f"ipam: no pod CIDR for {self.base.node.name}: {exc}; kroute cannot "
                    "start without one (fix the store, or set ipam.mode static)"
                ) from None
            log.error("event=ipam-store-unreachable using=cache blocks=%s", self.blocks)
            self._tasks.append(asyncio.create_task(self._retry_allocation()))
        if self.base.cluster.source == "etcd":
            from bgpd.cluster.membership import EtcdMembership

            etcd = self.base.etcd
            assert etcd is not None
            self.membership = EtcdMembership(
                etcd.endpoints, ttl=self.base.cluster.lease_ttl, **etcd_credentials(self.base)
            )
            await self.membership.register(self._me())
            self.members = await self.membership.members()
            self.watched = dict(self.members)
        return self.effective()

    def effective(self) -> Config:
        return self.preview(self.base)

    def preview(self, base: Config) -> Config:
        """The effective config a new file config would give; changes nothing (a
        reload prepares with it before applying)."""
        return effective_config(base, self.blocks, self.members)

    def follow(self, daemon: ClusterFollower) -> None:
        """Reconfigure `daemon` whenever the membership changes; the `membership`
        heartbeat beats while the watch runs (etcd outages included: it retries)."""
        if self.membership is not None:
            watch = asyncio.create_task(self._watch(daemon), name="membership")
            self._tasks.append(watch)
            heartbeat = daemon.health.register(
                "membership", max(3.0 * self.base.cluster.lease_ttl, 30)
            )
            self._tasks.append(asyncio.create_task(self._supervise(watch, heartbeat)))
            self._tasks.append(asyncio.create_task(self._recheck(daemon), name="members"))

    async def _supervise(self, watch: asyncio.Task[None], heartbeat: Heartbeat) -> None:
        while not watch.done():
            heartbeat.beat()
            await asyncio.sleep(self.base.cluster.lease_ttl / 3)
        error = None if watch.cancelled() else watch.exception()
        heartbeat.failed(f"the membership watch ended: {error!r}")
        log.error("event=membership-watch-ended error=%r", error)

    async def _watch(self, daemon: ClusterFollower) -> None:
        assert self.membership is not None
        async for members in self.membership.watch():
            self.watched = dict(members)
            self._apply(daemon)

    async def _recheck(self, daemon: ClusterFollower) -> None:
        """Members kept only for their BGP session go once that session is down."""
        while True:
            await asyncio.sleep(self.base.cluster.lease_ttl)
            self._apply(daemon)

    def _apply(self, daemon: ClusterFollower) -> None:
        members = visible_members(
            self.watched,
            self.members,
            lambda ip: ip == str(self.base.node.ip) or daemon.session_held(ip),
        )
        if members == self.members:
            return
        retained = sorted(set(members) - set(self.watched))
        if retained:
            log.warning(
                "event=members-retained nodes=%s reason=no-store-record-but-session-established",
                ",".join(retained),
            )
        try:  # refused (a password file gone): nothing changed, tried again next time
            daemon.reconfigure(effective_config(self.base, self.blocks, members))
        except (KrouteError, ValueError, OSError) as exc:
            log.error("event=membership-change-refused error=%r", str(exc))
            return
        self.members = members
        log.info("event=membership-changed members=%s", ",".join(sorted(members)))

    async def _allocate(self) -> None:
        assert self.store is not None and self.pool is not None
        blocks = await self.store.allocate_node_blocks(self.pool, self.base.node.name)
        self.blocks = tuple(blocks)
        self.store_error = ""
        try:  # only a cache for starting while the store is down: never fatal
            write_atomic(self._cache, json.dumps([str(b) for b in self.blocks]))
        except OSError as exc:
            log.error("event=ipam-cache-not-saved path=%s error=%r", self._cache, exc.strerror)
        log.info("event=ipam-blocks node=%s blocks=%s", self.base.node.name, self.blocks)

    async def _retry_allocation(self) -> None:
        delay = 1.0
        while self.store_error:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            with contextlib.suppress(KrouteError):
                await self._allocate()

    def _cached_blocks(self) -> tuple[Network, ...]:
        try:
            return tuple(ipaddress.ip_network(b) for b in json.loads(self._cache.read_text()))
        except (OSError, ValueError, TypeError):
            return ()

    def _me(self) -> Member:
        from bgpd.cluster.membership import Member

        config = self.base
        return Member(
            name=config.node.name,
            ip=str(config.node.ip),
            router_id=str(config.node.router_id),
            asn=config.bgp.asn,
            pod_cidrs=tuple(str(b) for b in self.blocks),
        )

    async def report(self) -> dict[str, Any]:
        """IPAM usage lines and store health, for /status."""
        if self.store is None:
            return {"mode": self.base.ipam.mode}
        unanswered = ""
        try:
            async with asyncio.timeout(STATUS_STORE_TIMEOUT):
                self.snapshot = await self.store.snapshot()
        except KrouteError as exc:
            self.store_error = str(exc)
        except TimeoutError:  # status must answer while the store is down
            unanswered = (
                f"the {self.base.ipam.store} store did not answer within "
                f"{STATUS_STORE_TIMEOUT:.0f} s; usage below is the last known"
            )
        lines = (
            [u.line() for u in usage(self.snapshot, self.pool, self.base.node.name)]
            if (self.snapshot is not None)
            else []
        )
        return {
            "mode": self.base.ipam.mode,
            "store": self.base.ipam.store,
            "storeError": self.store_error or unanswered,
            "membersWithoutRecord": sorted(set(self.members) - set(self.watched)),
            "blocks": [str(b) for b in self.blocks],
            "usage": lines,
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.membership is not None:
            await self.membership.close()
        if self.store is not None:
            await self.store.close()
