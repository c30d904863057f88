"""bgpd.daemon.Daemon driven with a fake speaker and the in-memory kernel: speaker events in,
kernel routes out, graceful restart in both directions, import policy, drain and status.

Import policy applies: cluster peers (iBGP) are only accepted inside the cluster's pod
CIDRs, so the extra prefixes below are more-specifics of node-b's pod CIDR."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from bgpd.api.status import status_report
from bgpd.bgp.advertise import GRACEFUL_SHUTDOWN, Advertisement
from bgpd.bgp.events import EndOfRib, PathAttributes, PeerOpen, PeerState, RoutesUpdate
from bgpd.daemon import Daemon
from datapath.routes import KernelRoute
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.unit.conftest import (
    CIDR_A,
    CIDR_B,
    CIDR_C,
    NODE_A,
    NODE_B,
    NODE_C,
    FakeSpeaker,
    StartDaemon,
    cluster_data,
    settle,
    stop_bounded,
)

Network = IPv4Network
# A second prefix node-b announces: inside the cluster's pod CIDRs (iBGP import default) and
# not ours.
EXTRA_B = IPv4Network("10.244.2.128/25")
ANYCAST = IPv4Network("10.97.0.0/24")  # inside a service CIDR: node-b and node-c both announce
LB_IP = IPv4Network("10.96.0.10/32")  # a LoadBalancer IP: outside every pod CIDR
OLD = IPv4Network("10.244.9.0/24")  # a route from a previous life nobody announces now
STRANGER = IPv4Address("10.9.9.9")

MakeDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def make_daemon(tmp_path: Path, start_daemon: StartDaemon) -> MakeDaemon:
    async def make(
        kernel: FakeKernelRoutes | None = None,
        restart_time: int = 1,
        peers: list[dict[str, Any]] | None = None,
        service_cidrs: tuple[str, ...] = (),
    ) -> Daemon:
        data = cluster_data(tmp_path, restart_time)
        if peers is not None:
            data["bgp"]["peers"] = peers
        data["cluster"]["serviceCIDRs"] = list(service_cidrs)
        return await start_daemon(data, kernel)

    return make


def kernel_of(daemon: Daemon) -> FakeKernelRoutes:
    assert isinstance(daemon.kernel, FakeKernelRoutes)
    return daemon.kernel


def routes(daemon: Daemon) -> dict[Network, KernelRoute]:
    return kernel_of(daemon).dump()  # type: ignore[return-value]


async def until(daemon: Daemon, expected: dict[Network, KernelRoute], timeout: float = 2.0) -> None:
    """Wait for the kernel to hold exactly `expected`; fail showing what it holds."""
    ok = await settle(lambda: kernel_of(daemon).routes == expected, timeout=timeout)
    assert ok, f"kernel holds {sorted(map(str, routes(daemon).values()))}"


async def quiet(seconds: float = 0.05) -> None:
    """Let the reconcile loop run."""
    await asyncio.sleep(seconds)


def via(prefix: Network, *hops: IPv4Address | IPv6Address) -> KernelRoute:
    return KernelRoute.via(prefix, *hops)


OWN = {CIDR_A: KernelRoute.blackhole(CIDR_A)}


def session_up(daemon: Daemon, peer: IPv4Address, restart_time: float | None = 0.3) -> None:
    """What exabgp reports when a session comes up: the peer's OPEN, then state up."""
    daemon.handle_event(PeerState(peer, "connected"))
    daemon.handle_event(PeerOpen(peer, str(peer), 64512, 9, restart_time))  # type: ignore[arg-type]
    daemon.handle_event(PeerState(peer, "up"))


def announce(
    daemon: Daemon, peer: IPv4Address, *prefixes: Network, next_hop: object = None
) -> None:
    attrs = PathAttributes(next_hop=next_hop or peer)  # type: ignore[arg-type]
    daemon.handle_event(RoutesUpdate(peer, announced=tuple((p, attrs) for p in prefixes)))


