"""Kernel routes kroute owns: values, the pure diff, the reconciler, and its interface.

Every route kroute programs carries protocol 186 ("bgp") in the main table, so
`ip route show proto bgp` lists exactly kroute's routes and nothing else is ever
touched. The reconciler is level-triggered: desired state in, difference applied,
per-route kernel errors reported (never raised) so one bad next hop cannot stop the rest.
It is synchronous on purpose: the daemon runs it in an executor thread.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import ipaddress
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
NETWORK_TYPES = (ipaddress.IPv4Network, ipaddress.IPv6Network)
ADDRESS_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)


@functools.lru_cache(maxsize=1024)
def _unusable_gateway(address: Address) -> bool:
    """Cached: routes share few gateways, and these properties are slow to compute."""
    return address.is_unspecified or address.is_multicast


RTPROT_BGP = 186
"""rtnetlink protocol number of kroute's routes (`/etc/iproute2/rt_protos`: bgp)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """One route in the main table: unicast via `nexthops` (ECMP when several) or blackhole.

    `nexthops` is normalised to a sorted tuple without duplicates so two routes with the
    same next-hop set compare equal. The empty tuple means blackhole. The unspecified
    address (0.0.0.0 / ::) as a next hop marks a proto-bgp route found in the kernel whose
    shape kroute never programs (unreachable, prohibit, device-only): it never equals a
    desired route, so the reconciler replaces or deletes it.

    `dev` pins every next hop to one device with the `onlink` flag: the kernel then takes
    the gateway as reachable on that device without a connected subnet (the overlay's
    `via 10.244.1.0 dev kroute.vxlan onlink`). Without `dev` the kernel picks the device
    from its connected routes, and routes found in the kernel without `onlink` are read
    back with `dev=None`, so both shapes compare equal to what kroute programs.
    """

    prefix: Network
    nexthops: tuple[Address, ...] = ()
    dev: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise TypeError(f"route prefix {self.prefix!r} must be an IPv4Network or IPv6Network")
        if self.dev is not None and (not self.nexthops or not valid_ifname(self.dev)):
            raise ValueError(
                f"route {self.prefix}: dev {self.dev!r} needs a next hop and a device name "
                "of 1-15 characters without '/', ':' or spaces"
            )
        nhs = self.nexthops
        version = self.prefix.version
        for nh in nhs:
            if getattr(nh, "version", None) != version:
                raise ValueError(
                    f"route {self.prefix}: next hop {nh!r} is not an IPv{version} address; "
                    "next hops must be of the prefix's family"
                )
        if len(nhs) > 1 or type(nhs) is not tuple:
            object.__setattr__(self, "nexthops", tuple(sorted(set(nhs))))

    @classmethod
    def via(
        cls, prefix: Network | str, *nexthops: Address | str, dev: str | None = None
    ) -> KernelRoute:
        """A unicast route; several next hops make one multipath (ECMP) route; `dev`
        makes every next hop `onlink` on that device."""
        if not nexthops:
            raise ValueError(f"route {prefix}: via() needs at least one next hop")
        net = prefix if isinstance(prefix, NETWORK_TYPES) else ipaddress.ip_network(prefix)
        addrs = tuple(
            nh if isinstance(nh, ADDRESS_TYPES) else ipaddress.ip_address(nh) for nh in nexthops
        )  # converting an address object again would format and parse it (slow)
        for nh in addrs:
            if _unusable_gateway(nh):
                raise ValueError(f"route {net}: next hop {nh} is not a usable gateway")
        return cls(net, addrs, dev)

    @classmethod
    def blackhole(cls, prefix: Network | str) -> KernelRoute:
        """A blackhole route (the node's own pod CIDR: drop what no pod owns)."""
        return cls(ipaddress.ip_network(prefix), ())

    @property
    def is_blackhole(self) -> bool:
        return not self.nexthops

    def __str__(self) -> str:
        if not self.nexthops:
            return f"blackhole {self.prefix}"
        via = f"{self.prefix} via {','.join(map(str, self.nexthops))}"
        return f"{via} dev {self.dev} onlink" if self.dev else via


@functools.cache  # a handful of names, checked for every overlay route built
def valid_ifname(name: str) -> bool:
    """What the kernel accepts as an interface name (dev_valid_name)."""
    return (
        0 < len(name) <= 15
        and name not in (".", "..")
        and not any(c in "/:" or c.isspace() for c in name)
    )


@dataclass(frozen=True, slots=True)
class RouteChanges:
    """What to do to the kernel: `upserts` are add-or-replace, `deletes` remove by prefix."""

    upserts: tuple[KernelRoute, ...] = ()
    deletes: tuple[KernelRoute, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """Outcome of applying changes: how many succeeded, and each failure with its reason."""

    applied: int = 0
    failed: tuple[tuple[KernelRoute, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC during bulk route work: creating 100k route objects otherwise
    triggers full collections over everything the daemon holds, doubling the time. The
    objects made here form no cycles, so nothing is lost by collecting later."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sort_key(prefix: Network) -> tuple[int, int, int]:
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def diff_routes(
    desired: Mapping[Network, KernelRoute], actual: Mapping[Network, KernelRoute]
) -> RouteChanges:
    """Changes that turn `actual` into `desired`, each list sorted by prefix (v4 before v6)."""
    upserts = [r for p, r in desired.items() if actual.get(p) != r]
    deletes = [r for p, r in actual.items() if p not in desired]
    upserts.sort(key=lambda r: _sort_key(r.prefix))
    deletes.sort(key=lambda r: _sort_key(r.prefix))
    return RouteChanges(tuple(upserts), tuple(deletes))


class KernelRoutes(Protocol):
    """The narrow interface to the kernel's proto-bgp routes (main table, IPv4 and IPv6)."""

    def dump(self) -> dict[Network, KernelRoute]:
        """Every route with protocol 186 in the main table, both families."""
        ...

    def apply(self, changes: RouteChanges) -> ApplyResult:
        """Apply all changes; per-route kernel errors go into the result, never raised."""
        ...

    def close(self) -> None: ...


class KernelRouteReconciler:
    """Diff desired routes against the kernel and apply the difference.

    The last known kernel state is cached after a fully successful apply (then it equals
    the desired state), so steady-state runs cost no dump; any failure, exception or
    `full=True` forces a fresh dump. Calls are serialised by a lock.
    """

    def __init__(self, kernel: KernelRoutes) -> None:
        self.kernel = kernel
        self.failures_total = 0
        self.runs_total = 0
        self.last_result: ApplyResult | None = None
        self._actual: dict[Network, KernelRoute] | None = None
        self._lock = threading.Lock()

    def actual(self, *, refresh: bool = False) -> dict[Network, KernelRoute]:
        """The kernel's proto-bgp routes (cached unless `refresh`); used to adopt at start."""
        with self._lock:
            return dict(self._load(refresh))

    def reconcile(
        self, desired: Mapping[Network, KernelRoute], *, full: bool = False
    ) -> ApplyResult:
        """Make the kernel hold exactly `desired` among proto-bgp routes."""
        with self._lock, gc_paused():
            actual = self._load(full)
            changes = diff_routes(desired, actual)
            result = self._apply(changes)
            if result.failed:
                self._actual = None
            else:
                self._actual = dict(desired)
            return result

    def cleanup(self) -> int:
        """Delete every proto-bgp route (for `kroute cleanup`); returns how many went."""
        with self._lock, gc_paused():
            actual = self._load(True)
            deletes = tuple(actual[p] for p in sorted(actual, key=_sort_key))
            result = self._apply(RouteChanges((), deletes))
            self._actual = None if result.failed else {}
            return result.applied

    def close(self) -> None:
        self.kernel.close()

    def _load(self, refresh: bool) -> dict[Network, KernelRoute]:
        if refresh or self._actual is None:
            self._actual = None
            self._actual = self.kernel.dump()
        return self._actual

    def _apply(self, changes: RouteChanges) -> ApplyResult:
        self.runs_total += 1
        if not changes:
            result = ApplyResult(0, ())
            self.last_result = result
            return result
        try:
            result = self.kernel.apply(changes)
        except BaseException:
            self._actual = None
            raise
        self.last_result = result
        if result.failed:
            self.failures_total += len(result.failed)
            deleted = {r.prefix for r in changes.deletes}
            for route, error in result.failed:
                op = "delete" if route.prefix in deleted else "upsert"
                nhs = ",".join(map(str, route.nexthops)) or "blackhole"
                log.warning(
                    "kernel route failed op=%s prefix=%s nexthops=%s dev=%s error=%r",
                    op,
                    route.prefix,
                    nhs,
                    route.dev or "-",
                    error,
                )
        return result
