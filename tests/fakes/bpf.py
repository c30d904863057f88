"""In-memory BPF datapath for the datapath reconciler's unit tests."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from datapath.bpf_maps import (
    COUNTER_NAMES,
    PROGRAMS,
    LocalPod,
    MapChanges,
    RemoteRoute,
    diff_entries,
)


@dataclass
class FakeBpfDatapath:
    """In-memory `Datapath` for unit tests: interfaces are names, ifindexes are given ints
    (a name resolves through `ifindexes`)."""

    ifindexes: dict[str, int] = field(default_factory=dict)
    attached: dict[str, str] = field(default_factory=dict)
    pods: dict[ipaddress.IPv4Address, LocalPod] = field(default_factory=dict)
    routes: dict[ipaddress.IPv4Network, RemoteRoute] = field(default_factory=dict)
    counter_values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    closed: bool = False

    def _index(self, dev: int | str) -> int:
        return dev if isinstance(dev, int) else self.ifindexes[dev]

    def attach(self, ifname: str, program: str) -> None:
        if program not in PROGRAMS:
            raise ValueError(f"program {program!r} is not one of {', '.join(PROGRAMS)}")
        self.attached[ifname] = program

    def detach(self, ifname: str) -> bool:
        return self.attached.pop(ifname, None) is not None

    def set_local_pod(
        self, ip: str | ipaddress.IPv4Address, ifindex: int | str, pod_mac: str | None = None
    ) -> LocalPod:
        pod = LocalPod.of(ip, self._index(ifindex), None, pod_mac)
        self.pods[pod.ip] = pod
        return pod

    def del_local_pod(self, ip: str | ipaddress.IPv4Address) -> bool:
        return self.pods.pop(ipaddress.IPv4Address(ip), None) is not None

    def local_pods(self) -> dict[ipaddress.IPv4Address, LocalPod]:
        return dict(self.pods)

    def set_remote_route(
        self,
        prefix: str | ipaddress.IPv4Network,
        ifindex: int | str,
        next_hop: str | ipaddress.IPv4Address | None = None,
    ) -> RemoteRoute:
        route = RemoteRoute.of(prefix, self._index(ifindex), next_hop)
        self.routes[route.prefix] = route
        return route

    def del_remote_route(self, prefix: str | ipaddress.IPv4Network) -> bool:
        return self.routes.pop(ipaddress.IPv4Network(prefix), None) is not None

    def remote_routes(self) -> dict[ipaddress.IPv4Network, RemoteRoute]:
        return dict(self.routes)

    def sync_remote_routes(
        self, desired: Mapping[ipaddress.IPv4Network, RemoteRoute]
    ) -> MapChanges:
        upserts, deletes = diff_entries(desired, self.routes)
        for r in upserts:
            self.routes[r.prefix] = r
        for p in deletes:
            del self.routes[p]
        return MapChanges(len(upserts), len(deletes))

    def sync_local_pods(self, desired: Mapping[ipaddress.IPv4Address, LocalPod]) -> MapChanges:
        upserts, deletes = diff_entries(desired, self.pods)
        for p in upserts:
            self.pods[p.ip] = p
        for ip in deletes:
            del self.pods[ip]
        return MapChanges(len(upserts), len(deletes))

    def counters(self) -> dict[str, int]:
        return dict(self.counter_values)

    def close(self) -> None:
        self.closed = True
