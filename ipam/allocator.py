"""Pure IPAM logic: node blocks from a cluster pool, pod IPs inside a node's block.

No I/O and no clock: every function takes an immutable `IpamState` and returns a new
one, so the same inputs always give the same allocation, and stores only have to make
the read-modify-write atomic. Lowest free block and lowest free address come first.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from common.documents import load_versioned
from common.errors import AllocationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Family = Literal[4, 6]

STATE_VERSION = 1
MAX_MASK = {4: 30, 6: 126}  # a smaller block holds too few pod addresses to be useful
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,252}")
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,255}")
_IFNAME = re.compile(r"[A-Za-z0-9_.\-]{1,15}")


def _check(kind: str, value: str, pattern: re.Pattern[str], rule: str) -> None:
    # fullmatch (not `$`) so a trailing newline is refused; ".." never appears, so the
    # value is safe in a file name, an etcd key or a log line.
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise AllocationError(f"{kind} {value!r} is invalid: {rule}")


def check_node(node: str) -> None:
    _check("node name", node, _NAME, "use letters, digits, '-', '_', '.', at most 253")


def pod_key(container_id: str, ifname: str, family: int) -> str:
    """The key of one pod address, "containerID/ifname/v4", after strict validation.

    The family is part of the key so a dual-stack interface holds one IP of each.
    """
    _check("container ID", container_id, _CONTAINER_ID, "use letters, digits, '-', '_', '.'")
    _check("interface name", ifname, _IFNAME, "use 1-15 letters, digits, '-', '_', '.'")
    return f"{container_id}/{ifname}/v{family}"


def parse_pod_key(key: str) -> tuple[str, str, Family]:
    """(container ID, interface, family) of a key made by `pod_key`; ValueError if not."""
    parts = key.split("/")
    if len(parts) != 3 or parts[2] not in ("v4", "v6"):
        raise ValueError(f"pod key {key!r} is not containerID/ifname/v4 or /v6")
    try:
        pod_key(parts[0], parts[1], 4)
    except AllocationError as e:
        raise ValueError(str(e)) from None
    return parts[0], parts[1], 4 if parts[2] == "v4" else 6


def family_name(family: int) -> str:
    return f"IPv{family}"


@dataclass(frozen=True)
class ClusterPool:
    """Cluster CIDRs and the block size per family (Cilium's cluster-pool, Calico's
    blockSize). Raises ValueError naming the field, for the config layer to report."""

    cidrs: tuple[Network, ...]
    mask_v4: int = 24
    mask_v6: int = 112

    def __post_init__(self) -> None:
        if not self.cidrs:
            raise ValueError("cidrs: the cluster pool needs at least one CIDR")
        for name, family in (("mask_v4", 4), ("mask_v6", 6)):
            mask = getattr(self, name)
            if not isinstance(mask, int) or not 0 < mask <= MAX_MASK[family]:
                raise ValueError(f"{name}: {mask!r} must be 1-{MAX_MASK[family]}")
        seen: list[Network] = []
        for cidr in self.cidrs:
            if not isinstance(cidr, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise ValueError(f"cidrs: {cidr!r} is not a network; use ipaddress.ip_network")
            mask = self.mask(cidr.version)
            if mask < cidr.prefixlen:
                raise ValueError(
                    f"cidrs: {cidr} is smaller than one /{mask} node block; "
                    f"make the CIDR larger or the {family_name(cidr.version)} mask size at "
                    f"least {cidr.prefixlen}"
                )
            for other in seen:
                if other.version == cidr.version and other.overlaps(cidr):
                    raise ValueError(f"cidrs: {cidr} overlaps {other}; list each range once")
            seen.append(cidr)

    def mask(self, family: int) -> int:
        return self.mask_v4 if family == 4 else self.mask_v6

    def families(self) -> tuple[Family, ...]:
        present = {c.version for c in self.cidrs}
        return tuple(f for f in (4, 6) if f in present)

    def family_cidrs(self, family: int) -> tuple[Network, ...]:
        return tuple(c for c in self.cidrs if c.version == family)

    def total_blocks(self, family: int) -> int:
        return sum(1 << (self.mask(family) - c.prefixlen) for c in self.family_cidrs(family))

    def contains(self, block: Network) -> bool:
        return any(block.version == c.version and block.subnet_of(c) for c in self.cidrs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class IpamState:
    """Every allocation: node -> its blocks, node -> {"containerID/ifname/v4": ip}.

    Treat as immutable; the functions below build new states. Serialised as versioned
    JSON so a newer kroute can refuse (not misread) an older or newer document.
    """

    node_blocks: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)
    pod_ips: Mapping[str, Mapping[str, IPAddress]] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {
            "version": STATE_VERSION,
            "nodeBlocks": {n: [str(b) for b in bs] for n, bs in sorted(self.node_blocks.items())},
            "podIPs": {
                n: {k: str(ip) for k, ip in sorted(pods.items())}
                for n, pods in sorted(self.pod_ips.items())
                if pods
            },
        }
        return json.dumps(doc, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> IpamState:
        """Parse and check a document; ValueError says what is wrong with it."""
        doc = load_versioned(text, STATE_VERSION)
        try:
            blocks = {
                str(n): tuple(ipaddress.ip_network(b) for b in _list(bs))
                for n, bs in _dict(doc.get("nodeBlocks", {})).items()
            }
            pods = {
                str(n): {str(k): ipaddress.ip_address(ip) for k, ip in _dict(p).items()}
                for n, p in _dict(doc.get("podIPs", {})).items()
            }
        except (TypeError, ValueError) as e:
            raise ValueError(f"malformed entry ({e})") from None
        state = cls(blocks, pods)
        problems = state.problems()
        if problems:
            raise ValueError("inconsistent: " + "; ".join(problems))
        return state

    def problems(self) -> list[str]:
        """Every broken invariant (overlaps, duplicates, pod IPs outside blocks)."""
        out: list[str] = []
        spans = sorted(
            (b.version, int(b.network_address), int(b.broadcast_address), str(b), node)
            for node, blocks in self.node_blocks.items()
            for b in blocks
        )
        reach: tuple[int, int, str, str] | None = None  # family, last address, block, node
        for family, lo, hi, block, node in spans:  # sorted: compare with the furthest reach
            if reach is not None and reach[0] == family and lo <= reach[1]:
                out.append(f"block {block} of node {node} overlaps {reach[2]} of {reach[3]}")
            if reach is None or reach[0] != family or hi > reach[1]:
                reach = (family, hi, block, node)
        for node in {*self.node_blocks, *self.pod_ips}:
            if not isinstance(node, str) or not _NAME.fullmatch(node) or ".." in node:
                out.append(f"node name {node!r} is invalid")
        seen: dict[IPAddress, str] = {}
        for node, pods in self.pod_ips.items():
            blocks = self.node_blocks.get(node, ())
            for key, ip in pods.items():
                try:
                    if parse_pod_key(key)[2] != ip.version:
                        out.append(f"pod IP {ip} of {node}:{key} has the wrong family")
                except ValueError as e:
                    out.append(f"node {node}: {e}")
                if ip in seen:
                    out.append(f"pod IP {ip} is held by both {seen[ip]} and {node}:{key}")
                seen[ip] = f"{node}:{key}"
                if not any(ip in b for b in blocks):
                    out.append(f"pod IP {ip} of {node}:{key} is outside the node's blocks")
        return out


def _dict(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Usage:
    """How full one node block is, for `IPAM: IPv4: 3/254 allocated from 10.244.2.0/24`."""

    family: Family
    block: Network
    used: int
    capacity: int

    def line(self) -> str:
        return (
            f"{family_name(self.family)}: {self.used}/{self.capacity} allocated from {self.block}"
        )


def block_capacity(block: Network) -> int:
    """Pod addresses in a block: not the network address, nor the IPv4 broadcast."""
    return max(block.num_addresses - (2 if block.version == 4 else 1), 0)


def _lowest_free_block(pool: ClusterPool, family: int, used: Iterable[Network]) -> Network | None:
    mask = pool.mask(family)
    bits = 32 if family == 4 else 128
    size = 1 << (bits - mask)
    spans = sorted((int(b.network_address), int(b.broadcast_address)) for b in used)
    for cidr in pool.family_cidrs(family):
        cand, last = int(cidr.network_address), int(cidr.broadcast_address)
        start = max(bisect.bisect_left(spans, (cand, -1)) - 1, 0)
        for lo, hi in spans[start:]:
            if hi < cand:
                continue
            if lo > cand + size - 1 or cand > last:
                break
            cand = (hi // size + 1) * size  # first aligned block after the used span
        if cand + size - 1 <= last:
            return ipaddress.ip_network((cand, mask))
    return None


def allocate_node_blocks(
    state: IpamState, pool: ClusterPool, node: str
) -> tuple[IpamState, tuple[Network, ...]]:
    """The node's blocks, one per family of the pool; allocates the missing ones.

    A node keeps the blocks it has (even when the pool changed since), so its pods never
    move; a family it lacks gets the lowest free block of that family.
    """
    check_node(node)
    have = list(state.node_blocks.get(node, ()))
    added = False
    for family in pool.families():
        if any(b.version == family for b in have):
            continue
        used = [b for bs in state.node_blocks.values() for b in bs if b.version == family]
        block = _lowest_free_block(pool, family, used)
        if block is None:
            in_pool = sum(1 for b in used if pool.contains(b))
            cidrs = ", ".join(str(c) for c in pool.family_cidrs(family))
            raise AllocationError(
                f"cluster pool {family_name(family)} ({cidrs}, /{pool.mask(family)} per node) "
                f"is exhausted: {in_pool} of {pool.total_blocks(family)} blocks are in use, so "
                f"node {node} gets no {family_name(family)} block; add a CIDR to the cluster "
                "pool, or release the blocks of nodes that were removed"
            )
        have.append(block)
        added = True
    if not added:
        return state, tuple(have)
    blocks = {**state.node_blocks, node: tuple(have)}
    return IpamState(blocks, state.pod_ips), tuple(have)


def release_node(state: IpamState, node: str) -> IpamState:
    """Free the node's blocks and its pod IPs; a node without blocks is a no-op."""
    check_node(node)
    if node not in state.node_blocks and node not in state.pod_ips:
        return state
    blocks = {n: b for n, b in state.node_blocks.items() if n != node}
    pods = {n: p for n, p in state.pod_ips.items() if n != node}
    return IpamState(blocks, pods)


