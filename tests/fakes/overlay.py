"""In-memory `Overlay` for the daemon's unit tests: the same diffs as the kernel one."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from common.errors import DatapathError
from datapath.overlay_plan import OverlayPeer, VxlanSpec
from datapath.overlay_state import DeviceState, OverlaySync, SyncPlan, Underlay, wanted_addresses

DEFAULT_UNDERLAY = Underlay("eth0", 2, 1500, (ipaddress.ip_network("10.0.0.0/24"),))


@dataclass
class FakeOverlay:
    """Devices by name; `underlay_info` answers `underlay()`; `fail` makes `sync` raise."""

    underlay_info: Underlay = DEFAULT_UNDERLAY
    devices: dict[str, DeviceState] = field(default_factory=dict)
    fail: str = ""
    syncs: int = 0
    closed: bool = False
    _next_index: int = 100

    def underlay(self, local: ipaddress.IPv4Address, dev: str | None = None) -> Underlay:
        return self.underlay_info

    def state(self, name: str) -> DeviceState | None:
        return self.devices.get(name)

    def sync(self, spec: VxlanSpec, peers: Sequence[OverlayPeer]) -> OverlaySync:
        self.syncs += 1
        if self.fail:
            raise DatapathError(self.fail)
        actual = self.devices.get(spec.name)
        plan = SyncPlan.of(spec, self.underlay_info.ifindex, actual, peers)
        if actual is None or plan.create:
            self._next_index += 1
            actual = DeviceState(
                self._next_index, "vxlan", spec.vni, spec.port, spec.local,
                self.underlay_info.ifindex, False, spec.mtu, spec.mac, False,
            )  # fmt: skip
        self.devices[spec.name] = dataclasses.replace(
            actual,
            mtu=spec.mtu,
            mac=spec.mac,
            up=True,
            addresses=wanted_addresses(spec),
            fdb={p.mac: frozenset({p.underlay_ip}) for p in peers},
            neighbours={p.overlay_ip: (p.mac, True) for p in peers},
        )
        return plan.result(actual.ifindex)

    def remove(self, name: str) -> bool:
        return self.devices.pop(name, None) is not None

    def close(self) -> None:
        self.closed = True
