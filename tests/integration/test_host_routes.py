"""datapath.host_routes against the kernel: the node's own main-table routes, read raw,
match what `ip route` shows, and kroute's routes (proto 186) and other tables are left
out."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest

from common.errors import DatapathError
from datapath.host_routes import HostRoute, dump_host_routes
from tests.netns_fixtures import add_link, ip, netns

pytestmark = pytest.mark.netns


@pytest.fixture
def ns() -> Iterator[str]:
    with netns("krhr-") as name:
        add_link(name)
        yield name


def test_the_node_routes_are_read_and_kroute_routes_skipped(ns: str) -> None:
    ip("-n", ns, "route", "add", "default", "via", "10.99.0.254")
    ip("-n", ns, "route", "add", "10.244.1.5/32", "dev", "v1", "scope", "link")
    ip("-n", ns, "route", "add", "192.0.2.0/24", "nexthop", "via", "10.99.0.2",
       "nexthop", "via", "10.99.0.3")  # fmt: skip
    ip("-n", ns, "route", "add", "198.51.100.0/24", "via", "10.99.0.4", "proto", "static")
    for i in range(300):  # kroute's own: never returned
        ip("-n", ns, "route", "add", f"203.0.113.{i % 250}/32" if i < 250 else
           f"100.64.0.{i - 250}/32", "via", "10.99.0.9", "proto", "186")  # fmt: skip
    ip("-n", ns, "route", "add", "10.77.0.0/16", "via", "10.99.0.5", "table", "100")
    ip("-n", ns, "route", "add", "blackhole", "10.66.0.0/16")

    got = {r.prefix: r for r in dump_host_routes(ns)}
    shown = json.loads(ip("-n", ns, "-j", "-4", "route", "show", "table", "main"))
    expected = {
        ipaddress.IPv4Network("0.0.0.0/0" if r["dst"] == "default" else r["dst"])
        for r in shown
        if r.get("protocol") not in ("186", "bgp") and r.get("type", "unicast") == "unicast"
    }
    assert set(got) == expected
    gw = ipaddress.IPv4Address
    assert got[ipaddress.IPv4Network("0.0.0.0/0")].gateways == (gw("10.99.0.254"),)
    assert got[ipaddress.IPv4Network("192.0.2.0/24")].gateways == (
        gw("10.99.0.2"),
        gw("10.99.0.3"),
    )
    pod = got[ipaddress.IPv4Network("10.244.1.5/32")]
    assert (pod.scope, pod.gateways, pod.proto) == (253, (), 3)  # link, boot
    assert pod.oif == int(json.loads(ip("-n", ns, "-j", "link", "show", "v1"))[0]["ifindex"])
    connected = got[ipaddress.IPv4Network("10.99.0.0/24")]
    assert connected.proto == 2 and connected.scope == 253  # kernel, link
    assert got[ipaddress.IPv4Network("198.51.100.0/24")] == HostRoute(
        ipaddress.IPv4Network("198.51.100.0/24"), 4, 0, connected.oif, (gw("10.99.0.4"),)
    )


def test_a_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(DatapathError, match="ip netns add"):
        dump_host_routes("krhr-no-such-namespace")
