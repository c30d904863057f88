"""The datapath reconciler: what kroute's eBPF maps should hold, and making them hold it.

Desired state is a pure function of what the node shows (`HostView`) and the kernel
routes the daemon computed (`bgpd.reconcile.desired`):

- local pods: every `POD_IP/32 dev VETH scope link` route inside this node's pod CIDRs
  (kroute-cni installs those) -> `local_pods`, with the veth's MAC;
- remote routes: kroute's learned routes and the node's other gateway routes (the default
  route, static routes) whose next hops are on a connected subnet -> `remote_routes`
  (one next hop: that one; ECMP on one device: none, so the kernel's FIB picks per flow),
  and the connected subnets themselves (no next hop: the neighbour is the destination).
  The node's own addresses covered by such a route get a /32 towards `lo`, so a pod
  reaching its node still ends in the node's stack.

Programs: `from_netdev` on every device a remote route leaves by (and the one holding
the node IP), `from_pod` on every pod veth. New pods are attached by kroute-cni at ADD
through the daemon (`add_pod`, so a pod is reachable when ADD returns: the daemon holds
the compiled programs, the plugin never compiles) and found again by every sync (after a
restart, or for pods wired by hand). A lock serialises syncs and `add_pod`, and a sync
observes the node under it, so it never removes a pod added meanwhile.

Without BPF (`datapath.bpf.enabled: false`, or bcc/bpffs unusable) the kernel forwards:
the reconciler turns `net.ipv4.ip_forward` on and says why in status.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bgpd.config.model import Config
from bgpd.reconcile.host import GatewayRoute, Host, HostView
from bgpd.reconcile.masquerade import MasqueradeSync
from common.errors import DatapathError
from datapath.bpf_maps import Datapath, LocalPod, RemoteRoute
from datapath.masq import Masquerader
from datapath.routes import KernelRoute

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BpfFactory = Callable[[str], Datapath]
LOOPBACK = "lo"
START_WAIT = 120.0
REATTACH_INTERVAL = 30.0


def _no_nft() -> Masquerader:
    from datapath.nft_masq import NftMasquerade

    return NftMasquerade()


def device_for(
    hops: Iterable[ipaddress.IPv4Address], connected: Iterable[tuple[ipaddress.IPv4Network, int]]
) -> int | None:
    """The one device every next hop in `hops` is on-link through (longest match), or None."""
    subnets = sorted(connected, key=lambda c: c[0].prefixlen, reverse=True)
    devices = set()
    for hop in hops:
        found = next((index for net, index in subnets if hop in net), None)
        if found is None:
            return None
        devices.add(found)
    return devices.pop() if len(devices) == 1 else None


def desired_local_pods(
    view: HostView, own_cidrs: Iterable[Network]
) -> dict[ipaddress.IPv4Address, LocalPod]:
    """Pods behind a veth of this node, inside its pod CIDRs."""
    mine = [c for c in own_cidrs if isinstance(c, ipaddress.IPv4Network)]
    out: dict[ipaddress.IPv4Address, LocalPod] = {}
    for ip, index in view.pod_routes:
        link = view.link(index)
        if link is None or link.kind != "veth" or not any(ip in c for c in mine):
            continue
        out[ip] = LocalPod(ip, index, link.mac)
    return out


def desired_remote_routes(
    kernel_routes: Iterable[KernelRoute], view: HostView
) -> tuple[dict[ipaddress.IPv4Network, RemoteRoute], list[str]]:
    """({prefix: RemoteRoute}, prefixes left to the kernel stack and why)."""
    out: dict[ipaddress.IPv4Network, RemoteRoute] = {}
    skipped: list[str] = []
    kernel_routes = list(kernel_routes)
    onlink = {r.prefix: r.dev for r in kernel_routes if r.dev is not None}
    learned = [
        GatewayRoute(
            ipaddress.IPv4Network(r.prefix), tuple(ipaddress.IPv4Address(h) for h in r.nexthops)
        )
        for r in kernel_routes
        if r.prefix.version == 4 and not r.is_blackhole
    ]
    for route in [*learned, *view.gateway_routes]:
        if route.prefix in out:
            continue  # kroute's own route wins over a static one for the same prefix
        device = device_for(route.gateways, view.connected)
        if route.prefix in onlink:  # through the VXLAN overlay: the route names its device
            link = view.by_name(onlink[route.prefix])
            device = link.index if link is not None else None
        if device is None:
            hops = ",".join(map(str, route.gateways))
            skipped.append(f"{route.prefix}: next hop {hops} not on one connected subnet")
            continue
        hop = route.gateways[0] if len(route.gateways) == 1 else None
        out[route.prefix] = RemoteRoute(route.prefix, device, hop)
    lo = view.by_name(LOOPBACK)
    for net, index in view.connected:  # other nodes and hosts on the node's subnets
        if net not in out and (lo is None or index != lo.index):
            out[net] = RemoteRoute(net, index, None)
    if lo is not None:
        for addr, _ in view.local_addresses:
            host = ipaddress.IPv4Network(addr)
            if not addr.is_loopback and any(addr in p for p in out):
                out[host] = RemoteRoute(host, lo.index, None)
    return out, skipped


def underlay_devices(
    view: HostView, remote: Mapping[ipaddress.IPv4Network, RemoteRoute], node_ip: object
) -> list[str]:
    """Names of the devices `from_netdev` belongs on: where remote routes leave, and the
    one holding the node IP (pods' return traffic arrives there)."""
    indexes = {r.ifindex for r in remote.values()}
    indexes |= {index for addr, index in view.local_addresses if addr == node_ip}
    names = [link.name for link in view.links if link.index in indexes]
    return sorted(n for n in names if n != LOOPBACK)


@dataclass(frozen=True)
class SyncResult:
    pods: int
    remote_routes: int
    attached: int
    skipped: tuple[str, ...] = ()


class DatapathSync:
    """Keeps the node's datapath (BPF maps and programs, or kernel forwarding) in step
    with the daemon's state. Every method but `status` blocks: call it in an executor."""

    def __init__(
        self,
        config: Config,
        host: Host,
        make_bpf: BpfFactory | None,
        clock: Callable[[], float] = time.monotonic,
        make_nft: Callable[[], Masquerader] | None = None,
    ) -> None:
        self.config = config
        self.masquerade = MasqueradeSync(config, make_nft or _no_nft)
        self._clock = clock
        self._reattached_at = clock()
        self.host = host
        self._make_bpf = make_bpf
        self.bpf: Datapath | None = None
        self.host_routing = "Starting"  # BPF or Legacy once `start` has run
        self.reason = "loading the datapath"
        self._attached: dict[str, str] = {}
        self._lock = threading.Lock()
        self._started = threading.Event()
        self.skipped: tuple[str, ...] = ()
        self.ip_forward: bool | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        """Load the programs, or fall back to kernel forwarding saying why."""
        try:
            self._start()
        finally:
            self._started.set()  # a CNI ADD waiting in add_pod gets its answer either way

    def _start(self) -> None:
        bpf = self.config.datapath.bpf
        if not bpf.enabled:
            self.reason = "datapath.bpf.enabled=false"
        elif self._make_bpf is None:
            self.reason = "no BPF loader in this build"
        else:
            try:
                self.bpf = self._make_bpf(bpf.pin_dir)
            except DatapathError as exc:
                self.reason = f"BPF unavailable: {exc}"
                log.warning("event=datapath-fallback reason=%r", str(exc))
        if self.bpf is not None:
            self.host_routing, self.reason = "BPF", ""
        else:
            self.host_routing = "Legacy"
            self.host.set_ip_forward(True)  # the kernel forwards pod traffic
            left = self.host.detach_programs()  # a BPF run's programs would still forward
            if left:
                log.info("event=bpf-programs-detached interfaces=%s", ",".join(left))
        self.masquerade.start(self.bpf)
        log.info("event=datapath-started host_routing=%s reason=%r", self.host_routing, self.reason)

    def sync(
        self, kernel_routes: Iterable[KernelRoute], own_cidrs: Iterable[Network]
    ) -> SyncResult:
        """Make maps and attachments match the node; in legacy mode keep ip_forward on."""
        with self._lock:
            view = self.host.observe()
            self.ip_forward = view.ip_forward
            self.masquerade.sync(own_cidrs, view)
            if self.bpf is None:
                if not view.ip_forward:
                    log.warning("event=ip-forward-was-off action=enable")
                    self.host.set_ip_forward(True)
                    self.ip_forward = True
                return SyncResult(0, 0, 0)
            pods = desired_local_pods(view, own_cidrs)
            remote, skipped = desired_remote_routes(kernel_routes, view)
            self.skipped = tuple(skipped)
            present = {link.name for link in view.links}
            self._attached = {k: v for k, v in self._attached.items() if k in present}
            if self._clock() - self._reattached_at >= REATTACH_INTERVAL:
                self._attached = {}  # attach again (an atomic replace): undoes a `tc filter del`
                self._reattached_at = self._clock()
            for name in underlay_devices(view, remote, self.config.node.ip):
                self._attach(name, "from_netdev")
            for pod in pods.values():
                link = view.link(pod.ifindex)
                if link is not None:
                    self._attach(link.name, "from_pod")
            self.bpf.sync_local_pods(pods)
            self.bpf.sync_remote_routes(remote)
            return SyncResult(len(pods), len(remote), len(self._attached), self.skipped)

    def _attach(self, name: str, program: str) -> None:
        assert self.bpf is not None
        if self._attached.get(name) != program:
            self.bpf.attach(name, program)
            self._attached[name] = program

    def add_pod(self, ip: str, host_if: str) -> str:
        """kroute-cni's ADD: attach `from_pod` and map `ip` to `host_if` now. The host
        routing mode, so the plugin knows whether BPF answers the pod's ARP. Waits for
        `start` (the status socket answers while the programs still compile)."""
        if not self._started.wait(START_WAIT) or self.host_routing == "Starting":
            raise DatapathError("the datapath did not start (see kroute's log); retry")
        with self._lock:
            if self.bpf is not None:
                self._attach(host_if, "from_pod")
                self.bpf.set_local_pod(ip, host_if)
                log.info("event=datapath-pod-added ip=%s host_if=%s", ip, host_if)
            return self.host_routing

    def remove_pod(self, ip: str) -> bool:
        with self._lock:
            return self.bpf is not None and self.bpf.del_local_pod(ip)

    def status(self) -> dict[str, Any]:
        masq = self.config.datapath.masquerade
        return {
            "hostRouting": self.host_routing,
            "reason": self.reason,
            "ipForward": self.ip_forward,
            "masquerade": {"enabled": masq.enabled, "active": self.masquerade.line()},
            "attached": dict(sorted(self._attached.items())),
            "skippedRoutes": list(self.skipped),
            "lastError": self.last_error,
        }

    def describe(self) -> dict[str, Any]:
        """Programs per interface, map contents and fill, counters (`kroute datapath`)."""
        from datapath.loader import MAX_LOCAL_PODS, MAX_REMOTE_ROUTES

        out = self.status()
        if self.bpf is None:
            return out
        with self._lock:
            pods = self.bpf.local_pods()
            routes = self.bpf.remote_routes()
            counters = self.bpf.counters()
        out["pinDir"] = self.config.datapath.bpf.pin_dir
        out["maps"] = {
            "local_pods": {
                "entries": len(pods),
                "max": MAX_LOCAL_PODS,
                "items": {str(ip): p.ifindex for ip, p in sorted(pods.items())},
            },
            "remote_routes": {
                "entries": len(routes),
                "max": MAX_REMOTE_ROUTES,
                "items": {
                    str(n): {"ifindex": r.ifindex, "nextHop": str(r.next_hop or "")}
                    for n, r in sorted(routes.items())
                },
            },
        }
        out["counters"] = counters
        return out
