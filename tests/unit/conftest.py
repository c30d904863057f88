"""Unit-test fixtures: a fake BGP speaker, a small cluster config, and the real
ExaBGP 5.0.15 JSON lines the parsers are tested against."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bgpd.bgp.advertise import PeerAdvertisements
from bgpd.bgp.events import Event
from bgpd.bgp.exabgp_conf import SpeakerSpec, render_config
from bgpd.bgp.speaker import SpeakerConfig, SpeakerInfo
from bgpd.config.model import Config, parse_config
from bgpd.daemon import Daemon
from common.errors import PeerError
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.fakes.lb_store import MemoryLbStore
from tests.fakes.loopback import FakeLoopback

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# -- lines captured from exabgp 5.0.15 ----------------------------------------------

STATE_DOWN_LINE = (
    '{ "exabgp": "5.0.0", "time": 1795459514.59, "host" : "vm", "pid" : 3923, "ppid" : 3915, '
    '"counter": 1, "type": "state", "neighbor": { "address": { "local": "10.77.0.1", '
    '"peer": "10.77.0.2" }, "asn": { "local": 64512, "peer": 64512 }, '
    '"router-id": "10.77.0.1" , "state": "down", "reason": "notification sent (4,0)" } }'
)

OPEN_LINE = (
    '{ "exabgp": "5.0.0", "time": 1795459514.59, "host" : "vm", "pid" : 3923, "ppid" : 3915, '
    '"counter": 4, "type": "open", "neighbor": { "address": { "local": "10.77.0.1", '
    '"peer": "10.77.0.2" }, "asn": { "local": 64512, "peer": 64512 }, '
    '"router-id": "10.77.0.1" , "direction": "receive", "open": { "version": 4, '
    '"asn": 64512, "hold_time": 9, "router_id": "10.77.0.2", "capabilities": { '
    '"1": { "name": "multiprotocol", "families": [ "ipv4/unicast" ] }, '
    '"65": { "name": "asn4", "asn4": 64512 }, '
    '"64": { "name": "graceful restart", "time": 9, '
    '"address-family-flags": { "ipv4/unicast": [ "restart" ] }, '
    '"restart-flags": [ "forwarding" ]  }, '
    '"6": { "name": "extended-message", "size": 65535 } } } } }'
)

_UPDATE_HEAD = (
    '{ "exabgp": "5.0.0", "time": 1795459514.77, "host" : "vm", "pid" : 3923, "ppid" : 3915, '
    '"counter": 18, "type": "update", "neighbor": { "address": { "local": "10.77.0.2", '
    '"peer": "10.77.0.1" }, "asn": { "local": 64512, "peer": 64512 }, '
    '"router-id": "10.77.0.2" , "direction": "receive", "message": '
)

UPDATE_LINE = (
    _UPDATE_HEAD + '{ "update": { "attribute": { "origin": "igp", "local-preference": 100 }, '
    '"announce": { "ipv4 unicast": { "10.77.0.1": [ { "nlri": "10.244.1.0/24" }, '
    '{ "nlri": "10.244.8.0/24" } ] } } } } } }'
)

WITHDRAW_LINE = (
    _UPDATE_HEAD + '{ "update": { "withdraw": { "ipv4 unicast": [ { "nlri": "10.244.8.0/24" } ] '
    "} } } } }"
)

EOR_LINE = _UPDATE_HEAD + '{ "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }'

FULL_ATTRIBUTES_LINE = (
    _UPDATE_HEAD + '{ "update": { "attribute": { "origin": "incomplete", "as-path": { '
    '"0": { "element": "as-sequence", "value": [ 65000, 65001 ] } }, "med": 5, '
    '"local-preference": 200, "community": [ [ 65535, 0 ], [ 64512, 7 ] ], '
    '"large-community": [ [ 64512, 1, 2 ] ], "originator-id": "10.0.0.9", '
    '"cluster-list": [ "10.0.0.1" ] }, '
    '"announce": { "ipv4 unicast": { "10.77.0.1": [ { "nlri": "10.244.1.0/24" } ] } } } } } }'
)

NOTIFICATION_SHUTDOWN_LINE = (
    '{ "exabgp": "5.0.0", "time": 1795459520.01, "host" : "vm", "pid" : 3923, "ppid" : 3915, '
    '"counter": 30, "type": "notification", "notification": "shutdown" }'
)

REAL_LINES = (
    STATE_DOWN_LINE,
    OPEN_LINE,
    UPDATE_LINE,
    WITHDRAW_LINE,
    EOR_LINE,
    FULL_ATTRIBUTES_LINE,
    NOTIFICATION_SHUTDOWN_LINE,
)

# -- a three-node cluster seen from node-a ----------------------------------------------

NODE_A = ipaddress.IPv4Address("10.0.0.1")
NODE_B = ipaddress.IPv4Address("10.0.0.2")
NODE_C = ipaddress.IPv4Address("10.0.0.3")
CIDR_A = ipaddress.IPv4Network("10.244.1.0/24")
CIDR_B = ipaddress.IPv4Network("10.244.2.0/24")
CIDR_C = ipaddress.IPv4Network("10.244.3.0/24")


def cluster_data(
    run_dir: Path | str = "/nonexistent/kroute", restart_time: int = 1
) -> dict[str, Any]:
    """Config data for node-a in a three-node cluster (what a YAML file would hold)."""
    return {
        "node": {"name": "node-a"},
        "bgp": {
            "asn": 64512,
            "holdTime": 9,
            "gracefulRestart": {"enabled": True, "restartTime": restart_time},
        },
        "cluster": {
            "nodes": [
                {"name": "node-a", "ip": str(NODE_A), "podCIDRs": [str(CIDR_A)]},
                {"name": "node-b", "ip": str(NODE_B), "podCIDRs": [str(CIDR_B)]},
                {"name": "node-c", "ip": str(NODE_C), "podCIDRs": [str(CIDR_C)]},
            ]
        },
        "status": {"listen": "", "socket": str(Path(run_dir) / "kroute.sock")},
        "runDir": str(run_dir),
    }


@pytest.fixture
def cluster_config(tmp_path: Path) -> Config:
    return parse_config(cluster_data(tmp_path), host_defaults=True)


# -- the fake speaker ----------------------------------------------------------------


class FakeSpeaker:
    """In-memory `bgpd.bgp.speaker.Speaker`: records what the daemon asks it to advertise (per
    peer, with attributes) and which sessions it tears down, and lets a test inject events
    as exabgp would deliver them."""

    instances: list[FakeSpeaker] = []  # noqa: RUF012 - a registry tests read back

    def __init__(self, spec: SpeakerSpec, run_dir: Path, on_event: Callable[[Event], None]):
        self.spec = spec
        self.run_dir = run_dir
        self.on_event = on_event
        self.advertisements: list[PeerAdvertisements] = []
        self.teardowns: list[tuple[IPAddress, int]] = []
        self.started = False
        self.stopped = False
        self.config_text = ""  # exabgp.conf as the real speaker would have written it
        self.write_error: str | None = None  # set: reconfigure fails as a full disk would
        FakeSpeaker.instances.append(self)

    async def start(self) -> None:
        self.config_text = self.prepare(self.spec).text
        self.started = True

    def set_advertisements(self, advertisements: PeerAdvertisements) -> None:
        self.advertisements.append({peer: dict(advs) for peer, advs in advertisements.items()})

    def teardown(self, peer: IPAddress, cease_subcode: int) -> None:
        self.teardowns.append((peer, cease_subcode))

    def prepare(self, spec: SpeakerSpec) -> SpeakerConfig:
        """The real rendering (it reads the password files), written nowhere."""
        return SpeakerConfig(spec, render_config(spec, str(self.run_dir / "exabgp.sock")))

    def reconfigure(self, config: SpeakerConfig) -> None:
        if self.write_error is not None:
            raise PeerError(f"runDir: cannot write exabgp.conf: {self.write_error}")
        self.spec, self.config_text = config.spec, config.text

    @property
    def latest(self) -> PeerAdvertisements:
        """The last advertisements the daemon asked for, per peer."""
        return self.advertisements[-1] if self.advertisements else {}

    @property
    def advertised(self) -> frozenset[Network]:
        """Every prefix advertised to any peer in the latest call."""
        return frozenset(prefix for advs in self.latest.values() for prefix in advs)

    def info(self) -> SpeakerInfo:
        running = self.started and not self.stopped
        return SpeakerInfo(
            running=running,
            pid=4242 if running else None,
            restarts=0,
            malformed_lines=0,
            command_errors=0,
        )

    async def stop(self) -> None:
        self.stopped = True

    def emit(self, event: Event) -> None:
        self.on_event(event)


@pytest.fixture
def fake_speaker_class() -> type[FakeSpeaker]:
    FakeSpeaker.instances.clear()
    return FakeSpeaker


StartDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(fake_speaker_class: type[FakeSpeaker]) -> AsyncIterator[StartDaemon]:
    """`start(data, kernel=None, config_path=None)`: a started Daemon on config `data` with
    the fake speaker, a fake loopback and `kernel` (an empty FakeKernelRoutes by default);
    all are stopped at teardown."""
    started: list[Daemon] = []

    async def start(
        data: dict[str, Any], kernel: FakeKernelRoutes | None = None, config_path: str | None = None
    ) -> Daemon:
        daemon = Daemon(
            parse_config(data, host_defaults=True),
            kernel or FakeKernelRoutes(),
            speaker_factory=fake_speaker_class,
            config_path=config_path,
            loopback=FakeLoopback(),
            lb_store=MemoryLbStore(),
        )
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await stop_bounded(daemon)


async def stop_bounded(daemon: Daemon, timeout: float = 2.0) -> bool:
    """`daemon.stop()`, cancelled again when it does not return within `timeout` (see
    test_stop_right_after_a_change_does_not_hang); True when it returned by itself."""
    task = asyncio.create_task(daemon.stop())
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
    # a daemon whose reconcile task died re-raises here; the test already failed
    with contextlib.suppress(BaseException):
        await task
    return bool(done)


async def settle(
    condition: Callable[[], bool], timeout: float = 2.0, interval: float = 0.005
) -> bool:
    """Poll until `condition()` holds or `timeout` passes; returns the last result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(interval)
    return condition()


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
