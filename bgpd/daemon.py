"""The asyncio wiring: speaker events -> observed state -> desired state -> reconcilers.

This is the only module that knows every part. It owns the peer table and the RIB,
keeps graceful-restart promises in both directions (a restarting peer's routes stay
as stale; our own routes adopted from the kernel at start stay until the peers have
told us what is still valid), and runs the kernel reconciler, level-triggered, in an
executor thread so netlink work never blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bgpd.config import Config
from bgpd.desired import desired_kernel_routes
from bgpd.events import EndOfRib, Event, PeerOpen, PeerState, RoutesUpdate
from bgpd.exabgp_conf import NeighborSpec, SpeakerSpec
from bgpd.rib import Rib, best_next_hops
from bgpd.speaker import EventHandler, ExaBGPSpeaker, Speaker
from datapath.routes import KernelRoute, KernelRouteReconciler, KernelRoutes

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SpeakerFactory = Callable[[SpeakerSpec, Path, EventHandler], Speaker]

RESYNC_INTERVAL = 30.0
STATE_NAMES = {"up": "established", "connected": "connect", "down": "idle"}


@dataclass
class PeerStatus:
    """What the daemon knows about one neighbor's session."""

    name: str
    address: IPAddress
    asn: int
    state: str = "idle"
    since: float | None = None
    info: str = ""
    restart_time: int | None = None
    eor_received: bool = False
    stale_timer: asyncio.TimerHandle | None = field(default=None, repr=False)


def speaker_spec(config: Config) -> SpeakerSpec:
    """The speaker's view of the config: every other cluster node, iBGP full mesh."""
    assert config.node.ip is not None and config.node.router_id is not None
    gr = config.bgp.graceful_restart
    return SpeakerSpec(
        router_id=config.node.router_id,
        local_address=config.node.ip,
        asn=config.bgp.asn,
        hold_time=config.bgp.hold_time,
        port=config.bgp.listen_port,
        restart_time=gr.restart_time if gr.enabled else None,
        neighbors=tuple(
            NeighborSpec(address=n.ip, asn=config.bgp.asn, name=n.name) for n in config.peers()
        ),
    )


