"""The kernel side of `kroute-cni`: veth pairs, pod addresses and routes, through pyroute2.

Runs in the node's netns (where the runtime runs the plugin); the pod's netns is reached
with a netlink socket opened inside it from an fd of CNI_NETNS, opened here without
O_CREAT so a missing netns is an error, never silently created (pyroute2 would create a
netns it is given by name). Sysctls are written through /proc/sys/net, which shows the
netns of the process, so they land on the node's side of the veth as intended.

Every step is "replace" or checked first, so running ADD again converges instead of
failing on EEXIST.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from common.errors import DatapathError
from ipam.allocator import IPAddress

GATEWAY_V4 = ipaddress.IPv4Address("169.254.1.1")
GATEWAY_V6 = ipaddress.IPv6Address("fe80::1")
DEFAULT_MTU = 1500

MAIN_TABLE = 254
SCOPE_LINK = 253
IFA_F_NODAD = 0x02  # the node and the pod own their addresses; DAD would only delay them
SYSCTL = Path("/proc/sys/net")
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
# Proxy ARP answers only on an interface that forwards (arp_process checks the device's
# forwarding, not just ip_forward), so with kernel forwarding the host side forwards, as
# Calico sets it. With kroute's BPF datapath the programs answer ARP and forward, and the
# veth keeps the node's default (ip_forward=0 nodes stay non-forwarding everywhere).
_SYSCTLS = (
    ("ipv4/conf/{}/proxy_arp", "1"),
    ("ipv4/neigh/{}/proxy_delay", "0"),
)
_FORWARDING = ("ipv4/conf/{}/forwarding", "1")


def _sysctls(wiring: PodWiring) -> tuple[tuple[str, str], ...]:
    return (*_SYSCTLS, _FORWARDING) if wiring.kernel_forwarding else _SYSCTLS


@dataclass(frozen=True)
class PodWiring:
    """What the kernel should hold for one pod interface (input of `PodNetwork`)."""

    host_if: str
    netns: str
    ifname: str
    addresses: tuple[IPAddress, ...]
    mtu: int = DEFAULT_MTU
    kernel_forwarding: bool = True
    """False when kroute's BPF programs forward this pod (datapath.bpf.enabled)."""


@dataclass(frozen=True)
class Wired:
    """What ADD reports back: both MAC addresses."""

    host_mac: str
    pod_mac: str


@contextlib.contextmanager
def pod_netlink(netns: str) -> Iterator[Any]:
    """An IPRoute inside the netns at path `netns` (never creates one)."""
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise DatapathError(f"CNI_NETNS {netns}: cannot open: {exc.strerror}") from None
    try:
        with IPRoute(netns=fd) as ipr:
            yield ipr
    finally:
        os.close(fd)


def _link(ipr: Any, name: str) -> Any | None:
    indexes = ipr.link_lookup(ifname=name)
    return ipr.get_links(indexes[0])[0] if indexes else None


def _is_veth(link: Any) -> bool:
    info = link.get_attr("IFLA_LINKINFO")
    return info is not None and info.get_attr("IFLA_INFO_KIND") == "veth"


Route = tuple[str | None, int, int | None, str | None]


def _routes(ipr: Any, family: int) -> list[Route]:
    """(dst, dst_len, oif, gateway) of the main table's routes (IPv6 keeps no scope)."""
    return [
        (r.get_attr("RTA_DST"), r["dst_len"], r.get_attr("RTA_OIF"), r.get_attr("RTA_GATEWAY"))
        for r in ipr.get_routes(family=_FAMILY[family], table=MAIN_TABLE)
    ]


def _sysctl(path: str, value: str | None = None) -> str:
    file = SYSCTL / path
    if value is not None:
        file.write_text(value)
    return file.read_text().strip()