def withdraw(daemon: Daemon, peer: IPv4Address, *prefixes: Network) -> None:
    daemon.handle_event(RoutesUpdate(peer, withdrawn=prefixes))


def down(daemon: Daemon, peer: IPv4Address, reason: str) -> None:
    daemon.handle_event(PeerState(peer, "down", reason))


def eor(daemon: Daemon, peer: IPv4Address) -> None:
    daemon.handle_event(EndOfRib(peer, "ipv4 unicast"))


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


# -- a peer's session drops ---------------------------------------------------------------


async def test_graceful_peer_routes_kept_stale_until_restart_time_passes(
    make_daemon: MakeDaemon,
) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B, restart_time=0.3)
    announce(daemon, NODE_B, CIDR_B)
    with_b = {**OWN, CIDR_B: via(CIDR_B, NODE_B)}
    await until(daemon, with_b)
    down(daemon, NODE_B, "closing connection")
    await quiet(0.02)
    assert routes(daemon) == with_b
    assert daemon.rib.stale_count(NODE_B) == 1
    assert daemon.peers[NODE_B].state == "idle"
    await until(daemon, OWN)
    assert daemon.rib.received_count(NODE_B) == 0


async def test_graceful_peer_returning_refreshes_routes_and_eor_drops_the_rest(
    make_daemon: MakeDaemon,
) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B, restart_time=0.4)
    announce(daemon, NODE_B, CIDR_B, EXTRA_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B), EXTRA_B: via(EXTRA_B, NODE_B)})
    down(daemon, NODE_B, "closing connection")
    session_up(daemon, NODE_B, restart_time=0.4)
    announce(daemon, NODE_B, CIDR_B)
    await quiet(0.02)
    # until End-of-RIB the stale route stays
    assert EXTRA_B in routes(daemon)
    eor(daemon, NODE_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    # and the restart timer no longer removes what the peer re-announced
    await quiet(0.5)
    assert routes(daemon) == {**OWN, CIDR_B: via(CIDR_B, NODE_B)}
    assert daemon.rib.stale_count(NODE_B) == 0


async def test_graceful_peer_eor_without_routes_drops_all_stale(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B, restart_time=5)
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    down(daemon, NODE_B, "closing connection")
    session_up(daemon, NODE_B, restart_time=5)
    eor(daemon, NODE_B)
    await until(daemon, OWN)


@pytest.mark.parametrize("reason", ["notification sent (4,0)", "notification received (6,2)"])
async def test_peer_down_with_notification_removes_routes_at_once(
    make_daemon: MakeDaemon, reason: str
) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B, restart_time=60)
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    down(daemon, NODE_B, reason)
    await until(daemon, OWN)
    assert daemon.peers[NODE_B].info == reason


async def test_peer_without_graceful_restart_loses_routes_at_once(
    make_daemon: MakeDaemon,
) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B, restart_time=None)
    session_up(daemon, NODE_C, restart_time=60)
    announce(daemon, NODE_B, CIDR_B)
    announce(daemon, NODE_C, CIDR_C)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B), CIDR_C: via(CIDR_C, NODE_C)})
    down(daemon, NODE_B, "closing connection")
    await until(daemon, {**OWN, CIDR_C: via(CIDR_C, NODE_C)})


async def test_repeated_down_events_do_not_extend_the_stale_timer(
    make_daemon: MakeDaemon,
) -> None:
    """While the peer is away exabgp keeps trying to connect and reports `down` again and
    again; the restart time counts from the first drop."""
    daemon = await make_daemon()
    session_up(daemon, NODE_B, restart_time=0.2)
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    down(daemon, NODE_B, "closing connection")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while CIDR_B in kernel_of(daemon).routes and loop.time() < deadline:
        await asyncio.sleep(0.05)
        daemon.handle_event(PeerState(NODE_B, "connected"))
        down(daemon, NODE_B, "closing connection")
    assert routes(daemon) == OWN


