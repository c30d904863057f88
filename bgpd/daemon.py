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
from collections.abc import Callable, Mapping
from pathlib import Path

from bgpd.bgp.advertise import PeerAdvertisements, Reflector, desired_advertisements
from bgpd.bgp.drain import Drain
from bgpd.bgp.events import EndOfRib, Event, PeerOpen, PeerState, RoutesUpdate
from bgpd.bgp.exabgp_conf import SpeakerSpec
from bgpd.bgp.peers import resolve_peers
from bgpd.bgp.rib import Path as RibPath
from bgpd.bgp.rib import Rib, best_next_hops
from bgpd.bgp.sessions import PeerStatus, Sessions
from bgpd.bgp.speaker import EventHandler, ExaBGPSpeaker, Speaker, SpeakerConfig
from bgpd.cluster.state import ClusterState
from bgpd.config.model import Config
from bgpd.config.peers import PrefixKind
from bgpd.health import Health, reconcile_histogram
from bgpd.lb.allocation import LoadBalancers, host_prefix
from bgpd.lb.store import LbStore
from bgpd.lb.sync import LbSync
from bgpd.reconcile.datapath import DatapathSync
from bgpd.reconcile.desired import desired_kernel_routes
from bgpd.reconcile.overlay import OverlayRouting
from bgpd.reload import Plan, plan
from bgpd.reload import reload as reload_config
from datapath.loopback import LoopbackAddresses
from datapath.routes import KernelRoute, KernelRouteReconciler, KernelRoutes
from lbipam import Pool

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SpeakerFactory = Callable[[SpeakerSpec, Path, EventHandler], Speaker]

RESYNC_INTERVAL = 30.0
HEARTBEAT_TIMEOUT = 3 * RESYNC_INTERVAL  # an idle reconcile loop still runs every 30 s
KERNEL_RETRY = 5.0  # seconds before routes the kernel refused are tried again