class KernelPodNetwork:
    """`bgpd.cni.PodNetwork` on the real kernel."""

    def add(self, wiring: PodWiring) -> Wired:
        try:
            return self._add(wiring)
        except NetlinkError as exc:
            raise DatapathError(
                f"netlink refused wiring {wiring.host_if} <-> {wiring.netns}:{wiring.ifname}: {exc}"
            ) from None

    def _add(self, w: PodWiring) -> Wired:
        with IPRoute() as node, pod_netlink(w.netns) as pod:
            host, peer = _link(node, w.host_if), _link(pod, w.ifname)
            ours = (
                host is not None
                and peer is not None
                and _is_veth(peer)
                and peer.get_attr("IFLA_LINK") == host["index"]
            )
            if host is not None and not ours:  # left from an older sandbox: start afresh
                node.link("del", index=host["index"])
                host, peer = None, _link(pod, w.ifname)
            if host is None:
                if peer is not None:
                    raise DatapathError(
                        f"CNI_IFNAME {w.ifname} already exists in {w.netns} and is not "
                        "kroute's veth; remove it or choose another interface name"
                    )
                fd = os.open(w.netns, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    node.link(
                        "add",
                        ifname=w.host_if,
                        kind="veth",
                        mtu=w.mtu,
                        peer={"ifname": w.ifname, "net_ns_fd": fd, "mtu": w.mtu},
                    )
                finally:
                    os.close(fd)
                host, peer = _link(node, w.host_if), _link(pod, w.ifname)
            if host is None or peer is None:
                raise DatapathError(f"veth {w.host_if} vanished while being wired; retry")
            h, p = host["index"], peer["index"]
            for path, value in _sysctls(w):
                _sysctl(path.format(w.host_if), value)
            node.link("set", index=h, mtu=w.mtu, state="up")
            pod.link("set", index=p, mtu=w.mtu, state="up")
            for ip in w.addresses:
                self._address(node, pod, h, p, ip)
            return Wired(host.get_attr("IFLA_ADDRESS"), peer.get_attr("IFLA_ADDRESS"))

    @staticmethod
    def _address(node: Any, pod: Any, h: int, p: int, ip: IPAddress) -> None:
        bits = 32 if ip.version == 4 else 128
        nodad = {"flags": IFA_F_NODAD} if ip.version == 6 else {}
        pod.addr("replace", index=p, address=str(ip), prefixlen=bits, **nodad)
        node.route("replace", dst=f"{ip}/{bits}", oif=h, scope=SCOPE_LINK)
        if ip.version == 4:
            pod.route("replace", dst=f"{GATEWAY_V4}/32", oif=p, scope=SCOPE_LINK)
            pod.route("replace", dst="0.0.0.0/0", gateway=str(GATEWAY_V4), oif=p)
            # proxy ARP answers only for targets routed through another device: lo here.
            (lo,) = node.link_lookup(ifname="lo")
            node.route("replace", dst=f"{GATEWAY_V4}/32", oif=lo, scope=SCOPE_LINK)
        else:
            node.addr("replace", index=h, address=str(GATEWAY_V6), prefixlen=64, flags=IFA_F_NODAD)
            pod.route("replace", dst="::/0", gateway=str(GATEWAY_V6), oif=p)

    def delete(self, host_if: str) -> bool:
        with IPRoute() as node:
            host = _link(node, host_if)
            if host is None:
                return False
            try:
                node.link("del", index=host["index"])
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:  # the pod's netns went away meanwhile
                    return False
                raise DatapathError(f"cannot delete veth {host_if}: {exc}") from None
            return True

    def check(self, wiring: PodWiring) -> list[str]:
        w, problems = wiring, []
        with IPRoute() as node:
            host = _link(node, w.host_if)
            if host is None:
                return [f"host veth {w.host_if} is missing"]
            h = host["index"]
            problems += _link_problems(host, f"host veth {w.host_if}", w.mtu)
            for key, want in _sysctls(w):
                path = key.format(w.host_if)
                if _sysctl(path) != want:
                    problems.append(f"{path} is {_sysctl(path)}, want {want}")
            for ip in w.addresses:
                bits = ip.max_prefixlen
                if (str(ip), bits, h, None) not in _routes(node, ip.version):
                    problems.append(f"node route {ip}/{bits} dev {w.host_if} scope link missing")
            if any(ip.version == 4 for ip in w.addresses):
                (lo,) = node.link_lookup(ifname="lo")
                if (str(GATEWAY_V4), 32, lo, None) not in _routes(node, 4):
                    problems.append(f"node route {GATEWAY_V4}/32 dev lo missing")
        if not Path(w.netns).exists():
            return [*problems, f"netns {w.netns} does not exist"]
        with pod_netlink(w.netns) as pod:
            peer = _link(pod, w.ifname)
            if peer is None or peer.get_attr("IFLA_LINK") != h or not _is_veth(peer):
                return [*problems, f"{w.ifname} in {w.netns} is not the peer of {w.host_if}"]
            p = peer["index"]
            problems += _link_problems(peer, f"pod interface {w.ifname}", w.mtu)
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in pod.get_addr(index=p)}
            for ip in w.addresses:
                if (str(ip), ip.max_prefixlen) not in have:
                    problems.append(f"{w.ifname} lacks address {ip}/{ip.max_prefixlen}")
            wanted: dict[int, list[Route]] = {
                4: [(str(GATEWAY_V4), 32, p, None), (None, 0, p, str(GATEWAY_V4))],
                6: [(None, 0, p, str(GATEWAY_V6))],
            }
            for family in sorted({ip.version for ip in w.addresses}):
                routes = _routes(pod, family)
                for route in wanted[family]:
                    if route not in routes:
                        dst, length, _, gw = route
                        via = f" via {gw}" if gw else ""
                        problems.append(f"pod route {dst or 'default'}/{length}{via} missing")
        return problems


def _link_problems(link: Any, what: str, mtu: int) -> list[str]:
    out = []
    if link.get_attr("IFLA_MTU") != mtu:
        out.append(f"{what} has MTU {link.get_attr('IFLA_MTU')}, want {mtu}")
    if not link["flags"] & 1:  # IFF_UP
        out.append(f"{what} is down")
    return out
