"""The eBPF forwarding datapath: compile `bpf/forward.c` with bcc, pin its maps, attach its
tc programs with pyroute2, and read and write its maps.

    dp = BpfDatapath()                      # compiles once; pins under /sys/fs/bpf/kroute
    dp.attach("eth0", "from_netdev")        # underlay device
    dp.attach("cali1234", "from_pod")       # host side of a pod veth
    dp.set_local_pod("10.244.1.5", "cali1234")
    dp.sync_remote_routes({p: RemoteRoute.of(p, "eth0", "192.168.1.12")})
    dp.counters()                           # {"forwarded_local": 12, ...}
    dp.set_masquerade(spec)                 # datapath.masq.MasqueradeSpec: to_netdev on egress
    dp.expire_nat(time.monotonic())         # the daemon's periodic NAT sweep
    dp.describe()                           # programs per hook, map fill, NAT, counters

Split out: compiling (bpf_compile.py), pin checks (bpf_pins.py), tc filters
(tc_hooks.py), the masquerade maps and NAT table (masq_bpf.py).

Everything happens in the network namespace the object was made for (`netns=None`: the
caller's, as for the daemon that runs inside the node's namespace); ifindexes and
interface names are that namespace's. Pins live on bpffs, which network namespaces do not
split (`ip netns exec` remounts /sys and hides them: use `nsenter --net=`).

Restarts: the maps are pinned and a new process reuses them (bcc's pinned tables open
an existing pin instead of creating a map), so entries survive. Attached programs belong
to the kernel, not to the process: closing or losing a `BpfDatapath` leaves them in place
and forwarding; `attach` replaces the program of ours already on an interface (one
filter, atomically), and only `detach` removes it. A pinned map whose shape differs from
what this `forward.c` expects is refused with the path to remove.

Blocking (netlink, bpf syscalls, a 0.2-0.9 s compile in the constructor): the daemon calls
it from an executor thread. Map operations are serialised by a lock.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any

from common.errors import DatapathError
from datapath.bpf_compile import compile_programs
from datapath.bpf_maps import (
    COUNTER_NAMES,
    PROGRAMS,
    LocalPod,
    MapChanges,
    RemoteRoute,
    diff_entries,
    mac_str,
)
from datapath.bpf_pins import DEFAULT_PIN_DIR
from datapath.masq import DEFAULT_MAX_ENTRIES, MasqueradeSpec, NatEntry
from datapath.masq_bpf import BpfMasquerade, addr, u32
from datapath.tc_hooks import FILTER_PREFIX, HOOKS, TcHooks

INGRESS = HOOKS["ingress"]
"""Kept for bgpd/reconcile/host.py; new code: `datapath.tc_hooks.TcHooks.detach_everywhere`
(which also removes the egress masquerade program)."""
__all__ = ["FILTER_PREFIX", "INGRESS", "BpfDatapath"]

log = logging.getLogger(__name__)

MAX_LOCAL_PODS = 4096
MAX_REMOTE_ROUTES = 16384


class BpfDatapath:
    """kroute's forwarding programs and maps in one network namespace (see module doc)."""

    def __init__(
        self,
        pin_dir: str = DEFAULT_PIN_DIR,
        *,
        netns: str | None = None,
        max_local_pods: int = MAX_LOCAL_PODS,
        max_remote_routes: int = MAX_REMOTE_ROUTES,
        max_nat_entries: int = DEFAULT_MAX_ENTRIES,
        node_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    ) -> None:
        """`node_ip`: where the ICMP errors the node sends itself come from (IPv4 only;
        without one a pod's expiring TTL is left to the stack)."""
        from pyroute2 import IPRoute

        self.pin_dir = pin_dir.rstrip("/")
        self.netns = netns
        # As the C code sees a __be32 in memory: the address bytes read in host order.
        v4 = node_ip is not None and node_ip.version == 4
        wire_ip = int.from_bytes(node_ip.packed, sys.byteorder) if node_ip and v4 else 0
        self._bpf = compile_programs(
            self.pin_dir, max_local_pods, max_remote_routes, max_nat_entries, wire_ip
        )
        self._progs = {
            name: self._bpf.load_func(name.encode(), self._bpf.SCHED_CLS) for name in PROGRAMS
        }
        self._pods = self._bpf[b"local_pods"]
        self._routes = self._bpf[b"remote_routes"]
        self._counters = self._bpf[b"counters"]
        self._lock = threading.Lock()
        try:
            self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        except Exception as exc:
            raise DatapathError(f"cannot open netlink in namespace {netns!r}: {exc}") from None
        self._tc = TcHooks(self._ipr)
        self._masq = BpfMasquerade(self._bpf, self._tc, self.ifindex, self.ifname)
        log.info("bpf datapath ready pin_dir=%s netns=%s", self.pin_dir, netns or "-")

    # -- interfaces --------------------------------------------------------------------

    def ifindex(self, dev: int | str) -> int:
        """The ifindex of interface `dev` (a name, or an ifindex that must exist)."""
        if isinstance(dev, int):
            if not self._ipr.get_links(dev):
                raise DatapathError(f"no interface with ifindex {dev} in namespace {self._ns}")
            return dev
        found = self._ipr.link_lookup(ifname=dev)
        if not found:
            raise DatapathError(f"interface {dev!r} not found in namespace {self._ns}")
        return int(found[0])

    def ifname(self, index: int) -> str:
        """The name of interface `index` (its number when it is gone)."""
        links = self._ipr.get_links(index) if index > 0 else []
        return str(links[0].get_attr("IFLA_IFNAME")) if links else str(index)

    def mac(self, dev: int | str) -> bytes:
        links = self._ipr.get_links(self.ifindex(dev))
        addr = links[0].get_attr("IFLA_ADDRESS") if links else None
        if not addr:
            raise DatapathError(f"interface {dev!r} has no MAC address; pods need a veth")
        return bytes.fromhex(addr.replace(":", ""))

    @property
    def _ns(self) -> str:
        return self.netns or "(current)"

    def attach(self, ifname: str | int, program: str) -> None:
        """Run `program` ("from_pod" or "from_netdev") on the ingress of `ifname`,
        replacing a kroute program already there (never a second filter)."""
        if program not in PROGRAMS:
            raise DatapathError(f"program {program!r} is not one of {', '.join(PROGRAMS)}")
        index = self.ifindex(ifname)
        self._tc.attach(index, ifname, "ingress", program, self._progs[program].fd)

    def detach(self, ifname: str | int) -> bool:
        """Remove kroute's programs from both hooks of `ifname`; True if any was there.
        The clsact qdisc stays (other programs may use it); a missing interface is fine."""
        try:
            index = self.ifindex(ifname)
        except DatapathError:
            return False
        return self._tc.detach(index, ifname, ("ingress", "egress"))

    def attached(self) -> dict[str, str]:
        """{interface name: program} for every interface with a kroute ingress program."""
        return self._tc.attached("ingress")

    # -- masquerade (datapath/masq_bpf.py) ---------------------------------------------

    kind = "bpf"

    def set_masquerade(self, spec: MasqueradeSpec) -> None:
        """Masquerade as `spec` says: `to_netdev` on the egress of its interfaces,
        `from_netdev` on their ingress (reverse translation); idempotent."""
        with self._lock:
            for name in spec.egress_interfaces:
                self.attach(name, "from_netdev")
            self._masq.set(spec)

    def clear_masquerade(self) -> bool:
        with self._lock:
            return self._masq.clear()

    def nat_entries(self) -> list[NatEntry]:
        return self._masq.entries()

    def expire_nat(self, now: float | None = None) -> int:
        """Sweep NAT entries idle past the spec's timeouts at monotonic `now`."""
        with self._lock:
            return self._masq.expire(now)

    def masquerade_status(self) -> dict[str, Any]:
        return self._masq.status()

    # -- local pods --------------------------------------------------------------------

    def _pod_leaf(self, pod: LocalPod) -> Any:
        leaf = self._pods.Leaf()
        leaf.ifindex = pod.ifindex
        leaf.flags = 0
        ctypes.memmove(leaf.host_mac, pod.host_mac, 6)
        ctypes.memmove(leaf.pod_mac, pod.pod_mac, 6)
        return leaf

    def _write_pod(self, pod: LocalPod) -> None:
        try:
            self._pods[self._pods.Key(u32(pod.ip))] = self._pod_leaf(pod)
        except Exception as exc:
            raise DatapathError(
                f"local pod {pod.ip}: map update failed ({exc}); the map holds at most "
                f"{self._pods.max_entries} pods"
            ) from None

    def local_pod(
        self,
        ip: str | ipaddress.IPv4Address,
        ifindex: int | str,
        pod_mac: str | bytes | None = None,
    ) -> LocalPod:
        """The `LocalPod` value for `ip` behind host veth `ifindex` (its MAC read here)."""
        index = self.ifindex(ifindex)
        return LocalPod.of(ip, index, self.mac(index), pod_mac)

    def set_local_pod(
        self,
        ip: str | ipaddress.IPv4Address,
        ifindex: int | str,
        pod_mac: str | bytes | None = None,
    ) -> LocalPod:
        """Send traffic for pod `ip` (from pods and from the underlay) into host veth
        `ifindex` (an ifindex or a name); add or replace."""
        pod = self.local_pod(ip, ifindex, pod_mac)
        with self._lock:
            self._write_pod(pod)
        return pod

    def del_local_pod(self, ip: str | ipaddress.IPv4Address) -> bool:
        with self._lock:
            try:
                del self._pods[self._pods.Key(u32(ipaddress.IPv4Address(ip)))]
            except KeyError:
                return False
            return True

    def local_pods(self) -> dict[ipaddress.IPv4Address, LocalPod]:
        out = {}
        for k, v in self._pods.items():
            ip = addr(k.value)
            out[ip] = LocalPod(ip, int(v.ifindex), bytes(v.host_mac), bytes(v.pod_mac))
        return out

    def sync_local_pods(self, desired: Mapping[ipaddress.IPv4Address, LocalPod]) -> MapChanges:
        """Make `local_pods` hold exactly `desired` (build values with `local_pod()`)."""
        with self._lock:
            upserts, deletes = diff_entries(desired, self.local_pods())
            for pod in upserts:
                self._write_pod(pod)
            for ip in deletes:
                del self._pods[self._pods.Key(u32(ip))]
        return MapChanges(len(upserts), len(deletes))

    # -- remote routes -----------------------------------------------------------------

    def _route_key(self, prefix: ipaddress.IPv4Network) -> Any:
        key = self._routes.Key()
        key.prefixlen = prefix.prefixlen
        key.addr = u32(prefix.network_address)
        return key

    def _write_route(self, route: RemoteRoute) -> None:
        leaf = self._routes.Leaf()
        leaf.ifindex = route.ifindex
        leaf.nexthop = u32(route.next_hop) if route.next_hop else 0
        try:
            self._routes[self._route_key(route.prefix)] = leaf
        except Exception as exc:
            raise DatapathError(
                f"remote route {route.prefix}: map update failed ({exc}); the map holds at "
                f"most {self._routes.max_entries} routes"
            ) from None

    def set_remote_route(
        self,
        prefix: str | ipaddress.IPv4Network,
        ifindex: int | str,
        next_hop: str | ipaddress.IPv4Address | None = None,
    ) -> RemoteRoute:
        """Send traffic from pods to `prefix` out of `ifindex` (underlay device, index or
        name) towards `next_hop` (None: the kernel's FIB picks it); add or replace."""
        route = RemoteRoute.of(prefix, self.ifindex(ifindex), next_hop)
        with self._lock:
            self._write_route(route)
        return route

    def del_remote_route(self, prefix: str | ipaddress.IPv4Network) -> bool:
        with self._lock:
            try:
                del self._routes[self._route_key(ipaddress.IPv4Network(prefix))]
            except KeyError:
                return False
            return True

    def remote_routes(self) -> dict[ipaddress.IPv4Network, RemoteRoute]:
        out = {}
        for k, v in self._routes.items():
            net = ipaddress.IPv4Network((addr(k.addr), k.prefixlen))
            nh = addr(v.nexthop) if v.nexthop else None
            out[net] = RemoteRoute(net, int(v.ifindex), nh)
        return out

    def sync_remote_routes(
        self,
        desired: Mapping[Any, RemoteRoute | tuple[int | str, Any]],
    ) -> MapChanges:
        """Make `remote_routes` hold exactly `desired`: {prefix: RemoteRoute} or
        {prefix: (ifindex or name, next hop or None)}. Only differences are written."""
        want: dict[ipaddress.IPv4Network, RemoteRoute] = {}
        for prefix, value in desired.items():
            net = ipaddress.IPv4Network(prefix)
            if isinstance(value, RemoteRoute):
                want[net] = value
            else:
                dev, nh = value
                want[net] = RemoteRoute.of(net, self.ifindex(dev), nh)
        with self._lock:
            upserts, deletes = diff_entries(want, self.remote_routes())
            for route in upserts:
                self._write_route(route)
            for net in deletes:
                del self._routes[self._route_key(net)]
        if upserts or deletes:
            log.info("bpf remote routes synced upserted=%d deleted=%d", len(upserts), len(deletes))
        return MapChanges(len(upserts), len(deletes))

    # -- counters ----------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Packets per outcome since the maps were first pinned, summed over CPUs."""
        out = {}
        for slot, name in enumerate(COUNTER_NAMES):
            out[name] = int(sum(self._counters.getvalue(self._counters.Key(slot))))
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-able view for status output."""
        return {
            "pinDir": self.pin_dir,
            "attached": self.attached(),
            "localPods": {
                str(ip): {"ifindex": p.ifindex, "hostMac": mac_str(p.host_mac)}
                for ip, p in self.local_pods().items()
            },
            "remoteRoutes": {
                str(n): {"ifindex": r.ifindex, "nextHop": str(r.next_hop or "")}
                for n, r in self.remote_routes().items()
            },
            "attachedEgress": self._tc.attached("egress"),
            "maps": self.map_fill(),
            "masquerade": self.masquerade_status(),
            "counters": self.counters(),
        }

    def map_fill(self) -> dict[str, dict[str, int]]:
        """{map: {"entries": n, "maxEntries": m}} of the maps whose fill matters."""
        tables = {"localPods": self._pods, "remoteRoutes": self._routes}
        tables["natOut"] = self._bpf[b"nat_out"]
        tables["natIn"] = self._bpf[b"nat_in"]
        return {
            name: {"entries": sum(1 for _ in t), "maxEntries": int(t.max_entries)}
            for name, t in tables.items()
        }

    def close(self) -> None:
        """Close netlink. Programs stay attached and maps stay pinned (see module doc)."""
        self._ipr.close()
