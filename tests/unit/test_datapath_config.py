"""bgpd.config.datapath: the routing and datapath sections load with defaults, and
impossible combinations are refused with a line naming the field and what to set."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bgpd.config.datapath import parse_port_range
from bgpd.config.model import parse_config
from common.errors import ConfigError
from tests.unit.conftest import cluster_data


def with_sections(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(cluster_data())
    data.update(sections)
    return data


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, host_defaults=True)
    return info.value.errors


def test_defaults_are_native_routing_and_kernel_forwarding() -> None:
    config = parse_config(cluster_data())
    assert config.routing.mode == "native"
    assert config.routing.effective_overlay == "never"
    assert config.routing.native_routing_cidr is None
    assert config.datapath.bpf.enabled is False
    assert config.datapath.bpf.pin_dir == "/sys/fs/bpf/kroute"
    assert config.datapath.masquerade.enabled is False
    assert config.datapath.masquerade.ports == (61000, 65535)


def test_full_sections_load_in_camel_case() -> None:
    data = with_sections(
        routing={
            "mode": "vxlan",
            "overlay": "crossSubnet",
            "nativeRoutingCIDR": "10.0.0.0/8",
            "vxlan": {"vni": 42, "port": 4789},
        },
        datapath={
            "bpf": {"enabled": True, "pinDir": "/sys/fs/bpf/kr-lab/n1/"},
            "masquerade": {
                "enabled": True,
                "interfaces": ["eth0"],
                "portRange": "40000-40100",
                "maxEntries": 1024,
                "timeouts": {"tcp": 60, "udp": 10, "icmp": 5},
            },
        },
    )
    config = parse_config(data)
    assert config.routing.effective_overlay == "crossSubnet"
    assert config.routing.vxlan is not None and config.routing.vxlan.vni == 42
    assert str(config.routing.native_routing_cidr) == "10.0.0.0/8"
    assert config.datapath.bpf.pin_dir == "/sys/fs/bpf/kr-lab/n1"
    assert config.datapath.masquerade.ports == (40000, 40100)
    assert config.datapath.masquerade.interfaces == ("eth0",)
    assert config.datapath.masquerade.timeouts.udp == 10


def test_vxlan_without_overlay_means_always() -> None:
    config = parse_config(with_sections(routing={"mode": "vxlan"}))
    assert config.routing.effective_overlay == "always"


def test_masquerade_in_native_mode_needs_native_routing_cidr() -> None:
    errors = errors_of(with_sections(datapath={"masquerade": {"enabled": True}}))
    assert len(errors) == 1
    assert errors[0].startswith("datapath.masquerade.enabled:")
    assert "routing.nativeRoutingCIDR" in errors[0] and "set it" in errors[0]


def test_overlay_and_vxlan_settings_are_refused_in_native_mode() -> None:
    errors = errors_of(with_sections(routing={"overlay": "crossSubnet", "vxlan": {"vni": 2}}))
    assert errors[0].startswith("routing.overlay: crossSubnet needs routing.mode: vxlan")
    assert errors[1].startswith("routing.vxlan: only for routing.mode: vxlan")
    # "never" says what native mode does anyway: accepted
    parse_config(with_sections(routing={"overlay": "never"}))


def test_native_routing_cidr_must_cover_the_pod_cidrs() -> None:
    errors = errors_of(with_sections(routing={"nativeRoutingCIDR": "192.168.0.0/16"}))
    assert errors and all(e.startswith("routing.nativeRoutingCIDR: 192.168.0.0/16") for e in errors)
    assert "widen it" in errors[0]


def test_native_routing_cidr_must_be_ipv4() -> None:
    errors = errors_of(with_sections(routing={"nativeRoutingCIDR": "fd00::/8"}))
    assert errors[0].startswith("routing.nativeRoutingCIDR: fd00::/8 is IPv6")


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"routing": {"mode": "gre"}}, "routing.mode"),
        ({"routing": {"mode": "vxlan", "vxlan": {"vni": 0}}}, "routing.vxlan.vni"),
        ({"routing": {"mode": "vxlan", "vxlan": {"port": 70000}}}, "routing.vxlan.port"),
        ({"datapath": {"bpf": {"pinDir": "kroute"}}}, "datapath.bpf.pinDir"),
        ({"datapath": {"bpf": {"enable": True}}}, "datapath.bpf.enable"),
        ({"datapath": {"masquerade": {"portRange": "9-1"}}}, "datapath.masquerade.portRange"),
        ({"datapath": {"masquerade": {"portRange": "any"}}}, "datapath.masquerade.portRange"),
        (
            {"datapath": {"masquerade": {"interfaces": ["a-very-long-ifname0"]}}},
            "datapath.masquerade.interfaces",
        ),
        ({"datapath": {"masquerade": {"maxEntries": 10}}}, "datapath.masquerade.maxEntries"),
    ],
)
def test_bad_fields_are_named(section: dict[str, Any], field: str) -> None:
    errors = errors_of(with_sections(**section))
    assert any(e.startswith(field) for e in errors), errors


def test_port_range_parsing() -> None:
    assert parse_port_range("1-65535") == (1, 65535)
    assert parse_port_range("80-80") == (80, 80)
    for bad in ("0-10", "10", "a-b", "5-70000"):
        with pytest.raises(ValueError, match="FIRST"):
            parse_port_range(bad)