async def test_routes_received_before_a_second_drop_also_expire(make_daemon: MakeDaemon) -> None:
    """The peer restarts, comes back, re-sends part of its routes, and drops again before
    End-of-RIB, then never returns: nothing it sent may stay in the kernel for ever."""
    daemon = await make_daemon()
    session_up(daemon, NODE_B, restart_time=0.2)
    announce(daemon, NODE_B, CIDR_B, EXTRA_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B), EXTRA_B: via(EXTRA_B, NODE_B)})
    down(daemon, NODE_B, "closing connection")
    session_up(daemon, NODE_B, restart_time=0.2)
    announce(daemon, NODE_B, CIDR_B)
    down(daemon, NODE_B, "closing connection")
    await until(daemon, OWN, timeout=1.5)


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


# -- our own restart: routes adopted from the kernel ---------------------------------------


def previous_life() -> FakeKernelRoutes:
    return FakeKernelRoutes.holding(
        [
            KernelRoute.blackhole(CIDR_A),
            via(CIDR_B, NODE_B),
            via(CIDR_C, NODE_C),
            via(OLD, NODE_B),
        ]
    )


async def test_routes_in_kernel_at_start_are_adopted_until_every_peer_sent_eor(
    make_daemon: MakeDaemon,
) -> None:
    kernel = previous_life()
    before = dict(kernel.routes)
    daemon = await make_daemon(kernel=kernel, restart_time=30)
    await quiet()
    assert routes(daemon) == before
    assert set(daemon.adopted) == set(before)

    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B)
    eor(daemon, NODE_B)
    session_up(daemon, NODE_C)
    announce(daemon, NODE_C, CIDR_C)
    await quiet()
    # node-c has not sent End-of-RIB yet: OLD stays
    assert routes(daemon) == before

    eor(daemon, NODE_C)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B), CIDR_C: via(CIDR_C, NODE_C)})
    assert daemon.adopted == {}


async def test_adopted_route_replaced_by_learned_next_hop(make_daemon: MakeDaemon) -> None:
    kernel = FakeKernelRoutes.holding([via(CIDR_B, NODE_C)])
    daemon = await make_daemon(kernel=kernel, restart_time=30)
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})


async def test_adopted_routes_expire_after_the_restart_time(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon(kernel=previous_life(), restart_time=1)
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B)
    # node-c never comes back; after gracefulRestart.restartTime the rest goes
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)}, timeout=4.0)


async def test_stop_leaves_kernel_routes_in_place(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B)
    expected = {**OWN, CIDR_B: via(CIDR_B, NODE_B)}
    await until(daemon, expected)
    await daemon.stop()
    speaker = daemon.speaker
    assert isinstance(speaker, FakeSpeaker)
    assert speaker.stopped
    assert kernel_of(daemon).closed
    assert kernel_of(daemon).routes == expected
    # events after stop change nothing in the kernel
    withdraw(daemon, NODE_B, CIDR_B)
    await quiet()
    assert kernel_of(daemon).routes == expected


async def test_stop_right_after_a_change_does_not_hang(make_daemon: MakeDaemon) -> None:
    """SIGTERM right after a route update must stop the daemon. BUG (bgpd/daemon.py,
    `_reconcile_loop`): on Python 3.11 `asyncio.wait_for(self._dirty.wait(), ...)` swallows
    the task's cancellation when the event was set just before `stop()` cancels it, so the
    loop keeps running and `stop()` waits for ever."""
    daemon = await make_daemon()
    await until(daemon, OWN)
    await quiet()
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B)  # marks the daemon dirty
    assert await stop_bounded(daemon), "Daemon.stop() did not return (cancellation lost)"
    speaker = daemon.speaker
    assert isinstance(speaker, FakeSpeaker)
    assert speaker.stopped


