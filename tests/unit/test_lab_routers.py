"""Pure parts of `lab.routers` and the lab's upstream plan: config rendering and parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bgpd.config.model import parse_config
from lab import health
from lab.plan import LabError, plan_lab
from lab.render import render_config
from lab.routers import NeighborConf, Role, RouterError, RouterSpec, make_router
from lab.routers.base import community_text, sorted_communities
from lab.routers.bird import bird_best, parse_bird_routes, render_bird
from lab.routers.frr import frr_best, frr_best_path, render_bgpd
from lab.routers.gobgp import gobgp_best, path_as_path, path_communities, render_gobgpd
from lab.state import plan_from_dict, plan_to_dict

WORK = Path("/tmp/r")


def spec(role: Role = "upstream") -> RouterSpec:
    asn = 65000 if role == "upstream" else 64512
    neighbors = (
        NeighborConf("192.0.2.2", 64512, password="pw", multihop=2 if role == "upstream" else None),
        NeighborConf("192.0.2.3", 64512, rr_client=role == "reflector"),
    )
    return RouterSpec("ns", WORK, "192.0.2.1", asn, neighbors, role, ("172.30.0.0/24",))


def test_bird_upstream_installs_with_ecmp_and_originates_only_to_bgp() -> None:
    conf = render_bird(spec())
    assert "merge paths on limit 16;" in conf
    assert "export where source = RTS_BGP;" in conf  # never the originated unreachable
    assert "route 172.30.0.0/24 unreachable;" in conf
    assert 'password "pw";' in conf and "multihop 2;" in conf
    assert conf.count("graceful restart on;") == 2


def test_bird_reflector_has_no_kernel_protocol() -> None:
    conf = render_bird(spec("reflector"))
    assert "protocol kernel" not in conf
    assert conf.count("rr client;") == 1


def test_frr_upstream_and_reflector() -> None:
    up = render_bgpd(spec())
    assert "  maximum-paths 16" in up and " bgp bestpath as-path multipath-relax" in up
    assert " neighbor 192.0.2.2 password pw" in up and " neighbor 192.0.2.2 ebgp-multihop 2" in up
    assert " no bgp ebgp-requires-policy" in up and " bgp graceful-restart" in up
    rr = render_bgpd(spec("reflector"))
    assert "  neighbor 192.0.2.3 route-reflector-client" in rr
    assert "maximum-paths" not in rr and " bgp cluster-id 192.0.2.1" in rr


def test_gobgp_config() -> None:
    up = render_gobgpd(spec())
    assert 'auth-password = "pw"' in up and "multihop-ttl = 2" in up
    assert "[global.use-multiple-paths.config]" in up
    rr = render_gobgpd(spec("reflector"))
    assert "route-reflector-client = true" in rr and "use-multiple-paths" not in rr


def test_reflector_refuses_ebgp_neighbors_and_unknown_kinds() -> None:
    with pytest.raises(RouterError, match="peers only inside its own AS"):
        RouterSpec("ns", WORK, "192.0.2.1", 64512, (NeighborConf("192.0.2.2", 1),), "reflector")
    with pytest.raises(RouterError, match="use one of bird, frr, gobgp"):
        make_router("quagga", netns="n", workdir=WORK, router_id="1.1.1.1", asn=1,
                    neighbors=[], role="upstream")  # fmt: skip


BIRD_OUT = """BIRD 2.0.12 ready.
Table master4:
10.200.2.0/24        unicast [n172_31_0_2 19:19:54.053] * (100) [AS64512i]
\tvia 172.31.0.2 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64512
\tBGP.next_hop: 172.31.0.2
\tBGP.community: (65535,0) (64512,7)
                     unicast [n172_31_0_3 19:19:54.022] (100) [AS64512i]
\tvia 172.31.0.3 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64513
\tBGP.next_hop: 172.31.0.3
172.30.0.0/24        unreachable [static_originate 19:19:53.160] * (250)
\tType: static univ
                     unicast [direct1 19:19:53.161] (240)