def allocate_pod_ip(
    state: IpamState,
    node: str,
    container_id: str,
    ifname: str,
    family: Family = 4,
    *,
    pool: ClusterPool | None = None,
) -> tuple[IpamState, IPAddress]:
    """The lowest free IP of the node's `family` block for this pod interface.

    Idempotent: the same container ID and interface get the IP they already hold.
    `pool` only makes the error for a missing block more precise.
    """
    check_node(node)
    if family not in (4, 6):
        raise AllocationError(f"family {family!r} is invalid; use 4 or 6")
    key = pod_key(container_id, ifname, family)
    pods = state.pod_ips.get(node, {})
    held = pods.get(key)
    if held is not None:
        return state, held
    block = next((b for b in state.node_blocks.get(node, ()) if b.version == family), None)
    if block is None:
        hint = (
            f"the cluster pool has no {family_name(family)} CIDR; add one"
            if pool is not None and family not in pool.families()
            else "allocate the node's blocks first (the daemon does so at start)"
        )
        raise AllocationError(f"node {node} has no {family_name(family)} block: {hint}")
    ip = _lowest_free_ip(block, {int(a) for a in pods.values() if a.version == family})
    if ip is None:
        raise AllocationError(
            f"{family_name(family)} block {block} of node {node} is exhausted: "
            f"{block_capacity(block)} of {block_capacity(block)} pod IPs in use; delete pods "
            "that are gone, or use a larger block (smaller node mask size) for new nodes"
        )
    new_pods = {**state.pod_ips, node: {**pods, key: ip}}
    return IpamState(state.node_blocks, new_pods), ip


