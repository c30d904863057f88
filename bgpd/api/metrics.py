"""`GET /metrics`: the daemon's state in the Prometheus text format.

Everything is read from the daemon's public state at scrape time by one custom
collector (no I/O: IPAM usage is what the daemon last read from its store), in a
registry of the daemon's own, never prometheus_client's global one. Every name starts
with `kroute_`, values are in base units (seconds), counters end in `_total`. The one
thing the daemon records for metrics alone is the reconcile duration histogram, per
reconciler (fed by the heartbeats in bgpd.health, which makes it).

Other parts of kroute add their own families with `add_collector(daemon, collector)`
(the datapath's packet and map counters, for one): a prometheus_client Collector whose
family names start with `kroute_`, scraped on the same endpoint.
"""

from __future__ import annotations

import importlib.metadata
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ipam.allocator import usage

if TYPE_CHECKING:
    from bgpd.daemon import Daemon

PREFIX = "kroute_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_registries: weakref.WeakKeyDictionary[Daemon, CollectorRegistry] = weakref.WeakKeyDictionary()


def version() -> str:
    try:
        return importlib.metadata.version("kroute")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _family(version: int) -> str:
    return "ipv4" if version == 4 else "ipv6"


class DaemonCollector(Collector):
    """Builds every `kroute_` metric family from one daemon's state on each scrape."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def collect(self) -> Iterable[Metric]:
        yield from self._build()
        yield from self._bgp()
        yield from self._kernel()
        yield from self._reconcilers()
        yield from self._speaker()
        yield from self._drain()
        yield from self._ipam()
        yield from self._lb()

    def _build(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "kroute_build_info", "kroute's version; always 1.", labels=["version"]
        )
        info.add_metric([version()], 1)
        yield info

    def _bgp(self) -> Iterator[Metric]:
        daemon = self._daemon
        now = daemon.clock()
        up = _gauge(
            "kroute_bgp_session_up",
            "1 when the BGP session is established.",
            "peer",
            "peer_asn",
            "type",
        )
        uptime = _gauge(
            "kroute_bgp_session_established_seconds",
            "Seconds since the session was established; 0 when it is not.",
            "peer",
        )
        received = _gauge(
            "kroute_bgp_prefixes_received",
            "Prefixes the peer announces to us now, before import policy (stale included).",
            "peer",
        )
        accepted = _gauge(
            "kroute_bgp_prefixes_accepted",
            "Prefixes from the peer that import policy accepted (stale included).",
            "peer",
        )
        stale = _gauge(
            "kroute_bgp_prefixes_stale",
            "Prefixes from the peer kept as stale (graceful restart).",
            "peer",
        )
        advertised = _gauge(
            "kroute_bgp_prefixes_advertised",
            "Prefixes advertised to the peer; 0 when the session is down.",
            "peer",
        )
        updates = _counter(
            "kroute_bgp_updates_received", "UPDATE messages received from the peer.", "peer"
        )
        rejected = _counter(
            "kroute_bgp_routes_rejected",
            "Routes from the peer refused by import policy, by reason.",
            "peer",
            "reason",
        )
        peers = sorted(daemon.peers.values(), key=lambda p: (p.address.version, p.address))
        for status in peers:
            name = status.peer.name or str(status.address)
            established = status.state == "established"
            up.add_metric([name, str(status.peer.asn), status.peer.type], int(established))
            since = status.since
            seconds = max(now - since, 0.0) if established and since is not None else 0.0
            uptime.add_metric([name], seconds)
            kept = daemon.rib.received_count(status.address)
            refused = len(daemon.rib.peer(status.address).rejected)
            received.add_metric([name], kept + refused)
            accepted.add_metric([name], kept)
            stale.add_metric([name], daemon.rib.stale_count(status.address))
            count = len(daemon.advertised.get(status.address, {})) if established else 0
            advertised.add_metric([name], count)
            updates.add_metric([name], status.updates)
            for reason, n in sorted(status.rejected.items()):
                rejected.add_metric([name, reason], n)
        yield from (up, uptime, received, accepted, stale, advertised, updates, rejected)

    def _kernel(self) -> Iterator[Metric]:
        daemon = self._daemon
        kinds = Counter(
            "blackhole" if route.is_blackhole else "unicast"
            for route in daemon.kernel_routes.values()
        )
        routes = GaugeMetricFamily(
            "kroute_kernel_routes", "Routes kroute holds in the kernel, by type.", labels=["type"]
        )
        for kind in ("unicast", "blackhole"):
            routes.add_metric([kind], kinds[kind])
        yield routes
        yield GaugeMetricFamily(
            "kroute_kernel_route_failures",
            "Routes the kernel refused in the last reconcile (retried).",
            value=len(daemon.kernel_failures),
        )
        yield CounterMetricFamily(
            "kroute_kernel_route_operation_failures",
            "Route operations the kernel refused since start.",
            value=daemon.reconciler.failures_total,
        )
        yield CounterMetricFamily(
            "kroute_kernel_reconcile_runs",
            "Kernel reconcile runs since start.",
            value=daemon.reconciler.runs_total,
        )
        last = daemon.last_reconcile
        if last is not None:
            yield GaugeMetricFamily(
                "kroute_last_reconcile_timestamp_seconds",
                "Unix time of the last completed reconcile.",
                value=last,
            )

    def _reconcilers(self) -> Iterator[Metric]:
        """Per reconciler (bgpd.health): errors, heartbeat age and health, durations."""
        health = self._daemon.health
        now = health.clock()
        errors = _counter(
            "kroute_reconcile_errors", "Reconcile runs that failed, by reconciler.", "reconciler"
        )
        age = _gauge(
            "kroute_reconciler_heartbeat_age_seconds",
            "Seconds since the reconciler last completed a run (since start if never).",
            "reconciler",
        )
        healthy = _gauge(
            "kroute_reconciler_healthy",
            "1 while the reconciler's heartbeat is within its timeout (what /livez checks).",
            "reconciler",
        )
        for beat in health.heartbeats():
            errors.add_metric([beat.name], beat.errors)
            since = beat.last_beat if beat.last_beat is not None else beat.registered_at
            age.add_metric([beat.name], max(now - since, 0.0))
            healthy.add_metric([beat.name], int(beat.liveness(now).ok))
        yield from (errors, age, healthy)
        for histogram in self._daemon.reconcile_duration.collect():
            # the text format would show `_created` as a gauge family of its own
            histogram.samples = [s for s in histogram.samples if not s.name.endswith("_created")]
            yield histogram

    def _speaker(self) -> Iterator[Metric]:
        info = self._daemon.speaker.info()
        yield GaugeMetricFamily(
            "kroute_exabgp_up", "1 while the exabgp process runs.", value=int(info.running)
        )
        yield CounterMetricFamily(
            "kroute_exabgp_restarts", "Times exabgp was restarted.", value=info.restarts
        )
        yield CounterMetricFamily(
            "kroute_exabgp_malformed_lines",
            "Lines from exabgp that could not be parsed.",
            value=info.malformed_lines,
        )
        yield CounterMetricFamily(
            "kroute_exabgp_command_errors",
            "Commands exabgp answered with an error.",
            value=info.command_errors,
        )

    def _drain(self) -> Iterator[Metric]:
        from bgpd.bgp.drain import DRAIN_STATES

        drain = GaugeMetricFamily(
            "kroute_drain_state", "1 for the node's current drain state.", labels=["state"]
        )
        current = self._daemon.drain_state
        for state in DRAIN_STATES:
            drain.add_metric([state], int(state == current))
        yield drain

    def _ipam(self) -> Iterator[Metric]:
        cluster = self._daemon.cluster
        if cluster is None or cluster.snapshot is None:
            return
        used = _gauge(
            "kroute_ipam_addresses_used",
            "Pod addresses allocated from this node's block.",
            "family",
            "block",
        )
        capacity = _gauge(
            "kroute_ipam_addresses_capacity",
            "Pod addresses this node's block can hold.",
            "family",
            "block",
        )
        for line in usage(cluster.snapshot, cluster.pool, cluster.base.node.name):
            labels = [_family(line.family), str(line.block)]
            used.add_metric(labels, line.used)
            capacity.add_metric(labels, line.capacity)
        yield used
        yield capacity

    def _lb(self) -> Iterator[Metric]:
        view = self._daemon.lb.view
        if view is None or not view.result.pools:
            return
        used = _gauge(
            "kroute_lb_pool_addresses_used",
            "LoadBalancer addresses of the pool held by services.",
            "pool",
        )
        available = _gauge(
            "kroute_lb_pool_addresses_available",
            "LoadBalancer addresses the pool can still hand out.",
            "pool",
        )
        for name, pool in sorted(view.result.pools.items()):
            used.add_metric([name], pool.used)
            available.add_metric([name], pool.available)
        yield used
        yield available


def registry_for(daemon: Daemon) -> CollectorRegistry:
    """The daemon's own registry (one per daemon, shared by its listeners)."""
    registry = _registries.get(daemon)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DaemonCollector(daemon))
        _registries[daemon] = registry
    return registry


def add_collector(daemon: Daemon, collector: Collector) -> None:
    """Scrape `collector` with the daemon's own metrics (its names start `kroute_`)."""
    registry_for(daemon).register(collector)


def render(daemon: Daemon) -> bytes:
    """The scrape body, in the Prometheus text format 0.0.4."""
    return generate_latest(registry_for(daemon))