class Daemon:
    def __init__(
        self,
        config: Config,
        kernel: KernelRoutes,
        speaker_factory: SpeakerFactory = ExaBGPSpeaker,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.started_at = clock()
        self.rib = Rib()
        self.peers: dict[IPAddress, PeerStatus] = {
            n.ip: PeerStatus(name=n.name, address=n.ip, asn=config.bgp.asn) for n in config.peers()
        }
        me = config.self_node()
        self.own_cidrs: tuple[Network, ...] = me.pod_cidrs if me else ()
        self.kernel = kernel
        self.reconciler = KernelRouteReconciler(kernel)
        self.kernel_routes: dict[Network, KernelRoute] = {}
        self.adopted: dict[Network, KernelRoute] = {}
        self.ready = False
        self.last_reconcile: float | None = None
        self.reconcile_errors = 0
        self.speaker = speaker_factory(
            speaker_spec(config), Path(config.run_dir), self.handle_event
        )
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._adoption_timer: asyncio.TimerHandle | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Adopt our routes from a previous run, start the speaker and the reconciler."""
        loop = asyncio.get_running_loop()
        self.adopted = await loop.run_in_executor(
            None, functools.partial(self.reconciler.actual, refresh=True)
        )
        if self.adopted:
            window = self._adoption_window()
            log.info("event=routes-adopted count=%d window=%ss", len(self.adopted), window)
            self._adoption_timer = loop.call_later(window, self._end_adoption, "timeout")
        if not self.peers:
            self._end_adoption("no-peers")
        self.speaker.set_advertisements(self.own_cidrs)
        await self.speaker.start()
        self._reconciler_task = asyncio.create_task(self._reconcile_loop(), name="reconcile")
        self._dirty.set()

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Start, serve until SIGTERM/SIGINT, then stop leaving kernel routes in place."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.start()
        if ready is not None:
            ready()
        await self._stop.wait()
        await self.stop()

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """Stop the speaker (exabgp closes sessions without NOTIFICATION, so peers keep
        our routes as stale) and leave the kernel routes for our next start to adopt."""
        self._reconciler_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reconciler_task
        for peer in self.peers.values():
            if peer.stale_timer is not None:
                peer.stale_timer.cancel()
        if self._adoption_timer is not None:
            self._adoption_timer.cancel()
        await self.speaker.stop()
        self.kernel.close()

    def _adoption_window(self) -> float:
        gr = self.config.bgp.graceful_restart
        return float(gr.restart_time if gr.enabled else max(self.config.bgp.hold_time, 10))

    def _end_adoption(self, why: str) -> None:
        if self._adoption_timer is not None:
            self._adoption_timer.cancel()
            self._adoption_timer = None
        if self.adopted:
            log.info("event=adoption-ended reason=%s", why)
            self.adopted = {}
            self._dirty.set()

    # -- events from the speaker ----------------------------------------------

    def handle_event(self, event: Event) -> None:
        if isinstance(event, PeerState):
            self._on_state(event)
        elif isinstance(event, PeerOpen):
            self._on_open(event)
        elif isinstance(event, RoutesUpdate):
            if event.peer in self.peers and self.rib.apply(event):
                self._dirty.set()
        elif isinstance(event, EndOfRib):
            self._on_eor(event)

    def _on_state(self, event: PeerState) -> None:
        peer = self.peers.get(event.peer)
        if peer is None:
            return
        state = STATE_NAMES[event.state]
        if state != peer.state:
            peer.since = self.clock()
        peer.state = state
        if event.state == "up":
            peer.info = "Established"
            peer.eor_received = False
        elif event.state == "down":
            peer.info = event.reason
            self._on_down(peer, event.reason)

    def _on_down(self, peer: PeerStatus, reason: str) -> None:
        """RFC 4724: a session that closed without NOTIFICATION from a peer that does
        graceful restart keeps its routes as stale; anything else loses them now."""
        if peer.stale_timer is not None:
            # Already waiting for this peer's restart (reconnect attempts fail too): what
            # it re-sent meanwhile turns stale again, the deadline stays.
            self.rib.mark_stale(peer.address)
            return
        graceful = peer.restart_time is not None and not reason.startswith("notification")
        if graceful and self.rib.received_count(peer.address):
            assert peer.restart_time is not None
            self.rib.mark_stale(peer.address)
            loop = asyncio.get_running_loop()
            peer.stale_timer = loop.call_later(peer.restart_time, self._stale_expired, peer)
            log.info(
                "event=peer-restarting peer=%s stale=%d restart_time=%ss",
                peer.address,
                self.rib.stale_count(peer.address),
                peer.restart_time,
            )
        elif self.rib.clear(peer.address):
            log.info("event=peer-routes-removed peer=%s reason=%r", peer.address, reason)
            self._dirty.set()

    def _stale_expired(self, peer: PeerStatus) -> None:
        peer.stale_timer = None
        if self.rib.drop_stale(peer.address):
            log.info("event=stale-routes-expired peer=%s", peer.address)
            self._dirty.set()

    def _on_open(self, event: PeerOpen) -> None:
        peer = self.peers.get(event.peer)
        if peer is None:
            return
        peer.restart_time = event.restart_time
        self.rib.set_router_id(event.peer, event.router_id)

    def _on_eor(self, event: EndOfRib) -> None:
        peer = self.peers.get(event.peer)
        if peer is None:
            return
        peer.eor_received = True
        if peer.stale_timer is not None:
            peer.stale_timer.cancel()
            peer.stale_timer = None
        if self.rib.drop_stale(event.peer):
            self._dirty.set()
        if self.adopted and all(p.eor_received for p in self.peers.values()):
            self._end_adoption("all-peers-eor")

    # -- kernel reconciliation -------------------------------------------------

    def desired_routes(self) -> dict[Network, KernelRoute]:
        assert self.config.node.ip is not None
        learned = best_next_hops(self.rib.paths(), exclude_next_hops=[self.config.node.ip])
        return desired_kernel_routes(self.own_cidrs, learned, self.adopted)

    async def _reconcile_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_full = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=RESYNC_INTERVAL)
            self._dirty.clear()
            full = time.monotonic() - last_full >= RESYNC_INTERVAL
            if full:
                last_full = time.monotonic()
            try:
                desired = self.desired_routes()
                result = await loop.run_in_executor(
                    None, functools.partial(self.reconciler.reconcile, desired, full=full)
                )
            except Exception:
                self.reconcile_errors += 1
                log.exception("event=reconcile-failed")
                await asyncio.sleep(1.0)
                self._dirty.set()
                continue
            self.kernel_routes = desired
            for route, error in result.failed:
                self.kernel_routes.pop(route.prefix, None)
                log.debug("event=route-not-installed route=%s error=%r", route, error)
            self.last_reconcile = self.clock()
            self.ready = True
