"""bgpd.bgp.peers.resolve_peers: who this node peers with and with which policy (full mesh,
`mesh: none` with route reflectors, explicit `bgp.peers`), and the config errors of
explicit peers."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address, IPv6Address, ip_network
from pathlib import Path
from typing import Any

import pytest

from bgpd.bgp.peers import (
    EXTERNAL,
    IBGP_PEER,
    MESH,
    REFLECTOR,
    RR_CLIENT,
    ExportRules,
    ImportRules,
    Peer,
    cluster_prefixes,
    own_cluster_id,
    resolve_peers,
)
from bgpd.config.model import Config, parse_config
from bgpd.config.peers import ALL_KINDS
from common.errors import ConfigError
from tests.unit.conftest import CIDR_A, CIDR_B, CIDR_C, NODE_A, NODE_B, NODE_C, cluster_data

NODE_D = IPv4Address("10.0.0.4")
CIDR_D = ip_network("10.244.4.0/24")
UPSTREAM = IPv4Address("192.0.2.1")
UPSTREAM6 = IPv6Address("2001:db8::1")
SECRET = "s3cr3t-md5-Pa55"


def four_nodes(reflectors: dict[str, str] | None = None, me: str = "node-a") -> dict[str, Any]:
    """cluster_data() with a fourth node; `reflectors` maps node name -> cluster ID."""
    data = copy.deepcopy(cluster_data())
    data["node"]["name"] = me
    data["cluster"]["nodes"].append(
        {"name": "node-d", "ip": str(NODE_D), "podCIDRs": [str(CIDR_D)]}
    )
    for node in data["cluster"]["nodes"]:
        if reflectors and node["name"] in reflectors:
            node["routeReflectorClusterId"] = reflectors[node["name"]]
    return data


def load(data: dict[str, Any], **bgp: Any) -> Config:
    data = copy.deepcopy(data)
    data["bgp"].update(bgp)
    return parse_config(data, host_defaults=True)


def errors_of(data: dict[str, Any], **bgp: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(data, **bgp)
    return info.value.errors


def by_address(peers: tuple[Peer, ...]) -> dict[object, Peer]:
    return {p.address: p for p in peers}


def kinds(peers: tuple[Peer, ...]) -> dict[object, tuple[str, bool]]:
    return {p.address: (p.type, p.rr_client) for p in peers}


# -- cluster sessions ------------------------------------------------------------------------


def test_full_mesh_peers_with_every_other_node() -> None:
    config = load(cluster_data())
    peers = resolve_peers(config)
    assert [p.address for p in peers] == [NODE_B, NODE_C]
    for peer, name in zip(peers, ("node-b", "node-c"), strict=True):
        assert peer.name == name
        assert peer.type == MESH == "node-to-node mesh"
        assert peer.asn == 64512
        assert not peer.ebgp
        assert not peer.rr_client
        assert peer.hold_time == 9
        assert peer.graceful_restart is True
        assert peer.port == 179
        assert peer.password_file is None
        assert peer.multihop is None
        assert not peer.passive
        assert peer.imports == ImportRules((CIDR_A, CIDR_B, CIDR_C), False, 0)
        assert peer.exports == ExportRules(frozenset(ALL_KINDS))


def test_full_mesh_follows_bgp_settings() -> None:
    config = load(cluster_data(), holdTime=30, listenPort=1179, gracefulRestart={"enabled": False})
    for peer in resolve_peers(config):
        assert (peer.hold_time, peer.port, peer.graceful_restart) == (30, 1179, False)


def test_full_mesh_ignores_reflector_ids() -> None:
    config = load(four_nodes({"node-a": "10.0.0.1", "node-b": "10.0.0.1"}))
    assert {p.type for p in resolve_peers(config)} == {MESH}
    assert own_cluster_id(config) == IPv4Address("10.0.0.1")


def test_mesh_none_one_reflector_seen_from_the_reflector() -> None:
    config = load(four_nodes({"node-a": "10.0.0.1"}), mesh="none")
    assert kinds(resolve_peers(config)) == {
        NODE_B: (RR_CLIENT, True),
        NODE_C: (RR_CLIENT, True),
        NODE_D: (RR_CLIENT, True),
    }
    assert RR_CLIENT == "rr client"


def test_mesh_none_one_reflector_seen_from_a_client() -> None:
    config = load(four_nodes({"node-a": "10.0.0.1"}, me="node-c"), mesh="none")
    peers = resolve_peers(config)
    assert kinds(peers) == {NODE_A: (REFLECTOR, False)}
    assert REFLECTOR == "route reflector"
    assert own_cluster_id(config) is None
    # clients keep the iBGP defaults towards their reflector
    assert peers[0].imports.allow == (CIDR_A, CIDR_B, CIDR_C, CIDR_D)


def test_mesh_none_two_reflectors() -> None:
    reflectors = {"node-a": "10.0.0.1", "node-b": "10.0.0.1"}
    from_a = resolve_peers(load(four_nodes(reflectors), mesh="none"))
    assert kinds(from_a) == {
        NODE_B: (REFLECTOR, False),  # the other reflector is a non-client
        NODE_C: (RR_CLIENT, True),
        NODE_D: (RR_CLIENT, True),
    }
    from_b = resolve_peers(load(four_nodes(reflectors, me="node-b"), mesh="none"))
    assert kinds(from_b) == {
        NODE_A: (REFLECTOR, False),
        NODE_C: (RR_CLIENT, True),
        NODE_D: (RR_CLIENT, True),
    }
    from_c = resolve_peers(load(four_nodes(reflectors, me="node-c"), mesh="none"))
    assert kinds(from_c) == {NODE_A: (REFLECTOR, False), NODE_B: (REFLECTOR, False)}


def test_mesh_none_without_reflectors_has_no_cluster_sessions() -> None:
    assert resolve_peers(load(cluster_data(), mesh="none")) == ()


def test_cluster_prefixes_in_node_order() -> None:
    assert cluster_prefixes(load(four_nodes())) == (CIDR_A, CIDR_B, CIDR_C, CIDR_D)


def test_service_cidrs_are_in_the_ibgp_import_default() -> None:
    data = cluster_data()
    data["cluster"]["serviceCIDRs"] = ["10.96.0.0/12"]
    config = load(data, peers=[{"address": "10.0.0.250", "asn": 64512}])
    expected = (CIDR_A, CIDR_B, CIDR_C, ip_network("10.96.0.0/12"))
    assert cluster_prefixes(config) == expected
    assert [p.imports.allow for p in resolve_peers(config)] == [expected] * 3


# -- explicit peers ------------------------------------------------------------------------------


def test_ebgp_peer_defaults() -> None:
    config = load(cluster_data(), peers=[{"address": str(UPSTREAM), "asn": 65000}])
    peers = resolve_peers(config)
    assert [p.address for p in peers] == [NODE_B, NODE_C, UPSTREAM]  # config order
    upstream = peers[-1]
    assert upstream == Peer(
        address=UPSTREAM,
        asn=65000,
        name=str(UPSTREAM),
        type=EXTERNAL,
        ebgp=True,
        rr_client=False,
        hold_time=9,
        graceful_restart=True,
        port=179,
        imports=ImportRules((), False, 0),  # eBGP: nothing unless allowed
        exports=ExportRules(frozenset(ALL_KINDS)),
    )
    assert EXTERNAL == "external"


def test_ibgp_peer_defaults_to_the_cluster_pod_cidrs() -> None:
    config = load(cluster_data(), peers=[{"address": "10.0.0.250", "asn": 64512}])
    peer = resolve_peers(config)[-1]
    assert (peer.type, peer.ebgp, peer.rr_client) == (IBGP_PEER, False, False)
    assert IBGP_PEER == "ibgp peer"
    assert peer.imports == ImportRules((CIDR_A, CIDR_B, CIDR_C), False, 0)


def test_ibgp_reflector_client_peer() -> None:
    config = load(
        cluster_data(),
        peers=[{"address": "10.0.0.250", "asn": 64512, "routeReflectorClient": True}],
    )
    peer = resolve_peers(config)[-1]
    assert (peer.type, peer.rr_client) == (RR_CLIENT, True)


def test_explicit_peer_overrides(tmp_path: Path) -> None:
    secret_file = tmp_path / "md5"
    secret_file.write_text(SECRET + "\n")
    config = load(
        cluster_data(),
        peers=[
            {
                "address": str(UPSTREAM),
                "asn": 65000,
                "port": 1179,
                "description": "upstream router",
                "passwordFile": str(secret_file),
                "ebgpMultihop": 3,
                "passive": True,
                "holdTime": 0,
                "gracefulRestart": False,
                "import": {
                    "allow": ["0.0.0.0/0", "10.96.0.0/12"],
                    "allowDefaultRoute": True,
                    "maxPrefix": 100,
                },
                "export": {
                    "kinds": ["loadBalancerIP"],
                    "communities": ["64512:7"],
                    "largeCommunities": ["64512:1:2"],
                    "localPreference": 50,
                    "med": 10,
                    "asPathPrepend": 2,
                },
            }
        ],
    )
    peer = resolve_peers(config)[-1]
    assert peer.address == UPSTREAM
    assert peer.name == "upstream router"
    assert peer.port == 1179
    assert peer.password_file == str(secret_file)
    assert peer.multihop == 3
    assert peer.passive is True
    assert peer.hold_time == 0  # 0 is a value, not "unset"
    assert peer.graceful_restart is False
    assert peer.imports == ImportRules(
        (ip_network("0.0.0.0/0"), ip_network("10.96.0.0/12")), True, 100
    )
    assert peer.exports == ExportRules(
        kinds=frozenset({"loadBalancerIP"}),
        communities=("64512:7",),
        large_communities=("64512:1:2",),
        local_preference=50,
        med=10,
        as_path_prepend=2,
    )


def test_empty_allow_list_on_ibgp_peer_means_nothing() -> None:
    config = load(
        cluster_data(), peers=[{"address": "10.0.0.250", "asn": 64512, "import": {"allow": []}}]
    )
    assert resolve_peers(config)[-1].imports.allow == ()


def test_peer_gracefulrestart_true_overrides_disabled_global() -> None:
    config = load(
        cluster_data(),
        gracefulRestart={"enabled": False},
        peers=[{"address": str(UPSTREAM), "asn": 65000, "gracefulRestart": True}],
    )
    peers = resolve_peers(config)
    assert [p.graceful_restart for p in peers] == [False, False, True]


def test_communities_normalised() -> None:
    config = load(
        cluster_data(),
        peers=[
            {
                "address": str(UPSTREAM),
                "asn": 65000,
                "export": {"communities": ["065535:00"], "largeCommunities": ["01:2:003"]},
            }
        ],
    )
    exports = resolve_peers(config)[-1].exports
    assert exports.communities == ("65535:0",)
    assert exports.large_communities == ("1:2:3",)


# -- config errors ----------------------------------------------------------------------------


def test_duplicate_peer_address() -> None:
    errors = errors_of(
        cluster_data(),
        peers=[
            {"address": str(UPSTREAM), "asn": 65000},
            {"address": str(UPSTREAM), "asn": 65001},
        ],
    )
    assert errors == [
        "bgp.peers[1].address: 192.0.2.1 already used by bgp.peers[0]; list each peer once"
    ]


def test_ebgp_multihop_on_ibgp_peer() -> None:
    errors = errors_of(
        cluster_data(), peers=[{"address": "10.0.0.250", "asn": 64512, "ebgpMultihop": 2}]
    )
    assert len(errors) == 1
    assert errors[0].startswith("bgp.peers[0].ebgpMultihop: only for eBGP peers")


def test_reflector_client_on_ebgp_peer() -> None:
    errors = errors_of(
        cluster_data(),
        peers=[{"address": str(UPSTREAM), "asn": 65000, "routeReflectorClient": True}],
    )
    assert len(errors) == 1
    assert errors[0].startswith("bgp.peers[0].routeReflectorClient: only iBGP peers")
    assert "AS 65000" in errors[0]


def test_every_peer_problem_reported_at_once() -> None:
    errors = errors_of(
        cluster_data(),
        peers=[
            {"address": "10.0.0.250", "asn": 64512, "ebgpMultihop": 2},
            {"address": str(UPSTREAM), "asn": 65000, "routeReflectorClient": True},
            {"address": str(UPSTREAM), "asn": 65000},
        ],
    )
    assert [e.split(":")[0] for e in errors] == [
        "bgp.peers[0].ebgpMultihop",
        "bgp.peers[1].routeReflectorClient",
        "bgp.peers[2].address",
    ]


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "blank", "too-long"])
def test_bad_password_file_names_the_file_never_the_content(tmp_path: Path, case: str) -> None:
    path = tmp_path / "md5"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_text("")
    elif case == "blank":
        path.write_text(" \n\n")
    elif case == "too-long":
        path.write_text(SECRET * 10)
    errors = errors_of(
        cluster_data(), peers=[{"address": str(UPSTREAM), "asn": 65000, "passwordFile": str(path)}]
    )
    assert len(errors) == 1
    assert errors[0].startswith("bgp.peers[0].passwordFile: ")
    assert str(path) in errors[0]
    assert SECRET not in errors[0]


def test_good_password_file_is_not_in_the_config_repr(tmp_path: Path) -> None:
    path = tmp_path / "md5"
    path.write_text(SECRET)
    config = load(
        cluster_data(), peers=[{"address": str(UPSTREAM), "asn": 65000, "passwordFile": str(path)}]
    )
    assert SECRET not in repr(config)
    assert SECRET not in repr(resolve_peers(config))


@pytest.mark.parametrize("value", ["65536:1", "1:65536", "a:b", "1", "1:2:3", "-1:2", ""])
def test_bad_community(value: str) -> None:
    errors = errors_of(
        cluster_data(),
        peers=[{"address": str(UPSTREAM), "asn": 65000, "export": {"communities": [value]}}],
    )
    assert len(errors) == 1
    assert errors[0].startswith("bgp.peers[0].export.communities[0]: ")
    assert "A:B" in errors[0]


@pytest.mark.parametrize("value", ["4294967296:1:1", "1:2", "a:b:c", "1:2:3:4"])
def test_bad_large_community(value: str) -> None:
    errors = errors_of(
        cluster_data(),
        peers=[{"address": str(UPSTREAM), "asn": 65000, "export": {"largeCommunities": [value]}}],
    )
    assert len(errors) == 1
    assert errors[0].startswith("bgp.peers[0].export.largeCommunities[0]: ")
    assert "A:B:C" in errors[0]


def test_max_large_community_accepted() -> None:
    top = "4294967295:4294967295:4294967295"
    config = load(
        cluster_data(),
        peers=[{"address": str(UPSTREAM), "asn": 65000, "export": {"largeCommunities": [top]}}],
    )
    assert resolve_peers(config)[-1].exports.large_communities == (top,)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("holdTime", 2),
        ("asn", 0),
        ("ebgpMultihop", 0),
        ("port", 0),
        ("unknownKey", 1),
    ],
)
def test_bad_peer_field(field: str, value: object) -> None:
    peer: dict[str, Any] = {"address": str(UPSTREAM), "asn": 65000, field: value}
    errors = errors_of(cluster_data(), peers=[peer])
    assert len(errors) == 1
    assert errors[0].startswith(f"bgp.peers[0].{field}: ")


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"import": {"maxPrefix": -1}}, "import.maxPrefix"),
        ({"import": {"allow": ["10.0.0.1/8"]}}, "import.allow[0]"),
        ({"export": {"kinds": ["podCidr"]}}, "export.kinds[0]"),
        ({"export": {"asPathPrepend": 11}}, "export.asPathPrepend"),
    ],
)
def test_bad_policy_field(policy: dict[str, Any], field: str) -> None:
    peer: dict[str, Any] = {"address": str(UPSTREAM), "asn": 65000, **policy}
    errors = errors_of(cluster_data(), peers=[peer])
    assert len(errors) == 1
    assert errors[0].startswith(f"bgp.peers[0].{field}: ")


@pytest.mark.parametrize(
    ("description", "why"),
    [
        ("core-1\nneighbor 10.9.9.9 {", "control character U+000A"),
        ("tab\there", "control character U+0009"),
        ("bidi\u202eevil", "control character U+202E"),
        ("x" * 129, "129 characters, at most 128"),
    ],
    ids=["newline", "tab", "bidi-override", "too-long"],
)
def test_a_description_that_is_not_one_line_of_text_is_refused(description: str, why: str) -> None:
    errors = errors_of(
        cluster_data(), peers=[{"address": str(UPSTREAM), "asn": 65000, "description": description}]
    )
    assert errors == [errors[0]]
    assert errors[0].startswith(f"bgp.peers[0].description: peer {UPSTREAM}: ")
    assert why in errors[0]


def test_a_description_with_quotes_and_unicode_loads() -> None:
    """Quotes are made harmless when exabgp.conf is rendered (test_exabgp_conf), not
    refused: a description is the operator's text."""
    text = 'Köln "core" \\ 1; {rack 4}'
    config = load(
        cluster_data(), peers=[{"address": str(UPSTREAM), "asn": 65000, "description": text}]
    )
    assert config.bgp.peers[0].description == text


@pytest.mark.parametrize("content", ["two\nlines", "tab\tin", "é" * 41])
def test_a_password_the_kernel_cannot_take_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "md5"
    path.write_text(content)
    errors = errors_of(
        cluster_data(), peers=[{"address": str(UPSTREAM), "asn": 65000, "passwordFile": str(path)}]
    )
    assert len(errors) == 1 and errors[0].startswith(f"bgp.peers[0].passwordFile: {path}")
    assert content not in errors[0]


def test_an_ipv6_peer_is_refused_as_sessions_run_from_the_ipv4_node_address() -> None:
    """exabgp refuses a neighbor whose local-address is of another family, and with it
    the whole file: every session would go down with this one."""
    errors = errors_of(
        cluster_data(),
        peers=[
            {"address": str(UPSTREAM), "asn": 65000},
            {"address": str(UPSTREAM6), "asn": 65001},
        ],
    )
    assert errors == [
        f"bgp.peers[1].address: {UPSTREAM6} is IPv6 but sessions run from node.ip {NODE_A} "
        "(IPv4); kroute has no IPv6 sessions yet: peer with the router's IPv4 address"
    ]
