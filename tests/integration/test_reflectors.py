"""Route reflection with real daemons: kroute as reflector, two reflectors with one
stopped, and kroute nodes as clients of BIRD, FRR and GoBGP reflectors."""

from __future__ import annotations

import secrets
import signal
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from bgpd.api.client import call
from lab import lab as labmod
from lab import net, procs
from lab.plan import NodePlan
from lab.routers import make_router
from lab.routers.base import NeighborConf
from tests.integration.conftest import LabFactory
from tests.watch import RouteWatcher, kernel_routes, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]


def routes_json(socket: str) -> dict[str, dict[str, object]]:
    return {r["prefix"]: r for r in call(socket, "/routes")}


def assert_every_node_routes_to_every_other(lab: labmod.Lab) -> None:
    for node in lab.plan.nodes:
        routes = kernel_routes(node.netns)
        for other in lab.plan.nodes:
            want = "blackhole" if other is node else f"via {other.ip}"
            assert routes.get(other.pod_cidr) == want, (node.name, other.name, routes)


def test_kroute_reflects_for_three_clients(make_lab: LabFactory) -> None:
    lab: labmod.Lab = make_lab(4, reflectors=1)
    assert_every_node_routes_to_every_other(lab)
    rr, c1, c2, _ = lab.plan.nodes
    path = routes_json(c1.socket_path)[c2.pod_cidr]["paths"][0]  # type: ignore[index]
    assert path["peer"] == rr.ip  # learned from the reflector...
    assert path["nextHop"] == c2.ip  # ...next hop unchanged
    assert path["originatorId"] == c2.ip
    assert path["clusterList"] == [rr.ip]
    peers = call(c1.socket_path, "/status")["peers"]
    assert [(p["address"], p["type"]) for p in peers] == [(rr.ip, "route reflector")]


def test_stopping_one_of_two_reflectors_loses_no_client_route(make_lab: LabFactory) -> None:
    lab: labmod.Lab = make_lab(5, reflectors=2)
    assert_every_node_routes_to_every_other(lab)
    rr1 = lab.plan.nodes[0]
    clients = lab.plan.nodes[2:]
    watcher = RouteWatcher(
        [n.netns for n in lab.plan.nodes[1:]],
        match=lambda line: "proto bgp" in line and rr1.pod_cidr not in line,
    )
    try:
        procs.stop_tree(lab.daemons[rr1.name], signal.SIGTERM, 10)
        time.sleep(14)  # past rr1's restart time: its stale paths are gone now
    finally:
        watcher.stop()
    assert watcher.deleted == []
    for client in clients:
        routes = kernel_routes(client.netns)
        for other in clients:
            if other is not client:
                assert routes[other.pod_cidr] == f"via {other.ip}"
        assert rr1.pod_cidr not in routes  # the stopped node itself is gone


def _through_reflector(lab: labmod.Lab, node: NodePlan, rr_ip: str) -> bool:
    """The node's one peer is the reflector, established, and every other node's pod
    CIDR is in its kernel and learned from the reflector (not a stale mesh path kept
    across the restart by graceful restart)."""
    peers = call(node.socket_path, "/status")["peers"]
    if [(p["address"], p["type"], p["state"]) for p in peers] != [
        (rr_ip, "ibgp peer", "established")
    ]:
        return False
    routes = kernel_routes(node.netns)
    learned = routes_json(node.socket_path)
    for other in lab.plan.nodes:
        if other is node:
            continue
        if routes.get(other.pod_cidr) != f"via {other.ip}":
            return False
        paths = learned.get(other.pod_cidr, {}).get("paths", [])
        assert isinstance(paths, list)
        if [p["peer"] for p in paths] != [rr_ip]:
            return False
    return True


@pytest.mark.parametrize("kind", ["bird", "frr", "gobgp"])
def test_kroute_nodes_as_clients_of_an_external_reflector(
    make_lab: LabFactory, kind: str, unique_name: str
) -> None:
    lab: labmod.Lab = make_lab(3)
    rr_ns = f"{unique_name}-rr"
    rr_ip = lab.plan.subnet.rsplit(".", 1)[0] + ".250"
    net.join_lan(lab.plan, rr_ns, f"x{secrets.token_hex(3)}", rr_ip)
    with tempfile.TemporaryDirectory(prefix=f"kroute-{kind}-rr-") as workdir:
        Path(workdir).chmod(0o755)  # FRR drops to its own user
        reflector = make_router(
            kind,
            netns=rr_ns,
            workdir=Path(workdir),
            router_id=rr_ip,
            asn=64512,
            neighbors=[NeighborConf(n.ip, 64512, rr_client=True) for n in lab.plan.nodes],
            role="reflector",
        )
        try:
            reflector.start()
            for node in lab.plan.nodes:
                config = yaml.safe_load(Path(node.config_path).read_text())
                config["bgp"]["mesh"] = "none"
                config["bgp"]["peers"] = [{"address": rr_ip, "asn": 64512}]
                Path(node.config_path).write_text(yaml.safe_dump(config))
            for node in lab.plan.nodes:
                procs.stop_tree(lab.daemons[node.name], signal.SIGTERM, 10)
                labmod.start_daemon(lab, node)
            reflector.wait_established([n.ip for n in lab.plan.nodes], 60)
            wait_for(
                lambda: all(_through_reflector(lab, node, rr_ip) for node in lab.plan.nodes),
                60,
                f"every node to route to every pod CIDR through the {kind} reflector",
            )
        finally:
            reflector.stop()
            net.del_netns(rr_ns)