def _lowest_free_ip(block: Network, used: set[int]) -> IPAddress | None:
    first = int(block.network_address) + 1
    last = int(block.broadcast_address) - (1 if block.version == 4 else 0)
    cand = first
    while cand <= last and cand in used:
        cand += 1
    return ipaddress.ip_address(cand) if cand <= last else None


def release_pod_ip(
    state: IpamState, node: str, container_id: str, ifname: str
) -> tuple[IpamState, bool]:
    """Free the IPs (both families) of this pod interface; False when it held none."""
    check_node(node)
    keys = {pod_key(container_id, ifname, 4), pod_key(container_id, ifname, 6)}
    pods = state.pod_ips.get(node, {})
    if not keys & pods.keys():
        return state, False
    rest = {k: ip for k, ip in pods.items() if k not in keys}
    new_pods = {n: p for n, p in state.pod_ips.items() if n != node}
    if rest:
        new_pods[node] = rest
    return IpamState(state.node_blocks, new_pods), True


def usage(state: IpamState, pool: ClusterPool | None, node: str) -> list[Usage]:
    """One Usage per block of the node, IPv4 first; `pool` is accepted for symmetry."""
    pods = state.pod_ips.get(node, {})
    out = []
    for block in sorted(state.node_blocks.get(node, ()), key=lambda b: b.version):
        used = sum(1 for ip in pods.values() if ip.version == block.version and ip in block)
        family: Family = 4 if block.version == 4 else 6
        out.append(Usage(family, block, used, block_capacity(block)))
    return out
