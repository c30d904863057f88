"""Masquerade (SNAT of pod traffic leaving the cluster): the spec, NAT entry values, the
pure expiry decision, and the one small interface both implementations share.

    spec = MasqueradeSpec.of(node_ip="192.168.1.11", egress_interfaces=["eth0"],
                             pod_cidrs=["10.244.0.0/16"], native_routing_cidr="10.244.0.0/16")
    masq.set_masquerade(spec)     # BpfDatapath (datapath.loader) or NftMasquerade
    masq.expire_nat(time.monotonic())   # the daemon's periodic sweep (BPF; nft: conntrack)
    masq.masquerade_status()      # {"kind": "bpf", "line": "BPF [eth0] 10.244.0.0/16", ...}

Pod sources to a destination outside the native routing CIDR leave the egress interfaces
with the node IP and a port (ICMP echo id) from `port_range`. The default range
61000-65535 lies above Linux's default `net.ipv4.ip_local_port_range` (32768-60999), so
the node's own sockets never pick a port the NAT hands out; a node with a wider local
port range must move one of the two.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

PROTOCOLS: dict[int, str] = {1: "icmp", 6: "tcp", 17: "udp"}
DEFAULT_PORT_RANGE = (61000, 65535)
DEFAULT_MAX_ENTRIES = 65536


@dataclass(frozen=True, slots=True)
class NatTimeouts:
    """Idle seconds after which a NAT entry is swept, per protocol (TCP after FIN/RST:
    `tcp_closing`). As in conntrack: long for TCP, short for datagrams."""

    tcp: float = 7440.0
    tcp_closing: float = 10.0
    udp: float = 60.0
    icmp: float = 30.0

    def for_entry(self, proto: int, closing: bool) -> float:
        if proto == 6:
            return self.tcp_closing if closing else self.tcp
        return self.udp if proto == 17 else self.icmp


@dataclass(frozen=True, slots=True)
class MasqueradeSpec:
    """What to masquerade on one node (the daemon builds it from config)."""

    node_ip: ipaddress.IPv4Address
    egress_interfaces: tuple[str, ...]
    pod_cidrs: tuple[ipaddress.IPv4Network, ...]
    native_routing_cidrs: tuple[ipaddress.IPv4Network, ...]
    port_range: tuple[int, int] = DEFAULT_PORT_RANGE
    max_entries: int = DEFAULT_MAX_ENTRIES
    timeouts: NatTimeouts = field(default_factory=NatTimeouts)

    @classmethod
    def of(
        cls,
        *,
        node_ip: str | ipaddress.IPv4Address,
        egress_interfaces: Iterable[str],
        pod_cidrs: Iterable[str | ipaddress.IPv4Network],
        native_routing_cidr: str | ipaddress.IPv4Network | Iterable[str | ipaddress.IPv4Network],
        port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        timeouts: NatTimeouts | None = None,
    ) -> MasqueradeSpec:
        """Validate and build; a ValueError names the field and what to set."""
        ip = ipaddress.IPv4Address(node_ip)
        ifs = tuple(egress_interfaces)
        if not ifs:
            raise ValueError("masquerade.egressInterfaces: name at least one interface")
        for name in ifs:
            if not name or len(name) > 15 or "/" in name or " " in name:
                raise ValueError(f"masquerade.egressInterfaces: {name!r} is not an interface name")
        pods = tuple(ipaddress.IPv4Network(p) for p in pod_cidrs)
        if not pods:
            raise ValueError("masquerade.podCIDRs: name the pod CIDRs whose traffic is masqueraded")
        if isinstance(native_routing_cidr, str | ipaddress.IPv4Network):
            native_routing_cidr = [native_routing_cidr]
        native = tuple(ipaddress.IPv4Network(n) for n in native_routing_cidr)
        if not native:
            raise ValueError(
                "routing.nativeRoutingCIDR: set it (traffic to it keeps the pod source IP)"
            )
        low, high = port_range
        if not 1024 <= low <= high <= 65535:
            raise ValueError(
                f"masquerade.portRange: {low}-{high} must lie within 1024-65535, low <= high"
            )
        if not 1 <= max_entries <= 1 << 24:
            raise ValueError(f"masquerade.maxEntries: {max_entries} must be in 1..16777216")
        return cls(ip, ifs, pods, native, (low, high), max_entries, timeouts or NatTimeouts())

    def summary(self) -> str:
        """`[eth0] 10.244.0.0/16` for status lines."""
        return f"[{','.join(self.egress_interfaces)}] " + ",".join(map(str, self.pod_cidrs))

    def as_dict(self) -> dict[str, Any]:
        t = self.timeouts
        return {
            "nodeIP": str(self.node_ip),
            "egressInterfaces": list(self.egress_interfaces),
            "podCIDRs": [str(p) for p in self.pod_cidrs],
            "nativeRoutingCIDRs": [str(n) for n in self.native_routing_cidrs],
            "portRange": f"{self.port_range[0]}-{self.port_range[1]}",
            "maxEntries": self.max_entries,
            "timeouts": {"tcp": t.tcp, "tcpClosing": t.tcp_closing, "udp": t.udp, "icmp": t.icmp},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MasqueradeSpec:
        """The inverse of `as_dict` (absent optional fields take their defaults)."""
        low, _, high = str(d.get("portRange", "61000-65535")).partition("-")
        t = d.get("timeouts", {})
        return cls.of(
            node_ip=d["nodeIP"],
            egress_interfaces=d["egressInterfaces"],
            pod_cidrs=d["podCIDRs"],
            native_routing_cidr=d["nativeRoutingCIDRs"],
            port_range=(int(low), int(high or low)),
            max_entries=int(d.get("maxEntries", DEFAULT_MAX_ENTRIES)),
            timeouts=NatTimeouts(
                float(t.get("tcp", 7440)),
                float(t.get("tcpClosing", 10)),
                float(t.get("udp", 60)),
                float(t.get("icmp", 30)),
            ),
        )


@dataclass(frozen=True, slots=True)
class NatEntry:
    """One translated flow: the pod's end, what it became on the node, the remote end.
    Ports are echo ids for ICMP (remote port 0); `last_seen` is CLOCK_MONOTONIC seconds
    (`time.monotonic()`) of the newest packet in either direction."""

    proto: int
    pod_ip: ipaddress.IPv4Address
    pod_port: int
    node_ip: ipaddress.IPv4Address
    nat_port: int
    remote_ip: ipaddress.IPv4Address
    remote_port: int
    last_seen: float
    closing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "proto": PROTOCOLS.get(self.proto, str(self.proto)),
            "pod": f"{self.pod_ip}:{self.pod_port}",
            "node": f"{self.node_ip}:{self.nat_port}",
            "remote": f"{self.remote_ip}:{self.remote_port}",
            "lastSeen": self.last_seen,
            "closing": self.closing,
        }


def expired(entries: Iterable[NatEntry], now: float, timeouts: NatTimeouts) -> list[NatEntry]:
    """The entries idle longer than their protocol's timeout at monotonic time `now`."""
    return [e for e in entries if now - e.last_seen > timeouts.for_entry(e.proto, e.closing)]


