"""The inputs of LB-IPAM: address pools and services, and the rule for sharing an IP.

Values are frozen and validated on construction (ValueError naming the field), so the
allocator never meets a malformed pool or service; lbipam/documents.py reads them from
YAML/JSON-shaped documents.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from lbipam.selectors import Selector, frozen_labels

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FamilyName = Literal["IPv4", "IPv6"]
TrafficPolicy = Literal["Cluster", "Local"]
Protocol = Literal["TCP", "UDP", "SCTP"]

IPS_ANNOTATION = "lbipam.kroute.io/ips"
SHARING_KEY_ANNOTATION = "lbipam.kroute.io/sharing-key"
FAMILIES: dict[str, int] = {"IPv4": 4, "IPv6": 6}

_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,252}")
_K8S_NAME = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,252}")


def family_name(version: int) -> str:
    return f"IPv{version}"


def ip_sort_key(ip: IPAddress) -> tuple[int, int]:
    return ip.version, int(ip)


@dataclass(frozen=True)
class Block:
    """A contiguous run of addresses: a CIDR (`cidr` set) or a start-stop range."""

    first: IPAddress
    last: IPAddress
    cidr: Network | None = None

    @classmethod
    def from_cidr(cls, cidr: Network | str) -> Block:
        """Host bits must be clear: `10.0.0.1/24` is refused rather than guessed."""
        net = ipaddress.ip_network(cidr) if isinstance(cidr, str) else cidr
        return cls(net.network_address, net.broadcast_address, net)

    @classmethod
    def from_range(cls, start: IPAddress | str, stop: IPAddress | str) -> Block:
        return cls(ipaddress.ip_address(start), ipaddress.ip_address(stop))

    def __post_init__(self) -> None:
        if self.first.version != self.last.version:
            raise ValueError(f"{self}: start and stop must be of the same family")
        if int(self.first) > int(self.last):
            raise ValueError(f"{self}: start is after stop; swap them")
        ends = (self.cidr.network_address, self.cidr.broadcast_address) if self.cidr else None
        if ends is not None and ends != (self.first, self.last):
            raise ValueError(f"{self}: first and last must be the ends of {self.cidr}")

    @property
    def version(self) -> int:
        return self.first.version

    def span(self) -> tuple[int, int]:
        return int(self.first), int(self.last)

    def __contains__(self, ip: IPAddress) -> bool:
        return ip.version == self.version and self.span()[0] <= int(ip) <= self.span()[1]

    def usable(self, allow_first_last: bool) -> tuple[int, int] | None:
        """The addresses handed out. A CIDR skips its network address (IPv4 also its
        broadcast) unless `allow_first_last`; /31, /32, /127 and /128 have none to skip
        (RFC 3021), and a range is used as written."""
        lo, hi = self.span()
        if self.cidr is not None and not allow_first_last and self.cidr.num_addresses > 2:
            lo, hi = lo + 1, hi - (1 if self.version == 4 else 0)
        return (lo, hi) if lo <= hi else None

    def __str__(self) -> str:
        return str(self.cidr) if self.cidr is not None else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Pool:
    """An LB-IPAM pool (Cilium's CiliumLoadBalancerIPPool). `created` orders pools for
    overlap conflicts (the newer one loses; ties go to the smaller name); `selector`
    None selects every service; `disabled` stops new allocations only."""

    name: str
    blocks: tuple[Block, ...]
    selector: Selector | None = None
    disabled: bool = False
    allow_first_last_ips: bool = False
    created: float = 0.0
    _spans: tuple[tuple[int, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _POOL_NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} is invalid; use letters, digits, '-_.'")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise ValueError("blocks: a pool needs at least one cidr or start/stop block")
        spans = sorted((b.version, *b.span(), str(b)) for b in self.blocks)
        for (v1, _, hi1, b1), (v2, lo2, _, b2) in itertools.pairwise(spans):
            if v1 == v2 and lo2 <= hi1:
                raise ValueError(f"blocks: {b2} overlaps {b1}; list each address once")
        usable = ((b.version, b.usable(self.allow_first_last_ips)) for b in self.blocks)
        object.__setattr__(self, "_spans", tuple(sorted((v, *u) for v, u in usable if u)))

    def order(self) -> tuple[float, str]:
        return self.created, self.name

    def spans(self) -> tuple[tuple[int, int, int], ...]:
        """(version, first, last) of every usable span, sorted."""
        return self._spans

    def families(self) -> frozenset[int]:
        return frozenset(b.version for b in self.blocks)

    def contains(self, ip: IPAddress) -> bool:
        """Whether `ip` is one of the addresses this pool hands out."""
        return any(v == ip.version and lo <= int(ip) <= hi for v, lo, hi in self.spans())

    def covers(self, ip: IPAddress) -> Block | None:
        """The block holding `ip`, usable or not (to explain a refused request)."""
        return next((b for b in self.blocks if ip in b), None)

    def overlaps(self, other: Pool) -> bool:
        return any(
            a.version == b.version and a.span()[0] <= b.span()[1] and b.span()[0] <= a.span()[1]
            for a in self.blocks
            for b in other.blocks
        )

    def selects(self, service: Service) -> bool:
        return self.selector is None or self.selector.matches(
            service.labels, service.namespace, service.name
        )


@dataclass(frozen=True)
class Service:
    """A LoadBalancer service as the allocator sees it. `nodes` are the nodes that
    announce its IPs (Local: those with a ready endpoint; Cluster: all), filled in by
    the caller. `request_error` carries an unparsable `lbipam.kroute.io/ips` annotation
    so the service keeps what it holds instead of vanishing from the allocation."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[tuple[str, int], ...] = ()
    ip_families: tuple[str, ...] = ("IPv4",)
    traffic_policy: str = "Cluster"
    nodes: tuple[str, ...] = ()
    requested_ips: tuple[IPAddress, ...] = ()
    sharing_key: str | None = None
    selector: Mapping[str, str] = field(default_factory=dict)
    request_error: str | None = None

    def __post_init__(self) -> None:
        for what, value in (("namespace", self.namespace), ("name", self.name)):
            if not isinstance(value, str) or not _K8S_NAME.fullmatch(value):
                raise ValueError(
                    f"{what}: {value!r} is invalid; use 1-63 lowercase letters, digits, '-'"
                )
        object.__setattr__(self, "labels", frozen_labels(self.labels, "labels"))
        object.__setattr__(self, "selector", frozen_labels(self.selector, "selector"))
        for proto, port in self.ports:
            if proto not in ("TCP", "UDP", "SCTP"):
                raise ValueError(f"ports: protocol {proto!r} is not TCP, UDP or SCTP")
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise ValueError(f"ports: port {port!r} must be 1-65535")
        object.__setattr__(self, "ports", tuple(sorted(set(self.ports))))
        families = tuple(self.ip_families)
        if not families or len(set(families)) != len(families) or set(families) - {*FAMILIES}:
            raise ValueError(f"ipFamilies: {families!r} must be IPv4 and/or IPv6, each once")
        object.__setattr__(self, "ip_families", families)
        if self.traffic_policy not in ("Cluster", "Local"):
            raise ValueError(f"trafficPolicy: {self.traffic_policy!r} is not Cluster or Local")
        for node in self.nodes:
            if not isinstance(node, str) or not _NODE_NAME.fullmatch(node):
                raise ValueError(f"nodes: {node!r} is not a node name")
        object.__setattr__(self, "nodes", tuple(sorted(set(self.nodes))))
        object.__setattr__(self, "requested_ips", tuple(self.requested_ips))
        versions = [ip.version for ip in self.requested_ips]
        if len(set(versions)) != len(versions):
            raise ValueError("requested_ips: give at most one address per family")
        object.__setattr__(self, "sharing_key", self.sharing_key or None)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def families(self) -> tuple[int, ...]:
        return tuple(FAMILIES[f] for f in self.ip_families)


def sharing_conflict(a: Service, b: Service) -> str | None:
    """Why `a` and `b` cannot share an IP, or None when they can.

    MetalLB's rule, made stricter by Cilium's default: the same `sharing-key`, the same
    namespace (a key is not a secret, so a tenant cannot take over another namespace's
    IP), no port used by both (same protocol and port), the same traffic policy, and for
    Local the same pod selector (MetalLB), or the same nodes when either has none: a
    Local IP is announced only by nodes with endpoints, which must serve both services.
    """
    if a.sharing_key is None or b.sharing_key is None:
        who = a.key if a.sharing_key is None else b.key
        return f"{who} has no {SHARING_KEY_ANNOTATION} annotation"
    if a.sharing_key != b.sharing_key:
        return f"sharing keys differ ({a.sharing_key!r} and {b.sharing_key!r})"
    if a.namespace != b.namespace:
        return "services in different namespaces never share an IP"
    both = sorted(set(a.ports) & set(b.ports))
    if both:
        return "both use port " + ", ".join(f"{p}/{proto}" for proto, p in both)
    if a.traffic_policy != b.traffic_policy:
        return f"traffic policies differ ({a.traffic_policy} and {b.traffic_policy})"
    if a.traffic_policy == "Local":
        if a.selector and b.selector:
            if a.selector != b.selector:
                return "Local services with different pod selectors"
        elif a.nodes != b.nodes:
            return "Local services served by different nodes"
    return None


def parse_requested_ips(text: str) -> tuple[IPAddress, ...]:
    """The `lbipam.kroute.io/ips` annotation: comma-separated, at most one per family."""
    ips: list[IPAddress] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            ip = ipaddress.ip_address(part)
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address; write e.g. 10.0.10.5") from None
        if any(other.version == ip.version for other in ips):
            raise ValueError(
                f"two {family_name(ip.version)} addresses; give at most one per family"
            )
        ips.append(ip)
    return tuple(ips)
