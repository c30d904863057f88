"""Adj-RIB-In per peer, graceful-restart staleness, best path and ECMP.

Pure data and functions: the daemon feeds it speaker events and asks for the best
next hops per prefix; nothing here touches a socket or the kernel.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from bgpd.bgp.events import ORIGINS, PathAttributes, RoutesUpdate

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_LOCAL_PREF = 100

Verdict = Callable[[Network, PathAttributes], str | None]


@dataclass(frozen=True)
class Path:
    """One path to a prefix: who sent it and with which attributes."""

    peer: IPAddress
    peer_router_id: str
    attributes: PathAttributes
    stale: bool = False
    ebgp: bool = False


@dataclass
class PeerRib:
    """What one peer sent us, and which of it is only kept through its restart."""

    router_id: str = ""
    ebgp: bool = False
    routes: dict[Network, PathAttributes] = field(default_factory=dict)
    stale: set[Network] = field(default_factory=set)
    rejected: dict[Network, str] = field(default_factory=dict)
    held: dict[Network, PathAttributes] = field(default_factory=dict)
    """Refused routes' attributes, judged again when policy changes (soft reconfiguration
    inbound), so a wider allow list takes effect without a route refresh."""


class Rib:
    """All Adj-RIBs-In. Methods return whether anything changed."""

    def __init__(self) -> None:
        self._peers: dict[IPAddress, PeerRib] = {}

    def peer(self, address: IPAddress) -> PeerRib:
        return self._peers.setdefault(address, PeerRib())

    def set_router_id(self, address: IPAddress, router_id: str) -> None:
        self.peer(address).router_id = router_id

    def apply(self, update: RoutesUpdate, verdict: Verdict | None = None) -> bool:
        """Apply one UPDATE. `verdict` is import policy: None accepts, a string is the
        reason for refusing (the route is then treated as withdrawn and remembered
        as rejected, so `kroute routes` can say why)."""
        rib = self.peer(update.peer)
        changed = False
        for prefix in update.withdrawn:
            changed |= rib.routes.pop(prefix, None) is not None
            rib.stale.discard(prefix)
            rib.rejected.pop(prefix, None)
            rib.held.pop(prefix, None)
        for prefix in update.malformed:  # RFC 7606 treat-as-withdraw
            changed |= _refuse(rib, prefix, f"malformed update: {update.malformed_reason}")
            rib.held.pop(prefix, None)
        for prefix, attributes in update.announced:
            reason = verdict(prefix, attributes) if verdict is not None else None
            if reason is not None:
                changed |= _refuse(rib, prefix, reason, attributes)
            else:
                changed |= _accept(rib, prefix, attributes)
        return changed

    def rejudge(self, address: IPAddress, verdict: Verdict) -> bool:
        """Policy changed: judge what the peer sent again, accepted and refused alike."""
        rib = self._peers.get(address)
        if rib is None:
            return False
        refused = list(rib.held.items())
        changed = False
        for prefix, attributes in list(rib.routes.items()):
            reason = verdict(prefix, attributes)
            if reason is not None:
                changed |= _refuse(rib, prefix, reason, attributes)
        for prefix, attributes in refused:
            reason = verdict(prefix, attributes)
            if reason is None:
                changed |= _accept(rib, prefix, attributes)
            else:
                rib.rejected[prefix] = reason
        return changed

    def mark_stale(self, address: IPAddress) -> bool:
        """The peer's session dropped but it does graceful restart: keep its routes."""
        rib = self.peer(address)
        rib.stale = set(rib.routes)
        rib.held = {}  # refused routes are judged again once the peer sends them again
        return bool(rib.stale)

    def drop_stale(self, address: IPAddress, only: Callable[[Network], bool] | None = None) -> bool:
        """End-of-RIB from the returning peer, or its restart time ran out; `only`: just
        the stale prefixes it selects (one family)."""
        rib = self._peers.get(address)
        if rib is None or not rib.stale:
            return False
        dropped = {p for p in rib.stale if only is None or only(p)}
        for prefix in dropped:
            rib.routes.pop(prefix, None)
        rib.stale -= dropped
        return bool(dropped)

    def forget(self, address: IPAddress) -> bool:
        """The peer is no longer configured: free its Adj-RIB-In entirely."""
        rib = self._peers.pop(address, None)
        return rib is not None and bool(rib.routes)

    def clear(self, address: IPAddress) -> bool:
        """The peer is gone without graceful restart: forget everything it sent."""
        rib = self._peers.get(address)
        if rib is None:
            return False
        had_routes = bool(rib.routes)
        rib.routes, rib.stale, rib.rejected, rib.held = {}, set(), {}, {}
        return had_routes

    def rejected(self) -> dict[Network, list[tuple[IPAddress, str]]]:
        """Every refused prefix with who sent it and why."""
        result: dict[Network, list[tuple[IPAddress, str]]] = {}
        for address, rib in self._peers.items():
            for prefix, reason in rib.rejected.items():
                result.setdefault(prefix, []).append((address, reason))
        return result

    def received_count(self, address: IPAddress) -> int:
        rib = self._peers.get(address)
        return len(rib.routes) if rib is not None else 0

    def stale_count(self, address: IPAddress) -> int:
        rib = self._peers.get(address)
        return len(rib.stale) if rib is not None else 0

    def paths(self) -> dict[Network, list[Path]]:
        """Every prefix with every path to it."""
        result: dict[Network, list[Path]] = {}
        for address, rib in self._peers.items():
            for prefix, attributes in rib.routes.items():
                path = Path(address, rib.router_id, attributes, prefix in rib.stale, rib.ebgp)
                result.setdefault(prefix, []).append(path)
        return result


