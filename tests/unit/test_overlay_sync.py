"""The overlay's pure diffs and the in-memory Overlay the daemon's tests use."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from common.errors import DatapathError
from datapath.overlay import VxlanOverlay
from datapath.overlay_plan import LocalNode, RemoteNode, RoutingSettings, overlay_peers, vxlan_spec
from datapath.overlay_state import Overlay, diff_fdb, diff_neighbours, identity_mismatch
from tests.fakes.overlay import FakeOverlay

net = ipaddress.ip_network
V4 = ipaddress.IPv4Address
LOCAL = LocalNode("a", V4("10.0.0.1"), (net("10.0.0.0/24"),), (net("10.244.1.0/24"),))
B = RemoteNode("b", V4("10.0.0.2"), (net("10.244.2.0/24"),))
C = RemoteNode("c", V4("10.0.1.2"), (net("10.244.3.0/24"),))
SPEC = vxlan_spec(RoutingSettings("vxlan", "always"), LOCAL)
assert SPEC is not None
KERNEL: type[Overlay] = VxlanOverlay  # mypy checks that the kernel one is an Overlay


def test_fdb_diff_replaces_moved_macs_and_deletes_strays() -> None:
    pb, pc = overlay_peers(LOCAL, [B, C])
    actual = {
        pb.mac: frozenset({pb.underlay_ip}),  # right
        pc.mac: frozenset({V4("10.9.9.9"), pc.underlay_ip}),  # one remote too many
        "02:00:00:00:00:01": frozenset({V4("10.0.0.9")}),  # nobody's
    }
    sets, deletes = diff_fdb([pb, pc], actual)
    assert sets == [pc]
    assert deletes == [("02:00:00:00:00:01", V4("10.0.0.9")), (pc.mac, V4("10.9.9.9"))]


def test_neighbour_diff_wants_permanent_entries() -> None:
    pb, pc = overlay_peers(LOCAL, [B, C])
    actual = {
        pb.overlay_ip: (pb.mac, False),
        pc.overlay_ip: (pc.mac, True),
        V4("1.2.3.4"): ("", False),
    }
    assert diff_neighbours([pb, pc], actual) == ([pb], [V4("1.2.3.4")])


def test_fake_follows_the_same_rules() -> None:
    fake: Overlay = FakeOverlay()  # mypy: the fake is an Overlay
    assert SPEC is not None
    first = fake.sync(SPEC, overlay_peers(LOCAL, [B, C]))
    assert first.created and (first.fdb_set, first.neighbours_set) == (2, 2)
    assert fake.sync(SPEC, overlay_peers(LOCAL, [B, C])).steady
    gone = fake.sync(SPEC, overlay_peers(LOCAL, [B]))
    assert (gone.fdb_deleted, gone.neighbours_deleted) == (1, 1) and not gone.created
    state = fake.state(SPEC.name)
    assert state is not None and set(state.neighbours) == {V4("10.244.2.0")}
    bigger = fake.sync(dataclasses.replace(SPEC, mtu=8950), overlay_peers(LOCAL, [B]))
    assert bigger.changed == ("mtu 1450 -> 8950",) and bigger.ifindex == first.ifindex
    other = fake.sync(dataclasses.replace(SPEC, vni=9), ())
    assert other.created and other.replaced == "vni 1 != 9" and other.ifindex != first.ifindex
    assert fake.remove(SPEC.name) and not fake.remove(SPEC.name)
    failing = FakeOverlay(fail="boom")
    with pytest.raises(DatapathError, match="boom"):
        failing.sync(SPEC, ())


def test_identity_mismatch_names_each_difference() -> None:
    fake = FakeOverlay()
    assert SPEC is not None
    fake.sync(SPEC, ())
    state = fake.state(SPEC.name)
    assert state is not None
    assert identity_mismatch(SPEC, 2, state) == ""
    moved = dataclasses.replace(SPEC, local=V4("10.0.0.7"), port=8472)
    assert identity_mismatch(moved, 3, state) == (
        "port 4789 != 8472, local 10.0.0.1 != 10.0.0.7, underlay ifindex 2 != 3"
    )
