"""LB-IPAM allocation: one example per rule and per reason."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from common.errors import AllocationError
from lbipam import (
    Block,
    LbState,
    Pool,
    Result,
    Selector,
    Service,
    advertisements,
    allocate,
)

ip = ipaddress.ip_address
net = ipaddress.ip_network


def pool(name: str, *blocks: str, created: float = 0.0, **kw: Any) -> Pool:
    parsed = tuple(
        Block.from_range(*b.split("-")) if "-" in b else Block.from_cidr(b) for b in blocks
    )
    return Pool(name, parsed, created=created, **kw)


def svc(name: str, ns: str = "ns", **kw: Any) -> Service:
    return Service(ns, name, **kw)


def ips(result: Result, key: str) -> list[str]:
    return [str(a) for a in result.services[key].ips]


def codes(result: Result, key: str) -> list[str]:
    return [r.code for r in result.services[key].reasons]


BLUE = pool("blue", "10.0.0.0/29", "fd00::/125")


def test_lowest_free_address_in_namespace_name_order_skipping_network_address() -> None:
    r = allocate(LbState(), [BLUE], [svc("b"), svc("a"), svc("c", ns="aa")])
    assert ips(r, "aa/c") == ["10.0.0.1"]
    assert ips(r, "ns/a") == ["10.0.0.2"] and ips(r, "ns/b") == ["10.0.0.3"]
    assert r.services["ns/a"].pools == ("blue",) and not r.services["ns/a"].reasons
    assert r.pools["blue"].total == 6 + 7 and r.pools["blue"].used == 3
    assert r.pools["blue"].available == 10


def test_dual_stack_gets_one_address_per_family() -> None:
    r = allocate(LbState(), [BLUE], [svc("a", ip_families=("IPv6", "IPv4"))])
    assert ips(r, "ns/a") == ["10.0.0.1", "fd00::1"]


def test_range_hands_out_every_address_and_allow_first_last_does_too() -> None:
    r = allocate(LbState(), [pool("r", "10.0.0.0-10.0.0.1")], [svc("a"), svc("b")])
    assert ips(r, "ns/a") == ["10.0.0.0"] and ips(r, "ns/b") == ["10.0.0.1"]
    p = pool("p", "10.0.0.0/31", "10.1.0.0/30", allow_first_last_ips=True)
    r = allocate(LbState(), [p], [svc(n) for n in "abcdef"])
    assert [ips(r, f"ns/{n}") for n in "abcdef"] == [
        ["10.0.0.0"], ["10.0.0.1"], ["10.1.0.0"], ["10.1.0.1"], ["10.1.0.2"], ["10.1.0.3"]
    ]  # fmt: skip


def test_held_addresses_are_kept_and_new_services_do_not_take_them() -> None:
    state = LbState({"ns/z": (ip("10.0.0.1"),)})
    r = allocate(state, [BLUE], [svc("a"), svc("z")])
    assert ips(r, "ns/z") == ["10.0.0.1"] and ips(r, "ns/a") == ["10.0.0.2"]
    assert not r.revoked


def test_pools_in_created_then_name_order() -> None:
    pools = [pool("b", "10.2.0.0/24", created=1), pool("a", "10.3.0.0/24", created=1)]
    pools.append(pool("z", "10.1.0.0/24", created=0))
    r = allocate(LbState(), pools, [svc("a")])
    assert ips(r, "ns/a") == ["10.1.0.1"]
    full = pool("z", "10.1.0.1/32", created=0)
    r = allocate(LbState(), [*pools[:2], full], [svc("a"), svc("b")])
    assert ips(r, "ns/b") == ["10.3.0.1"]


def test_service_selector_and_no_matching_pool() -> None:
    prod = pool(
        "prod", "10.0.0.0/24", selector=Selector({"io.kubernetes.service.namespace": "prod"})
    )
    web = pool("web", "10.1.0.0/24", selector=Selector({"app": "web"}))
    r = allocate(
        LbState(), [prod, web], [svc("x", ns="prod"), svc("w", labels={"app": "web"}), svc("o")]
    )
    assert ips(r, "prod/x") == ["10.0.0.1"] and ips(r, "ns/w") == ["10.1.0.1"]
    assert ips(r, "ns/o") == [] and codes(r, "ns/o") == ["NoMatchingPool"]
    assert r.services["ns/o"].missing == ("IPv4",)
    r = allocate(LbState(), [prod], [svc("x", ns="prod", ip_families=("IPv4", "IPv6"))])
    assert ips(r, "prod/x") == ["10.0.0.1"] and codes(r, "prod/x") == ["NoMatchingPool"]
    assert "no IPv6 pool" in r.services["prod/x"].reasons[0].message


def test_pool_exhausted() -> None:
    r = allocate(LbState(), [pool("tiny", "10.0.0.5/32")], [svc("a"), svc("b")])
    assert ips(r, "ns/a") == ["10.0.0.5"] and codes(r, "ns/b") == ["PoolExhausted"]
    assert "tiny" in r.services["ns/b"].reasons[0].message
    assert r.pools["tiny"].available == 0


def test_requested_ip_granted_before_automatic_allocation() -> None:
    r = allocate(LbState(), [BLUE], [svc("a"), svc("b", requested_ips=(ip("10.0.0.1"),))])
    assert ips(r, "ns/b") == ["10.0.0.1"] and ips(r, "ns/a") == ["10.0.0.2"]


def test_requested_ip_taken_outside_and_wrong_family() -> None:
    state = LbState({"ns/a": (ip("10.0.0.1"),)})
    services = [
        svc("a"),
        svc("b", requested_ips=(ip("10.0.0.1"),)),
        svc("c", requested_ips=(ip("10.9.9.9"),)),
        svc("d", requested_ips=(ip("10.0.0.7"),)),  # broadcast of 10.0.0.0/29
        svc("e", requested_ips=(ip("fd00::2"),)),  # ipFamilies is IPv4 only
        svc("f", request_error="annotation lbipam.kroute.io/ips: 'x' is not an IP address"),
    ]
    r = allocate(state, [BLUE], services)
    assert codes(r, "ns/b") == ["RequestedIPTaken"]
    assert "held by ns/a" in r.services["ns/b"].reasons[0].message
    assert codes(r, "ns/c") == ["RequestedIPOutsidePools"]
    assert codes(r, "ns/d") == ["RequestedIPOutsidePools"]
    assert "allowFirstLastIPs" in r.services["ns/d"].reasons[0].message
    assert codes(r, "ns/e") == ["InvalidRequest"] and codes(r, "ns/f") == ["InvalidRequest"]
    assert all(ips(r, f"ns/{n}") == [] for n in "bcdef")


def test_requested_ip_in_pool_not_selecting_the_service() -> None:
    web = pool("web", "10.1.0.0/24", selector=Selector({"app": "web"}))
    r = allocate(LbState(), [web], [svc("a", requested_ips=(ip("10.1.0.9"),))])
    assert codes(r, "ns/a") == ["RequestedIPOutsidePools"]
    assert "does not select ns/a" in r.services["ns/a"].reasons[0].message


def test_changing_the_request_moves_the_service() -> None:
    state = LbState({"ns/a": (ip("10.0.0.1"),)})
    r = allocate(state, [BLUE], [svc("a", requested_ips=(ip("10.0.0.4"),))])
    assert ips(r, "ns/a") == ["10.0.0.4"] and r.revoked == {"ns/a": (ip("10.0.0.1"),)}


def test_disabled_pool_keeps_holders_but_hands_out_nothing_new() -> None:
    off = pool("off", "10.0.0.0/24", disabled=True)
    state = LbState({"ns/a": (ip("10.0.0.1"),)})
    services = [svc("a"), svc("b"), svc("c", requested_ips=(ip("10.0.0.9"),))]
    r = allocate(state, [off], services)
    assert ips(r, "ns/a") == ["10.0.0.1"] and not r.revoked
    assert codes(r, "ns/b") == ["PoolDisabled"] and codes(r, "ns/c") == ["PoolDisabled"]
    assert r.pools["off"].disabled and r.pools["off"].used == 1 and r.pools["off"].available == 0


def test_overlapping_newer_pool_conflicts_and_loses_its_addresses() -> None:
    old = pool("old", "10.0.0.0/24", created=1)
    new = pool("new", "10.0.0.128/25", "10.5.0.0/24", created=2)
    state = LbState({"ns/a": (ip("10.5.0.1"),)})
    r = allocate(state, [new, old], [svc("a", selector={"x": "y"})])
    assert r.pools["new"].conflicting_with == "old" and r.pools["old"].conflicting_with is None
    assert r.pools["new"].used == 0 and r.pools["new"].available == 0
    assert r.revoked == {"ns/a": (ip("10.5.0.1"),)} and ips(r, "ns/a") == ["10.0.0.1"]
    assert [x.code for x in r.services["ns/a"].reasons] == ["Revoked"]
    assert "overlaps the older pool old" in r.services["ns/a"].reasons[0].message
    only_new = pool("new", "10.0.0.128/25", created=2, selector=Selector({"x": "y"}))
    r = allocate(LbState(), [old, only_new], [svc("b", labels={"x": "y"})])
    assert ips(r, "ns/b") == ["10.0.0.1"]  # old selects everything; new is not used
    old_sel = pool("old", "10.0.0.0/24", created=1, selector=Selector({"x": "z"}))
    r = allocate(LbState(), [old_sel, only_new], [svc("b", labels={"x": "y"})])
    assert codes(r, "ns/b") == ["PoolConflicting"] and "overlaps old" in str(r.services["ns/b"])


def test_same_created_time_conflict_goes_to_the_larger_name() -> None:
    r = allocate(LbState(), [pool("b", "10.0.0.0/24"), pool("a", "10.0.0.0/25")], [])
    assert r.pools["b"].conflicting_with == "a" and r.pools["a"].conflicting_with is None


def test_shrinking_or_deleting_a_pool_revokes_outside_addresses() -> None:
    state = LbState({"ns/a": (ip("10.0.0.1"),), "ns/b": (ip("10.0.0.6"),)})
    r = allocate(state, [pool("blue", "10.0.0.0/30")], [svc("a"), svc("b")])
    assert r.revoked == {"ns/b": (ip("10.0.0.6"),)} and ips(r, "ns/b") == ["10.0.0.2"]
    assert "pool deleted or shrunk" in r.services["ns/b"].reasons[0].message
    r = allocate(state, [], [svc("a")])
    assert r.revoked == {"ns/a": (ip("10.0.0.1"),), "ns/b": (ip("10.0.0.6"),)}
    assert r.state.assignments == {}


def test_selector_change_family_change_revoke() -> None:
    state = LbState({"ns/a": (ip("10.0.0.1"), ip("fd00::1"))})
    sel = pool("blue", "10.0.0.0/29", "fd00::/125", selector=Selector({"app": "x"}))
    r = allocate(state, [sel], [svc("a", labels={"app": "y"}, ip_families=("IPv4", "IPv6"))])
    assert r.revoked == {"ns/a": (ip("10.0.0.1"), ip("fd00::1"))}
    r = allocate(state, [BLUE], [svc("a")])
    assert r.revoked == {"ns/a": (ip("fd00::1"),)} and ips(r, "ns/a") == ["10.0.0.1"]


def test_network_routes_are_never_handed_out_and_holders_are_flagged() -> None:
    state = LbState({"ns/old": (ip("10.0.0.2"),)})
    in_use = [net("10.0.0.0/31"), ip("10.0.0.3"), net("10.0.0.2/32")]
    services = [svc("old"), svc("new"), svc("req", requested_ips=(ip("10.0.0.1"),))]
    r = allocate(state, [BLUE], services, in_use)
    assert ips(r, "ns/old") == ["10.0.0.2"] and r.services["ns/old"].conflicting
    assert codes(r, "ns/old") == ["InUseByNetwork"]
    assert "10.0.0.2/32" in r.services["ns/old"].reasons[0].message  # most specific route
    assert ips(r, "ns/new") == ["10.0.0.4"] and not r.services["ns/new"].conflicting
    assert codes(r, "ns/req") == ["InUseByNetwork"] and ips(r, "ns/req") == []
    assert r.pools["blue"].available == 13 - 4  # .1 .3 routed, .2 routed and held, .4 held


def test_sharing_key_shares_an_ip_when_compatible() -> None:
    web: dict[str, Any] = {"sharing_key": "k", "ports": (("TCP", 80),)}
    dns: dict[str, Any] = {"sharing_key": "k", "ports": (("UDP", 53),)}
    services = [svc("web", **web), svc("dns", **dns), svc("web2", **web), svc("x", ns="o", **dns)]
    r = allocate(LbState(), [BLUE], services)
    assert ips(r, "ns/dns") == ips(r, "ns/web") == ["10.0.0.1"]
    assert ips(r, "ns/web2") == ["10.0.0.2"]  # port 80/TCP collides with ns/web
    assert ips(r, "o/x") == ["10.0.0.3"]  # other namespace
    assert r.services["ns/web"].shared_with == ("ns/dns",)
    assert r.pools["blue"].used == 3
    again = allocate(r.state, [BLUE], services)
    assert again.state == r.state and not again.revoked


def test_requested_ip_is_shared_when_compatible() -> None:
    a = svc("a", sharing_key="k", ports=(("TCP", 80),), requested_ips=(ip("10.0.0.5"),))
    b = svc("b", sharing_key="k", ports=(("TCP", 443),), requested_ips=(ip("10.0.0.5"),))
    c = svc("c", sharing_key="k", ports=(("TCP", 443),), requested_ips=(ip("10.0.0.5"),))
    r = allocate(LbState(), [BLUE], [a, b, c])
    assert ips(r, "ns/a") == ips(r, "ns/b") == ["10.0.0.5"] and codes(r, "ns/c") == [
        "RequestedIPTaken"
    ]
    assert "443/TCP" in r.services["ns/c"].reasons[0].message


def test_sharing_that_became_incompatible_revokes_the_later_holder() -> None:
    state = LbState({"ns/a": (ip("10.0.0.1"),), "ns/b": (ip("10.0.0.1"),)})
    services = [svc("a", sharing_key="k", ports=(("TCP", 80),))]
    services.append(svc("b", sharing_key="k", ports=(("TCP", 80),)))
    r = allocate(state, [BLUE], services)
    assert ips(r, "ns/a") == ["10.0.0.1"] and ips(r, "ns/b") == ["10.0.0.2"]
    assert r.revoked == {"ns/b": (ip("10.0.0.1"),)}


def test_advertisements_union_the_nodes_of_every_holder() -> None:
    services = [
        svc("a", sharing_key="k", ports=(("TCP", 80),), nodes=("n1", "n2", "n3")),
        svc("b", sharing_key="k", ports=(("TCP", 81),), nodes=("n2", "n3", "n1")),
        svc("l", traffic_policy="Local", nodes=("n2",)),
        svc("none", traffic_policy="Local"),
        svc("v6", ip_families=("IPv6",), nodes=("n1",)),
    ]
    r = allocate(LbState(), [BLUE], services)
    assert advertisements(r, services) == {
        ip("10.0.0.1"): ("n1", "n2", "n3"),
        ip("10.0.0.2"): ("n2",),
        ip("10.0.0.3"): (),
        ip("fd00::1"): ("n1",),
    }


def test_state_json_round_trip_and_validation() -> None:
    state = LbState({"ns/a": (ip("10.0.0.1"), ip("fd00::1")), "x/y": (ip("10.0.0.1"),)})
    assert LbState.from_json(state.to_json()) == state
    for text, message in [
        ("{", "not JSON"),
        ('{"version": 2}', "version is 2"),
        ('{"version": 1, "assignments": {"a": ["10.0.0.1"]}}', "not namespace/name"),
        ('{"version": 1, "assignments": {"a/b": ["10.0.0.1", "10.0.0.2"]}}', "two addresses"),
        ('{"version": 1, "assignments": {"a/b": ["nope"]}}', "malformed address"),
    ]:
        with pytest.raises(ValueError, match=message):
            LbState.from_json(text)


def test_duplicate_inputs_are_refused() -> None:
    with pytest.raises(AllocationError, match="pool blue is given twice"):
        allocate(LbState(), [BLUE, BLUE], [])
    with pytest.raises(AllocationError, match="service ns/a is given twice"):
        allocate(LbState(), [BLUE], [svc("a"), svc("a")])


def test_large_ipv6_pool_is_not_enumerated() -> None:
    big = pool("big", "fd00::/64")
    r = allocate(LbState(), [big], [svc("a", ip_families=("IPv6",))], [net("fd00::/65")])
    assert ips(r, "ns/a") == ["fd00::8000:0:0:0"]
    assert r.pools["big"].available == 2**63 - 1
