"""Desired state as pure functions of observed state.

What to advertise and which routes the kernel should hold follow from the config,
the RIB and the routes adopted from a previous run; the reconcilers make it so.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

from datapath.routes import KernelRoute

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def desired_kernel_routes(
    own_cidrs: Iterable[Network],
    learned: Mapping[Network, tuple[IPAddress, ...]],
    adopted: Mapping[Network, KernelRoute],
    local: Iterable[Network] = (),
) -> dict[Network, KernelRoute]:
    """Blackholes for our own pod CIDRs, learned best paths (ECMP), and routes adopted
    at start that nothing has replaced yet (kept until the graceful-restart window
    closes, so a restart never drops a route that is still valid). Other prefixes we
    announce ourselves (`local`, e.g. service CIDRs) are served here: no route."""
    own = set(own_cidrs)
    served = set(local) - own
    desired: dict[Network, KernelRoute] = {}
    for prefix, route in adopted.items():
        if prefix not in own and prefix not in served:
            desired[prefix] = route
    for prefix, hops in learned.items():
        usable = tuple(h for h in hops if usable_next_hop(prefix, h))
        if prefix not in own and prefix not in served and usable:
            desired[prefix] = KernelRoute.via(prefix, *usable)
    for prefix in own:
        desired[prefix] = KernelRoute.blackhole(prefix)
    return desired


def usable_next_hop(prefix: Network, hop: IPAddress) -> bool:
    """A gateway the kernel can use for `prefix`: same family, a unicast address.
    (An IPv6 next hop for an IPv4 prefix, RFC 8950, needs the overlay: not yet.)"""
    return hop.version == prefix.version and _unicast(hop)


@functools.lru_cache(maxsize=1024)
def _unicast(hop: IPAddress) -> bool:
    """Cached: many routes share few next hops, and these properties are slow."""
    return not (hop.is_unspecified or hop.is_multicast or hop.is_loopback)
