"""`kroute-cni`: the CNI plugin (spec 1.0.0) that wires pods the way the daemon routes them.

ADD takes the pod's addresses from kroute's IPAM store (the same node config and store the
daemon uses; `ipam.mode: cluster-pool` is required) and wires the pod Calico style:
POD_IP/32 on CNI_IFNAME, `169.254.1.1 dev IF scope link`, `default via 169.254.1.1`; the
node side (proxy_arp=1, proxy_delay=0, forwarding=1) answers ARP by proxy and routes
POD_IP/32 to the veth, and `169.254.1.1/32 dev lo` gives proxy ARP a route to answer for,
so the daemon only has to announce the node's block. With `datapath.bpf.enabled` the
veth keeps the node's forwarding setting (off on BPF nodes) and ADD asks the node's kroute
(POST /datapath/pods on its socket) to map the pod and attach the program before it
returns, so the pod is reachable at once; no kroute running is error 11 (try again).
IPv6 (when the pool has an IPv6 CIDR): POD_IP6/128 and `default via fe80::1`, the node
side's link-local address (set with nodad, so no DAD delay and no proxy NDP). DEL releases
the IP and removes the veth; CHECK compares the kernel with the allocation. ADD and DEL
are idempotent; DEL of an unknown container or a gone netns succeeds.

The runtime finds the plugin as an executable named `kroute-cni` in CNI_PATH: link
`.venv/bin/kroute-cni` into /opt/cni/bin. `config/10-kroute.conflist` is a sample; the
`portmap` entry there is optional (hostPort support) and needs the reference plugins.
kroute-cni never executes other plugins, so CNI_PATH is not required.

Errors are CNI error objects on stdout with a non-zero exit: the spec's codes (1 version,
3 netns missing on ADD, 4 environment, 5 corrupt store, 6 decoding, 7 network config or
static ipam mode, 11 try again: store busy/unreachable or node block not allocated yet)
and kroute's (100 IPAM exhausted, 101 netlink failed, 102 CHECK found drift).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bgpd.cluster.state import cluster_pool, make_store
from bgpd.config.model import Config, load_config
from common.errors import AllocationError, ConfigError, KrouteError
from datapath.cni_net import PodWiring, Wired
from datapath.cni_spec import (
    E_CHECK,
    E_CONFIG,
    E_DATAPATH,
    E_IO,
    E_IPAM,
    E_TRY_AGAIN,
    E_UNKNOWN_CONTAINER,
    SPEC_VERSION,
    CniError,
    Request,
    build_result,
    host_ifname,
    parse_request,
    version_result,
)
from ipam.allocator import ClusterPool, IPAddress, pod_key
from ipam.store import IpamStore, StoreCorruptError, StoreError

log = logging.getLogger(__name__)


class PodNetwork(Protocol):
    """The netlink side of the plugin (real: `datapath.cni_net.KernelPodNetwork`).

    Blocking; called through `asyncio.to_thread` (pyroute2's sync API runs its own loop).
    """

    def add(self, wiring: PodWiring) -> Wired:
        """Create or reuse the veth pair and set addresses, routes and sysctls."""
        ...

    def delete(self, host_if: str) -> bool:
        """Remove the host veth (its peer goes too); False when it did not exist."""
        ...

    def check(self, wiring: PodWiring) -> list[str]:
        """Every difference between the kernel and `wiring`; empty when all is in place."""
        ...


ADD_POD_TIMEOUT = 60.0
"""The daemon answers once its programs are compiled: 0.2-0.9 s alone, much longer on a
loaded node that compiles several program sets at once (a container runtime's CNI
timeout is minutes)."""


def daemon_add_pod(socket: str, ip: str, host_if: str) -> str:
    """Ask this node's kroute to map pod `ip` to `host_if` and attach its program now;
    the host routing mode it answers ("BPF" or "Legacy")."""
    from bgpd.api.client import call

    answer = call(
        socket, f"/datapath/pods?ip={ip}&hostIf={host_if}", method="POST", timeout=ADD_POD_TIMEOUT
    )
    return str(answer.get("hostRouting", "")) if isinstance(answer, dict) else ""


def daemon_remove_pod(socket: str, ip: str) -> None:
    from bgpd.api.client import call

    call(socket, f"/datapath/pods/remove?ip={ip}", method="POST")


def node_underlay_mtu(config: Config) -> int:
    """The MTU of the device holding this node's IP (what VXLAN packets leave by)."""
    from datapath.overlay import VxlanOverlay

    assert config.node.ip is not None
    overlay = VxlanOverlay()
    try:
        return overlay.underlay(config.node.ip).mtu
    finally:
        overlay.close()


@dataclass(frozen=True)
class Deps:
    """Where config, store, netlink and the daemon come from; unit tests pass fakes."""

    load_config: Callable[[str], Config]
    make_store: Callable[[Config], IpamStore]
    network: Callable[[], PodNetwork]
    add_to_datapath: Callable[[str, str, str], str] = daemon_add_pod
    remove_from_datapath: Callable[[str, str], None] = daemon_remove_pod
    underlay_mtu: Callable[[Config], int] = node_underlay_mtu


def real_deps() -> Deps:
    from datapath.cni_net import KernelPodNetwork

    return Deps(load_config, make_store, KernelPodNetwork)


class Plugin:
    """ADD/DEL/CHECK for one request against the node config's store and pool."""

    def __init__(self, req: Request, config: Config, store: IpamStore | None, deps: Deps):
        self.req, self.config, self.store, self.deps = req, config, store, deps
        self.net = deps.network()
        self.node = config.node.name
        self.bpf = config.datapath.bpf.enabled

    def pool(self) -> ClusterPool:
        pool = cluster_pool(self.config)
        if pool is None or self.store is None:
            raise CniError(
                E_CONFIG,
                f"ipam.mode {self.config.ipam.mode} in {self.req.conf.kroute_config} gives "
                "no pod IPs",
                "kroute-cni needs ipam.mode: cluster-pool (pod IPs come from the node's block)",
            )
        return pool

    async def pod_mtu(self) -> int:
        """The network config's MTU, lowered to the overlay's when pods' packets may be
        encapsulated (routing.mode vxlan with an overlay): underlay MTU - 50."""
        from bgpd.reconcile.overlay import routing_settings
        from datapath.overlay_plan import overlay_mtu

        mtu = self.req.conf.mtu
        if routing_settings(self.config).uses_overlay:
            underlay = await asyncio.to_thread(self.deps.underlay_mtu, self.config)
            mtu = min(mtu, overlay_mtu(underlay))
        return mtu

    def wiring(self, addresses: tuple[IPAddress, ...], mtu: int) -> PodWiring:
        req = self.req
        host = host_ifname(req.container_id, req.ifname)
        return PodWiring(host, req.netns, req.ifname, addresses, mtu, not self.bpf)

    async def held(self) -> dict[int, IPAddress]:
        """The addresses this pod interface holds now, by family (read only)."""
        assert self.store is not None
        pods = (await self.store.snapshot()).pod_ips.get(self.node, {})
        out: dict[int, IPAddress] = {}
        for family in (4, 6):
            ip = pods.get(pod_key(self.req.container_id, self.req.ifname, family))
            if ip is not None:
                out[family] = ip
        return out

    async def add(self) -> dict[str, Any]:
        pool = self.pool()
        assert self.store is not None
        if not Path(self.req.netns).exists():
            raise CniError(E_UNKNOWN_CONTAINER, f"CNI_NETNS {self.req.netns} does not exist")
        state = await self.store.snapshot()
        blocks = {b.version for b in state.node_blocks.get(self.node, ())}
        for family in pool.families():
            if family not in blocks:
                raise CniError(
                    E_TRY_AGAIN,
                    f"node {self.node} has no IPv{family} pod CIDR block yet",
                    "kroute allocates it when it starts; start kroute on this node, then retry",
                )
        before = await self.held()
        req = self.req
        addresses = [
            await self.store.allocate_pod_ip(pool, self.node, req.container_id, req.ifname, f)
            for f in pool.families()
        ]
        wiring = self.wiring(tuple(addresses), await self.pod_mtu())
        host = wiring.host_if
        try:
            wired = await asyncio.to_thread(self.net.add, wiring)
            if self.bpf:
                await self.attach(wiring)
        except Exception:
            if not before:  # a fresh pod: give back what this call took, best effort
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.net.delete, wiring.host_if)
                await self.store.release_pod_ip(self.node, req.container_id, req.ifname)
            raise
        ips = ",".join(map(str, addresses))
        log.info("event=cni-add container=%s host_if=%s ips=%s", req.container_id, host, ips)
        return build_result(self.req, wiring, wired)

    async def attach(self, wiring: PodWiring) -> None:
        """BPF datapath: the daemon maps the pod and attaches its veth before ADD returns
        (it holds the compiled programs; a plugin run never compiles)."""
        socket = self.config.status.socket
        for ip in wiring.addresses:
            if ip.version != 4:
                continue
            try:
                await asyncio.to_thread(self.deps.add_to_datapath, socket, str(ip), wiring.host_if)
            except KrouteError as exc:
                raise CniError(
                    E_TRY_AGAIN,
                    f"kroute on node {self.node} did not take pod {ip} into its BPF datapath",
                    f"{exc}; datapath.bpf.enabled needs kroute running: start it, then retry",
                ) from None

    async def delete(self) -> None:
        req = self.req
        host = host_ifname(req.container_id, req.ifname)
        if self.bpf and self.store is not None:
            for ip in (await self.held()).values():
                if ip.version != 4:
                    continue
                with contextlib.suppress(KrouteError):  # the daemon's sync removes it too
                    await asyncio.to_thread(
                        self.deps.remove_from_datapath, self.config.status.socket, str(ip)
                    )
        removed = await asyncio.to_thread(self.net.delete, host)
        released = False
        if self.store is not None:  # static mode has no store and allocated nothing
            released = await self.store.release_pod_ip(self.node, req.container_id, req.ifname)
        log.info(
            "event=cni-del container=%s host_if=%s veth_removed=%s ip_released=%s",
            *(req.container_id, host, removed, released),
        )

    async def check(self) -> None:
        self.pool()
        held = await self.held()
        if not held:
            raise CniError(
                E_CHECK,
                f"container {self.req.container_id} interface {self.req.ifname} holds no IP "
                f"on node {self.node}",
                "ADD was not run, or DEL released it",
            )
        wiring = self.wiring(tuple(held[f] for f in sorted(held)), await self.pod_mtu())
        problems = await asyncio.to_thread(self.net.check, wiring)
        prev = self.req.conf.prev_result
        if prev is not None:
            want = {f"{ip}/{ip.max_prefixlen}" for ip in held.values()}
            got = {str(e.get("address")) for e in prev.get("ips", []) if isinstance(e, dict)}
            if got != want:
                problems.append(
                    f"prevResult ips {sorted(got)} differ from allocation {sorted(want)}"
                )
        if problems:
            raise CniError(E_CHECK, "pod network does not match", "; ".join(problems))


