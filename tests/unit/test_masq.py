"""The pure parts of masquerade: spec validation, expiry decisions, status lines, the
implementation choice and the nftables script (datapath/masq.py, datapath/nft_masq.py)."""

from __future__ import annotations

import ipaddress

import pytest

from datapath.masq import (
    MasqueradeSpec,
    NatEntry,
    NatTimeouts,
    choose_masquerade,
    expired,
    masquerade_line,
)
from datapath.nft_masq import ruleset
from tests.fakes.masq import FakeMasquerader


def spec(**kw: object) -> MasqueradeSpec:
    args: dict[str, object] = {
        "node_ip": "192.168.1.11",
        "egress_interfaces": ["eth0"],
        "pod_cidrs": ["10.244.1.0/24"],
        "native_routing_cidr": "10.244.0.0/16",
    }
    args.update(kw)
    return MasqueradeSpec.of(**args)  # type: ignore[arg-type]


def entry(proto: int, last_seen: float, closing: bool = False) -> NatEntry:
    a = ipaddress.IPv4Address
    return NatEntry(
        proto, a("10.244.1.5"), 4000, a("192.168.1.11"), 61000, a("1.1.1.1"), 53, last_seen, closing
    )


def test_spec_defaults_stay_above_the_kernel_local_port_range() -> None:
    s = spec()
    assert s.port_range == (61000, 65535)
    assert s.native_routing_cidrs == (ipaddress.IPv4Network("10.244.0.0/16"),)
    assert MasqueradeSpec.from_dict(s.as_dict()) == s


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("egress_interfaces", [], "egressInterfaces"),
        ("egress_interfaces", ["a very long name"], "egressInterfaces"),
        ("pod_cidrs", [], "podCIDRs"),
        ("native_routing_cidr", [], "nativeRoutingCIDR"),
        ("port_range", (70000, 70001), "portRange"),
        ("port_range", (62000, 61000), "portRange"),
        ("max_entries", 0, "maxEntries"),
    ],
)
def test_bad_spec_names_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**{field: value})


def test_expiry_uses_the_protocol_timeout() -> None:
    t = NatTimeouts(tcp=100, tcp_closing=5, udp=30, icmp=10)
    entries = [entry(6, 0), entry(6, 0, closing=True), entry(17, 0), entry(1, 0)]
    assert expired(entries, 8, t) == [entries[1]]
    assert expired(entries, 20, t) == [entries[1], entries[3]]
    assert expired(entries, 101, t) == entries
    assert expired(entries, 5, t) == []


def test_fake_masquerader_sweeps_with_its_spec() -> None:
    fake = FakeMasquerader()
    fake.entries = [entry(17, 0)]
    assert fake.expire_nat(1000) == 0  # no spec: nothing to sweep with
    fake.set_masquerade(spec(timeouts=NatTimeouts(udp=10)))
    assert fake.expire_nat(5) == 0
    assert fake.expire_nat(11) == 1
    assert fake.masquerade_status()["line"] == "BPF [eth0] 10.244.1.0/24"
    assert fake.clear_masquerade() and not fake.clear_masquerade()


def test_status_lines_and_choice() -> None:
    assert masquerade_line("nftables", spec().summary()) == "nftables [eth0] 10.244.1.0/24"
    assert masquerade_line("bpf", None, "no spec") == "Disabled (no spec)"
    assert choose_masquerade(True, None).kind == "bpf"
    off = choose_masquerade(False, None)
    assert (off.kind, off.reason) == ("nftables", "datapath.bpf.enabled is false")
    assert "no module named bcc" in choose_masquerade(True, "no module named bcc").reason


def test_nft_script_replaces_the_chain_atomically() -> None:
    script = ruleset(spec(egress_interfaces=["eth0", "eth1"], port_range=(62000, 63000)))
    lines = script.splitlines()
    assert lines[0] == "table ip kroute {}"
    assert lines[2] == "flush chain ip kroute pod_masquerade"
    match = 'oifname { "eth0", "eth1" } ip saddr { 10.244.1.0/24 } ip daddr != { 10.244.0.0/16 }'
    assert match in lines[3] and "meta l4proto { tcp, udp }" in lines[3]
    assert "masquerade to :62000-63000" in lines[3]
    assert match in lines[4] and "l4proto" not in lines[4]
    comment = 'comment "kroute masquerade [eth0,eth1] 10.244.1.0/24"'
    assert lines[4].endswith(f"counter masquerade {comment}")
