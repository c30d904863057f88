"""LoadBalancer IPs on the loopback of serving nodes, so host processes can answer on
them (bare metal). Ours carry the label `lo:krlb`; nothing else on lo is touched."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Protocol

from pyroute2 import IPRoute

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LABEL = "lo:krlb"


class LoopbackAddresses(Protocol):
    def sync(self, wanted: Iterable[IPAddress]) -> None: ...


class KernelLoopback:
    """The real thing, in the current network namespace (call it from an executor)."""

    def sync(self, wanted: Iterable[IPAddress]) -> None:
        want = set(wanted)
        with IPRoute() as ipr:
            (lo,) = ipr.link_lookup(ifname="lo")
            have: set[IPAddress] = set()
            for msg in ipr.get_addr(index=lo):
                address = ipaddress.ip_address(msg.get_attr("IFA_ADDRESS"))
                ours = msg.get_attr("IFA_LABEL") == LABEL or (
                    address.version == 6 and address in self._marked_v6
                )
                if ours:
                    have.add(address)
            for address in sorted(have - want, key=lambda a: (a.version, int(a))):
                ipr.addr("del", index=lo, address=str(address), prefixlen=address.max_prefixlen)
                self._marked_v6.discard(address)
            for address in sorted(want - have, key=lambda a: (a.version, int(a))):
                extra = {"label": LABEL} if address.version == 4 else {}
                ipr.addr(
                    "add", index=lo, address=str(address), prefixlen=address.max_prefixlen, **extra
                )
                if address.version == 6:  # IPv6 addresses carry no label: remember them
                    self._marked_v6.add(address)

    def __init__(self) -> None:
        self._marked_v6: set[IPAddress] = set()