class Daemon:
    def __init__(
        self,
        config: Config,
        kernel: KernelRoutes,
        speaker_factory: SpeakerFactory = ExaBGPSpeaker,
        *,
        clock: Callable[[], float] = time.time,
        config_path: str | None = None,
        cluster: ClusterState | None = None,
        loopback: LoopbackAddresses,
        datapath: DatapathSync | None = None,
        routing: OverlayRouting | None = None,
        lb_store: LbStore,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.cluster = cluster
        self.clock = clock
        self.started_at = clock()
        self.rib = Rib()
        self.lb = LoadBalancers(Path(config.run_dir) / "lbipam.json", config.node.name)
        self.loopback = loopback
        self.datapath = datapath
        self.routing = routing
        self._dirty = asyncio.Event()
        self.lb_sync = LbSync(self.lb, lb_store, self._dirty.set, clock)
        first = plan(config, None)
        self.sessions = Sessions(
            first.peers,
            self.rib,
            first.local,
            on_change=self._dirty.set,
            teardown=self._teardown,
            clock=clock,
            stale_path_time=config.bgp.graceful_restart.stale_path_time,
        )
        self.peers: dict[IPAddress, PeerStatus] = self.sessions.peers
        self._use(first)
        self.advertised: PeerAdvertisements = {}
        self._drain = Drain(Path(config.run_dir) / "drain-state", self._dirty.set)
        self.kernel = kernel
        self.reconciler = KernelRouteReconciler(kernel)
        self.kernel_routes: dict[Network, KernelRoute] = {}
        self.kernel_failures: dict[Network, str] = {}
        self.adopted: dict[Network, KernelRoute] = {}
        self.ready = False
        self.last_reconcile: float | None = None
        self.reconcile_duration = reconcile_histogram()
        self.health = Health(
            observe=lambda name, seconds: self.reconcile_duration.labels(name).observe(seconds)
        )
        self._beat_lb = self.health.register("lb", HEARTBEAT_TIMEOUT)
        self._beat_advertise = self.health.register("advertisements", HEARTBEAT_TIMEOUT)
        self._beat_kernel = self.health.register("kernel-routes", HEARTBEAT_TIMEOUT)
        self._datapath_started: asyncio.Future[None] | None = None
        self._beat_datapath = (
            self.health.register("datapath", HEARTBEAT_TIMEOUT) if datapath is not None else None
        )
        self.speaker = speaker_factory(first.speaker, Path(config.run_dir), self.handle_event)
        self._stop = asyncio.Event()
        self._adoption_timer: asyncio.TimerHandle | None = None
        self._reloading = asyncio.Lock()
        self._reloads: set[asyncio.Task[list[str]]] = set()

    def _use(self, plan: Plan) -> None:
        """What follows from the config alone: our prefixes and reflector identity."""
        self.own_cidrs: tuple[Network, ...] = plan.own_cidrs
        self._config_prefixes: dict[Network, PrefixKind] = dict(plan.config_prefixes)
        self.local_prefixes = dict(self._config_prefixes)
        self.lb.configure(plan.lb_pools, plan.lb_services, plan.node_names)
        self.cluster_id = plan.cluster_id

    async def reload(self) -> list[str]:
        """Re-read the config file (SIGHUP, `kroute reload`); errors refuse it. One
        reload at a time; each sees the state the one before it left."""
        if self.config_path is None:
            return ["this daemon was started without a config file; nothing to reload"]
        async with self._reloading:
            return await reload_config(self, self.config_path)

    def _reload_soon(self) -> None:
        """SIGHUP: the reload runs as a task on the loop, not inside the handler."""
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def prepare(self, config: Config) -> Callable[[], None]:
        """Everything a new config needs that can fail (peers, exabgp.conf with its
        passwords) with nothing changed; the callable applies it, speaker first (its
        file write is the one step that can still fail, and then nothing changed)."""
        new = plan(config, self._lb_pools())
        prepared = self.speaker.prepare(new.speaker)
        return functools.partial(self._apply, new, prepared)

    def _apply(self, new: Plan, prepared: SpeakerConfig) -> None:
        self.speaker.reconfigure(prepared)
        self.config = new.config
        self._use(new)
        self.sessions.local = new.local
        self.sessions.stale_path_time = new.config.bgp.graceful_restart.stale_path_time
        self.sessions.set_peers(new.peers)
        self._dirty.set()

    def reconfigure(self, config: Config) -> None:
        """Apply a new config (membership change) without a restart: peers added,
        removed or changed, the others undisturbed. The caller validated it; a failure
        to prepare it raises and changes nothing."""
        self.prepare(config)()

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Adopt our routes from a previous run, start the speaker and the reconciler."""
        loop = asyncio.get_running_loop()
        if self.datapath is not None:
            # Compiling takes seconds on a busy node: BGP must not wait for it, or a
            # restart outlasts the peers' graceful-restart time. The pinned programs
            # keep forwarding meanwhile; datapath syncs start once it is loaded.
            started = loop.run_in_executor(None, self.datapath.start)
            started.add_done_callback(self._datapath_loaded)
            self._datapath_started = started
        self.adopted = await loop.run_in_executor(
            None, functools.partial(self.reconciler.actual, refresh=True)
        )
        if self.adopted:
            window = self._adoption_window()
            log.info("event=routes-adopted count=%d window=%ss", len(self.adopted), window)
            self._adoption_timer = loop.call_later(window, self._end_adoption, "timeout")
        if not self.peers:
            self._end_adoption("no-peers")
        self.lb_sync.start()
        self._advertise(self.rib.paths())
        await self.speaker.start()
        self._reconciler_task = asyncio.create_task(self._reconcile_loop(), name="reconcile")
        self._dirty.set()

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Start, serve until SIGTERM/SIGINT, then stop leaving kernel routes in place."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        await self.start()
        if ready is not None:
            ready()
        await self._stop.wait()
        await self.stop()

    def request_reconcile(self) -> None:
        self._dirty.set()

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """Stop the speaker (exabgp closes sessions without NOTIFICATION, so peers keep
        our routes as stale) and leave the kernel routes for our next start to adopt."""
        self._reconciler_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reconciler_task
        for task in list(self._reloads):
            task.cancel()
        self.sessions.cancel_timers()
        if self._adoption_timer is not None:
            self._adoption_timer.cancel()
        self._drain.close()
        await self.lb_sync.stop()
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
            self.sessions.on_state(event)
        elif isinstance(event, PeerOpen):
            self.sessions.on_open(event)
            self._dirty.set()  # router IDs matter to reflection
        elif isinstance(event, RoutesUpdate):
            self.sessions.on_update(event)
        elif isinstance(event, EndOfRib):
            self.sessions.on_eor(event)
            if self.adopted and self.sessions.all_eor():
                self._end_adoption("all-peers-eor")

    def session_held(self, ip: str) -> bool:
        """Established, or restarting with its routes held by graceful restart."""
        status = self.peers.get(ipaddress.ip_address(ip))
        return status is not None and (
            status.state == "established" or status.stale_timer is not None
        )

    def _teardown(self, peer: IPAddress, cease_subcode: int) -> None:
        self.speaker.teardown(peer, cease_subcode)

    # -- drain -------------------------------------------------------------------

    @property
    def drain_state(self) -> str:
        return self._drain.state

    def drain(self, wait: float) -> None:
        self._drain.start(wait)

    def undrain(self) -> None:
        self._drain.stop()

    # -- advertisements ------------------------------------------------------------

    def desired_advertisements(self, paths: Mapping[Network, list[RibPath]]) -> PeerAdvertisements:
        reflector = None
        if self.cluster_id is not None:
            router_ids = {a: self.rib.peer(a).router_id for a in self.peers}
            reflector = Reflector(self.cluster_id, router_ids)
        return desired_advertisements(
            tuple(p.peer for p in self.peers.values()),
            self.local_prefixes,
            paths,
            local_asn=self.config.bgp.asn,
            reflector=reflector,
            draining=self.drain_state == "draining",
            withdrawn=self.drain_state == "drained",
        )

    def _allocate_load_balancers(self, paths: Mapping[Network, list[RibPath]]) -> None:
        """Allocate LB IPs (never one the network routes) and serve ours."""
        in_use = [prefix for prefix, candidates in paths.items() if any(p.ebgp for p in candidates)]
        self.lb.set_in_use(in_use)  # a change starts an allocation round (lb_sync)
        self._import_load_balancers()
        self.local_prefixes = dict(self._config_prefixes)
        for ip in self.lb.view.served if self.lb.view is not None else ():
            self.local_prefixes[host_prefix(ip)] = "loadBalancerIP"

    def _lb_pools(self) -> tuple[Pool, ...] | None:
        """The pools in effect (config and store); None before the first round."""
        return self.lb.view.round.pools if self.lb.view is not None else None

    def _import_load_balancers(self) -> None:
        """Nodes accept each other's LB IPs from every pool in effect, those applied to
        the store too (the iBGP allow lists were built from the config file's)."""
        peers = resolve_peers(self.config, self._lb_pools())
        if peers != tuple(status.peer for status in self.peers.values()):
            self.sessions.set_peers(peers)

    @property
    def reconcile_errors(self) -> int:
        return sum(beat.errors for beat in self.health.heartbeats())

    def _advertise(self, paths: Mapping[Network, list[RibPath]]) -> None:
        """`paths` is the RIB walked once per reconcile (it is the costly part)."""
        with self._beat_lb.track():
            self._allocate_load_balancers(paths)
        with self._beat_advertise.track():
            self.advertised = self.desired_advertisements(paths)
            self.speaker.set_advertisements(self.advertised)

    # -- kernel reconciliation -------------------------------------------------

    def desired_routes(self, paths: Mapping[Network, list[RibPath]]) -> dict[Network, KernelRoute]:
        assert self.config.node.ip is not None
        learned = best_next_hops(paths, exclude_next_hops=[self.config.node.ip])
        return desired_kernel_routes(self.own_cidrs, learned, self.adopted, self.local_prefixes)

    def _datapath_loaded(self, started: asyncio.Future[None]) -> None:
        error = None if started.cancelled() else started.exception()
        if error is not None:
            log.error("event=datapath-start-failed error=%r", error)
            if self._beat_datapath is not None:
                self._beat_datapath.failed(f"datapath start failed: {error!r}")
        self._dirty.set()

    async def _sync_datapath(self) -> None:
        """BPF maps and programs follow the kernel routes just installed."""
        if self.datapath is None or self._beat_datapath is None:
            return
        started = self._datapath_started
        if started is None or not started.done():
            self._beat_datapath.beat()  # still loading: nothing to sync yet
            return
        if started.cancelled() or started.exception() is not None:
            return  # failed at start (logged; /livez reports it)
        routes = list(self.kernel_routes.values())
        sync = functools.partial(self.datapath.sync, routes, self.own_cidrs)
        loop = asyncio.get_running_loop()
        try:
            with self._beat_datapath.track():
                await loop.run_in_executor(None, sync)
            self.datapath.last_error = None
        except Exception as exc:
            self.datapath.last_error = str(exc)
            log.exception("event=datapath-sync-failed")
            loop.call_later(KERNEL_RETRY, self._dirty.set)

    async def _reconcile_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_full = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                # not wait_for: on 3.11 it can swallow the cancel of stop() when the event
                # was set at the same moment, and stop() would never return
                async with asyncio.timeout(RESYNC_INTERVAL):
                    await self._dirty.wait()
            self._dirty.clear()
            full = time.monotonic() - last_full >= RESYNC_INTERVAL
            if full:
                last_full = time.monotonic()
            try:
                paths = self.rib.paths()
                self._advertise(paths)
                with self._beat_kernel.track():
                    desired = self.desired_routes(paths)
                    if self.routing is not None:  # native or over the VXLAN overlay
                        plan = functools.partial(self.routing.apply, self.config, desired)
                        desired = await loop.run_in_executor(None, plan)
                    result = await loop.run_in_executor(
                        None, functools.partial(self.reconciler.reconcile, desired, full=full)
                    )
            except Exception:
                log.exception("event=reconcile-failed")
                await asyncio.sleep(1.0)
                self._dirty.set()
                continue
            served = self.lb.view.served if self.lb.view is not None else ()
            try:
                await loop.run_in_executor(None, self.loopback.sync, served)
            except OSError as exc:
                self._beat_lb.failed(f"loopback sync: {exc}")
                log.exception("event=loopback-sync-failed")
            self.kernel_routes = desired
            self.kernel_failures = {route.prefix: error for route, error in result.failed}
            for route, error in result.failed:
                self.kernel_routes.pop(route.prefix, None)
                log.debug("event=route-not-installed route=%s error=%r", route, error)
            await self._sync_datapath()
            if result.failed:
                loop.call_later(KERNEL_RETRY, self._dirty.set)
            self.last_reconcile = self.clock()
            self.ready = True
