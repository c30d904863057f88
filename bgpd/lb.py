"""LoadBalancer IPs on bare metal: pools and services from the config file, allocated
by `lbipam`, announced as /32 (/128) by the nodes that serve them.

Every node runs the same deterministic allocation over the same config, keeps its
result in `runDir/lbipam.json` (so addresses are stable across restarts), and announces
the addresses of services it serves. In the file, a pool listed later counts as newer
(it is the one marked conflicting when pools overlap). Addresses learned from eBGP
peers are "in use by the network": never handed out, and flagged when already held.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bgpd.config_types import Network
from lbipam import LbState, Pool, Result, Service, advertisements, allocate, parse_pools
from lbipam import parse_services as parse_service_docs

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_lb_pools(docs: Any) -> tuple[Pool, ...]:
    """Pools from `loadBalancer.pools`, `created` = position in the file."""
    pools = parse_pools(docs, "loadBalancer.pools")
    return tuple(replace(pool, created=float(i)) for i, pool in enumerate(pools))


def parse_lb_services(docs: Any) -> tuple[Service, ...]:
    return parse_service_docs(docs, "loadBalancer.services")


def host_prefix(ip: IPAddress) -> Network:
    return ipaddress.ip_network(ip)


@dataclass(frozen=True)
class LbView:
    """One allocation round: the result, and what this node announces and serves."""

    result: Result
    served: tuple[IPAddress, ...]
    announcers: dict[IPAddress, tuple[str, ...]]


class LoadBalancers:
    """Allocation state for the pools and services in the config."""

    def __init__(self, state_path: Path, clock: Callable[[], float] = time.time) -> None:
        self._path = state_path
        self._seen_path = state_path.with_name(state_path.stem + "-pools-seen.json")
        self._clock = clock
        self.first_seen: dict[str, float] = self._load_seen()
        self.pools: tuple[Pool, ...] = ()
        self.services: tuple[Service, ...] = ()
        self.state = self._load()
        self.view: LbView | None = None
        self._last_inputs: tuple[frozenset[Network], str] | None = None

    def configure(
        self, pools: Iterable[Pool], services: Iterable[Service], nodes: Iterable[str]
    ) -> None:
        """New pools and services; a Cluster service without `nodes` is served by all."""
        every = tuple(sorted(nodes))
        self._last_inputs = None  # pools or services may differ: allocate again
        self.pools = tuple(pools)
        names = {p.name for p in self.pools}
        seen = {n: t for n, t in self.first_seen.items() if n in names}
        seen.update({n: self._clock() for n in names if n not in seen})
        if seen != self.first_seen:
            self.first_seen = seen
            _write_atomic(self._seen_path, json.dumps(seen, indent=1, sort_keys=True) + "\n")
        self.services = tuple(
            replace(s, nodes=every) if s.traffic_policy == "Cluster" and not s.nodes else s
            for s in services
        )

    def update(self, in_use: Iterable[Network], node: str) -> LbView:
        """Allocate, unless nothing it depends on changed since the last round (the
        daemon calls this on every reconcile; allocation is O(services))."""
        inputs = (frozenset(in_use), node)
        if self.view is not None and inputs == self._last_inputs:
            return self.view
        self._last_inputs = inputs
        result = allocate(self.state, self.pools, self.services, tuple(inputs[0]))
        if result.state != self.state:
            self.state = result.state
            self._save()
            for key, ips in result.revoked.items():
                log.info("event=lb-revoked service=%s ips=%s", key, ",".join(map(str, ips)))
        announcers = advertisements(result, self.services)
        served = tuple(ip for ip, nodes in announcers.items() if node in nodes)
        self.view = LbView(result, served, announcers)
        return self.view

    def _load(self) -> LbState:
        try:
            return LbState.from_json(self._path.read_text())
        except FileNotFoundError:
            return LbState()
        except ValueError as exc:
            log.error("event=lb-state-unreadable path=%s error=%r", self._path, exc)
            return LbState()

    def _save(self) -> None:
        _write_atomic(self._path, self.state.to_json())

    def _load_seen(self) -> dict[str, float]:
        """When each pool was first configured here (for AGE), kept across restarts."""
        try:
            seen = json.loads(self._seen_path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(seen, dict):
            return {}
        return {str(k): float(v) for k, v in seen.items() if isinstance(v, int | float)}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
