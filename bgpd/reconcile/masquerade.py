"""Masquerade in the daemon: which implementation (BPF when the programs are loaded,
else nftables), the spec built from config and the node, and the periodic NAT sweep.

Pod traffic from this node's pod CIDRs to anything outside `routing.nativeRoutingCIDR`
leaves `datapath.masquerade.interfaces` (default: the device holding the node IP) with
the node IP. Blocking: `DatapathSync` calls it from its executor thread, under its lock.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from typing import cast

from bgpd.config.model import Config
from bgpd.reconcile.host import HostView
from datapath.masq import Masquerader, MasqueradeSpec, NatTimeouts, masquerade_line

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def masquerade_spec(
    config: Config, own_cidrs: Iterable[Network], view: HostView
) -> MasqueradeSpec | None:
    """The spec for this node now, or None while it has no IPv4 pod CIDR or interface."""
    masq = config.datapath.masquerade
    assert config.node.ip is not None
    pods = [c for c in own_cidrs if isinstance(c, ipaddress.IPv4Network)]
    holders = {index for addr, index in view.local_addresses if addr == config.node.ip}
    egress = list(masq.interfaces) or [link.name for link in view.links if link.index in holders]
    native = config.routing.native_routing_cidr or pods  # validation requires it in native
    if not pods or not egress or not native:
        return None
    t = masq.timeouts
    return MasqueradeSpec.of(
        node_ip=config.node.ip,
        egress_interfaces=egress,
        pod_cidrs=pods,
        native_routing_cidr=native,  # type: ignore[arg-type]
        port_range=masq.ports,
        max_entries=masq.max_entries,
        timeouts=NatTimeouts(tcp=t.tcp, udp=t.udp, icmp=t.icmp),
    )


class MasqueradeSync:
    def __init__(self, config: Config, make_nft: Callable[[], Masquerader]) -> None:
        self.config = config
        self._make_nft = make_nft
        self.masq: Masquerader | None = None
        self.spec: MasqueradeSpec | None = None
        self.reason = ""

    def start(self, bpf: object | None) -> None:
        """BPF when the programs loaded (they carry the NAT), else nftables."""
        if not self.config.datapath.masquerade.enabled:
            return
        if bpf is not None:
            self.masq = cast(Masquerader, bpf)
        else:
            self.masq = self._make_nft()
            self.reason = "kernel forwarding"

    def sync(self, own_cidrs: Iterable[Network], view: HostView) -> None:
        if self.masq is None:
            return
        spec = masquerade_spec(self.config, own_cidrs, view)
        if spec != self.spec:
            if spec is None:
                self.masq.clear_masquerade()
            else:
                self.masq.set_masquerade(spec)
            log.info("event=masquerade-set line=%r", self.line())
            self.spec = spec
        self.masq.expire_nat(time.monotonic())

    def line(self) -> str | None:
        """`BPF [eth0] 10.0.0.0/24`, `nftables [eth0] ...`; None when not enabled."""
        if self.masq is None:
            return None
        return masquerade_line(self.masq.kind, self.spec.summary() if self.spec else None)
