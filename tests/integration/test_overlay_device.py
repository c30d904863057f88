"""VxlanOverlay against a real kernel: the device, its FDB and neighbours, in a namespace."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from common.errors import DatapathError
from datapath.overlay import VxlanOverlay
from datapath.overlay_plan import (
    LocalNode,
    RemoteNode,
    RoutingSettings,
    VxlanSpec,
    overlay_peers,
    vxlan_spec,
)
from tests.netns_fixtures import ip, netns

pytestmark = [pytest.mark.netns]

net = ipaddress.ip_network
addr = ipaddress.ip_address
LOCAL = LocalNode("a", addr("192.168.1.10"), (net("192.168.1.0/24"),), (net("10.244.1.0/24"),))
B = RemoteNode("b", addr("192.168.1.11"), (net("10.244.2.0/24"),))
C = RemoteNode("c", addr("192.168.2.10"), (net("10.244.3.0/24"),))


@pytest.fixture
def ns() -> Iterator[str]:
    with netns("kov-") as name:
        ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        ip("-n", name, "addr", "add", "192.168.1.10/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        ip("-n", name, "link", "set", "eth1", "up")
        yield name


@pytest.fixture
def overlay(ns: str) -> Iterator[VxlanOverlay]:
    with contextlib.closing(VxlanOverlay(ns)) as o:
        yield o


def spec(**changes: Any) -> VxlanSpec:
    s = vxlan_spec(RoutingSettings("vxlan", "crossSubnet"), LOCAL)
    assert s is not None
    return dataclasses.replace(s, **changes)


def details(ns: str) -> dict[str, Any]:
    link = json.loads(ip("-n", ns, "-j", "-d", "link", "show", "kroute.vxlan"))[0]
    fdb = json.loads(ip("-n", ns, "-4", "-j", "neigh", "show", "dev", "kroute.vxlan", "nud", "all"))
    out = ip("-n", ns, "-j", "addr", "show", "dev", "kroute.vxlan")
    addrs = [f"{a['local']}/{a['prefixlen']}" for a in json.loads(out)[0]["addr_info"]]
    return {"link": link, "neigh": fdb, "addrs": [a for a in addrs if "." in a]}


def bridge_fdb(ns: str) -> set[tuple[str, str]]:
    import subprocess

    out = subprocess.run(
        ["bridge", "-n", ns, "-j", "fdb", "show", "dev", "kroute.vxlan"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {(e["mac"], e["dst"]) for e in json.loads(out or "[]") if "dst" in e}


def test_create_then_steady_then_adopted_by_a_restart(ns: str, overlay: VxlanOverlay) -> None:
    peers = overlay_peers(LOCAL, [B, C])
    first = overlay.sync(spec(), peers)
    assert first.created and (first.fdb_set, first.neighbours_set) == (2, 2)
    d = details(ns)
    vx = d["link"]["linkinfo"]["info_data"]
    assert (vx["id"], vx["port"], vx["local"], vx.get("learning")) == (
        1,
        4789,
        "192.168.1.10",
        False,
    )
    assert vx["link"] == "eth0"
    assert d["link"]["mtu"] == 1450 and d["link"]["address"] == "02:6b:c0:a8:01:0a"
    assert "UP" in d["link"]["flags"]
    assert d["addrs"] == ["10.244.1.0/32"]
    assert bridge_fdb(ns) == {
        ("02:6b:c0:a8:01:0b", "192.168.1.11"),
        ("02:6b:c0:a8:02:0a", "192.168.2.10"),
    }
    assert {(n["dst"], n["lladdr"], tuple(n["state"])) for n in d["neigh"]} == {
        ("10.244.2.0", "02:6b:c0:a8:01:0b", ("PERMANENT",)),
        ("10.244.3.0", "02:6b:c0:a8:02:0a", ("PERMANENT",)),
    }
    assert overlay.sync(spec(), peers).steady
    with contextlib.closing(VxlanOverlay(ns)) as restarted:
        again = restarted.sync(spec(), peers)
    assert again.steady and again.ifindex == first.ifindex


def test_in_place_fixes_keep_the_device(ns: str, overlay: VxlanOverlay) -> None:
    peers = overlay_peers(LOCAL, [B, C])
    first = overlay.sync(spec(), peers)
    ip("-n", ns, "link", "set", "kroute.vxlan", "mtu", "1400")
    ip("-n", ns, "addr", "add", "10.9.9.9/24", "dev", "kroute.vxlan")
    ip("-n", ns, "link", "set", "kroute.vxlan", "down")
    fixed = overlay.sync(spec(mac="02:6b:00:00:00:01"), peers)
    assert fixed.ifindex == first.ifindex and not fixed.created
    assert fixed.changed == ("mtu 1400 -> 1450", "mac 02:6b:c0:a8:01:0a -> 02:6b:00:00:00:01",
                             "address 10.244.1.0/32", "up")  # fmt: skip
    d = details(ns)
    assert d["link"]["mtu"] == 1450 and d["link"]["address"] == "02:6b:00:00:00:01"
    assert d["addrs"] == ["10.244.1.0/32"] and "UP" in d["link"]["flags"]
    # Link down flushed nothing we keep: FDB and neighbours are still exactly the plan.
    assert len(bridge_fdb(ns)) == 2
    assert overlay.sync(spec(mac="02:6b:00:00:00:01"), peers).steady


def test_identity_change_replaces_the_device(ns: str, overlay: VxlanOverlay) -> None:
    first = overlay.sync(spec(), ())
    second = overlay.sync(spec(vni=42, port=8472), ())
    assert second.created and second.ifindex != first.ifindex
    assert second.replaced == "vni 1 != 42, port 4789 != 8472"
    vx = details(ns)["link"]["linkinfo"]["info_data"]
    assert (vx["id"], vx["port"]) == (42, 8472)


def test_a_foreign_device_of_that_name_is_replaced(ns: str, overlay: VxlanOverlay) -> None:
    ip("-n", ns, "link", "add", "kroute.vxlan", "type", "veth", "peer", "name", "x1")
    result = overlay.sync(spec(), ())
    assert result.created and result.replaced.startswith("kind veth != vxlan")


def test_membership_changes_update_and_remove_entries(ns: str, overlay: VxlanOverlay) -> None:
    overlay.sync(spec(), overlay_peers(LOCAL, [B, C]))
    ip("-n", ns, "neigh", "add", "10.244.77.0", "lladdr", "02:00:00:00:00:77", "dev",
       "kroute.vxlan")  # fmt: skip
    moved_c = RemoteNode("c", addr("192.168.3.10"), C.pod_cidrs)
    result = overlay.sync(spec(), overlay_peers(LOCAL, [moved_c]))
    # b gone; c's MAC follows its new address: the old entries go, new ones come.
    assert (result.fdb_set, result.fdb_deleted) == (1, 2)
    assert (result.neighbours_set, result.neighbours_deleted) == (1, 2)
    assert bridge_fdb(ns) == {("02:6b:c0:a8:03:0a", "192.168.3.10")}
    state = overlay.state("kroute.vxlan")
    assert state is not None
    assert state.neighbours == {addr("10.244.3.0"): ("02:6b:c0:a8:03:0a", True)}
    assert overlay.remove("kroute.vxlan") and not overlay.remove("kroute.vxlan")
    assert overlay.state("kroute.vxlan") is None


def test_underlay_facts_and_errors(ns: str, overlay: VxlanOverlay) -> None:
    u = overlay.underlay(ipaddress.IPv4Address("192.168.1.10"))
    assert (u.dev, u.mtu, u.subnets) == ("eth0", 1500, (net("192.168.1.0/24"),))
    with pytest.raises(DatapathError, match=r"underlay address 192\.168\.9\.9 not found"):
        overlay.sync(spec(local=addr("192.168.9.9")), ())
    ip("-n", ns, "link", "add", "other", "type", "vxlan", "id", "1", "dstport", "4789",
       "local", "192.168.1.10", "dev", "eth0")  # fmt: skip
    with pytest.raises(DatapathError, match=r"set routing\.vxlan\.vni or routing\.vxlan\.port"):
        overlay.sync(spec(), ())
