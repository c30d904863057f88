"""kroute nodes under real upstream routers (BIRD, FRR, GoBGP): eBGP, graceful restart,
drain and ECMP, with traffic flowing.

Each test builds its own lab (unique name) with `--upstream`, removed in teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from bgpd.api.client import call, fetch_status
from lab import lab as labmod
from lab import procs
from lab.routers.base import DaemonRouter
from tests.integration.conftest import LabFactory
from tests.traffic import Pinger, TcpStream
from tests.watch import RouteWatcher, kernel_routes, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp, pytest.mark.peers]

LAB_ASN = 64512
SERVICE_CIDR = "10.96.0.0/24"
SERVICE_IP = "10.96.0.10"


def router(lab: labmod.Lab) -> DaemonRouter:
    found = lab.router()
    assert found is not None
    return found


@pytest.mark.parametrize("kind", ["bird", "frr", "gobgp"])
def test_upstream_learns_every_pod_cidr_with_our_asn(make_lab: LabFactory, kind: str) -> None:
    lab: labmod.Lab = make_lab(upstream=kind)
    up = router(lab)
    routes = up.routes()
    for node in lab.plan.nodes:
        assert routes[node.pod_cidr] == [node.ip], kind
        assert up.as_path(node.pod_cidr) == [LAB_ASN], kind
    assert lab.plan.upstream is not None
    for node in lab.plan.nodes:  # and kroute took the external subnet, nothing else
        status = fetch_status(node.socket_path)
        upstream = next(p for p in status["peers"] if p["type"] == "external")
        assert upstream["state"] == "established"
        assert upstream["prefixesReceived"] == 1
        assert kernel_routes(node.netns)[lab.plan.upstream.ext_subnet] == (
            f"via {lab.plan.upstream.ip}"
        )


def _restart(lab: labmod.Lab, how: str) -> None:
    node = lab.plan.nodes[1]
    if how == "kill9-both":  # kroute and its exabgp die at the same moment
        daemon = lab.daemons[node.name]
        exabgp = procs.descendants(daemon)[0]
        os.kill(exabgp.pid, signal.SIGKILL)
        os.kill(daemon.pid, signal.SIGKILL)
        labmod.restart(lab, node.name, kill=True, timeout=60, say=lambda _: None)
    elif how == "exabgp":
        exabgp = procs.descendants(lab.daemons[node.name])[0]
        os.kill(exabgp.pid, signal.SIGKILL)
        wait_for(
            lambda: fetch_status(node.socket_path)["speaker"]["restarts"] == 1,
            30,
            "exabgp to be restarted",
        )
    else:
        labmod.restart(lab, node.name, kill=how == "kill9", timeout=60, say=lambda _: None)


@pytest.mark.parametrize(
    ("kind", "how"),
    [
        ("bird", "sigterm"),
        ("bird", "kill9"),
        ("bird", "exabgp"),
        ("bird", "kill9-both"),
        ("frr", "sigterm"),
        ("frr", "kill9"),
    ],
)
def test_restart_loses_no_packet_and_no_route(make_lab: LabFactory, kind: str, how: str) -> None:
    lab: labmod.Lab = make_lab(upstream=kind)
    n1, n2, _ = lab.plan.nodes
    assert lab.plan.upstream is not None
    pod_to_pod = Pinger(n1.pod_ns, n2.pod_ip)
    ext_to_pod = Pinger(lab.plan.upstream.ext_ns, n2.pod_ip)
    watched = [n.netns for n in lab.plan.nodes] + [lab.plan.upstream.netns]
    watcher = RouteWatcher(watched, match=lambda line: n2.pod_cidr in line or "proto bgp" in line)
    stream = TcpStream(n1.pod_ns, n2.pod_ns, n2.pod_ip)
    try:
        _restart(lab, how)
        time.sleep(12)  # past every stale and adoption timer (restart time 9 s)
    finally:
        watcher.stop()
        sent, received = pod_to_pod.stop()
        ext_sent, ext_received = ext_to_pod.stop()
        tcp = stream.stop()
    assert watcher.deleted == []
    assert tcp.error == "" and tcp.intact and tcp.received == tcp.sent > 0, tcp
    assert received == sent, f"pod to pod lost {sent - received} of {sent}"
    assert ext_received == ext_sent, f"external to pod lost {ext_sent - ext_received} of {ext_sent}"
    assert router(lab).routes()[n2.pod_cidr] == [n2.ip]


def _announce_service_cidr(lab: labmod.Lab, nodes: int) -> None:
    """Give the first `nodes` nodes the service CIDR (anycast on lo), restart them."""
    for i, node in enumerate(lab.plan.nodes):
        config = yaml.safe_load(Path(node.config_path).read_text())
        config["cluster"]["serviceCIDRs"] = [SERVICE_CIDR]
        config["bgp"]["advertiseClusterIPs"] = i < nodes
        Path(node.config_path).write_text(yaml.safe_dump(config))
        if i < nodes:
            subprocess.run(
                ["ip", "-n", node.netns, "addr", "add", f"{SERVICE_IP}/32", "dev", "lo"], check=True
            )
        labmod.restart(lab, node.name, kill=False, timeout=60, say=lambda _: None)


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_prefix_from_three_nodes_is_ecmp_in_kernels_and_upstream(
    make_lab: LabFactory, kind: str
) -> None:
    lab: labmod.Lab = make_lab(4, upstream=kind)
    _announce_service_cidr(lab, 3)
    speakers = sorted(n.ip for n in lab.plan.nodes[:3])
    fourth = lab.plan.nodes[3]
    wait_for(
        lambda: kernel_routes(fourth.netns).get(SERVICE_CIDR) == "via " + ",".join(speakers),
        30,
        f"{SERVICE_CIDR} as ECMP over {speakers} in {fourth.name}",
    )
    wait_for(
        lambda: router(lab).routes().get(SERVICE_CIDR) == speakers,
        30,
        f"{SERVICE_CIDR} as ECMP over {speakers} at the upstream",
    )
    for node in lab.plan.nodes[:3]:  # an announcing node serves it itself: no route
        assert SERVICE_CIDR not in kernel_routes(node.netns)


def test_drain_moves_traffic_away_without_loss_then_undrain(make_lab: LabFactory) -> None:
    lab: labmod.Lab = make_lab(upstream="bird")
    _announce_service_cidr(lab, 3)
    n1, n2, _ = lab.plan.nodes
    up = router(lab)
    wait_for(lambda: len(up.routes().get(SERVICE_CIDR, [])) == 3, 30, "3 ECMP next hops")
    assert lab.plan.upstream is not None
    anycast = Pinger(lab.plan.upstream.ext_ns, SERVICE_IP)
    try:
        call(n2.socket_path, "/drain?wait=4", method="POST")
        wait_for(lambda: "65535:0" in up.communities(n2.pod_cidr), 10, "GRACEFUL_SHUTDOWN")
        assert fetch_status(n2.socket_path)["drain"] == "draining"
        wait_for(lambda: n2.pod_cidr not in up.routes(), 15, "the drained prefix to go")
        assert n2.ip not in up.routes()[SERVICE_CIDR]
        assert fetch_status(n2.socket_path)["drain"] == "drained"
        call(n2.socket_path, "/undrain", method="POST")
        wait_for(lambda: up.routes().get(n2.pod_cidr) == [n2.ip], 15, "undrain")
        assert up.communities(n2.pod_cidr) == []
    finally:
        sent, received = anycast.stop()
    assert received == sent, f"anycast lost {sent - received} of {sent} during the drain"
    assert fetch_status(n1.socket_path)["drain"] == "none"


def test_export_policy_reaches_the_upstream(make_lab: LabFactory) -> None:
    lab: labmod.Lab = make_lab(upstream="frr")
    n1 = lab.plan.nodes[0]
    config = yaml.safe_load(Path(n1.config_path).read_text())
    config["bgp"]["peers"][0]["export"] = {
        "communities": ["65000:100"],
        "largeCommunities": ["64512:1:2"],
        "med": 50,
        "asPathPrepend": 2,
    }
    Path(n1.config_path).write_text(yaml.safe_dump(config))
    labmod.restart(lab, n1.name, kill=False, timeout=60, say=lambda _: None)
    up = router(lab)
    wait_for(lambda: up.as_path(n1.pod_cidr) == [LAB_ASN] * 3, 30, "the prepended AS path")
    assert up.communities(n1.pod_cidr) == ["65000:100"]
    assert up.as_path(lab.plan.nodes[1].pod_cidr) == [LAB_ASN]  # other nodes unchanged
