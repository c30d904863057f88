"""Graceful restart in both directions through bgpd.daemon.Daemon: a peer's routes kept
stale through its restart (RFC 4724) or dropped at once, and our own restart adopting the
routes a previous life left in the kernel until every peer has sent End-of-RIB."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network

import pytest

from bgpd.bgp.events import PeerState
from datapath.routes import KernelRoute
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.unit.conftest import (
    CIDR_A,
    CIDR_B,
    CIDR_C,
    NODE_B,
    NODE_C,
    FakeSpeaker,
    MakeDaemon,
    stop_bounded,
)
from tests.unit.daemon_steps import (
    EXTRA_B,
    OLD,
    OWN,
    announce,
    down,
    eor,
    kernel_of,
    quiet,
    routes,
    session_up,
    until,
    via,
    withdraw,
)

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


# -- RFC 4724 4.2 on the peer's return ------------------------------------------------------


async def test_restart_timer_stops_when_the_peer_is_back_rfc4724_4_2(
    make_daemon: MakeDaemon,
) -> None:
    """The restart time bounds how long the peer may be away; once it is back it has the
    stale-path time to send End-of-RIB: a peer slow to re-send keeps its stale routes
    past its restart time."""
    daemon = await make_daemon()
    session_up(daemon, NODE_B, restart_time=0.3)
    announce(daemon, NODE_B, CIDR_B, EXTRA_B)
    both = {**OWN, CIDR_B: via(CIDR_B, NODE_B), EXTRA_B: via(EXTRA_B, NODE_B)}
    await until(daemon, both)
    down(daemon, NODE_B, "closing connection")
    session_up(daemon, NODE_B, restart_time=0.3)
    announce(daemon, NODE_B, CIDR_B)  # EXTRA_B not re-sent yet
    await quiet(0.6)  # twice the restart time
    assert routes(daemon) == both
    eor(daemon, NODE_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})


async def test_stale_path_timer_sweeps_when_no_eor_comes(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    daemon.sessions.stale_path_time = 0.3  # bgp.gracefulRestart.stalePathTime
    session_up(daemon, NODE_B, restart_time=0.2)
    announce(daemon, NODE_B, CIDR_B, EXTRA_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B), EXTRA_B: via(EXTRA_B, NODE_B)})
    down(daemon, NODE_B, "closing connection")
    session_up(daemon, NODE_B, restart_time=0.2)
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)}, timeout=1.5)
    assert daemon.rib.stale_count(NODE_B) == 0


async def test_a_max_prefix_shut_peer_does_not_hold_adoption(make_daemon: MakeDaemon) -> None:
    """After our restart adopted routes wait for every peer's End-of-RIB: a peer kroute
    keeps shut (max-prefix) will never send one and must not hold them until the timeout."""
    daemon = await make_daemon(
        kernel=previous_life(),
        restart_time=30,
        peers=[
            {
                "address": "10.0.0.254",
                "asn": 65000,
                "import": {"maxPrefix": 1, "allow": ["10.50.0.0/16"]},
            }
        ],
    )
    upstream = IPv4Address("10.0.0.254")
    session_up(daemon, upstream)
    announce(daemon, upstream, IPv4Network("10.50.1.0/24"), IPv4Network("10.50.2.0/24"))
    await quiet()
    assert daemon.peers[upstream].shutdown
    for peer in (NODE_B, NODE_C):
        session_up(daemon, peer)
        eor(daemon, peer)
    await quiet()
    assert daemon.adopted == {}