\tdev ext0
\tType: device univ
"""


def test_bird_routes_best_and_mergeable_paths() -> None:
    routes = parse_bird_routes(BIRD_OUT)
    assert [r.proto for r in routes] == [
        "n172_31_0_2",
        "n172_31_0_3",
        "static_originate",
        "direct1",
    ]
    assert bird_best(routes, multipath=True) == {
        "10.200.2.0/24": ["172.31.0.2", "172.31.0.3"],  # same AS-path length: merged
        "172.30.0.0/24": [],
    }
    assert bird_best(routes, multipath=False)["10.200.2.0/24"] == ["172.31.0.2"]
    assert routes[0].attrs["BGP.community"] == "(65535,0) (64512,7)"


def test_frr_routes_take_best_and_multipath() -> None:
    table = {
        "routes": {
            "10.1.0.0/24": [
                {"bestpath": True, "nexthops": [{"ip": "192.0.2.2"}]},
                {"multipath": True, "nexthops": [{"ip": "192.0.2.3"}]},
                {"nexthops": [{"ip": "192.0.2.4"}]},
            ],
            "172.30.0.0/24": [{"bestpath": True, "nexthops": [{"ip": "0.0.0.0"}]}],
        }
    }
    assert frr_best(table) == {"10.1.0.0/24": ["192.0.2.2", "192.0.2.3"], "172.30.0.0/24": []}
    detail = {"paths": [{"bestpath": {"overall": True}, "aspath": {"string": "65000"}}]}
    assert frr_best_path(detail) == detail["paths"][0]


def test_gobgp_paths() -> None:
    path = {
        "best": True,
        "attrs": [
            {"type": 2, "as_paths": [{"segment_type": 2, "num": 2, "asns": [65000, 64512]}]},
            {"type": 3, "nexthop": "192.0.2.1"},
            {"type": 8, "communities": [4294901760, 65536 * 64512 + 100]},
        ],
    }
    local = {"best": True, "attrs": [{"type": 3, "nexthop": "0.0.0.0"}]}
    assert gobgp_best({"10.1.0.0/24": [path], "10.2.0.0/24": [local]}) == {
        "10.1.0.0/24": ["192.0.2.1"],
        "10.2.0.0/24": [],
    }
    assert path_as_path(path) == [65000, 64512]
    assert path_communities(path) == ["64512:100", "65535:0"]


def test_communities_as_text() -> None:
    assert community_text(4294901760) == "65535:0"
    assert community_text("graceful-shutdown") == "65535:0"
    assert sorted_communities(["65535:0", "64512:100", "no-export"]) == [
        "64512:100",
        "65535:0",
        "65535:65281",
    ]


def test_lab_with_upstream_and_reflectors_plans_and_configs() -> None:
    plan = plan_lab("kr", 3, 4, root=Path("/tmp/labs"), upstream="bird", reflectors=2)
    up = plan.upstream
    assert up is not None
    assert (up.netns, up.ip, up.ext_ns, up.ext_subnet, up.ext_ip) == (
        "kr-up", "172.31.3.254", "kr-ext", "172.30.3.0/24", "172.30.3.2",
    )  # fmt: skip
    assert plan.namespaces()[-3:] == ["kr-ext", "kr-up", "kr-lan"]
    assert plan_from_dict(plan_to_dict(plan)) == plan
    n3 = plan.nodes[2]
    text = render_config(plan, n3)
    data = yaml.safe_load(text)
    assert data["bgp"]["mesh"] == "none"
    assert data["bgp"]["peers"] == [
        {"address": "172.31.3.254", "asn": 65000, "description": "upstream",
         "import": {"allow": ["172.30.3.0/24"]}},
    ]  # fmt: skip
    ids = [n.get("routeReflectorClusterId") for n in data["cluster"]["nodes"]]
    assert ids == ["172.31.3.1", "172.31.3.1", None, None]
    config = parse_config(data)  # the daemon accepts exactly this form
    assert config.bgp.mesh == "none" and len(config.bgp.peers) == 1
    assert health.expected_peers(plan, n3) == [
        ("172.31.3.1", "kr-n1"), ("172.31.3.2", "kr-n2"), ("172.31.3.254", "upstream"),
    ]  # fmt: skip
    assert len(health.expected_peers(plan, plan.nodes[0])) == 4


def test_plain_lab_config_is_unchanged_and_options_are_checked() -> None:
    data = yaml.safe_load(render_config(plan_lab("kr", 0, 2), plan_lab("kr", 0, 2).nodes[0]))
    assert "mesh" not in data["bgp"] and "peers" not in data["bgp"]
    with pytest.raises(LabError, match="--upstream 'cisco' is unknown"):
        plan_lab("kr", 0, 2, upstream="cisco")
    with pytest.raises(LabError, match="--reflectors 3 is out of range"):
        plan_lab("kr", 0, 2, reflectors=3)