def _refuse(
    rib: PeerRib, prefix: Network, reason: str, attributes: PathAttributes | None = None
) -> bool:
    """Treat the route as withdrawn and remember why (and what, to judge it again)."""
    removed = rib.routes.pop(prefix, None) is not None
    rib.stale.discard(prefix)
    rib.rejected[prefix] = reason
    if attributes is not None:
        rib.held[prefix] = attributes
    return removed


def _accept(rib: PeerRib, prefix: Network, attributes: PathAttributes) -> bool:
    rib.rejected.pop(prefix, None)
    rib.held.pop(prefix, None)
    changed = rib.routes.get(prefix) != attributes or prefix in rib.stale
    rib.routes[prefix] = attributes
    rib.stale.discard(prefix)
    return changed


def _preference(path: Path) -> tuple[int, int, int, int, int]:
    """Sort key of the decision steps that decide multipath equality (lower wins).
    MED is compared across all paths (as `always-compare-med`)."""
    attrs = path.attributes
    local_pref = DEFAULT_LOCAL_PREF if attrs.local_pref is None else attrs.local_pref
    return (
        -local_pref,
        len(attrs.as_path),
        ORIGINS[attrs.origin],
        attrs.med or 0,
        0 if path.ebgp else 1,
    )


def best_paths(paths: Iterable[Path]) -> list[Path]:
    """The best path and every path equal to it up to the router-ID tie-break (ECMP).

    Order: highest local preference, shortest AS path, lowest origin, lowest MED,
    eBGP over iBGP.
    The list is sorted by router ID then peer, so the first entry is the single best.
    """
    candidates = list(paths)
    if len(candidates) < 2:
        return candidates  # the common case, an upstream's many single-path prefixes
    best = min(_preference(p) for p in candidates)
    equal = [p for p in candidates if _preference(p) == best]
    return sorted(
        equal, key=lambda p: (ipaddress.IPv4Address(p.peer_router_id or "0.0.0.0"), p.peer)
    )


def best_next_hops(
    all_paths: Mapping[Network, list[Path]], exclude_next_hops: Iterable[IPAddress] = ()
) -> dict[Network, tuple[IPAddress, ...]]:
    """For each prefix, the next hops of its equal best paths (our own addresses never)."""
    excluded = set(exclude_next_hops)
    result: dict[Network, tuple[IPAddress, ...]] = {}
    for prefix, paths in all_paths.items():
        usable = [p for p in paths if p.attributes.next_hop not in excluded]
        if len(usable) == 1:
            result[prefix] = (usable[0].attributes.next_hop,)
            continue
        hops = sorted({p.attributes.next_hop for p in best_paths(usable)}, key=_address_key)
        if hops:
            result[prefix] = tuple(hops)
    return result


def _address_key(address: IPAddress) -> tuple[int, int]:
    return (address.version, int(address))
