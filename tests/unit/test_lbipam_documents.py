"""LB-IPAM inputs: selectors, blocks, pools, services and their documents."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from common.errors import ConfigError
from lbipam import (
    Block,
    DocumentError,
    Pool,
    Requirement,
    Selector,
    Service,
    parse_pool,
    parse_pools,
    parse_requested_ips,
    parse_service,
    parse_services,
    sharing_conflict,
)

ip = ipaddress.ip_address

# -- selectors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (Selector(), {}, True),
        (Selector({"app": "web"}), {"app": "web", "x": "y"}, True),
        (Selector({"app": "web"}), {"app": "db"}, False),
        (Selector({"app": "web"}), {}, False),
        (Selector(match_expressions=(Requirement("tier", "In", ("a", "b")),)), {"tier": "b"}, True),
        (Selector(match_expressions=(Requirement("tier", "In", ("a",)),)), {}, False),
        (Selector(match_expressions=(Requirement("tier", "NotIn", ("a",)),)), {}, True),
        (Selector(match_expressions=(Requirement("tier", "NotIn", ("a",)),)), {"tier": "a"}, False),
        (Selector(match_expressions=(Requirement("tier", "Exists"),)), {"tier": ""}, True),
        (Selector(match_expressions=(Requirement("tier", "Exists"),)), {}, False),
        (Selector(match_expressions=(Requirement("tier", "DoesNotExist"),)), {}, True),
        (Selector(match_expressions=(Requirement("t", "DoesNotExist"),)), {"t": "x"}, False),
    ],
)
def test_selector_has_kubernetes_semantics(
    selector: Selector, labels: dict[str, str], expected: bool
) -> None:
    assert selector.matches(labels, "default", "web") is expected


def test_selector_virtual_labels_select_namespace_and_name_and_cannot_be_faked() -> None:
    by_ns = Selector({"io.kubernetes.service.namespace": "prod"})
    assert by_ns.matches({}, "prod", "a")
    assert not by_ns.matches({"io.kubernetes.service.namespace": "prod"}, "dev", "a")
    by_name = Selector(
        match_expressions=(Requirement("io.kubernetes.service.name", "In", ("a", "b")),)
    )
    assert by_name.matches({}, "x", "b") and not by_name.matches({}, "x", "c")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("k", "In", ()), "In needs at least one value"),
        (("k", "Exists", ("x",)), "Exists takes no values"),
        (("k", "Equals", ("x",)), "not one of In, NotIn, Exists, DoesNotExist"),
        (("-bad", "Exists", ()), "the name must be"),
        (("UPPER.com/x", "Exists", ()), "prefix must be a DNS subdomain"),
        (("k", "In", ("bad value",)), "label value"),
    ],
)
def test_requirement_validation(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Requirement(*args)


# -- blocks and pools ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "allow", "usable"),
    [
        (Block.from_cidr("10.0.0.0/24"), False, ("10.0.0.1", "10.0.0.254")),
        (Block.from_cidr("10.0.0.0/24"), True, ("10.0.0.0", "10.0.0.255")),
        (Block.from_cidr("10.0.0.4/31"), False, ("10.0.0.4", "10.0.0.5")),
        (Block.from_cidr("10.0.0.9/32"), False, ("10.0.0.9", "10.0.0.9")),
        (Block.from_cidr("fd00::/120"), False, ("fd00::1", "fd00::ff")),
        (Block.from_cidr("fd00::/127"), False, ("fd00::", "fd00::1")),
        (Block.from_range("10.0.0.0", "10.0.0.255"), False, ("10.0.0.0", "10.0.0.255")),
    ],
)
def test_first_and_last_addresses(block: Block, allow: bool, usable: tuple[str, str]) -> None:
    assert block.usable(allow) == (int(ip(usable[0])), int(ip(usable[1])))


def test_block_and_pool_validation() -> None:
    with pytest.raises(ValueError, match="start is after stop"):
        Block.from_range("10.0.0.9", "10.0.0.1")
    with pytest.raises(ValueError, match="same family"):
        Block.from_range("10.0.0.1", "fd00::1")
    with pytest.raises(ValueError, match=r"overlaps 10\.0\.0\.0/24"):
        Pool("p", (Block.from_cidr("10.0.0.0/24"), Block.from_range("10.0.0.5", "10.0.0.9")))
    with pytest.raises(ValueError, match="at least one"):
        Pool("p", ())


def test_pool_document_round_trip_of_every_field() -> None:
    pool = parse_pool(
        {
            "name": "blue",
            "blocks": [{"cidr": "10.0.10.0/24"}, {"start": "fd00::10", "stop": "fd00::20"}],
            "serviceSelector": {
                "matchLabels": {"color": "blue"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
            },
            "disabled": True,
            "allowFirstLastIPs": True,
            "created": 1700000000,
        }
    )
    assert pool.name == "blue" and pool.disabled and pool.allow_first_last_ips
    assert pool.created == 1700000000.0
    assert [str(b) for b in pool.blocks] == ["10.0.10.0/24", "fd00::10-fd00::20"]
    assert pool.selector == Selector({"color": "blue"}, (Requirement("tier", "NotIn", ("db",)),))


def test_pool_document_errors_name_every_field_path() -> None:
    with pytest.raises(DocumentError) as e:
        parse_pools(
            [
                {"name": "a", "blocks": [{"cidr": "10.0.0.1/24"}, {"start": "x", "stop": "y"}]},
                {
                    "name": "a",
                    "blocks": [{"cidr": "10.1.0.0/24"}],
                    "serviceSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]},
                    "disabled": "yes",
                    "colour": 1,
                },
                {"blocks": []},
            ]
        )
    assert isinstance(e.value, ConfigError) and isinstance(e.value, ValueError)
    text = "\n".join(e.value.errors)
    for part in (
        "pools[0].blocks[0].cidr: '10.0.0.1/24' has host bits set; use 10.0.0.0/24",
        "pools[0].blocks[1]: ",
        "pools[1].colour: unknown key",
        "pools[1].serviceSelector.matchExpressions[0].values: In needs at least one value",
        "pools[1].disabled: must be true or false",
        "pools[2].blocks: required",
        "pools[2].name: required",
    ):
        assert part in text, text
    with pytest.raises(DocumentError, match=r"pools\[1\]: pool name 'a' is also at pools\[0\]"):
        parse_pools([{"name": "a", "blocks": [{"cidr": "10.0.0.0/24"}]}] * 2)


# -- services ------------------------------------------------------------------------


def test_service_document() -> None:
    svc = parse_service(
        {
            "namespace": "shop",
            "name": "web",
            "labels": {"app": "web"},
            "ports": [{"port": 443}, {"port": 53, "protocol": "UDP"}],
            "ipFamilies": ["IPv4", "IPv6"],
            "trafficPolicy": "Local",
            "nodes": ["n2", "n1", "n2"],
            "annotations": {
                "lbipam.kroute.io/ips": "10.0.10.5, fd00::5",
                "lbipam.kroute.io/sharing-key": "k",
                "other": "ignored",
            },
            "selector": {"app": "web"},
        }
    )
    assert svc.key == "shop/web"
    assert svc.ports == (("TCP", 443), ("UDP", 53))
    assert svc.nodes == ("n1", "n2") and svc.families() == (4, 6)
    assert svc.requested_ips == (ip("10.0.10.5"), ip("fd00::5")) and svc.sharing_key == "k"


def test_bad_ips_annotation_is_a_service_condition_not_a_document_error() -> None:
    svc = parse_service(
        {"namespace": "a", "name": "b", "annotations": {"lbipam.kroute.io/ips": "10.0.0.300"}}
    )
    assert svc.request_error is not None and "'10.0.0.300' is not an IP" in svc.request_error


def test_service_document_errors() -> None:
    with pytest.raises(DocumentError) as e:
        parse_services(
            [
                {"namespace": "A", "name": "x"},
                {"namespace": "a", "name": "x", "ports": [{"port": 70000}]},
                {"namespace": "a", "name": "y", "trafficPolicy": "Nearest", "extra": 1},
                {"namespace": "a", "name": "z", "ipFamilies": ["IPv5"]},
            ]
        )
    text = "\n".join(e.value.errors)
    for part in (
        "services[0].namespace: 'A' is invalid",
        "services[1].ports: port 70000 must be 1-65535",
        "services[2].extra: unknown key",
        "services[3].ipFamilies: ",
    ):
        assert part in text, text
    with pytest.raises(DocumentError, match=r"services\[1\]: service a/b is also at services\[0\]"):
        parse_services([{"namespace": "a", "name": "b"}] * 2)


def test_requested_ips_parser() -> None:
    assert parse_requested_ips(" 10.0.0.1 ,fd00::1,") == (ip("10.0.0.1"), ip("fd00::1"))
    assert parse_requested_ips("") == ()
    with pytest.raises(ValueError, match="at most one per family"):
        parse_requested_ips("10.0.0.1,10.0.0.2")


def svc(name: str, **kw: Any) -> Service:
    return Service("ns", name, **kw)


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        (svc("a", sharing_key="k"), svc("b", sharing_key="k", ports=(("TCP", 80),)), None),
        (svc("a"), svc("b", sharing_key="k"), "ns/a has no lbipam.kroute.io/sharing-key"),
        (svc("a", sharing_key="k"), svc("b", sharing_key="j"), "sharing keys differ"),
        (
            svc("a", sharing_key="k"),
            Service("other", "b", sharing_key="k"),
            "different namespaces",
        ),
        (
            svc("a", sharing_key="k", ports=(("TCP", 80), ("UDP", 53))),
            svc("b", sharing_key="k", ports=(("UDP", 80), ("UDP", 53))),
            "both use port 53/UDP",
        ),
        (
            svc("a", sharing_key="k", traffic_policy="Local"),
            svc("b", sharing_key="k"),
            "traffic policies differ",
        ),
        (
            svc("a", sharing_key="k", traffic_policy="Local", selector={"app": "x"}),
            svc("b", sharing_key="k", traffic_policy="Local", selector={"app": "y"}),
            "different pod selectors",
        ),
        (
            svc("a", sharing_key="k", traffic_policy="Local", selector={"app": "x"}, nodes=("1",)),
            svc("b", sharing_key="k", traffic_policy="Local", selector={"app": "x"}, nodes=("2",)),
            None,
        ),
        (
            svc("a", sharing_key="k", traffic_policy="Local", nodes=("n1",)),
            svc("b", sharing_key="k", traffic_policy="Local", nodes=("n2",)),
            "different nodes",
        ),
    ],
)
def test_sharing_rule(a: Service, b: Service, why: str | None) -> None:
    got = sharing_conflict(a, b)
    assert (got is None) == (sharing_conflict(b, a) is None)  # symmetric
    if why is None:
        assert got is None
    else:
        assert got is not None and why in got
