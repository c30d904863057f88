"""The VXLAN device's state as kroute reads it, and the pure comparisons that turn the
plan (datapath/overlay_plan.py) and that state into the changes `VxlanOverlay.sync`
makes: identity, in-place fixes, addresses, FDB and neighbour entries. No netlink here."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from datapath.overlay_plan import OverlayPeer, VxlanSpec
from datapath.routes import Network

IPv4 = ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the kernel holds for the device (identity, then what is fixed in place)."""

    ifindex: int
    kind: str
    vni: int | None
    port: int | None
    local: IPv4 | None
    link: int | None  # ifindex of the underlay device
    learning: bool
    mtu: int
    mac: str
    up: bool
    addresses: frozenset[ipaddress.IPv4Interface] = frozenset()
    fdb: Mapping[str, frozenset[IPv4]] = field(default_factory=dict)  # mac -> dst underlay IPs
    neighbours: Mapping[IPv4, tuple[str, bool]] = field(default_factory=dict)  # -> mac, permanent


@dataclass(frozen=True, slots=True)
class OverlaySync:
    """What one `sync` did; `steady` when it changed nothing."""

    device: str
    ifindex: int
    created: bool = False
    replaced: str = ""  # why an existing device was deleted first
    changed: tuple[str, ...] = ()  # in-place fixes: "mtu 1500 -> 1450", "mac", "address", "up"
    fdb_set: int = 0
    fdb_deleted: int = 0
    neighbours_set: int = 0
    neighbours_deleted: int = 0

    @property
    def steady(self) -> bool:
        return not (
            self.created
            or self.changed
            or self.fdb_set
            or self.fdb_deleted
            or self.neighbours_set
            or self.neighbours_deleted
        )


@dataclass(frozen=True, slots=True)
class Underlay:
    """Facts about the node's underlay the planner needs (LocalNode's inputs)."""

    dev: str
    ifindex: int
    mtu: int
    subnets: tuple[Network, ...]  # connected subnets of the node (not link-local): on-link test


def identity_mismatch(spec: VxlanSpec, link: int, actual: DeviceState) -> str:
    """Why the existing device cannot be adopted ("" when it can): these cannot change
    on a live VXLAN device."""
    wanted: tuple[tuple[str, object, object], ...] = (
        ("kind", "vxlan", actual.kind),
        ("vni", spec.vni, actual.vni),
        ("port", spec.port, actual.port),
        ("local", spec.local, actual.local),
        ("underlay ifindex", link, actual.link),
        ("learning", False, actual.learning),
    )
    return ", ".join(f"{name} {have} != {want}" for name, want, have in wanted if want != have)


def in_place_changes(spec: VxlanSpec, actual: DeviceState) -> list[str]:
    changes = []
    if actual.mtu != spec.mtu:
        changes.append(f"mtu {actual.mtu} -> {spec.mtu}")
    if actual.mac != spec.mac:
        changes.append(f"mac {actual.mac} -> {spec.mac}")
    if actual.addresses != wanted_addresses(spec):
        changes.append("address " + ",".join(map(str, sorted(wanted_addresses(spec)))))
    if not actual.up:
        changes.append("up")
    return changes


def wanted_addresses(spec: VxlanSpec) -> frozenset[ipaddress.IPv4Interface]:
    """The node's own overlay address as /32 (see overlay_plan), or none."""
    return frozenset({ipaddress.IPv4Interface(spec.address)} if spec.address else ())


def diff_fdb(
    peers: Sequence[OverlayPeer], actual: Mapping[str, frozenset[IPv4]]
) -> tuple[list[OverlayPeer], list[tuple[str, IPv4]]]:
    """FDB entries to (re)place and (mac, dst) pairs to delete."""
    wanted = {p.mac: p for p in peers}
    sets = [p for p in peers if actual.get(p.mac) != frozenset({p.underlay_ip})]
    deletes = [
        (mac, dst)
        for mac, dsts in sorted(actual.items())
        for dst in sorted(dsts)
        if mac not in wanted or (dst != wanted[mac].underlay_ip and len(dsts) > 1)
    ]
    return sets, deletes


def diff_neighbours(
    peers: Sequence[OverlayPeer], actual: Mapping[IPv4, tuple[str, bool]]
) -> tuple[list[OverlayPeer], list[IPv4]]:
    """Permanent neighbours to (re)place and addresses whose entry goes."""
    wanted = {p.overlay_ip for p in peers}
    sets = [p for p in peers if actual.get(p.overlay_ip) != (p.mac, True)]
    return sets, sorted(ip for ip in actual if ip not in wanted)


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What `sync` must do to the device as it stands (None: absent or to be replaced)."""

    spec: VxlanSpec
    replaced: str
    changed: tuple[str, ...]
    fdb_sets: tuple[OverlayPeer, ...]
    fdb_deletes: tuple[tuple[str, IPv4], ...]
    neighbour_sets: tuple[OverlayPeer, ...]
    neighbour_deletes: tuple[IPv4, ...]
    create: bool

    @classmethod
    def of(
        cls, spec: VxlanSpec, link: int, actual: DeviceState | None, peers: Sequence[OverlayPeer]
    ) -> SyncPlan:
        replaced = identity_mismatch(spec, link, actual) if actual else ""
        if actual is None or replaced:
            return cls(spec, replaced, (), tuple(peers), (), tuple(peers), (), True)
        fdb_sets, fdb_dels = diff_fdb(peers, actual.fdb)
        nb_sets, nb_dels = diff_neighbours(peers, actual.neighbours)
        changed = tuple(in_place_changes(spec, actual))
        return cls(
            spec, "", changed, tuple(fdb_sets), tuple(fdb_dels), tuple(nb_sets), tuple(nb_dels),
            create=False,
        )  # fmt: skip

    def result(self, ifindex: int) -> OverlaySync:
        return OverlaySync(
            self.spec.name,
            ifindex,
            self.create,
            self.replaced,
            self.changed,
            len(self.fdb_sets),
            len(self.fdb_deletes),
            len(self.neighbour_sets),
            len(self.neighbour_deletes),
        )


class Overlay(Protocol):
    """The kernel's VXLAN device, narrowed to what the daemon does with it."""

    def sync(self, spec: VxlanSpec, peers: Sequence[OverlayPeer]) -> OverlaySync: ...

    def state(self, name: str) -> DeviceState | None: ...

    def remove(self, name: str) -> bool:
        """Delete the device (overlay turned off, `kroute cleanup`); False if absent."""
        ...

    def underlay(self, local: IPv4, dev: str | None = None) -> Underlay: ...

    def close(self) -> None: ...
