"""What the datapath reconciler observes on the node, and the one sysctl it writes.

`HostView` is a frozen snapshot of the node's network namespace (links, pod routes,
connected subnets, other gateway routes, local addresses, ip_forward); `NetlinkHost`
reads it with pyroute2, `StaticHost` is the in-memory stand-in for unit tests. Blocking:
the reconciler calls it from an executor thread.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from datapath.host_routes import dump_host_routes

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
SCOPE_LINK = 253
RTPROT_KERNEL = 2


@dataclass(frozen=True, slots=True)
class HostLink:
    index: int
    name: str
    mac: bytes
    kind: str  # IFLA_INFO_KIND ("veth", "bridge", ...), "" for a plain device


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    """A main-table IPv4 route through gateway(s) that kroute did not install (the
    node's default route, a static route)."""

    prefix: ipaddress.IPv4Network
    gateways: tuple[ipaddress.IPv4Address, ...]


@dataclass(frozen=True)
class HostView:
    links: tuple[HostLink, ...] = ()
    pod_routes: tuple[tuple[ipaddress.IPv4Address, int], ...] = ()
    """`IP/32 dev IF scope link` routes (how kroute-cni and the lab route to pods)."""
    connected: tuple[tuple[ipaddress.IPv4Network, int], ...] = ()
    """Subnets the kernel routes on-link (`proto kernel scope link`) and their device."""
    gateway_routes: tuple[GatewayRoute, ...] = ()
    local_addresses: tuple[tuple[ipaddress.IPv4Address, int], ...] = ()
    ip_forward: bool = False

    def link(self, index: int) -> HostLink | None:
        return next((link for link in self.links if link.index == index), None)

    def by_name(self, name: str) -> HostLink | None:
        return next((link for link in self.links if link.name == name), None)


class Host(Protocol):
    def observe(self) -> HostView: ...
    def set_ip_forward(self, enabled: bool) -> None: ...
    def detach_programs(self) -> list[str]:
        """Remove kroute's tc programs a BPF run left (legacy now); the interfaces."""
        ...


@dataclass
class StaticHost:
    """`Host` for unit tests: returns `view`, records ip_forward writes in it."""

    view: HostView = field(default_factory=HostView)
    programs: dict[str, str] = field(default_factory=dict)
    """Interface -> kroute program attached (what `detach_programs` removes)."""

    def observe(self) -> HostView:
        return self.view

    def set_ip_forward(self, enabled: bool) -> None:
        self.view = HostView(**{**self.view.__dict__, "ip_forward": enabled})

    def detach_programs(self) -> list[str]:
        gone = sorted(self.programs)
        self.programs.clear()
        return gone


def _kind(link: Any) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return str(kind or "")


class NetlinkHost:
    """`Host` on the kernel of the caller's network namespace."""

    def observe(self) -> HostView:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            links = tuple(
                HostLink(
                    link["index"],
                    str(link.get_attr("IFLA_IFNAME")),
                    bytes.fromhex((link.get_attr("IFLA_ADDRESS") or "").replace(":", "")),
                    _kind(link),
                )
                for link in ipr.get_links()
            )
            pods, connected, gateways = [], [], []
            for r in dump_host_routes():
                if r.gateways:
                    gateways.append(GatewayRoute(r.prefix, r.gateways))
                elif r.oif and r.scope == SCOPE_LINK:
                    if r.prefix.prefixlen == 32 and r.proto != RTPROT_KERNEL:
                        pods.append((r.prefix.network_address, r.oif))
                    elif r.proto == RTPROT_KERNEL:
                        connected.append((r.prefix, r.oif))
            local = tuple(
                (ipaddress.IPv4Address(a.get_attr("IFA_ADDRESS")), int(a["index"]))
                for a in ipr.get_addr(family=2)
            )
        return HostView(
            links,
            tuple(pods),
            tuple(connected),
            tuple(gateways),
            local,
            IP_FORWARD.read_text().strip() == "1",
        )

    def set_ip_forward(self, enabled: bool) -> None:
        IP_FORWARD.write_text("1" if enabled else "0")

    def detach_programs(self) -> list[str]:
        """Delete kroute's tc filters on both hooks (no bcc needed): programs stay attached
        after their process, and stale maps must not forward or masquerade in legacy mode."""
        from pyroute2 import IPRoute

        from datapath.tc_hooks import TcHooks

        with IPRoute() as ipr:
            return TcHooks(ipr).detach_everywhere()
