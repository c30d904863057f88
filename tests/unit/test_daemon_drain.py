"""Drain through bgpd.daemon.Daemon: GRACEFUL_SHUTDOWN (RFC 8326) then withdraw, undrain,
and the drain state kept across restarts."""

from __future__ import annotations

from pathlib import Path

from bgpd.bgp.advertise import GRACEFUL_SHUTDOWN, Advertisement
from tests.unit.conftest import (
    CIDR_A,
    CIDR_B,
    NODE_B,
    NODE_C,
    MakeDaemon,
    settle,
)
from tests.unit.daemon_steps import (
    OWN,
    announce,
    own_advertisements,
    quiet,
    routes,
    session_up,
    speaker_of,
    until,
    via,
)


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
