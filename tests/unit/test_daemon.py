"""bgpd.daemon.Daemon driven with a fake speaker and the in-memory kernel: speaker events in,
kernel routes out; import policy, explicit peers, kernel failures and status.

Import policy applies: cluster peers (iBGP) are only accepted inside the cluster's pod
CIDRs, so the extra prefixes below are more-specifics of node-b's pod CIDR."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest

from bgpd.api.status import status_report
from bgpd.bgp.advertise import Advertisement
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.unit.conftest import (
    CIDR_A,
    CIDR_B,
    CIDR_C,
    NODE_A,
    NODE_B,
    NODE_C,
    FakeSpeaker,
    MakeDaemon,
    settle,
)
from tests.unit.daemon_steps import (
    ANYCAST,
    EXTRA_B,
    LB_IP,
    OWN,
    STRANGER,
    UPSTREAM,
    announce,
    down,
    eor,
    quiet,
    routes,
    session_up,
    until,
    via,
    withdraw,
)

# -- basics ----------------------------------------------------------------------------


async def test_own_pod_cidr_is_blackholed_and_advertised(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    await until(daemon, OWN)
    speaker = daemon.speaker
    assert isinstance(speaker, FakeSpeaker)
    assert speaker.started
    assert speaker.advertised == {CIDR_A}
    # to every cluster peer, next-hop self, no attributes beyond the defaults
    assert speaker.latest == {
        NODE_B: {CIDR_A: Advertisement(CIDR_A)},
        NODE_C: {CIDR_A: Advertisement(CIDR_A)},
    }
    assert {n.address for n in speaker.spec.neighbors} == {NODE_B, NODE_C}
    assert speaker.spec.router_id == NODE_A
    assert await settle(lambda: daemon.ready)
    assert daemon.kernel_routes == OWN


async def test_peer_route_installed_via_its_next_hop(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B, EXTRA_B)
    session_up(daemon, NODE_C)
    announce(daemon, NODE_C, CIDR_C)
    expected = {
        **OWN,
        CIDR_B: via(CIDR_B, NODE_B),
        EXTRA_B: via(EXTRA_B, NODE_B),
        CIDR_C: via(CIDR_C, NODE_C),
    }
    await until(daemon, expected)
    assert daemon.peers[NODE_B].state == "established"
    assert await settle(lambda: daemon.kernel_routes == expected)


async def test_withdrawn_route_removed(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B, EXTRA_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B), EXTRA_B: via(EXTRA_B, NODE_B)})
    withdraw(daemon, NODE_B, EXTRA_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})


async def test_same_prefix_from_two_peers_is_ecmp(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon(service_cidrs=("10.97.0.0/16",))
    session_up(daemon, NODE_B)
    session_up(daemon, NODE_C)
    announce(daemon, NODE_B, ANYCAST)
    announce(daemon, NODE_C, ANYCAST)
    await until(daemon, {**OWN, ANYCAST: via(ANYCAST, NODE_B, NODE_C)})


async def test_another_nodes_pod_cidr_via_a_third_node_is_refused(
    make_daemon: MakeDaemon,
) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B)
    session_up(daemon, NODE_C)
    announce(daemon, NODE_B, EXTRA_B)
    announce(daemon, NODE_C, EXTRA_B)  # node-c claims a piece of node-b's pod CIDR
    await until(daemon, {**OWN, EXTRA_B: via(EXTRA_B, NODE_B)})
    assert daemon.peers[NODE_C].rejected == {"another node's pod CIDR not via that node": 1}


async def test_peer_announcing_our_cidr_does_not_replace_the_blackhole(
    make_daemon: MakeDaemon,
) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_A, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    # refused at import now, and remembered with the reason
    assert daemon.rib.rejected() == {CIDR_A: [(NODE_B, "own pod CIDR")]}
    assert daemon.peers[NODE_B].rejected == {"own pod CIDR": 1}


async def test_route_via_our_own_address_is_not_installed(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, EXTRA_B, next_hop=NODE_A)
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    # refused at import now (it used to be accepted and only kept out of the kernel)
    assert daemon.rib.rejected() == {EXTRA_B: [(NODE_B, "next hop is this node")]}
    assert daemon.rib.received_count(NODE_B) == 1


async def test_cluster_peer_prefix_outside_pod_cidrs_is_refused(make_daemon: MakeDaemon) -> None:
    """iBGP import default: only the cluster's pod CIDRs (a LoadBalancer IP another node
    announces is refused; before import policy it was installed)."""
    daemon = await make_daemon()
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, LB_IP, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    assert daemon.rib.rejected() == {LB_IP: [(NODE_B, "not in import allow list")]}
    assert daemon.peers[NODE_B].rejected == {"not in import allow list": 1}


async def test_routes_from_unknown_peer_are_ignored(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    session_up(daemon, STRANGER)
    announce(daemon, STRANGER, EXTRA_B)
    eor(daemon, STRANGER)
    down(daemon, STRANGER, "closing connection")
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    await quiet()
    assert routes(daemon) == {**OWN, CIDR_B: via(CIDR_B, NODE_B)}
    assert STRANGER not in daemon.peers


@pytest.mark.parametrize(
    "next_hop",
    [IPv6Address("fd00::2"), IPv4Address("0.0.0.0")],
    ids=["ipv6-next-hop-for-ipv4-prefix", "unspecified-next-hop"],
)
async def test_bad_next_hop_does_not_stop_reconciliation(
    make_daemon: MakeDaemon, next_hop: IPv4Address | IPv6Address
) -> None:
    """A peer announcing an IPv4 prefix with an IPv6 next hop (RFC 8950) or 0.0.0.0 must
    not take down the reconcile loop: everything else still gets installed."""
    daemon = await make_daemon()
    await until(daemon, OWN)
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, EXTRA_B, next_hop=next_hop)
    await quiet()
    session_up(daemon, NODE_C)
    announce(daemon, NODE_C, CIDR_C)
    await until(daemon, {**OWN, CIDR_C: via(CIDR_C, NODE_C)}, timeout=0.5)


async def test_kernel_failure_is_retried_and_others_installed(make_daemon: MakeDaemon) -> None:
    kernel = FakeKernelRoutes(fail={EXTRA_B: "Network is unreachable"})
    daemon = await make_daemon(kernel=kernel)
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B, EXTRA_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    assert await settle(lambda: EXTRA_B not in daemon.kernel_routes)
    assert daemon.reconciler.failures_total >= 1


# -- explicit peers ---------------------------------------------------------------------------


async def test_upstream_peer_routes_follow_its_allow_list(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon(
        peers=[
            {
                "address": str(UPSTREAM),
                "asn": 65000,
                "import": {"allow": ["10.96.0.0/12"], "allowDefaultRoute": True},
            }
        ]
    )
    assert daemon.peers[UPSTREAM].peer.type == "external"
    session_up(daemon, UPSTREAM)
    default = IPv4Network("0.0.0.0/0")
    outside = IPv4Network("192.168.0.0/16")
    announce(daemon, UPSTREAM, default, LB_IP, outside)
    await until(daemon, {**OWN, default: via(default, UPSTREAM), LB_IP: via(LB_IP, UPSTREAM)})
    assert daemon.rib.rejected() == {outside: [(UPSTREAM, "not in import allow list")]}
    # our prefixes go upstream too, next-hop self, AS path left to the speaker
    assert daemon.advertised[UPSTREAM] == {CIDR_A: Advertisement(CIDR_A)}


async def test_max_prefix_shuts_the_session_and_drops_its_routes(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon(
        peers=[
            {
                "address": str(UPSTREAM),
                "asn": 65000,
                "import": {"allow": ["10.96.0.0/12"], "maxPrefix": 2},
            }
        ]
    )
    speaker = daemon.speaker
    assert isinstance(speaker, FakeSpeaker)
    session_up(daemon, UPSTREAM)
    first, second, third = (IPv4Network(f"10.96.0.{i}/32") for i in (1, 2, 3))
    announce(daemon, UPSTREAM, first, second)
    await until(daemon, {**OWN, first: via(first, UPSTREAM), second: via(second, UPSTREAM)})
    announce(daemon, UPSTREAM, third)
    await until(daemon, OWN)
    assert speaker.teardowns == [(UPSTREAM, 1)]
    assert daemon.peers[UPSTREAM].shutdown
    # exabgp reconnects: kroute tears the session down again
    down(daemon, UPSTREAM, "notification sent (6,2)")
    session_up(daemon, UPSTREAM)
    assert speaker.teardowns == [(UPSTREAM, 1), (UPSTREAM, 1)]


# -- status ------------------------------------------------------------------------------------


async def test_status_report_shows_drain_types_and_rejections(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon(peers=[{"address": str(UPSTREAM), "asn": 65000}])
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_A, LB_IP, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    report = status_report(daemon)
    assert report["drain"] == "none"
    assert report["routeReflectorClusterId"] is None
    by_address = {p["address"]: p for p in report["peers"]}
    assert set(by_address) == {str(NODE_B), str(NODE_C), str(UPSTREAM)}
    assert by_address[str(NODE_B)]["type"] == "node-to-node mesh"
    assert by_address[str(UPSTREAM)]["type"] == "external"
    assert by_address[str(UPSTREAM)]["asn"] == 65000
    assert by_address[str(NODE_B)]["prefixesRejected"] == {
        "not in import allow list": 1,
        "own pod CIDR": 1,
    }
    assert by_address[str(NODE_B)]["prefixesReceived"] == 1
    assert by_address[str(NODE_C)]["prefixesRejected"] == {}
    assert report["advertised"] == [str(CIDR_A)]

    daemon.drain(wait=60)
    assert status_report(daemon)["drain"] == "draining"
