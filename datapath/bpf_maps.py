"""Values, the pure diff and the interface of kroute's eBPF forwarding maps (no bcc here).

`datapath.loader.BpfDatapath` is the real implementation (bcc, pinned maps, tc); the
in-memory `tests.fakes.bpf.FakeBpfDatapath` stands in for it in unit tests. The daemon
computes the desired `LocalPod`s and `RemoteRoute`s (pure functions) and hands them to
`sync_local_pods` and `sync_remote_routes`, which change only what differs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

K = TypeVar("K")
V = TypeVar("V")

COUNTER_NAMES: tuple[str, ...] = (
    "forwarded_local",
    "forwarded_remote",
    "to_stack",
    "to_stack_ttl",
    "arp_replies",
    "dropped_malformed",
    "dropped_redirect",
    "dropped_csum",
    "masqueraded",
    "masq_reverse_translated",
    "masq_redirected",
    "nat_table_full",
    "nat_no_port",
    "masq_dropped_fragment",
    "masq_dropped_protocol",
    "masq_dropped_ip_options",
    "masq_dropped_no_pod",
    "ttl_exceeded_sent",
    "ttl_exceeded_rate_limited",
)
"""Counter slots of `forward.c`, in slot order (enum CNT_*)."""

PROGRAMS: tuple[str, ...] = ("from_pod", "from_netdev")
"""tc programs of `forward.c`: `from_pod` on pod veths (host side), `from_netdev` on the
underlay device; both on ingress."""


def _mac(value: str | bytes | None) -> bytes:
    if value is None:
        return b"\0" * 6
    if isinstance(value, bytes):
        raw = value
    else:
        raw = bytes.fromhex(value.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"MAC address {value!r} must have 6 bytes (aa:bb:cc:dd:ee:ff)")
    return raw


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@dataclass(frozen=True, slots=True)
class LocalPod:
    """A pod on this node: its IPv4 address and the host side of its veth.

    `host_mac` is the MAC of that host-side veth (the loader reads it from the kernel when
    not given): frames into the pod come from it and ARP requests from the pod are answered
    with it. `pod_mac` is the pod's eth0 MAC when known (frames into the pod are addressed
    to it), else all zero and the destination MAC is left as it was.
    """

    ip: ipaddress.IPv4Address
    ifindex: int
    host_mac: bytes = b"\0" * 6
    pod_mac: bytes = b"\0" * 6

    @classmethod
    def of(
        cls,
        ip: str | ipaddress.IPv4Address,
        ifindex: int,
        host_mac: str | bytes | None = None,
        pod_mac: str | bytes | None = None,
    ) -> LocalPod:
        addr = ipaddress.IPv4Address(ip)
        if ifindex <= 0:
            raise ValueError(f"local pod {addr}: ifindex {ifindex} must be positive")
        return cls(addr, ifindex, _mac(host_mac), _mac(pod_mac))


@dataclass(frozen=True, slots=True)
class RemoteRoute:
    """A remote pod CIDR: out of underlay device `ifindex` towards `next_hop` (None: the
    kernel's FIB picks the neighbour, as for an on-link destination)."""

    prefix: ipaddress.IPv4Network
    ifindex: int
    next_hop: ipaddress.IPv4Address | None = None

    @classmethod
    def of(
        cls,
        prefix: str | ipaddress.IPv4Network,
        ifindex: int,
        next_hop: str | ipaddress.IPv4Address | None = None,
    ) -> RemoteRoute:
        net = ipaddress.IPv4Network(prefix)
        if ifindex <= 0:
            raise ValueError(f"remote route {net}: ifindex {ifindex} must be positive")
        nh = None if next_hop is None else ipaddress.IPv4Address(next_hop)
        if nh is not None and (nh.is_unspecified or nh.is_multicast):
            raise ValueError(f"remote route {net}: next hop {nh} is not a usable gateway")
        return cls(net, ifindex, nh)


@dataclass(frozen=True, slots=True)
class MapChanges:
    """What a sync changed: keys written (added or changed) and keys removed."""

    upserted: int = 0
    deleted: int = 0


def diff_entries(desired: Mapping[K, V], actual: Mapping[K, V]) -> tuple[list[V], list[K]]:
    """(values to write, keys to delete) turning `actual` into `desired`."""
    upserts = [v for k, v in desired.items() if actual.get(k) != v]
    deletes = [k for k in actual if k not in desired]
    return upserts, deletes


class Datapath(Protocol):
    """The narrow interface to the eBPF forwarding datapath of one node."""

    def attach(self, ifname: str, program: str) -> None: ...
    def detach(self, ifname: str) -> bool: ...
    def set_local_pod(
        self, ip: str | ipaddress.IPv4Address, ifindex: int | str, pod_mac: str | None = None
    ) -> LocalPod: ...
    def del_local_pod(self, ip: str | ipaddress.IPv4Address) -> bool: ...
    def local_pods(self) -> dict[ipaddress.IPv4Address, LocalPod]: ...
    def set_remote_route(
        self,
        prefix: str | ipaddress.IPv4Network,
        ifindex: int | str,
        next_hop: str | ipaddress.IPv4Address | None = None,
    ) -> RemoteRoute: ...
    def del_remote_route(self, prefix: str | ipaddress.IPv4Network) -> bool: ...
    def remote_routes(self) -> dict[ipaddress.IPv4Network, RemoteRoute]: ...
    def sync_remote_routes(
        self, desired: Mapping[ipaddress.IPv4Network, RemoteRoute]
    ) -> MapChanges: ...
    def sync_local_pods(self, desired: Mapping[ipaddress.IPv4Address, LocalPod]) -> MapChanges: ...
    def counters(self) -> dict[str, int]: ...
    def close(self) -> None: ...
