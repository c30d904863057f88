"""Reconciler heartbeats (bgpd.health) and the /livez /readyz /healthz endpoints that
read them, on a daemon with the fake speaker and a fake kernel (no root)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bgpd.api.status import build_app
from bgpd.cluster.state import ClusterState
from bgpd.daemon import Daemon
from bgpd.health import Check, Health, render
from common.errors import KrouteError
from datapath.routes import RouteChanges
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.fakes.membership import FakeMembership
from tests.unit import test_metrics
from tests.unit.conftest import NODE_B, settle
from tests.unit.daemon_steps import down, session_up
from tests.unit.test_metrics import MakeDaemon


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fresh_registration_is_alive_but_not_ready() -> None:
    clock = FakeClock()
    health = Health(clock)
    health.register("kernel-routes", 90)
    assert health.liveness() == [Check("kernel-routes", True)]
    assert health.readiness() == [
        Check("kernel-routes", False, "first run not completed yet"),
    ]


def test_a_reconciler_that_never_completes_dies_after_its_timeout() -> None:
    clock = FakeClock()
    health = Health(clock)
    health.register("lb", 90)
    clock.now += 91
    assert not health.alive()
    assert health.liveness()[0].reason == "no completed run for 91s (limit 90s)"


def test_beats_keep_it_alive_and_silence_kills_it_with_the_last_error() -> None:
    clock = FakeClock()
    health = Health(clock)
    beat = health.register("kernel-routes", 10)
    other = health.register("advertisements", 10)
    for _ in range(5):
        clock.now += 9
        beat.beat()
        other.beat()
    assert health.alive()
    assert all(check.ok for check in health.readiness())
    with pytest.raises(RuntimeError), beat.track():
        raise RuntimeError("netlink socket closed")
    clock.now += 11
    other.beat()
    assert [c.ok for c in health.liveness()] == [True, False]  # sorted by name
    reason = health.liveness()[1].reason
    assert reason == (
        "no heartbeat for 11s (limit 10s); last error: RuntimeError: netlink socket closed"
    )
    assert beat.errors == 1
    beat.beat()
    assert health.alive()


def test_track_reports_durations_and_beats_only_on_success() -> None:
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    health = Health(clock, observe=lambda name, seconds: seen.append((name, seconds)))
    beat = health.register("lb", 5)
    with beat.track():
        pass
    assert beat.last_beat == clock.now and beat.errors == 0
    clock.now += 1
    with pytest.raises(ValueError), beat.track():
        raise ValueError("bad pool")
    assert beat.last_beat == clock.now - 1 and beat.errors == 1
    assert [name for name, _ in seen] == ["lb", "lb"]
    assert all(seconds >= 0 for _, seconds in seen)


def test_names_are_unique_and_timeouts_positive() -> None:
    health = Health(FakeClock())
    health.register("datapath", 30)
    with pytest.raises(KrouteError, match="'datapath' is already registered"):
        health.register("datapath", 30)
    with pytest.raises(KrouteError, match="timeout must be > 0"):
        health.register("other", 0)
    health.unregister("datapath")
    health.register("datapath", 30)


def test_render_is_the_kubernetes_api_server_format() -> None:
    good = [Check("a", True), Check("b", True)]
    bad = [Check("a", True), Check("b", False, "no heartbeat for 99s (limit 90s)")]
    assert render("livez", good, verbose=False) == (200, "ok\n")
    assert render("livez", good, verbose=True) == (200, "[+]a ok\n[+]b ok\nlivez check passed\n")
    assert render("readyz", bad, verbose=False) == (
        503,
        "[+]a ok\n[-]b failed: no heartbeat for 99s (limit 90s)\nreadyz check failed\n",
    )


# -- the endpoints on a daemon ---------------------------------------------------------

make_daemon = test_metrics.make_daemon  # the same fixture: fake speaker, an upstream peer


class BrokenKernel(FakeKernelRoutes):
    """A kernel interface that raises on every change (a broken netlink socket)."""

    def apply(self, changes: RouteChanges) -> object:  # type: ignore[override]
        raise OSError("netlink socket closed")


async def get(daemon: Daemon, path: str) -> tuple[int, str]:
    async with TestClient(TestServer(build_app(daemon, control=False))) as client:
        response = await client.get(path)
        return response.status, await response.text()


async def test_ready_after_the_first_reconcile_and_alive_with_peers_down(
    make_daemon: MakeDaemon,
) -> None:
    daemon = await make_daemon()
    assert await settle(lambda: daemon.ready)
    session_up(daemon, NODE_B)
    down(daemon, NODE_B, "peer reset")  # peers down is not a reason to restart kroute
    for path in ("/livez", "/healthz", "/readyz"):
        assert await get(daemon, path) == (200, "ok\n")
    status, body = await get(daemon, "/livez?verbose")
    assert status == 200
    assert body == "[+]advertisements ok\n[+]kernel-routes ok\n[+]lb ok\nlivez check passed\n"
    assert (await get(daemon, "/readyz?verbose"))[1].endswith("readyz check passed\n")


async def test_a_registered_reconciler_gates_readiness_and_liveness(
    make_daemon: MakeDaemon,
) -> None:
    daemon = await make_daemon()
    assert await settle(lambda: daemon.ready)
    real = daemon.health.clock
    offset = 0.0
    daemon.health.clock = lambda: real() + offset  # time moves only when the test says
    datapath = daemon.health.register("datapath", 10.0)  # the hook other modules use
    status, body = await get(daemon, "/readyz")
    assert status == 503
    assert "[-]datapath failed: first run not completed yet\n" in body
    assert body.endswith("readyz check failed\n")
    offset = 11.0
    status, body = await get(daemon, "/livez?verbose")
    assert status == 503
    assert "[-]datapath failed: no completed run for 11s (limit 10s)" in body
    offset = 0.0  # the others' last beats must not look stale either
    datapath.beat()
    assert (await get(daemon, "/healthz"))[0] == 200
    assert (await get(daemon, "/readyz"))[0] == 200


async def test_a_reconciler_that_keeps_failing_fails_livez_with_its_error(
    make_daemon: MakeDaemon,
) -> None:
    daemon = await make_daemon(kernel=BrokenKernel())
    kernel = next(b for b in daemon.health.heartbeats() if b.name == "kernel-routes")
    assert await settle(lambda: kernel.errors >= 1)
    assert (await get(daemon, "/readyz"))[0] == 503  # never completed a run
    real = daemon.health.clock
    daemon.health.clock = lambda: real() + 1000  # as if 1000 s passed
    status, body = await get(daemon, "/livez?verbose")
    assert status == 503
    assert "[-]kernel-routes failed: no completed run for 1000s (limit 90s); " in body
    assert "last error: OSError: netlink socket closed" in body
    assert daemon.reconcile_errors == kernel.errors


async def test_membership_beats_while_its_watch_runs(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    cluster = ClusterState(daemon.config)
    cluster.membership = FakeMembership()
    cluster.follow(daemon)
    try:
        beat = next(b for b in daemon.health.heartbeats() if b.name == "membership")
        assert beat.timeout == 30  # 3 x leaseTTL (10 s), at least 30 s
        assert await settle(lambda: beat.last_beat is not None)
        cluster._tasks[0].cancel()  # the watch dies
        assert await settle(lambda: beat.errors == 1, timeout=5)
        assert beat.last_error.startswith("the membership watch ended")
    finally:
        await cluster.close()
