"""Pure LB-IP allocation: (previous state, pools, services, network routes) -> result.

No I/O and no clock, like `ipam.allocator`: the previous `LbState` is an input, so a
restart (state read back from JSON) gives the same answer, and a store only has to make
the read-modify-write atomic. Three passes, each over services sorted by namespace/name:

1. keep: a service keeps each address it holds while still valid (inside a pool that is
   not conflicting and still selects it, of a wanted family, among its requested IPs if
   it requests any, shareable with the holders kept before it). A disabled pool's
   addresses are kept (Cilium: disabling stops new allocations only); an address the
   network now routes is kept but flagged. Everything else is revoked.
2. request: `lbipam.kroute.io/ips` addresses, each granted when free (or shareable),
   inside an eligible pool and not routed by the network. Requests go before automatic
   allocation so a lower-sorting service cannot take an address another one asked for.
3. auto: one address per missing family; with a sharing key, the lowest address a
   compatible service already holds comes first, else the lowest free one, pools in
   (created, name) order.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from common.errors import AllocationError
from lbipam.pools import IPAddress, Network, Pool, Service, family_name, ip_sort_key
from lbipam.pools import sharing_conflict as _why_not
from lbipam.state import LbState

ReasonCode = Literal[
    "NoMatchingPool",  # no pool of the family selects the service
    "PoolDisabled",  # the only pools that would serve it are disabled
    "PoolConflicting",  # ... or conflicting (overlap an older pool)
    "PoolExhausted",  # eligible pools have no free address
    "RequestedIPTaken",  # another service holds it and cannot share it
    "RequestedIPOutsidePools",  # in no pool that selects the service
    "InvalidRequest",  # the ips annotation is malformed or of an unwanted family
    "InUseByNetwork",  # routed by the network: refused, or held and flagged
    "Revoked",  # an address it held is no longer valid (the message says why)
]


@dataclass(frozen=True)
class Reason:
    """A machine-readable code for status conditions, and a message saying what to do."""

    code: ReasonCode
    message: str


@dataclass(frozen=True)
class ServiceStatus:
    """What a service got and why not more. `pools[i]` is the pool of `ips[i]`;
    `conflicting` means it holds an address the network routes (see its reasons)."""

    key: str
    ips: tuple[IPAddress, ...] = ()
    pools: tuple[str, ...] = ()
    shared_with: tuple[str, ...] = ()
    reasons: tuple[Reason, ...] = ()
    conflicting: bool = False
    missing: tuple[str, ...] = ()  # wanted families without an address


@dataclass(frozen=True)
class PoolStatus:
    """`available` counts what the pool can still hand out (0 when disabled or
    conflicting); `used` counts its addresses held by services."""

    name: str
    disabled: bool
    conflicting_with: str | None
    total: int
    used: int
    available: int


@dataclass(frozen=True)
class Result:
    """New state; per-service and per-pool status; `revoked`: service key -> addresses
    it held before and lost (also for deleted services), for BGP to withdraw unless
    `advertisements` still lists them (a sharing partner keeps them)."""

    state: LbState
    services: Mapping[str, ServiceStatus]
    pools: Mapping[str, PoolStatus]
    revoked: Mapping[str, tuple[IPAddress, ...]]


def _merge(nets: Iterable[Network | IPAddress]) -> dict[int, list[tuple[int, int]]]:
    spans = sorted(
        (n.version, int(n.network_address), int(n.broadcast_address))
        for n in (ipaddress.ip_network(x) for x in nets)
    )
    out: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for v, lo, hi in spans:
        merged = out[v]
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return out


class _Book:
    """The allocation being built (mutable, local to one `allocate` call)."""

    def __init__(self, pools: list[Pool], in_use: Iterable[Network | IPAddress]) -> None:
        self.pools = pools  # sorted by (created, name)
        self.conflict: dict[str, str] = {}
        for i, pool in enumerate(pools):
            older = next((p for p in pools[:i] if p.overlaps(pool)), None)
            if older is not None:
                self.conflict[pool.name] = older.name
        self.nets = sorted(
            {ipaddress.ip_network(x) for x in in_use},
            key=lambda n: (n.version, -n.prefixlen, n.network_address),
        )
        self.blocked = _merge(self.nets)
        self.starts = {v: [lo for lo, _ in spans] for v, spans in self.blocked.items()}
        self.holders: dict[IPAddress, list[Service]] = {}
        self.keyed: dict[tuple[str, str], list[IPAddress]] = {}  # (namespace, sharing key)
        self.taken: dict[int, list[int]] = {4: [], 6: []}
        self.got: dict[str, list[IPAddress]] = {}
        self.reasons: dict[str, list[Reason]] = {}
        self.flagged: set[str] = set()

    def routed_by(self, ip: IPAddress) -> Network | None:
        """The most specific network route covering `ip`."""
        return next((n for n in self.nets if n.version == ip.version and ip in n), None)

    def pool_of(self, ip: IPAddress) -> Pool | None:
        """The effective (not conflicting) pool handing out `ip`; they never overlap."""
        return next((p for p in self.pools if p.name not in self.conflict and p.contains(ip)), None)

    def incompatible(self, svc: Service, ip: IPAddress) -> str | None:
        for other in self.holders.get(ip, []):
            why = _why_not(svc, other)
            if why is not None:
                return f"{ip} is held by {other.key} ({why})"
        return None

    def give(self, svc: Service, ip: IPAddress) -> None:
        if ip not in self.holders:
            bisect.insort(self.taken[ip.version], int(ip))
        self.holders.setdefault(ip, []).append(svc)
        if svc.sharing_key is not None:
            self.keyed.setdefault((svc.namespace, svc.sharing_key), []).append(ip)
        self.got.setdefault(svc.key, []).append(ip)

    def note(self, svc: Service, reason: Reason) -> None:
        self.reasons.setdefault(svc.key, []).append(reason)

    def lowest_free(self, version: int, lo: int, hi: int) -> int | None:
        taken, spans, starts = self.taken[version], self.blocked[version], self.starts[version]
        cand = lo
        while cand <= hi:
            k = bisect.bisect_right(starts, cand) - 1
            if k >= 0 and spans[k][1] >= cand:
                cand = spans[k][1] + 1
                continue
            i = bisect.bisect_left(taken, cand)
            if i < len(taken) and taken[i] == cand:  # skip the run of taken addresses:
                base, a, b = cand - i, i, len(taken)  # taken[k] - k == base along it
                while a < b:
                    m = (a + b) // 2
                    a, b = (m + 1, b) if taken[m] - m == base else (a, m)
                cand = base + a
                continue
            return cand
        return None


def allocate(
    state: LbState,
    pools: Iterable[Pool],
    services: Iterable[Service],
    in_use: Iterable[Network | IPAddress] = (),
) -> Result:
    """Allocate LB IPs. `in_use`: prefixes the network routes (learned from upstream
    peers, not kroute's own announcements); nothing inside them is newly handed out.

    AllocationError when two pools share a name or two services a key.
    """
    ordered = sorted(pools, key=Pool.order)
    svcs = sorted(services, key=lambda s: (s.namespace, s.name))
    for what, names in (("pool", [p.name for p in ordered]), ("service", [s.key for s in svcs])):
        dup = next((n for n, count in Counter(names).items() if count > 1), None)
        if dup is not None:
            raise AllocationError(f"{what} {dup} is given twice; pass each once")
    book = _Book(ordered, in_use)
    for svc in svcs:
        for ip in sorted(state.assignments.get(svc.key, ()), key=ip_sort_key):
            why = _keep_problem(book, svc, ip)
            if why is not None:
                book.note(svc, Reason("Revoked", f"{ip}: {why}"))
                continue
            book.give(svc, ip)
            net = book.routed_by(ip)
            if net is not None:
                book.flagged.add(svc.key)
                book.note(svc, _routed(f"{ip} (kept, but may be unreachable)", net, "move it"))
    for svc in svcs:
        if svc.request_error is not None:
            book.note(svc, Reason("InvalidRequest", f"{svc.request_error}; fix the annotation"))
            continue
        for ip in (ip for ip in svc.requested_ips if ip not in book.got.get(svc.key, ())):
            reason = _request_problem(book, svc, ip)
            if reason is None:
                book.give(svc, ip)
            else:
                book.note(svc, reason)
    for svc in svcs:
        if svc.request_error is None and not svc.requested_ips:
            for version in svc.families():
                if not any(ip.version == version for ip in book.got.get(svc.key, ())):
                    reason = _auto(book, svc, version)
                    if reason is not None:
                        book.note(svc, reason)
    return _result(book, state, svcs)


def _routed(what: str, net: Network, fix: str) -> Reason:
    text = f"{what} is inside {net}, which the network routes; {fix} or remove the route"
    return Reason("InUseByNetwork", text)


def _keep_problem(book: _Book, svc: Service, ip: IPAddress) -> str | None:
    """Why `svc` may not keep `ip` (it is revoked), or None."""
    fam = family_name(ip.version)
    if any(other.version == ip.version for other in book.got.get(svc.key, ())):
        return f"the service already holds an {fam} address"
    if svc.request_error is None and svc.requested_ips and ip not in svc.requested_ips:
        return "it is not among the requested IPs"
    if ip.version not in svc.families():
        return f"the service no longer asks for {fam}"
    pool = book.pool_of(ip)
    if pool is None:
        loser = next((p for p in book.pools if p.contains(ip)), None)
        if loser is not None:
            return f"pool {loser.name} overlaps the older pool {book.conflict[loser.name]}"
        return "no pool hands it out any more (pool deleted or shrunk)"
    if not pool.selects(svc):
        return f"the serviceSelector of pool {pool.name} no longer selects the service"
    return book.incompatible(svc, ip)


def _request_problem(book: _Book, svc: Service, ip: IPAddress) -> Reason | None:
    """Why requested `ip` cannot be granted to `svc`, or None."""
    what, fam = f"requested {ip}", family_name(ip.version)
    if ip.version not in svc.families():
        families = ", ".join(svc.ip_families)
        fix = "add the family or request another address"
        return Reason("InvalidRequest", f"{what} is {fam} but ipFamilies is {families}; {fix}")
    outside: ReasonCode = "RequestedIPOutsidePools"
    pool = book.pool_of(ip)
    if pool is None:
        loser = next((p for p in book.pools if p.contains(ip)), None)
        if loser is not None:
            text = f"{what} is in pool {loser.name}, which overlaps the older pool"
            return Reason("PoolConflicting", f"{text} {book.conflict[loser.name]}; fix that")
        edge = next((p for p in book.pools if p.covers(ip)), None)
        if edge is not None:
            text = f"{what} is the first or last address of {edge.covers(ip)} in {edge.name}"
            return Reason(outside, f"{text}; set allowFirstLastIPs: true there or pick another")
        return Reason(outside, f"{what} is in no pool; add it to a pool or pick another")
    if not pool.selects(svc):
        text = f"{what} is in pool {pool.name}, whose serviceSelector ({pool.selector})"
        return Reason(outside, f"{text} does not select {svc.key}")
    if pool.disabled:
        return Reason("PoolDisabled", f"{what} is in pool {pool.name}, which is disabled")
    net = book.routed_by(ip)
    if net is not None:
        return _routed(what, net, "request another address")
    why = book.incompatible(svc, ip)
    return None if why is None else Reason("RequestedIPTaken", f"{what}: {why}; pick another")


def _auto(book: _Book, svc: Service, version: int) -> Reason | None:
    """Give `svc` an address of `version`, or say why there is none."""
    fam = family_name(version)
    matching = [p for p in book.pools if version in p.families() and p.selects(svc)]
    eligible = [p for p in matching if p.name not in book.conflict and not p.disabled]
    if not matching:
        fix = "add one or change a pool's serviceSelector"
        return Reason("NoMatchingPool", f"no {fam} pool selects {svc.key}; {fix}")
    disabled = [p.name for p in matching if p.disabled and p.name not in book.conflict]
    conflicting = [
        f"{p.name} (overlaps {book.conflict[p.name]})" for p in matching if p.name in book.conflict
    ]
    if not eligible and disabled:
        text = f"the {fam} pools selecting it are disabled ({', '.join(disabled)})"
        return Reason("PoolDisabled", f"{text}; enable one or add a pool")
    if not eligible:
        text = f"every {fam} pool selecting it conflicts: {', '.join(conflicting)}"
        return Reason("PoolConflicting", f"{text}; remove the overlap")
    if svc.sharing_key is not None:
        rank = {p.name: i for i, p in enumerate(eligible)}
        shareable = sorted(
            (rank[pool.name], int(ip), ip)
            for ip in set(book.keyed.get((svc.namespace, svc.sharing_key), ()))
            if ip.version == version
            and (pool := book.pool_of(ip)) is not None
            and pool.name in rank
            and book.routed_by(ip) is None
            and book.incompatible(svc, ip) is None
        )
        if shareable:
            book.give(svc, shareable[0][2])
            return None
    for pool in eligible:
        for v, lo, hi in pool.spans():
            found = book.lowest_free(v, lo, hi) if v == version else None
            if found is not None:
                book.give(svc, ipaddress.ip_address(found))
                return None
    text = f"every {fam} address of {', '.join(p.name for p in eligible)} is taken or routed"
    return Reason("PoolExhausted", f"{text} by the network; add a block or free an address")


def _result(book: _Book, state: LbState, svcs: list[Service]) -> Result:
    assignments = {k: tuple(sorted(v, key=ip_sort_key)) for k, v in sorted(book.got.items())}
    statuses = {}
    for svc in svcs:
        ips = assignments.get(svc.key, ())
        pools = tuple(p.name if (p := book.pool_of(ip)) else "" for ip in ips)
        partners = {h.key for ip in ips for h in book.holders[ip]} - {svc.key}
        have = {ip.version for ip in ips}
        wanted: set[int] = {ip.version for ip in svc.requested_ips} or {*svc.families()}
        statuses[svc.key] = ServiceStatus(
            key=svc.key,
            ips=ips,
            pools=pools,
            shared_with=tuple(sorted(partners)),
            reasons=tuple(book.reasons.get(svc.key, ())),
            conflicting=svc.key in book.flagged,
            missing=tuple(family_name(v) for v in sorted(wanted - have)),
        )
    revoked = {}
    for key, old in sorted(state.assignments.items()):
        lost = tuple(sorted(set(old) - set(assignments.get(key, ())), key=ip_sort_key))
        if lost:
            revoked[key] = lost
    return Result(LbState(assignments), statuses, _pool_statuses(book), revoked)


def _pool_statuses(book: _Book) -> dict[str, PoolStatus]:
    out = {}
    for pool in sorted(book.pools, key=lambda p: p.name):
        spans = pool.spans()
        total = sum(hi - lo + 1 for _, lo, hi in spans)
        conflict = book.conflict.get(pool.name)
        held = [] if conflict else [ip for ip in book.holders if pool.contains(ip)]
        available = 0
        if not conflict and not pool.disabled:
            routed = sum(
                max(0, min(hi, rhi) - max(lo, rlo) + 1)
                for v, lo, hi in spans
                for rlo, rhi in book.blocked[v]
            )
            both = sum(1 for ip in held if book.routed_by(ip) is not None)
            available = total - len(held) - routed + both
        out[pool.name] = PoolStatus(pool.name, pool.disabled, conflict, total, len(held), available)
    return out


def advertisements(result: Result, services: Iterable[Service]) -> dict[IPAddress, tuple[str, ...]]:
    """Each allocated address -> the nodes that announce it (as a /32 or /128): the
    union of the `nodes` of the services holding it (the caller fills `nodes`: every
    node for Cluster, nodes with a ready endpoint for Local). An address no node serves
    maps to () so the caller knows to withdraw it. Flagged (network-routed) addresses
    are still listed: the service was working; its status carries the conflict."""
    by_key = {s.key: s for s in services}
    out: dict[IPAddress, set[str]] = {}
    for key, ips in result.state.assignments.items():
        svc = by_key.get(key)
        for ip in ips:
            out.setdefault(ip, set()).update(svc.nodes if svc else ())
    return {ip: tuple(sorted(out[ip])) for ip in sorted(out, key=ip_sort_key)}
