"""Which routes go natively and which over the VXLAN overlay: pure planning, no kernel.

Modes (`routing.mode`, `routing.overlay`), as Calico's `vxlanMode`:
- `native`: every next hop must be on a connected subnet of this node; a route whose next
  hops are all elsewhere is `unreachable` (not programmed, reported with a reason).
- `vxlan` + `never`: the same as native (no device).
- `vxlan` + `crossSubnet`: a next hop that is a cluster node on a connected subnet goes
  natively, a node elsewhere goes over the overlay.
- `vxlan` + `always`: every next hop that is a cluster node goes over the overlay.
Next hops that are not cluster nodes (upstream routers) never use the overlay: no VTEP
answers there. An ECMP route is either all native or all overlay (a route has one
device): when one node hop needs the overlay, every node hop of it takes the overlay,
which reaches same-subnet nodes too, so BGP's multipath set is kept; a non-node hop in
such a set is left out and named in `dropped`.

Per remote node (flannel's and Calico's scheme):
- VXLAN MAC `02:6b:` + the 4 bytes of its underlay IPv4 (locally administered, unicast;
  "6b" is "k"): every node derives every other node's MAC from membership alone, no
  exchange or store needed, and a node that changes its underlay IP changes its MAC, so
  stale FDB entries can never point a new address at an old MAC.
- overlay next hop: the network address of its lowest IPv4 pod CIDR (flannel's choice).
  It is known from membership alone (no tunnel-address allocation to store and
  distribute), IPAM never hands it to a pod (allocation starts at network + 1), and it
  lies inside the node's pod CIDR: this node puts its own one as /32 on the device, so
  traffic the node itself sends to a remote pod leaves with a source the other side
  routes back over the overlay (symmetric, no rp_filter surprise).
- MTU: IPv4 VXLAN adds 50 bytes (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from common.errors import ConfigError
from datapath.routes import Address, KernelRoute, Network, valid_ifname

RoutingMode: TypeAlias = Literal["native", "vxlan"]
OverlayPolicy: TypeAlias = Literal["never", "crossSubnet", "always"]
Path: TypeAlias = Literal["native", "overlay", "unreachable", "local"]

ROUTING_MODES: tuple[RoutingMode, ...] = ("native", "vxlan")
OVERLAY_POLICIES: tuple[OverlayPolicy, ...] = ("never", "crossSubnet", "always")
VXLAN_OVERHEAD_V4 = 50
DEFAULT_DEVICE = "kroute.vxlan"
DEFAULT_VNI = 1
DEFAULT_PORT = 4789
"""IANA's VXLAN port (RFC 7348): NIC tunnel offloads, tcpdump and firewalls know it.
flannel's 8472 is the Linux driver's pre-IANA default, kept by flannel for compatibility;
kroute has no old peers to stay compatible with. Another VXLAN user on the host with the
same VNI and port makes device creation fail with a clear error: change `port` then."""
MIN_MTU = 1280  # below it IPv6 cannot run in pods; refuse an underlay that small
MAC_PREFIX = b"\x02\x6b"


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """`routing.*`: the mode, the overlay policy and the VXLAN device's identity."""

    mode: RoutingMode = "native"
    overlay: OverlayPolicy = "never"
    device: str = DEFAULT_DEVICE
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        errors = []
        if self.mode not in ROUTING_MODES:
            errors.append(f"routing.mode: {self.mode!r} is not one of native, vxlan")
        if self.overlay not in OVERLAY_POLICIES:
            errors.append(
                f"routing.overlay: {self.overlay!r} is not one of never, crossSubnet, always"
            )
        elif self.mode == "native" and self.overlay != "never":
            errors.append(
                f"routing.overlay: {self.overlay} needs routing.mode: vxlan; "
                "set routing.mode: vxlan, or routing.overlay: never for native routing"
            )
        if not valid_ifname(self.device):
            errors.append(
                f"routing.vxlan.device: {self.device!r} is not an interface name "
                "(1-15 characters, no '/', ':' or spaces)"
            )
        if isinstance(self.vni, bool) or not 1 <= self.vni <= 0xFFFFFF:
            errors.append(f"routing.vxlan.vni: {self.vni!r} must be an integer 1-16777215")
        if isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            errors.append(f"routing.vxlan.port: {self.port!r} must be an integer 1-65535")
        if errors:
            raise ConfigError(errors)

    @property
    def uses_overlay(self) -> bool:
        """Whether this node needs the VXLAN device at all."""
        return self.mode == "vxlan" and self.overlay != "never"


