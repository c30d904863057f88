"""LB-IPAM allocation speed: `lbipam.allocate` against a naive first-fit, same run.

The inputs, built once: 10 IPv4 pools `pool-0`..`pool-9` (a /20 each, 10.P.0.0/20, 4,094
usable addresses; pool P selects `tier=poolP`, created in name order) and N services
(default 10,000) in blocks of ten: block b is in namespace `ns-(b % 25)` with label
`tier=pool(b % 10)`. In every fourth block (b % 4 == 0) the first four services share one
`lbipam.kroute.io/sharing-key` (distinct ports, Cluster): one address for four services.
In the next ones (b % 4 == 1) the first service requests `10.P.7.208 + b // 10` (it is
free). The network routes a /28 inside every pool (`in_use`, 10.P.2.0/28).

Figures, each the best of --rounds runs:

- allocate: `allocate(LbState(), pools, services, in_use)` from an empty state.
- no change: `allocate(previous state, same pools, same services, in_use)`: the steady
  state a controller pays on every resync.
- shrink pool: pool-3 shrunk to 10.3.0.0/23 (510 usable): its requested addresses and
  every automatic one above 10.3.1.254 are revoked, the services find no room.
- selector: pool-7's selector gains `namespace NotIn (ns-0 .. ns-4)`: those services
  lose their pool-7 address and get NoMatchingPool.

Then the same pools and services as documents in the cluster's file store (as
`kroute pool|service apply` leaves them): the first allocation round a node runs inside
the store's transaction, and a steady round (nothing changes), against the pure
`allocate` on the same state: the cost of the shared store per round.

Baseline, in the same run, for every figure: a naive first-fit over the same sorted
services and pools (`naive_assign`): per service the requested address if it lies in a
selecting pool and is free, else the lowest free address of the first selecting pool
(a per-pool cursor over a set of taken addresses, skipping the routed /28s), into a
dict. No previous state is kept, nothing is shared, there are no statuses or revocations:
it is the floor of "match selectors and hand out addresses", not an equivalent
allocator. For the reconcile figures it re-runs from scratch on the changed pools, which
is what a naive controller would do. Ratio = lbipam / baseline (1.0 = as fast).

At the end every result is checked: no address held by two services unless they may
share it (`sharing_conflict`), every address inside a pool that selects its holder and
outside `in_use`, requests honoured, the no-change run identical to the first, nothing
left in a shrunk or deselected place. Timings are printed, never asserted; the exit
status is 1 only if the check fails.

    .venv/bin/python bench/lbipam.py [--services 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import gc
import ipaddress
import itertools
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

# This file is named lbipam.py, and Python puts its directory first on sys.path: drop it,
# so `import lbipam` finds the package and not this script.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from lab.bench_results import record
from lbipam import (
    Block,
    IPAddress,
    LbState,
    Network,
    Pool,
    Requirement,
    Result,
    Selector,
    Service,
    allocate,
    sharing_conflict,
)

POOLS = 10
NAMESPACES = 25
SHARE_GROUP = 4
REQUEST_BASE = 2000  # requested offsets 2000.. inside each /20 (10.P.7.208..)
SHRUNK_POOL, SHRUNK_CIDR = "pool-3", "10.3.0.0/23"
DESELECT_POOL, DESELECTED_NS = "pool-7", tuple(f"ns-{i}" for i in range(5))

T = TypeVar("T")
_started = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(f"[{time.monotonic() - _started:5.1f}s] {message}", file=sys.stderr, flush=True)


def make_pools() -> list[Pool]:
    return [
        Pool(
            f"pool-{p}",
            (Block.from_cidr(f"10.{p}.0.0/20"),),
            Selector({"tier": f"pool{p}"}),
            created=float(p),
        )
        for p in range(POOLS)
    ]


def make_services(n: int) -> list[Service]:
    out = []
    for i in range(n):
        b, j = divmod(i, 10)
        p = b % POOLS
        first = int(ipaddress.IPv4Address(f"10.{p}.0.0"))
        shared = b % 4 == 0 and j < SHARE_GROUP
        requested = (
            (ipaddress.IPv4Address(first + REQUEST_BASE + b // 10),)
            if (b % 4 == 1 and j == 0)
            else ()
        )
        out.append(
            Service(
                f"ns-{b % NAMESPACES}",
                f"svc-{i:05d}",
                labels={"tier": f"pool{p}", "app": f"app-{i % 7}"},
                ports=(("TCP", 8000 + j if shared else 443),),
                requested_ips=requested,
                sharing_key=f"share-{b}" if shared else None,
            )
        )
    return out


def make_in_use() -> list[Network]:
    return [ipaddress.ip_network(f"10.{p}.2.0/28") for p in range(POOLS)]


def shrunk(pools: list[Pool]) -> list[Pool]:
    return [
        Pool(p.name, (Block.from_cidr(SHRUNK_CIDR),), p.selector, created=p.created)
        if p.name == SHRUNK_POOL
        else p
        for p in pools
    ]


def deselected(pools: list[Pool]) -> list[Pool]:
    not_in = Requirement("io.kubernetes.service.namespace", "NotIn", DESELECTED_NS)
    return [
        Pool(p.name, p.blocks, Selector({"tier": "pool7"}, (not_in,)), created=p.created)
        if p.name == DESELECT_POOL
        else p
        for p in pools
    ]


def naive_assign(
    pools: Iterable[Pool], services: Iterable[Service], in_use: Iterable[Network]
) -> dict[str, IPAddress]:
    """Baseline: first-fit into a dict (see the module docstring for what it leaves out)."""
    ordered = sorted(pools, key=Pool.order)
    svcs = sorted(services, key=lambda s: (s.namespace, s.name))
    blocked = [(int(n.network_address), int(n.broadcast_address)) for n in in_use]
    taken: set[int] = set()
    cursor = {p.name: p.spans()[0][1] for p in ordered}
    out: dict[str, IPAddress] = {}
    for svc in svcs:
        want = svc.requested_ips[0] if svc.requested_ips else None
        if want is not None:
            if int(want) not in taken and any(p.contains(want) and p.selects(svc) for p in ordered):
                taken.add(int(want))
                out[svc.key] = want
            continue
        for pool in ordered:
            if not pool.selects(svc):
                continue
            cand, hi = cursor[pool.name], pool.spans()[-1][2]
            while cand <= hi and (cand in taken or any(lo <= cand <= top for lo, top in blocked)):
                cand += 1
            if cand <= hi:
                taken.add(cand)
                cursor[pool.name] = cand + 1
                out[svc.key] = ipaddress.IPv4Address(cand)
                break
    return out


def best_of(rounds: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The fastest of `rounds` runs of `fn` (gc collected before, off during) and its value."""
    best, value = float("inf"), None
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            value = fn()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    assert value is not None
    return best, value


