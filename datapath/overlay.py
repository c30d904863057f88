"""The VXLAN device kroute keeps, with its FDB and neighbour entries, through pyroute2.

`sync(spec, peers)` is level-triggered: it reads the device, its IPv4 addresses, FDB and
neighbour entries, and changes only what differs from the plan (datapath/overlay_plan.py).
An existing device whose identity matches (kind, VNI, port, local address, underlay
device, learning off) is adopted as it is, so a restarted kroute never flaps it (routes
through a deleted device vanish with it); MTU, MAC, addresses and link state are fixed in
place. A device of another identity is replaced, and the result says why.

Per remote node: FDB `mac -> dst underlay_ip` (`bridge fdb replace MAC dev D dst IP self
permanent`) and a permanent neighbour `overlay_ip -> mac`, so no ARP crosses the overlay
and learning stays off (flannel's scheme). Entries on the device that the plan does not
hold are deleted: the device is kroute's alone. Everything goes through pyroute2.

Order for the daemon: `sync` before reconciling routes (onlink routes need the device);
when the result says `created`, reconcile routes with `full=True`, because routes through
a replaced device vanished with it and the route reconciler's cache cannot know. With the
overlay off (`vxlan_spec` is None), reconcile routes first, then `remove` the device.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from common.errors import DatapathError
from datapath.overlay_plan import OverlayPeer, VxlanSpec
from datapath.overlay_state import (
    DeviceState,
    OverlaySync,
    SyncPlan,
    Underlay,
    wanted_addresses,
)
from datapath.routes import Network

log = logging.getLogger(__name__)

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
IPv4 = ipaddress.IPv4Address


class VxlanOverlay:
    """`Overlay` on the kernel, in `netns` (a name under /var/run/netns) or this one."""

    def __init__(self, netns: str | None = None) -> None:
        from pyroute2 import IPRoute

        self.netns = netns
        self._lock = threading.Lock()
        try:
            self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        except Exception as exc:
            raise DatapathError(f"cannot open netlink in namespace {netns!r}: {exc}") from None

    def close(self) -> None:
        self._ipr.close()

    @contextmanager
    def _netlink(self, what: str) -> Iterator[None]:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            yield
        except NetlinkError as exc:
            raise DatapathError(f"{what} failed: {exc.args[1]} (errno {exc.code})") from None

    # -- reading -----------------------------------------------------------------------

    def _index(self, name: str) -> int:
        found = self._ipr.link_lookup(ifname=name)
        return int(found[0]) if found else 0

    def state(self, name: str) -> DeviceState | None:
        with self._lock, self._netlink(f"reading {name}"):
            index = self._index(name)
            return self._state(index) if index else None

    def _state(self, index: int) -> DeviceState:
        link = self._ipr.get_links(index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else ""
        data = info.get_attr("IFLA_INFO_DATA") if kind == "vxlan" else None
        vx: dict[str, Any] = dict(data["attrs"]) if data else {}
        local = vx.get("IFLA_VXLAN_LOCAL")
        addresses = frozenset(
            ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            for a in self._ipr.get_addr(index=index, family=socket.AF_INET)
        )
        fdb: dict[str, set[IPv4]] = {}
        for e in self._ipr.fdb("dump", ifindex=index):
            dst = e.get_attr("NDA_DST")
            if e["ifindex"] == index and dst:
                fdb.setdefault(e.get_attr("NDA_LLADDR"), set()).add(IPv4(dst))
        neighbours = {
            IPv4(e.get_attr("NDA_DST")): (
                e.get_attr("NDA_LLADDR") or "",
                bool(e["state"] & NUD_PERMANENT),
            )
            for e in self._ipr.neigh("dump", ifindex=index, family=socket.AF_INET)
            if e["ifindex"] == index
        }
        return DeviceState(
            ifindex=index,
            kind=kind or "",
            vni=vx.get("IFLA_VXLAN_ID"),
            port=vx.get("IFLA_VXLAN_PORT"),
            local=IPv4(local) if local else None,
            link=vx.get("IFLA_VXLAN_LINK"),
            learning=bool(vx.get("IFLA_VXLAN_LEARNING", 1)),
            mtu=link.get_attr("IFLA_MTU"),
            mac=link.get_attr("IFLA_ADDRESS"),
            up=bool(link["flags"] & 1),
            addresses=addresses,
            fdb={mac: frozenset(dsts) for mac, dsts in fdb.items()},
            neighbours=neighbours,
        )

    def underlay(self, local: IPv4, dev: str | None = None) -> Underlay:
        """The device holding `local` (or `dev`), its MTU, and every connected subnet."""
        with self._lock, self._netlink("reading the underlay"):
            subnets: list[Network] = []
            holder = self._index(dev) if dev else 0
            for a in self._ipr.get_addr():
                addr = ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                if addr.network.num_addresses > 1 and not (
                    addr.ip.is_loopback or addr.ip.is_link_local
                ):
                    subnets.append(addr.network)
                if not dev and addr.ip == local:
                    holder = a["index"]
            if not holder:
                where = f"device {dev!r}" if dev else f"address {local}"
                raise DatapathError(
                    f"underlay {where} not found in namespace {self.netns or 'of kroute'}; "
                    "set node.ip to an address of this node"
                )
            link = self._ipr.get_links(holder)[0]
            return Underlay(
                link.get_attr("IFLA_IFNAME"),
                holder,
                link.get_attr("IFLA_MTU"),
                tuple(sorted(set(subnets), key=lambda n: (n.version, n))),
            )

    # -- writing -----------------------------------------------------------------------

    def sync(self, spec: VxlanSpec, peers: Sequence[OverlayPeer]) -> OverlaySync:
        """Make the device, its addresses, FDB and neighbours exactly as planned."""
        link = self.underlay(spec.local, spec.underlay_dev).ifindex
        with self._lock, self._netlink(f"syncing {spec.name}"):
            index = self._index(spec.name)
            actual = self._state(index) if index else None
            plan = SyncPlan.of(spec, link, actual, peers)
            if actual and plan.replaced:
                log.warning("overlay device replaced dev=%s reason=%r", spec.name, plan.replaced)
                self._ipr.link("del", index=actual.ifindex)
            if plan.create:
                actual = self._create(spec, link)
            assert actual is not None
            self._fix(spec, actual)
            self._write_entries(actual.ifindex, plan)
        result = plan.result(actual.ifindex)
        if not result.steady:
            log.info(
                "overlay synced dev=%s ifindex=%d created=%s changed=%s fdb=+%d/-%d neigh=+%d/-%d",
                spec.name,
                result.ifindex,
                result.created,
                ",".join(result.changed) or "-",
                result.fdb_set,
                result.fdb_deleted,
                result.neighbours_set,
                result.neighbours_deleted,
            )
        return result

    def _write_entries(self, index: int, plan: SyncPlan) -> None:
        """FDB before neighbours: a neighbour's MAC always has somewhere to go."""
        for p in plan.fdb_sets:
            self._ipr.fdb(
                "replace",
                ifindex=index,
                lladdr=p.mac,
                dst=str(p.underlay_ip),
                state=NUD_PERMANENT,
                flags=NTF_SELF,
            )
        for mac, dst in plan.fdb_deletes:
            self._ipr.fdb("del", ifindex=index, lladdr=mac, dst=str(dst), flags=NTF_SELF)
        for p in plan.neighbour_sets:
            self._ipr.neigh(
                "replace", ifindex=index, dst=str(p.overlay_ip), lladdr=p.mac, state=NUD_PERMANENT
            )
        for ip in plan.neighbour_deletes:
            self._ipr.neigh("del", ifindex=index, dst=str(ip))

    def _create(self, spec: VxlanSpec, link: int) -> DeviceState:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self._ipr.link(
                "add",
                ifname=spec.name,
                kind="vxlan",
                vxlan_id=spec.vni,
                vxlan_port=spec.port,
                vxlan_local=str(spec.local),
                vxlan_link=link,
                vxlan_learning=0,
                address=spec.mac,
                mtu=spec.mtu,
            )
        except NetlinkError as exc:
            raise DatapathError(
                f"cannot create VXLAN device {spec.name} (VNI {spec.vni}, port {spec.port}, "
                f"local {spec.local}): {exc.args[1]}; another VXLAN device may use this VNI "
                "and port: set routing.vxlan.vni or routing.vxlan.port"
            ) from None
        return self._state(self._index(spec.name))

    def _fix(self, spec: VxlanSpec, actual: DeviceState) -> None:
        index = actual.ifindex
        if actual.mtu != spec.mtu or actual.mac != spec.mac:
            self._ipr.link("set", index=index, mtu=spec.mtu, address=spec.mac)
        wanted = wanted_addresses(spec)
        for a in sorted(actual.addresses - wanted):
            self._ipr.addr("del", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
        for a in sorted(wanted - actual.addresses):
            self._ipr.addr("add", index=index, address=str(a.ip), prefixlen=32)
        if not actual.up:
            self._ipr.link("set", index=index, state="up")

    def remove(self, name: str) -> bool:
        with self._lock, self._netlink(f"removing {name}"):
            index = self._index(name)
            if not index:
                return False
            self._ipr.link("del", index=index)
            log.info("overlay device removed dev=%s", name)
            return True