async def _dispatch(req: Request, deps: Deps) -> dict[str, Any] | None:
    try:
        config = deps.load_config(req.conf.kroute_config)
    except ConfigError as exc:
        raise CniError(
            E_CONFIG, f"kroute config {req.conf.kroute_config} is invalid", "; ".join(exc.errors)
        ) from None
    store = deps.make_store(config) if cluster_pool(config) is not None else None
    try:
        plugin = Plugin(req, config, store, deps)
        if req.command == "ADD":
            return await plugin.add()
        if req.command == "DEL":
            await plugin.delete()
        else:
            await plugin.check()
        return None
    finally:
        if store is not None:
            await store.close()


def _as_cni_error(exc: Exception) -> CniError:
    """Map kroute's exceptions onto CNI codes; the message is kept whole."""
    if isinstance(exc, CniError):
        return exc
    if isinstance(exc, StoreCorruptError):
        return CniError(E_IO, "IPAM store is corrupt", str(exc))
    if isinstance(exc, StoreError):
        return CniError(E_TRY_AGAIN, "IPAM store failed", str(exc))
    if isinstance(exc, AllocationError):
        return CniError(E_IPAM, "IPAM allocation failed", str(exc))
    if isinstance(exc, KrouteError | OSError):
        return CniError(E_DATAPATH, "pod network setup failed", str(exc))
    return CniError(E_DATAPATH, f"unexpected {type(exc).__name__}", str(exc))


def run(env: Mapping[str, str], stdin: str, deps: Deps | None = None) -> tuple[int, str]:
    """One plugin invocation: (exit code, stdout text). Never raises."""
    version = SPEC_VERSION
    try:
        req = parse_request(env, stdin)
        version = req.conf.cni_version
        if req.command == "VERSION":
            return 0, json.dumps(version_result(req.conf))
        result = asyncio.run(_dispatch(req, deps or real_deps()))
        return 0, json.dumps(result) if result is not None else ""
    except Exception as exc:
        err = _as_cni_error(exc)
        if not isinstance(exc, KrouteError | OSError):
            log.exception("event=cni-unexpected-error")
        log.error("event=cni-error code=%d msg=%s details=%s", err.code, err.msg, err.details)
        return 1, json.dumps(err.to_json(version))


def main() -> None:
    import os

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="kroute-cni: %(message)s")
    code, out = run(os.environ, sys.stdin.read())
    if out:
        sys.stdout.write(out + "\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
