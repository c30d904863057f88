"""NetlinkKernelRoutes against a real kernel, inside throwaway network namespaces."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from common.errors import DatapathError
from datapath.netlink import NetlinkKernelRoutes
from datapath.routes import ApplyResult, KernelRoute, KernelRouteReconciler, RouteChanges
from tests.netns_fixtures import add_link, ip, netns

pytestmark = [
    pytest.mark.netns,
]

GW1, GW2, GW3 = "10.99.0.2", "10.99.0.3", "10.99.0.4"
GW6A, GW6B = "2001:db8:99::2", "2001:db8:99::3"


@pytest.fixture
def ns() -> Iterator[str]:
    with netns("krt-") as name:
        add_link(name)
        yield name


@pytest.fixture
def kernel(ns: str) -> Iterator[NetlinkKernelRoutes]:
    k = NetlinkKernelRoutes(ns)
    try:
        yield k
    finally:
        k.close()


def shown(ns: str, *, v6: bool = False, proto: str = "bgp") -> dict[str, Any]:
    """What `ip [-6] route show proto P` lists: {dst: "blackhole" | sorted gateways | kind}."""
    fam = ["-6"] if v6 else []
    out = json.loads(ip("-n", ns, *fam, "-j", "route", "show", "proto", proto) or "[]")
    routes: dict[str, Any] = {}
    for r in out:
        dst = r["dst"] if "/" in r["dst"] else f"{r['dst']}/{128 if v6 else 32}"
        if r.get("type") == "blackhole":
            routes[dst] = "blackhole"
        elif "nexthops" in r:
            routes[dst] = sorted(h["gateway"] for h in r["nexthops"])
        elif "gateway" in r:
            routes[dst] = [r["gateway"]]
        else:
            routes[dst] = f"{r.get('type', 'unicast')} dev {r.get('dev')}"
    return routes


def upsert(kernel: NetlinkKernelRoutes, *routes: KernelRoute) -> None:
    result = kernel.apply(RouteChanges(upserts=routes))
    assert result.failed == ()
    assert result.applied == len(routes)


MIXED = (
    KernelRoute.via("10.1.0.0/24", GW1),
    KernelRoute.via("10.2.0.0/24", GW3, GW1, GW2),
    KernelRoute.blackhole("10.3.0.0/16"),
    KernelRoute.via("2001:db8:1::/48", GW6A),
    KernelRoute.via("2001:db8:2::/48", GW6B, GW6A),
    KernelRoute.blackhole("2001:db8:3::/48"),
)


def test_add_single_ecmp_blackhole_both_families(ns: str, kernel: NetlinkKernelRoutes) -> None:
    upsert(kernel, *MIXED)
    assert shown(ns) == {
        "10.1.0.0/24": [GW1],
        "10.2.0.0/24": [GW1, GW2, GW3],
        "10.3.0.0/16": "blackhole",
    }
    assert shown(ns, v6=True) == {
        "2001:db8:1::/48": [GW6A],
        "2001:db8:2::/48": [GW6A, GW6B],
        "2001:db8:3::/48": "blackhole",
    }
    assert kernel.dump() == {r.prefix: r for r in MIXED}


def test_replace_next_hops_and_kind(ns: str, kernel: NetlinkKernelRoutes) -> None:
    upsert(kernel, *MIXED)
    upsert(
        kernel,
        KernelRoute.via("10.1.0.0/24", GW2, GW3),  # single -> ECMP
        KernelRoute.via("10.2.0.0/24", GW2),  # ECMP -> single
        KernelRoute.via("10.3.0.0/16", GW1),  # blackhole -> unicast
        KernelRoute.blackhole("2001:db8:1::/48"),  # unicast -> blackhole
        KernelRoute.via("2001:db8:2::/48", GW6B),
    )
    assert shown(ns) == {
        "10.1.0.0/24": [GW2, GW3],
        "10.2.0.0/24": [GW2],
        "10.3.0.0/16": [GW1],
    }
    assert shown(ns, v6=True) == {
        "2001:db8:1::/48": "blackhole",
        "2001:db8:2::/48": [GW6B],
        "2001:db8:3::/48": "blackhole",
    }
    assert len(kernel.dump()) == len(MIXED)


def test_delete_and_delete_of_missing_route(ns: str, kernel: NetlinkKernelRoutes) -> None:
    upsert(kernel, *MIXED)
    result = kernel.apply(RouteChanges(deletes=MIXED[:2] + MIXED[3:5]))
    assert result.failed == ()
    assert shown(ns) == {"10.3.0.0/16": "blackhole"}
    assert shown(ns, v6=True) == {"2001:db8:3::/48": "blackhole"}
    again = kernel.apply(RouteChanges(deletes=MIXED))  # half are gone already: ESRCH is fine
    assert again.failed == ()
    assert again.applied == len(MIXED)
    assert shown(ns) == {} and shown(ns, v6=True) == {}


def test_other_protocols_are_never_touched(ns: str, kernel: NetlinkKernelRoutes) -> None:
    ip("-n", ns, "route", "add", "10.50.0.0/24", "via", GW1, "proto", "static")
    ip("-n", ns, "route", "add", "10.1.0.0/24", "via", GW2, "proto", "static", "metric", "100")
    ip("-n", ns, "-6", "route", "add", "2001:db8:50::/48", "via", GW6A, "proto", "static")
    ip("-n", ns, "route", "add", "10.51.0.0/24", "via", GW1, "proto", "kernel")
    before = (shown(ns, proto="static"), shown(ns, v6=True, proto="static"))
    upsert(kernel, *MIXED)
    assert kernel.dump() == {r.prefix: r for r in MIXED}
    reconciler = KernelRouteReconciler(kernel)
    assert reconciler.cleanup() == len(MIXED)
    assert kernel.dump() == {}
    assert (shown(ns, proto="static"), shown(ns, v6=True, proto="static")) == before
    assert "10.51.0.0/24" in shown(ns, proto="kernel")
    # Deleting by prefix where only a foreign route remains must not remove it either.
    assert kernel.apply(RouteChanges(deletes=(KernelRoute.via("10.50.0.0/24", GW1),))).ok
    assert shown(ns, proto="static") == before[0]


def test_unreachable_gateway_fails_alone(ns: str, kernel: NetlinkKernelRoutes) -> None:
    bad4 = KernelRoute.via("10.7.0.0/24", "192.0.2.1")
    bad6 = KernelRoute.via("2001:db8:7::/48", "2001:db8:ffff::1")
    result = kernel.apply(RouteChanges(upserts=(MIXED[0], bad4, MIXED[1], bad6, *MIXED[2:])))
    assert result.applied == len(MIXED)
    failed = dict(result.failed)
    assert set(failed) == {bad4, bad6}
    assert failed[bad4].startswith("Network is unreachable (errno 101)")
    assert "(errno " in failed[bad6]
    assert kernel.dump() == {r.prefix: r for r in MIXED}


def test_errors_survive_a_receive_buffer_overflow(ns: str) -> None:
    # A tiny receive buffer and a batch far larger than it can answer: the kernel drops
    # error replies and says ENOBUFS; every failure must still be reported.
    with NetlinkKernelRoutes(ns, rcvbuf=1, timeout=5) as small:
        small.batch = 300
        bad = tuple(KernelRoute.via(f"10.8.{i}.0/24", "192.0.2.1") for i in range(200))
        good = tuple(KernelRoute.via(f"10.9.{i}.0/24", GW1) for i in range(50))
        result = small.apply(RouteChanges(upserts=bad + good))
        assert result.applied == len(good)
        assert {r for r, _ in result.failed} == set(bad)
        assert small.dump() == {r.prefix: r for r in good}


def test_batches_larger_than_the_send_buffer_are_split(ns: str) -> None:
    with NetlinkKernelRoutes(ns, sndbuf=1, timeout=5) as small:
        small.batch = 500
        routes = tuple(KernelRoute.via(f"10.10.{i // 256}.{i % 256}/32", GW1) for i in range(400))
        assert small.apply(RouteChanges(upserts=routes)) == ApplyResult(400, ())
        assert small.dump() == {r.prefix: r for r in routes}


def test_foreign_shaped_proto_bgp_route_is_replaced_or_removed(
    ns: str, kernel: NetlinkKernelRoutes
) -> None:
    ip("-n", ns, "route", "add", "unreachable", "10.60.0.0/24", "proto", "bgp")
    ip("-n", ns, "route", "add", "10.61.0.0/24", "dev", "v0", "proto", "bgp")
    reconciler = KernelRouteReconciler(kernel)
    wanted = KernelRoute.blackhole("10.60.0.0/24")
    assert reconciler.reconcile({wanted.prefix: wanted}).ok
    assert shown(ns) == {"10.60.0.0/24": "blackhole"}


def test_reconciler_repairs_drift_on_full_run(ns: str, kernel: NetlinkKernelRoutes) -> None:
    reconciler = KernelRouteReconciler(kernel)
    desired = {r.prefix: r for r in MIXED}
    assert reconciler.reconcile(desired).applied == len(MIXED)
    ip("-n", ns, "route", "del", "10.1.0.0/24", "proto", "bgp")
    assert reconciler.reconcile(desired).applied == 0  # cached state: drift not seen
    assert reconciler.reconcile(desired, full=True).applied == 1
    assert kernel.dump() == desired


def test_ten_thousand_routes_round_trip(ns: str, kernel: NetlinkKernelRoutes) -> None:
    desired: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, KernelRoute] = {}
    base = int(ipaddress.IPv4Address("20.0.0.0"))
    for i in range(10_000):
        prefix = ipaddress.IPv4Network((base + i, 32))
        if i % 10 == 0:
            route = KernelRoute.via(prefix, GW1, GW2)
        elif i % 97 == 0:
            route = KernelRoute.blackhole(prefix)
        else:
            route = KernelRoute.via(prefix, (GW1, GW2, GW3)[i % 3])
        desired[prefix] = route
    reconciler = KernelRouteReconciler(kernel)
    result = reconciler.reconcile(desired)
    assert result.applied == 10_000 and result.ok
    assert kernel.dump() == desired
    assert len(ip("-n", ns, "route", "show", "proto", "bgp").splitlines()) >= 10_000
    assert reconciler.reconcile({}).applied == 10_000
    assert kernel.dump() == {}
    assert shown(ns) == {}


def test_missing_namespace_is_a_datapath_error() -> None:
    with pytest.raises(DatapathError, match="ip netns add"):
        NetlinkKernelRoutes("krt-does-not-exist-0")


# -- onlink routes on an explicit device (the overlay's shape) ---------------------------

TUN1, TUN2 = "10.244.1.0", "10.244.2.0"  # overlay next hops: on no connected subnet


def onlink_shown(ns: str) -> dict[str, list[tuple[str, str, bool]]]:
    """{dst: sorted (gateway, dev, onlink)} of the proto-bgp IPv4 routes, per next hop."""
    routes: dict[str, list[tuple[str, str, bool]]] = {}
    for r in json.loads(ip("-n", ns, "-j", "route", "show", "proto", "bgp") or "[]"):
        hops = r.get("nexthops", [r])
        routes[r["dst"]] = sorted(
            (h["gateway"], h["dev"], "onlink" in h.get("flags", [])) for h in hops
        )
    return routes


def test_onlink_routes_single_and_ecmp_round_trip(ns: str, kernel: NetlinkKernelRoutes) -> None:
    single = KernelRoute.via("10.244.1.0/24", TUN1, dev="v1")
    ecmp = KernelRoute.via("10.70.0.1/32", TUN2, TUN1, dev="v1")
    plain = KernelRoute.via("10.71.0.0/24", GW1)
    upsert(kernel, single, ecmp, plain)
    assert onlink_shown(ns) == {
        "10.244.1.0/24": [(TUN1, "v1", True)],
        "10.70.0.1": [(TUN1, "v1", True), (TUN2, "v1", True)],
        "10.71.0.0/24": [(GW1, "v0", False)],
    }
    assert kernel.dump() == {r.prefix: r for r in (single, ecmp, plain)}
    # The reconciler sees no difference, so a steady state costs no writes.
    reconciler = KernelRouteReconciler(kernel)
    desired = {r.prefix: r for r in (single, ecmp, plain)}
    assert reconciler.reconcile(desired, full=True).applied == 0


def test_routes_move_between_native_and_onlink(ns: str, kernel: NetlinkKernelRoutes) -> None:
    reconciler = KernelRouteReconciler(kernel)
    native = {
        KernelRoute.via("10.72.0.0/24", GW1, GW2).prefix: KernelRoute.via("10.72.0.0/24", GW1, GW2)
    }
    assert reconciler.reconcile(native).ok
    overlay = KernelRoute.via("10.72.0.0/24", TUN1, dev="v1")
    assert reconciler.reconcile({overlay.prefix: overlay}).applied == 1
    assert onlink_shown(ns) == {"10.72.0.0/24": [(TUN1, "v1", True)]}
    assert kernel.dump() == {overlay.prefix: overlay}
    back = KernelRoute.via("10.72.0.0/24", GW2)
    assert reconciler.reconcile({back.prefix: back}).applied == 1
    assert onlink_shown(ns) == {"10.72.0.0/24": [(GW2, "v0", False)]}
    assert kernel.dump() == {back.prefix: back}


def test_onlink_route_on_a_missing_device_fails_alone(ns: str, kernel: NetlinkKernelRoutes) -> None:
    gone = KernelRoute.via("10.73.0.0/24", TUN1, dev="kroute.nope")
    result = kernel.apply(RouteChanges(upserts=(MIXED[0], gone)))
    assert result.applied == 1
    assert result.failed == ((gone, "device 'kroute.nope' not found (errno 19)"),)
    assert kernel.dump() == {MIXED[0].prefix: MIXED[0]}


def test_mixed_onlink_and_plain_hops_are_a_foreign_shape(
    ns: str, kernel: NetlinkKernelRoutes
) -> None:
    ip(
        "-n", ns, "route", "add", "10.75.0.0/24", "proto", "bgp",
        "nexthop", "via", GW1, "nexthop", "via", TUN1, "dev", "v1", "onlink",
    )  # fmt: skip
    found = kernel.dump()[ipaddress.ip_network("10.75.0.0/24")]
    assert found.nexthops == (ipaddress.IPv4Address("0.0.0.0"),) and found.dev is None
    wanted = KernelRoute.via("10.75.0.0/24", TUN1, TUN2, dev="v1")
    assert KernelRouteReconciler(kernel).reconcile({wanted.prefix: wanted}).ok
    assert kernel.dump() == {wanted.prefix: wanted}


def test_device_names_cached_between_dumps_are_checked(
    ns: str, kernel: NetlinkKernelRoutes
) -> None:
    route = KernelRoute.via("10.76.0.0/24", TUN1, dev="v1")
    upsert(kernel, route)
    assert kernel.dump() == {route.prefix: route}
    index = kernel.link_index("v1")
    assert index and kernel.link_name(index) == "v1"
    kernel._devs[index] = "renamed"  # as if v1 had been renamed since the last dump
    assert kernel.dump() == {route.prefix: route}
    assert kernel.link_index("nope0") == 0 and kernel.link_name(999_999) is None