def check(
    label: str,
    result: Result,
    pools: list[Pool],
    services: list[Service],
    in_use: list[Network],
) -> list[str]:
    """Why `result` breaks an allocation rule (empty when it does not)."""
    problems = []
    by_key = {s.key: s for s in services}
    holders: dict[IPAddress, list[Service]] = {}
    for key, ips in result.state.assignments.items():
        for ip in ips:
            holders.setdefault(ip, []).append(by_key[key])
    for ip, svcs in holders.items():
        for a, b in itertools.combinations(svcs, 2):
            if sharing_conflict(a, b) is not None:
                problems.append(f"{label}: {ip} held by {a.key} and {b.key}")
        for svc in svcs:
            if not any(p.contains(ip) and p.selects(svc) for p in pools):
                problems.append(f"{label}: {svc.key} holds {ip}, in no pool selecting it")
        if any(ip in net for net in in_use):
            problems.append(f"{label}: {ip} is routed by the network")
    for svc in services:
        got = result.state.assignments.get(svc.key, ())
        if svc.requested_ips and got and set(got) != set(svc.requested_ips):
            problems.append(f"{label}: {svc.key} asked for {svc.requested_ips}, got {got}")
    return problems[:20]


def store_figures(pools: list[Pool], services: list[Service], in_use: list[Network]) -> None:
    """Allocation rounds as a node runs them: inside a file-store transaction, over the
    cluster document holding every pool and service (applied with `kroute ... apply`)."""
    import asyncio
    import tempfile

    from bgpd.lb.allocation import LoadBalancers
    from bgpd.lb.store import FileLbStore
    from lbipam import IPS_ANNOTATION, SHARING_KEY_ANNOTATION
    from lbipam.shared import apply_pools, apply_services

    def service_doc(s: Service) -> dict[str, object]:
        notes = {SHARING_KEY_ANNOTATION: s.sharing_key} if s.sharing_key else {}
        if s.requested_ips:
            notes[IPS_ANNOTATION] = ",".join(map(str, s.requested_ips))
        ports = [{"port": port, "protocol": proto} for proto, port in s.ports]
        return {"namespace": s.namespace, "name": s.name, "labels": dict(s.labels),
                "ports": ports, "annotations": notes}  # fmt: skip

    pool_docs = [
        {"name": p.name, "blocks": [{"cidr": str(p.blocks[0])}],
         "serviceSelector": {"matchLabels": dict(p.selector.match_labels)}}
        for p in pools if p.selector is not None
    ]  # fmt: skip
    docs = [service_doc(s) for s in services]

    async def rounds() -> tuple[float, float, float]:
        store = FileLbStore(Path(tempfile.mkdtemp(prefix="kroute-bench-")) / "lbipam.json")
        await store.transact(lambda d: apply_pools(d, pool_docs, 1.0, {}))
        await store.transact(lambda d: apply_services(d, docs, {}))
        lb = LoadBalancers(store.path.with_name("cache.json"), "n1")
        lb.configure((), (), ("n1",))
        lb.set_in_use(in_use)
        times = []
        for _ in range(2):
            started = time.perf_counter()
            lb.accept(await store.transact(lb.round_step(2.0)))
            times.append(time.perf_counter() - started)
        state = lb.cached.assignments
        started = time.perf_counter()
        allocate(state, pools, services, in_use)
        return times[0], times[1], time.perf_counter() - started

    first, steady, pure = asyncio.run(rounds())
    print(f"Shared store (file), {len(services)} services applied to the cluster document:")
    print(f"{'first round (allocates all)':<30}{first:>10.3f}")
    print(f"{'steady round (no change)':<30}{steady:>10.3f}{pure:>12.4f}{steady / pure:>8.1f}")
    print("baseline of the steady round: the pure `allocate` on the same state (no store,\n"
          "no parsing of stored documents, no JSON).")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000, help="services (N)")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    n: int = args.services
    if not 10 <= n <= 30_000 or args.rounds < 1:
        parser.error("--services must be 10..30000 and --rounds at least 1")

    pools, services, in_use = make_pools(), make_services(n), make_in_use()
    say(f"{len(pools)} pools, {n} services built; timing allocate from empty")
    rows: list[tuple[str, float, float, Result, list[Pool]]] = []
    secs, first = best_of(args.rounds, lambda: allocate(LbState(), pools, services, in_use))
    base, _ = best_of(args.rounds, lambda: naive_assign(pools, services, in_use))
    rows.append(("allocate (empty state)", secs, base, first, pools))
    for label, changed in (
        ("no change", pools),
        (f"shrink {SHRUNK_POOL} to /23", shrunk(pools)),
        (f"{DESELECT_POOL} selector change", deselected(pools)),
    ):
        say(f"timing reconcile: {label}")
        secs, result = best_of(
            args.rounds, functools.partial(allocate, first.state, changed, services, in_use)
        )
        base, _ = best_of(args.rounds, functools.partial(naive_assign, changed, services, in_use))
        rows.append((label, secs, base, result, changed))

    print(f"LB-IPAM: {n} services, {len(pools)} pools (/20 each), best of {args.rounds} rounds")
    header = f"{'figure':<30}{'seconds':>10}{'baseline s':>12}{'ratio':>8}"
    print(f"{header}{'held':>8}{'unique IPs':>12}{'revoked':>9}")
    for label, secs, base, result, _ in rows:
        held = len(result.state.assignments)
        unique = len({ip for ips in result.state.assignments.values() for ip in ips})
        print(
            f"{label:<30}{secs:>10.3f}{base:>12.4f}{secs / base:>8.1f}"
            f"{held:>8,}{unique:>12,}{len(result.revoked):>9,}"
        )
        record(
            "lbipam",
            label,
            "s",
            secs,
            baseline_name="naive first-fit",
            baseline=base,
            higher_is_better=False,
        )
    print(
        "ratio = lbipam / baseline. Baseline: naive first-fit of the same services into a\n"
        "dict (selector match, per-pool cursor, set of taken addresses; no state kept,\n"
        "no sharing, no statuses), re-run from scratch for every figure.\n"
        "held = services with an address; revoked = services that lost one."
    )

    problems: list[str] = []
    for label, _, _, result, changed in rows:
        problems += check(label, result, changed, services, in_use)
    if rows[1][3].state != first.state or rows[1][3].revoked:
        problems.append("no change: the state differs from the first allocation")
    unplaced = [k for k, st in first.services.items() if not st.ips]
    if unplaced:
        problems.append(f"allocate: {len(unplaced)} services got nothing, e.g. {unplaced[0]}")
    shrunk_net = ipaddress.ip_network(SHRUNK_CIDR)
    for ips in rows[2][3].state.assignments.values():
        problems += [
            f"shrink: {ip} kept" for ip in ips if ip.packed[1] == 3 and ip not in shrunk_net
        ]
    moved = [
        k
        for k, ips in rows[3][3].state.assignments.items()
        if k.split("/")[0] in DESELECTED_NS and any(ip.packed[1] == 7 for ip in ips)
    ]
    problems += [f"selector: {k} kept its pool-7 address" for k in moved]
    shared = sum(1 for st in first.services.values() if st.shared_with)
    if problems:
        for p in problems[:20]:
            print(f"CHECK FAILED: {p}")
        return 1
    print(
        f"Checked {len(rows)} results: no address held twice except by services allowed to\n"
        f"share it ({shared:,} services share), every address in a pool selecting its holder\n"
        "and outside in_use, requests honoured, no-change run identical to the first,\n"
        "nothing kept outside the shrunk pool or by deselected services."
    )
    say("timing allocation rounds through the file store")
    store_figures(pools, services, in_use)
    print(f"Run time: {time.monotonic() - _started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