@dataclass(frozen=True, slots=True)
class LocalNode:
    """This node: its underlay address, its connected subnets (every interface's, for the
    on-link test), its pod CIDRs and the underlay device's MTU."""

    name: str
    underlay_ip: Address
    subnets: tuple[Network, ...]
    pod_cidrs: tuple[Network, ...] = ()
    underlay_mtu: int = 1500


@dataclass(frozen=True, slots=True)
class RemoteNode:
    """Another cluster member as membership knows it."""

    name: str
    underlay_ip: Address
    pod_cidrs: tuple[Network, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class OverlayPeer:
    """What the VXLAN device needs per remote node: FDB `mac -> underlay_ip` and the
    permanent neighbour `overlay_ip -> mac`."""

    name: str
    mac: str
    underlay_ip: ipaddress.IPv4Address
    overlay_ip: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class VxlanSpec:
    """The device this node keeps: identity, underlay binding, MTU, its own MAC/address."""

    name: str
    vni: int
    port: int
    local: ipaddress.IPv4Address
    mtu: int
    mac: str
    address: ipaddress.IPv4Address | None
    underlay_dev: str | None = None  # None: the device that holds `local`


@dataclass(frozen=True, slots=True)
class PlannedRoute:
    """One prefix's decision: the route to program (None when unreachable) and why."""

    prefix: Network
    path: Path
    route: KernelRoute | None
    reason: str = ""
    dropped: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision for one next-hop set, shared by every prefix that has that set."""

    path: Path
    hops: tuple[Address, ...] = ()
    dev: str | None = None
    reason: str = ""
    dropped: tuple[Address, ...] = ()


LOCAL = Decision("local")


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """Every prefix's decision; `routes` feeds the KernelRouteReconciler. Decisions are
    shared per next-hop set, so a plan of 100k routes costs two dict entries per route."""

    routes: dict[Network, KernelRoute] = field(default_factory=dict)
    decisions: dict[Network, Decision] = field(default_factory=dict)

    def kernel_routes(self) -> dict[Network, KernelRoute]:
        return dict(self.routes)

    def entry(self, prefix: Network) -> PlannedRoute:
        d = self.decisions[prefix]
        return PlannedRoute(prefix, d.path, self.routes.get(prefix), d.reason, d.dropped)

    def unreachable(self) -> dict[Network, str]:
        return {p: d.reason for p, d in self.decisions.items() if d.path == "unreachable"}

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("native", "overlay", "unreachable", "local"), 0)
        for d in self.decisions.values():
            out[d.path] += 1
        return out


def vxlan_mac(underlay_ip: Address) -> str:
    """The deterministic VXLAN MAC of the node with this IPv4 underlay address."""
    if underlay_ip.version != 4:
        raise ValueError(f"underlay address {underlay_ip}: the VXLAN overlay needs IPv4")
    return ":".join(f"{b:02x}" for b in MAC_PREFIX + underlay_ip.packed)


def overlay_address(pod_cidrs: Iterable[Network]) -> ipaddress.IPv4Address | None:
    """The node's overlay next hop: network address of its lowest IPv4 pod CIDR that has
    room for it besides pods (/30 or larger); None when it has none."""
    v4 = sorted(c for c in pod_cidrs if isinstance(c, ipaddress.IPv4Network) and c.prefixlen <= 30)
    return v4[0].network_address if v4 else None


def overlay_mtu(underlay_mtu: int) -> int:
    """MTU of the VXLAN device on an IPv4 underlay of `underlay_mtu`."""
    if underlay_mtu - VXLAN_OVERHEAD_V4 < MIN_MTU:
        raise ValueError(
            f"underlay MTU {underlay_mtu} leaves {underlay_mtu - VXLAN_OVERHEAD_V4} for the "
            f"overlay, below {MIN_MTU}; raise the underlay MTU or use routing.mode: native"
        )
    return underlay_mtu - VXLAN_OVERHEAD_V4


def pod_mtu(settings: RoutingSettings, underlay_mtu: int) -> int:
    """The MTU pods get: any pod packet may take the overlay once it is in use (Calico
    lowers it for crossSubnet too), so then the overlay's, else the underlay's."""
    return overlay_mtu(underlay_mtu) if settings.uses_overlay else underlay_mtu


def vxlan_spec(
    settings: RoutingSettings, local: LocalNode, underlay_dev: str | None = None
) -> VxlanSpec | None:
    """The device this node should hold, or None when it should hold none (then remove
    it: `Overlay.remove`)."""
    if not settings.uses_overlay:
        return None
    if not isinstance(local.underlay_ip, ipaddress.IPv4Address):
        raise ConfigError(
            [f"node.ip: {local.underlay_ip} is IPv6; routing.mode: vxlan needs an IPv4 underlay"]
        )
    return VxlanSpec(
        name=settings.device,
        vni=settings.vni,
        port=settings.port,
        local=local.underlay_ip,
        mtu=overlay_mtu(local.underlay_mtu),
        mac=vxlan_mac(local.underlay_ip),
        address=overlay_address(local.pod_cidrs),
        underlay_dev=underlay_dev,
    )


def overlay_peers(local: LocalNode, remotes: Sequence[RemoteNode]) -> tuple[OverlayPeer, ...]:
    """FDB and neighbour entries for every remote node that can be reached over VXLAN (an
    IPv4 underlay and an IPv4 pod CIDR), by name. All of them, not only those routed over
    the overlay now, so a route moving onto the overlay never waits for its entries.
    A node clashing with one earlier by name (same underlay IP or overlay address) or
    with this node is left out: two nodes cannot share a VTEP."""
    own = {local.underlay_ip, overlay_address(local.pod_cidrs)}
    seen: set[object] = set()
    peers = []
    for node in sorted(remotes, key=lambda n: n.name):
        tun = overlay_address(node.pod_cidrs)
        ip = node.underlay_ip
        if node.name == local.name or tun is None or not isinstance(ip, ipaddress.IPv4Address):
            continue
        if ip in own or tun in own or ip in seen or tun in seen:
            continue
        seen.update((ip, tun))
        peers.append(OverlayPeer(node.name, vxlan_mac(ip), ip, tun))
    return tuple(peers)


def plan_routes(
    settings: RoutingSettings,
    local: LocalNode,
    remotes: Sequence[RemoteNode],
    desired: Mapping[Network, KernelRoute],
) -> RoutePlan:
    """Decide every route of `desired` (bgpd.reconcile.desired.desired_kernel_routes' output: next
    hops are what BGP learned, normally node underlay addresses). Blackholes and routes
    already on a device pass unchanged (`local`). Work is per distinct next-hop set, so
    100k routes over a few nodes cost little more than building the routes."""
    peers: dict[Address, OverlayPeer] = {}
    if settings.uses_overlay:
        peers.update((p.underlay_ip, p) for p in overlay_peers(local, remotes))
    subnets = local.subnets
    by_hops: dict[tuple[Address, ...], Decision] = {}
    routes: dict[Network, KernelRoute] = {}
    decisions: dict[Network, Decision] = {}
    for prefix, route in desired.items():
        if route.is_blackhole or route.dev is not None:
            routes[prefix] = route
            decisions[prefix] = LOCAL
            continue
        d = by_hops.get(route.nexthops)
        if d is None:
            d = by_hops[route.nexthops] = _decide(settings, subnets, peers, route.nexthops)
        decisions[prefix] = d
        if d.path == "native" and d.hops == route.nexthops:
            routes[prefix] = route
        elif d.path != "unreachable":
            routes[prefix] = KernelRoute(prefix, d.hops, d.dev)
    return RoutePlan(routes, decisions)


def _decide(
    settings: RoutingSettings,
    subnets: tuple[Network, ...],
    peers: Mapping[Address, OverlayPeer],
    hops: tuple[Address, ...],
) -> Decision:
    native: list[Address] = []
    overlay: list[OverlayPeer] = []
    node_native: list[OverlayPeer] = []
    off_link: list[Address] = []
    for hop in hops:
        on_link = any(hop in s for s in subnets if s.version == hop.version)
        peer = peers.get(hop)
        if peer is not None and (settings.overlay == "always" or not on_link):
            overlay.append(peer)
        elif on_link:
            native.append(hop)
            if peer is not None:
                node_native.append(peer)
        else:
            off_link.append(hop)
    if overlay:
        tunnels = tuple(sorted({p.overlay_ip for p in overlay + node_native}))
        kept = {p.underlay_ip for p in node_native}
        dropped = tuple(h for h in native if h not in kept) + tuple(off_link)
        reason = f"left out (not a cluster node): {', '.join(map(str, dropped))}" if dropped else ""
        return Decision("overlay", tunnels, settings.device, reason, dropped)
    if native:
        reason = f"not on a connected subnet: {', '.join(map(str, off_link))}" if off_link else ""
        return Decision("native", tuple(native), None, reason, tuple(off_link))
    if settings.uses_overlay:
        why = "neither on a connected subnet nor a cluster node reachable over the overlay"
    else:
        why = f"not on a connected subnet and routing.mode is {settings.mode} without overlay"
    reason = f"next hop {', '.join(map(str, off_link))} {why}"
    return Decision("unreachable", (), None, reason, tuple(off_link))