async def test_kernel_failure_is_retried_and_others_installed(make_daemon: MakeDaemon) -> None:
    kernel = FakeKernelRoutes(fail={EXTRA_B: "Network is unreachable"})
    daemon = await make_daemon(kernel=kernel)
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B, EXTRA_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    assert await settle(lambda: EXTRA_B not in daemon.kernel_routes)
    assert daemon.reconciler.failures_total >= 1


# -- explicit peers ---------------------------------------------------------------------------

UPSTREAM = IPv4Address("10.0.0.254")


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
    assert speaker.teardowns == [(UPSTREAM, 2)]
    assert daemon.peers[UPSTREAM].shutdown
    # exabgp reconnects: kroute tears the session down again
    down(daemon, UPSTREAM, "notification sent (6,2)")
    session_up(daemon, UPSTREAM)
    assert speaker.teardowns == [(UPSTREAM, 2), (UPSTREAM, 2)]


# -- drain --------------------------------------------------------------------------------------


def speaker_of(daemon: Daemon) -> FakeSpeaker:
    assert isinstance(daemon.speaker, FakeSpeaker)
    return daemon.speaker


def own_advertisements(daemon: Daemon) -> dict[IPv4Address, Advertisement | None]:
    """What the speaker was last told to send each cluster peer for our pod CIDR."""
    latest = speaker_of(daemon).latest
    return {peer: latest.get(peer, {}).get(CIDR_A) for peer in (NODE_B, NODE_C)}


async def test_drain_then_undrain(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    plain = Advertisement(CIDR_A)
    assert await settle(lambda: own_advertisements(daemon) == {NODE_B: plain, NODE_C: plain})

    daemon.drain(wait=0.05)
    assert daemon.drain_state == "draining"
    draining = Advertisement(CIDR_A, local_pref=0, communities=(GRACEFUL_SHUTDOWN,))
    assert GRACEFUL_SHUTDOWN == "65535:0"
    # first the GRACEFUL_SHUTDOWN phase, then nothing of ours
    assert await settle(lambda: daemon.drain_state == "drained")
    assert any(
        {p: advs.get(CIDR_A) for p, advs in call.items()} == {NODE_B: draining, NODE_C: draining}
        for call in speaker_of(daemon).advertisements
    )
    assert await settle(lambda: speaker_of(daemon).advertised == frozenset())
    assert (Path(daemon.config.run_dir) / "drain-state").read_text().strip() == "drained"
    # the kernel keeps our blackhole: draining is about the peers, not the node
    assert routes(daemon) == OWN

    daemon.undrain()
    assert daemon.drain_state == "none"
    assert await settle(lambda: own_advertisements(daemon) == {NODE_B: plain, NODE_C: plain})


async def test_drain_is_idempotent_and_undrain_cancels_the_wait(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    daemon.drain(wait=0.1)
    daemon.drain(wait=0.0)  # already draining: no new, shorter timer
    await quiet(0.02)
    assert daemon.drain_state == "draining"
    daemon.undrain()
    await quiet(0.15)
    assert daemon.drain_state == "none"
    assert await settle(lambda: speaker_of(daemon).advertised == {CIDR_A})


async def test_drain_state_survives_a_restart(make_daemon: MakeDaemon) -> None:
    first = await make_daemon()
    first.drain(wait=60)
    await quiet()
    await first.stop()
    # a kroute restarted mid-drain comes back fully drained
    second = await make_daemon()
    assert second.drain_state == "drained"
    assert speaker_of(second).advertisements[0] == {NODE_B: {}, NODE_C: {}}
    second.undrain()
    await quiet()
    await second.stop()
    third = await make_daemon()
    assert third.drain_state == "none"
    assert await settle(lambda: speaker_of(third).advertised == {CIDR_A})


async def test_peer_routes_still_learned_while_drained(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    daemon.drain(wait=0.0)
    assert await settle(lambda: daemon.drain_state == "drained")
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})


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
