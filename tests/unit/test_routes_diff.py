"""Pure route logic: values, diff, the in-memory kernel and the reconciler."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from datapath.routes import (
    ApplyResult,
    KernelRoute,
    KernelRouteReconciler,
    Network,
    RouteChanges,
    diff_routes,
)
from tests.fakes.kernel_routes import FakeKernelRoutes

A = KernelRoute.via("10.1.0.0/24", "10.0.0.2")
B = KernelRoute.via("10.2.0.0/24", "10.0.0.3", "10.0.0.2")
H = KernelRoute.blackhole("10.3.0.0/16")
V6 = KernelRoute.via("2001:db8:1::/48", "2001:db8::2")


def table(*routes: KernelRoute) -> dict[Network, KernelRoute]:
    return {r.prefix: r for r in routes}


def test_route_values_are_normalised() -> None:
    r = KernelRoute.via("10.2.0.0/24", "10.0.0.3", "10.0.0.2", "10.0.0.3")
    assert r.nexthops == (ipaddress.IPv4Address("10.0.0.2"), ipaddress.IPv4Address("10.0.0.3"))
    assert r == B and hash(r) == hash(B)
    assert H.is_blackhole and not A.is_blackhole
    assert str(B) == "10.2.0.0/24 via 10.0.0.2,10.0.0.3"
    assert str(H) == "blackhole 10.3.0.0/16"


@pytest.mark.parametrize(
    ("prefix", "hops"),
    [
        ("10.0.0.0/24", ("2001:db8::1",)),  # family mismatch
        ("10.0.0.1/24", ("10.0.0.2",)),  # host bits set
        ("10.0.0.0/24", ("0.0.0.0",)),  # not a gateway
        ("10.0.0.0/24", ()),  # via() needs a next hop
    ],
)
def test_invalid_routes_are_refused(prefix: str, hops: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        KernelRoute.via(prefix, *hops)


def test_diff_adds_missing_and_deletes_extra() -> None:
    changes = diff_routes(table(A, B), table(B, H))
    assert changes == RouteChanges(upserts=(A,), deletes=(H,))
    assert len(changes) == 2 and changes


def test_diff_changed_next_hops_and_kind_are_upserts() -> None:
    b2 = KernelRoute.via(B.prefix, "10.0.0.2")
    h2 = KernelRoute.via(H.prefix, "10.0.0.9")
    a2 = KernelRoute.blackhole(A.prefix)
    changes = diff_routes(table(a2, b2, h2), table(A, B, H))
    assert changes.upserts == (a2, b2, h2)
    assert changes.deletes == ()


def test_diff_no_op_is_empty() -> None:
    same = KernelRoute.via(B.prefix, "10.0.0.2", "10.0.0.3")
    changes = diff_routes(table(A, same, H, V6), table(A, B, H, V6))
    assert not changes and len(changes) == 0


def test_diff_is_sorted_by_prefix_v4_first() -> None:
    routes = [
        KernelRoute.via("2001:db8::/32", "2001:db8::2"),
        KernelRoute.via("10.0.0.0/24", "10.0.0.1"),
        KernelRoute.via("9.0.0.0/8", "10.0.0.1"),
        KernelRoute.via("10.0.0.0/16", "10.0.0.1"),
    ]
    ups = diff_routes(table(*routes), {}).upserts
    assert [str(r.prefix) for r in ups] == [
        "9.0.0.0/8",
        "10.0.0.0/16",
        "10.0.0.0/24",
        "2001:db8::/32",
    ]
    assert diff_routes({}, table(*routes)).deletes == ups


def test_fake_kernel_applies_and_fails_on_request() -> None:
    fake = FakeKernelRoutes.holding([A, H])
    fake.fail[B.prefix] = "Network is unreachable (errno 101)"
    result = fake.apply(RouteChanges(upserts=(B, V6), deletes=(H,)))
    assert result == ApplyResult(2, ((B, "Network is unreachable (errno 101)"),))
    assert fake.dump() == table(A, V6)
    fake.close()
    assert fake.closed


def test_reconciler_uses_cache_until_something_fails(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeKernelRoutes()
    rec = KernelRouteReconciler(fake)
    assert rec.reconcile(table(A, B)).applied == 2
    assert rec.reconcile(table(A, B)).applied == 0
    assert fake.dump_calls == 1  # steady state: no dump

    fake.fail[H.prefix] = "No route to host (errno 113)"
    with caplog.at_level(logging.WARNING, logger="datapath.routes"):
        result = rec.reconcile(table(A, B, H))
    assert result.failed == ((H, "No route to host (errno 113)"),)
    assert rec.failures_total == 1
    assert "op=upsert prefix=10.3.0.0/16 nexthops=blackhole" in caplog.text
    assert "errno 113" in caplog.text

    del fake.fail[H.prefix]
    assert rec.reconcile(table(A, B, H)).applied == 1
    assert fake.dump_calls == 2  # re-dumped after the failure
    assert fake.dump() == table(A, B, H)


def test_reconciler_full_run_redumps_and_repairs_drift() -> None:
    fake = FakeKernelRoutes()
    rec = KernelRouteReconciler(fake)
    rec.reconcile(table(A, B))
    del fake.routes[A.prefix]  # someone removed it behind our back
    fake.routes[H.prefix] = H  # and added one of "ours"
    assert rec.reconcile(table(A, B)).applied == 0
    result = rec.reconcile(table(A, B), full=True)
    assert result.applied == 2
    assert fake.dump() == table(A, B)


def test_reconciler_drops_cache_when_apply_raises() -> None:
    class Broken(FakeKernelRoutes):
        def apply(self, changes: RouteChanges) -> ApplyResult:
            raise OSError("socket gone")

    broken = Broken()
    rec = KernelRouteReconciler(broken)
    with pytest.raises(OSError):
        rec.reconcile(table(A))
    with pytest.raises(OSError):
        rec.reconcile(table(A))
    assert broken.dump_calls == 2


def test_cleanup_deletes_everything_and_counts() -> None:
    fake = FakeKernelRoutes.holding([A, B, H, V6])
    fake.fail[V6.prefix] = "Operation not permitted (errno 1)"
    rec = KernelRouteReconciler(fake)
    assert rec.cleanup() == 3
    assert fake.dump() == table(V6)
    assert rec.failures_total == 1
    del fake.fail[V6.prefix]
    assert rec.cleanup() == 1
    assert fake.dump() == {}
    assert rec.actual() == {}
    rec.close()
    assert fake.closed


def test_onlink_routes_carry_their_device_into_equality_and_text() -> None:
    plain = KernelRoute.via("10.4.0.0/24", "10.244.1.0")
    onlink = KernelRoute.via("10.4.0.0/24", "10.244.1.0", dev="kroute.vxlan")
    assert plain != onlink
    assert onlink == KernelRoute(onlink.prefix, onlink.nexthops, "kroute.vxlan")
    assert str(onlink) == "10.4.0.0/24 via 10.244.1.0 dev kroute.vxlan onlink"
    changes = diff_routes(table(onlink), table(plain))
    assert changes == RouteChanges(upserts=(onlink,))


@pytest.mark.parametrize("dev", ["", "a" * 16, "bad/name", "sp ace", "a:b"])
def test_invalid_devices_are_refused(dev: str) -> None:
    with pytest.raises(ValueError, match="dev"):
        KernelRoute.via("10.4.0.0/24", "10.244.1.0", dev=dev)


def test_a_blackhole_has_no_device() -> None:
    with pytest.raises(ValueError, match="needs a next hop"):
        KernelRoute(ipaddress.ip_network("10.4.0.0/24"), (), "kroute.vxlan")
