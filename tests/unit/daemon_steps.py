"""Steps for driving bgpd.daemon.Daemon in unit tests: speaker events in (a session
coming up, announcements, withdrawals, End-of-RIB), the fake kernel's routes out."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network, IPv6Address

from bgpd.bgp.advertise import Advertisement
from bgpd.bgp.events import EndOfRib, PathAttributes, PeerOpen, PeerState, RoutesUpdate
from bgpd.daemon import Daemon
from datapath.routes import KernelRoute
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.unit.conftest import (
    CIDR_A,
    NODE_B,
    NODE_C,
    FakeSpeaker,
    settle,
)

Network = IPv4Network
# A second prefix node-b announces: inside the cluster's pod CIDRs (iBGP import default) and
# not ours.
EXTRA_B = IPv4Network("10.244.2.128/25")
ANYCAST = IPv4Network("10.97.0.0/24")  # inside a service CIDR: node-b and node-c both announce
LB_IP = IPv4Network("10.96.0.10/32")  # a LoadBalancer IP: outside every pod CIDR
OLD = IPv4Network("10.244.9.0/24")  # a route from a previous life nobody announces now
STRANGER = IPv4Address("10.9.9.9")

UPSTREAM = IPv4Address("10.0.0.254")
EXABGP_FORWARDING = frozenset({"ipv4 unicast", "ipv6 unicast"})


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


def open_message(
    peer: IPv4Address, restart_time: float | None, forwarding: frozenset[str] = EXABGP_FORWARDING
) -> PeerOpen:
    """The OPEN a peer sends; with graceful restart exabgp sets the Forwarding State bit of
    every family it has."""
    return PeerOpen(
        peer,
        str(peer),
        64512,
        9,
        restart_time,  # type: ignore[arg-type]
        forwarding if restart_time is not None else frozenset(),
    )


def session_up(daemon: Daemon, peer: IPv4Address, restart_time: float | None = 0.3) -> None:
    """What exabgp reports when a session comes up: the peer's OPEN, then state up."""
    daemon.handle_event(PeerState(peer, "connected"))
    daemon.handle_event(open_message(peer, restart_time))
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


def speaker_of(daemon: Daemon) -> FakeSpeaker:
    assert isinstance(daemon.speaker, FakeSpeaker)
    return daemon.speaker


def own_advertisements(daemon: Daemon) -> dict[IPv4Address, Advertisement | None]:
    """What the speaker was last told to send each cluster peer for our pod CIDR."""
    latest = speaker_of(daemon).latest
    return {peer: latest.get(peer, {}).get(CIDR_A) for peer in (NODE_B, NODE_C)}
