"""LB-IPAM invariants over random pools, services, routes and previous states.

The address space is tiny (10.0.0.0/27 and fd00::/123) so that pools overlap, fill up
and collide with routes often. Conflicts are recomputed here from the rule, not taken
from the allocator, so the test is an independent oracle.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbipam import (
    Block,
    IPAddress,
    LbState,
    Network,
    Pool,
    Selector,
    Service,
    advertisements,
    allocate,
    sharing_conflict,
)

V4 = int(ipaddress.ip_address("10.0.0.0"))
V6 = int(ipaddress.ip_address("fd00::"))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def addr(version: int, offset: int) -> IPAddress:
    return ipaddress.ip_address((V4 if version == 4 else V6) + offset)


@st.composite
def blocks(draw: Any) -> Block:
    version = draw(st.sampled_from([4, 6]))
    if draw(st.booleans()):
        size = draw(st.integers(0, 4))
        start = draw(st.integers(0, 31 >> size)) << size
        return Block.from_cidr(
            ipaddress.ip_network((addr(version, start), 32 - size + (96 if version == 6 else 0)))
        )
    a, b = sorted(draw(st.lists(st.integers(0, 31), min_size=2, max_size=2)))
    return Block.from_range(addr(version, a), addr(version, b))


@st.composite
def pools(draw: Any) -> list[Pool]:
    names = draw(st.lists(st.sampled_from("abcdef"), unique=True, min_size=1, max_size=4))
    out = []
    for name in names:
        chosen: list[Block] = []
        for block in draw(st.lists(blocks(), min_size=1, max_size=3)):
            if not any(
                b.version == block.version
                and b.span()[0] <= block.span()[1]
                and block.span()[0] <= b.span()[1]
                for b in chosen
            ):
                chosen.append(block)
        selector = draw(
            st.sampled_from([None, None, Selector({"app": "x"}), Selector({"app": "y"})])
        )
        out.append(
            Pool(
                name,
                tuple(chosen),
                selector,
                disabled=draw(st.booleans()) and draw(st.booleans()),
                allow_first_last_ips=draw(st.booleans()),
                created=draw(st.integers(0, 3)),
            )
        )
    return out


@st.composite
def services(draw: Any) -> list[Service]:
    keys = draw(
        st.lists(
            st.sampled_from(["a/s1", "a/s2", "a/s3", "a/s4", "b/s1", "b/s5"]),
            unique=True,
            min_size=2,
        )
    )
    out = []
    for key in keys:
        ns, name = key.split("/")
        families = draw(st.sampled_from([("IPv4",), ("IPv6",), ("IPv4", "IPv6")]))
        requested: tuple[IPAddress, ...] = ()
        if draw(st.integers(0, 3)) == 0:
            requested = (addr(4, draw(st.integers(0, 33))),)
        out.append(
            Service(
                ns,
                name,
                labels=draw(st.sampled_from([{}, {"app": "x"}, {"app": "y"}])),
                ports=tuple(
                    draw(
                        st.lists(
                            st.sampled_from([("TCP", 80), ("TCP", 443), ("UDP", 53)]), max_size=2
                        )
                    )
                ),
                ip_families=families,
                traffic_policy=draw(st.sampled_from(["Cluster", "Cluster", "Local"])),
                nodes=tuple(draw(st.lists(st.sampled_from(["n1", "n2"]), max_size=2))),
                requested_ips=requested,
                sharing_key=draw(st.sampled_from([None, "k", "k", "k", "j"])),
            )
        )
    return out


@st.composite
def states(draw: Any) -> LbState:
    assignments = {}
    for key in draw(
        st.lists(st.sampled_from(["a/s1", "a/s2", "a/s3", "b/s1", "c/gone"]), unique=True)
    ):
        got = [addr(v, draw(st.integers(0, 33))) for v in (4, 6) if draw(st.booleans())]
        if got:
            assignments[key] = tuple(got)
    return LbState(assignments)


routes = st.lists(
    st.builds(
        lambda v, off, size: ipaddress.ip_network(
            (addr(v, off), (32 if v == 4 else 128) - size), strict=False
        ),
        st.sampled_from([4, 6]),
        st.one_of(st.integers(0, 7), st.integers(0, 31)),  # low: where allocation starts
        st.integers(0, 2),
    ),
    max_size=3,
)


@st.composite
def scenarios(draw: Any) -> tuple[LbState, list[Pool], list[Service], list[Network]]:
    """Often the previous state is a real earlier allocation (fewer routes, other
    pools), so held addresses are mostly valid and routes can newly cover them."""
    state, pool_list, svcs = draw(states()), draw(pools()), draw(services())
    if draw(st.booleans()):
        earlier = pool_list if draw(st.booleans()) else draw(pools())
        state = allocate(state, earlier, svcs).state
    return state, pool_list, svcs, draw(routes)


def conflicting(pool_list: list[Pool]) -> set[str]:
    """The rule: a pool overlapping any older one (created, then name) is conflicting."""
    ordered = sorted(pool_list, key=lambda p: (p.created, p.name))
    return {p.name for i, p in enumerate(ordered) if any(p.overlaps(o) for o in ordered[:i])}


def routed(ip: IPAddress, in_use: list[Network]) -> bool:
    return any(ip in n for n in in_use)


@given(scenarios())
@SETTINGS
def test_invariants(
    scenario: tuple[LbState, list[Pool], list[Service], list[Network]],
) -> None:
    state, pool_list, svcs, in_use = scenario
    r = allocate(state, pool_list, svcs, in_use)
    by_key = {s.key: s for s in svcs}
    bad = conflicting(pool_list)
    holders: dict[IPAddress, list[Service]] = {}
    assert set(r.state.assignments) <= set(by_key)
    assert not r.state.problems()
    for key, held in r.state.assignments.items():
        svc = by_key[key]
        previous = state.assignments.get(key, ())
        assert {ip.version for ip in held} <= set(svc.families())
        if svc.requested_ips and svc.request_error is None:
            assert set(held) <= set(svc.requested_ips)
        for ip in held:
            holders.setdefault(ip, []).append(svc)
            homes = [p for p in pool_list if p.contains(ip) and p.name not in bad]
            assert len(homes) == 1, f"{ip} of {key} is not in exactly one eligible pool"
            assert homes[0].selects(svc)
            if homes[0].disabled or routed(ip, in_use):
                assert ip in previous, f"new {ip} for {key} from a disabled pool or routed"
            assert r.services[key].conflicting or not routed(ip, in_use)
    for ip, who in holders.items():  # never one IP twice except through compatible sharing
        for i, a in enumerate(who):
            for b in who[i + 1 :]:
                assert sharing_conflict(a, b) is None, f"{ip}: {a.key} and {b.key}"
    for key, old in state.assignments.items():
        lost = set(old) - set(r.state.assignments.get(key, ()))
        assert set(r.revoked.get(key, ())) == lost
    for name, status in r.pools.items():
        assert (status.conflicting_with is not None) == (name in bad)
        assert status.used + status.available <= status.total
    adverts = advertisements(r, svcs)
    assert set(adverts) == set(holders)
    for ip, nodes in adverts.items():
        assert set(nodes) == {n for s in holders[ip] for n in s.nodes}


@given(scenarios(), st.randoms(use_true_random=False))
@SETTINGS
def test_stable_deterministic_and_restartable(
    scenario: tuple[LbState, list[Pool], list[Service], list[Network]], rnd: random.Random
) -> None:
    state, pool_list, svcs, in_use = scenario
    r = allocate(state, pool_list, svcs, in_use)
    again = allocate(r.state, pool_list, svcs, in_use)
    assert again.state == r.state and not again.revoked
    assert again.pools == r.pools
    restarted = allocate(LbState.from_json(r.state.to_json()), pool_list, svcs, in_use)
    assert restarted.state == r.state and not restarted.revoked
    shuffled_pools, shuffled_svcs = list(pool_list), list(svcs)
    rnd.shuffle(shuffled_pools)
    rnd.shuffle(shuffled_svcs)
    other = allocate(state, shuffled_pools, shuffled_svcs, list(reversed(in_use)))
    assert other == r


@given(states(), pools(), services(), st.data())
@SETTINGS
def test_shrinking_or_deleting_pools_revokes_exactly_what_falls_outside(
    state: LbState, pool_list: list[Pool], svcs: list[Service], data: st.DataObject
) -> None:
    before = allocate(state, pool_list, svcs)
    kept = [p for p in pool_list if data.draw(st.booleans())]
    shrunk = [
        Pool(p.name, p.blocks[:1], p.selector, p.disabled, p.allow_first_last_ips, p.created)
        for p in kept
    ]
    after = allocate(before.state, shrunk, svcs)
    bad = conflicting(shrunk)
    for key, old in before.state.assignments.items():
        for ip in old:
            inside = any(p.contains(ip) and p.name not in bad for p in shrunk)
            if not inside:
                assert ip in after.revoked.get(key, ()), f"{ip} of {key} not revoked"
                assert ip not in after.state.assignments.get(key, ())
