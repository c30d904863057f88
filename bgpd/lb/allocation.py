"""LoadBalancer IPs on bare metal: pools and services from the config file and from the
cluster's LB-IPAM store (`kroute pool apply`, `kroute service apply`), allocated by
`lbipam` over one cluster-wide document, announced as /32 (/128) by the nodes that
serve them.

Every node runs allocation rounds (`round_step`) inside the store's transaction: the
first node to write a change wins, the others read it back and find nothing to change,
so all nodes agree on who holds which address (see `bgpd.lb.sync`). The last document
seen is cached in `runDir/lbipam.json`, so a restarted node announces what it served
before the store answers, and a store that was never written is seeded from it. In the
config file a pool listed later counts as newer (it loses an overlap) when both were
first seen together; config pools and services must be the same on every node.
Addresses learned from eBGP peers are "in use by the network": never handed out, and
flagged when already held.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from bgpd.config.types import Network
from bgpd.files import write_atomic
from lbipam import LbState, Pool, Result, Service, advertisements
from lbipam.shared import LbDocument, Round, allocation_round, touching

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CONFIG_POOLS = "the config file (loadBalancer.pools)"
CONFIG_SERVICES = "the config file (loadBalancer.services)"


def host_prefix(ip: IPAddress) -> Network:
    return ipaddress.ip_network(ip)


@dataclass(frozen=True)
class LbView:
    """One allocation round as this node sees it: the round (result, pools with their
    creation times, services), what it announces and who announces what."""

    round: Round
    served: tuple[IPAddress, ...]
    announcers: dict[IPAddress, tuple[str, ...]]

    @property
    def result(self) -> Result:
        return self.round.result


class LoadBalancers:
    """This node's inputs to allocation (config pools and services, members, routes the
    network uses) and the latest view; the document itself lives in the store."""

    def __init__(self, cache_path: Path, node: str) -> None:
        self._cache = cache_path
        self.node = node
        self.pools: tuple[Pool, ...] = ()
        self.services: tuple[Service, ...] = ()
        self.nodes: tuple[str, ...] = ()
        self.in_use: frozenset[Network] = frozenset()
        self._touching: frozenset[Network] = frozenset()  # of in_use, at the last round
        self._pending: tuple[tuple[Pool, ...], tuple[Service, ...], tuple[str, ...]] | None = None
        self.cached = self._load()
        self._cache_saved = True  # `cached` is what the file holds
        self.view: LbView | None = None
        self._written: LbDocument | None = None  # the last document this node wrote
        self.on_inputs: Callable[[], None] = lambda: None  # set by the sync task

    def configure(
        self, pools: Iterable[Pool], services: Iterable[Service], nodes: Iterable[str]
    ) -> None:
        """New config pools and services, or new members. They take effect together
        with the routes of the daemon's next reconcile (`set_in_use`), so a round never
        sees a new service beside routes the RIB no longer (or not yet) holds."""
        self._pending = (tuple(pools), tuple(services), tuple(sorted(nodes)))

    def set_in_use(self, in_use: Iterable[Network]) -> None:
        """Prefixes upstream peers route (every reconcile); allocate again if the config
        changed or the ones touching a pool did (the next round sees them all anyway)."""
        current = frozenset(in_use)
        if current == self.in_use and self._pending is None:
            return
        self.in_use = current
        configured = self._pending is not None
        if self._pending is not None:
            self.pools, self.services, self.nodes = self._pending
            self._pending = None
        relevant = touching(current, self._known_pools())
        if configured or relevant != self._touching:
            self._touching = relevant
            self.on_inputs()

    def _known_pools(self) -> tuple[Pool, ...]:
        """Config pools and those of the last round (a pool applied since starts a
        round of its own)."""
        return self.pools + (self.view.round.pools if self.view is not None else ())

    def reserved_pools(self) -> dict[str, str]:
        return {p.name: CONFIG_POOLS for p in self.pools}

    def reserved_services(self) -> dict[str, str]:
        return {s.key: CONFIG_SERVICES for s in self.services}

    def round_step(self, now: float) -> Callable[[LbDocument], tuple[LbDocument, Round]]:
        """The pure step to run inside the store's transaction."""

        def step(document: LbDocument) -> tuple[LbDocument, Round]:
            if document == LbDocument() and self.cached.assignments.assignments:
                document = LbDocument(assignments=self.cached.assignments)  # seed once
            done = allocation_round(
                document,
                config_pools=self.pools,
                config_services=self.services,
                every_node=self.nodes,
                in_use=self.in_use,
                now=now,
            )
            wrote = done.document != document
            last = self._written
            undid = (
                wrote
                and last is not None
                and document != last
                and (document.pools, document.services) == (last.pools, last.services)
            )
            return done.document, replace(done, wrote=wrote, undid=undid)

        return step

    def accept(self, done: Round) -> LbView:
        """Make `done` (from the store, or from the cache at start) the current view."""
        for key, ips in done.result.revoked.items():
            log.info("event=lb-revoked service=%s ips=%s", key, ",".join(map(str, ips)))
        if self.view is None or done.problems != self.view.round.problems:
            for problem in done.problems:
                log.warning("event=lb-document-skipped problem=%r", problem)
        if done.wrote:
            self._written = done.document
        if done.document != self.cached:
            self.cached = done.document
            self._cache_saved = False
        announcers = advertisements(done.result, done.services)
        served = tuple(ip for ip, nodes in announcers.items() if self.node in nodes)
        self.view = LbView(done, served, announcers)
        return self.view

    def save_cache(self) -> None:
        """Write the document last accepted to `runDir/lbipam.json` (encoding and fsync:
        call it in a worker thread, never on the event loop)."""
        if self._cache_saved:
            return
        self._cache_saved, document = True, self.cached
        try:
            write_atomic(self._cache, document.to_json())
        except OSError as exc:  # only the cache: the store holds the truth
            self._cache_saved = False
            log.error("event=lb-cache-not-saved path=%s error=%r", self._cache, exc)

    def from_cache(self, now: float) -> LbView:
        """A view from the cached document alone (at start, before the store answers)."""
        if self._pending is not None:
            self.pools, self.services, self.nodes = self._pending
            self._pending = None
        local = self.round_step(now)(self.cached)[1]
        return self.accept(replace(local, wrote=False, undid=False))  # nothing was written

    def _load(self) -> LbDocument:
        try:
            text = self._cache.read_text()
        except FileNotFoundError:
            return LbDocument()
        except OSError as exc:
            log.error("event=lb-cache-unreadable path=%s error=%r", self._cache, exc)
            return LbDocument()
        try:
            return LbDocument.from_json(text)
        except ValueError:
            pass
        try:  # kept by a kroute from before the shared store: assignments only
            return LbDocument(assignments=LbState.from_json(text))
        except ValueError as exc:
            log.error("event=lb-cache-unreadable path=%s error=%r", self._cache, exc)
            return LbDocument()