def masquerade_line(kind: str, summary: str | None, reason: str = "") -> str:
    """The status line: `BPF [eth0] 10.0.0.0/8`, `nftables [eth0] ...`, `Disabled`, from
    the `MasqueradeSpec.summary()` of what the kernel holds (None: nothing)."""
    if summary is None:
        return "Disabled" + (f" ({reason})" if reason else "")
    label = {"bpf": "BPF", "nftables": "nftables"}.get(kind, kind)
    return f"{label} {summary}" + (f" ({reason})" if reason else "")


@dataclass(frozen=True, slots=True)
class MasqueradeChoice:
    kind: str  # "bpf" or "nftables"
    reason: str


def choose_masquerade(bpf_enabled: bool, bcc_problem: str | None) -> MasqueradeChoice:
    """BPF when enabled and bcc works; otherwise nftables, saying why."""
    if not bpf_enabled:
        return MasqueradeChoice("nftables", "datapath.bpf.enabled is false")
    if bcc_problem:
        return MasqueradeChoice("nftables", f"bpf unavailable: {bcc_problem}")
    return MasqueradeChoice("bpf", "bpf enabled and bcc available")


class Masquerader(Protocol):
    """What the daemon needs from either masquerade implementation."""

    kind: str

    def set_masquerade(self, spec: MasqueradeSpec) -> None:
        """Masquerade as `spec` says (idempotent; replaces a previous spec)."""

    def clear_masquerade(self) -> bool:
        """Stop masquerading new flows; True if it was on."""

    def expire_nat(self, now: float | None = None) -> int:
        """Remove NAT entries idle past their timeout at monotonic `now`; how many."""

    def masquerade_status(self) -> dict[str, Any]:
        """JSON-able: kind, status line, spec, entries/fill and counters."""
