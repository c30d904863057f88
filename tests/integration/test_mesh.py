"""Three real kroute daemons (real exabgp, real kernel routes) in network namespaces.

Each test gets its own lab with a unique name, removed in teardown even on failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bgpd.api.client import fetch_status
from lab import lab as labmod
from lab import procs
from tests.watch import RouteWatcher, expected_routes, kernel_routes, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

HOLD_TIME = 9  # what the lab configures (restartTime is the same)


def assert_converged(lab: labmod.Lab) -> None:
    for node in lab.plan.nodes:
        assert kernel_routes(node.netns) == expected_routes(lab.plan.nodes, node), node.name


def test_three_nodes_converge_and_report(lab: labmod.Lab) -> None:
    assert_converged(lab)
    n1 = lab.plan.nodes[0]
    status = fetch_status(n1.socket_path)
    assert status["ready"] is True
    assert {p["state"] for p in status["peers"]} == {"established"}
    assert [p["prefixesReceived"] for p in status["peers"]] == [1, 1]
    assert status["advertised"] == [n1.pod_cidr]
    peers = subprocess.run(
        [sys.executable, "-m", "bgpd.cli", "peers", "--socket", n1.socket_path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "PEER ADDRESS" in peers
    for other in lab.plan.nodes[1:]:
        assert other.ip in peers
    assert peers.count("| up ") == 2


def in_netns(ns: str, *argv: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{ns}", *argv],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_health_and_status_over_tcp_and_cli(lab: labmod.Lab) -> None:
    n2 = lab.plan.nodes[1]
    url = f"http://{n2.ip}:9479"
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"]
    assert in_netns(n2.netns, *curl, f"{url}/healthz") == "200"
    assert in_netns(n2.netns, *curl, f"{url}/readyz") == "200"
    assert in_netns(n2.netns, *curl, "-X", "POST", f"{url}/status") == "405"
    metrics = in_netns(n2.netns, "curl", "-s", f"{url}/metrics")
    assert 'kroute_bgp_session_up{peer="' in metrics
    assert "kroute_reconcile_duration_seconds_count" in metrics
    report = json.loads(in_netns(n2.netns, "curl", "-s", f"{url}/status"))
    assert report["node"] == n2.name
    summary = in_netns(
        n2.netns, sys.executable, "-m", "bgpd.cli", "status", "--socket", n2.socket_path
    )
    assert "BGP peers:" in summary
    assert "2/2 established" in summary
    assert oct(os.stat(n2.socket_path).st_mode & 0o777) == "0o600"


def test_stop_leaves_routes_and_cleanup_removes_them(lab: labmod.Lab) -> None:
    n1 = lab.plan.nodes[0]
    before = kernel_routes(n1.netns)
    stopped = procs.stop_tree(lab.daemons[n1.name], signal.SIGTERM, 10)
    assert not stopped.forced, "kroute should exit on SIGTERM by itself"
    assert kernel_routes(n1.netns) == before
    subprocess.run(
        ["ip", "-n", n1.netns, "route", "add", "192.0.2.0/24", "dev", "lo", "proto", "static"],
        check=True,
    )
    out = in_netns(n1.netns, sys.executable, "-m", "bgpd.cli", "cleanup")
    assert f"removed {len(before)} kernel routes" in out
    assert kernel_routes(n1.netns) == {}
    assert "192.0.2.0/24" in in_netns(n1.netns, "ip", "route", "show", "proto", "static")


def test_killed_node_is_withdrawn_within_hold_time(lab: labmod.Lab) -> None:
    n1, n2, n3 = lab.plan.nodes
    victim = lab.daemons[n3.name]
    children = procs.descendants(victim)
    assert children, "kroute should have an exabgp child"
    os.kill(victim.pid, signal.SIGKILL)  # kill -9 of kroute alone: exabgp must follow
    wait_for(
        lambda: not any(procs.is_alive(c) for c in children),
        5,
        "exabgp to exit after its kroute was killed",
    )
    for node in (n1, n2):
        took = wait_for(
            lambda node=node: n3.pod_cidr not in kernel_routes(node.netns),  # type: ignore[misc]
            HOLD_TIME + 5,
            f"{n3.pod_cidr} to leave {node.name}'s kernel",
        )
        assert took <= HOLD_TIME + 2, f"{node.name} kept the route {took:.1f}s"
        # the survivors keep each other
        assert kernel_routes(node.netns)[n1.pod_cidr if node is n2 else n2.pod_cidr]


def test_hold_timer_expiry_removes_routes(lab: labmod.Lab) -> None:
    n1, _, n3 = lab.plan.nodes
    subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{n3.netns}", "nft", "-f", "-"],
        input=(
            "table inet krtest {\n chain in {\n  type filter hook input priority 0;\n"
            "  tcp dport 179 drop\n  tcp sport 179 drop\n }\n}\n"
        ),
        text=True,
        check=True,
    )
    wait_for(
        lambda: n3.pod_cidr not in kernel_routes(n1.netns),
        HOLD_TIME * 2 + 5,
        f"{n3.pod_cidr} to leave {n1.name} after the hold timer expired",
    )
    status = fetch_status(n1.socket_path)
    peer = next(p for p in status["peers"] if p["address"] == n3.ip)
    assert peer["state"] != "established"
    assert peer["prefixesReceived"] == 0


def test_exabgp_dying_alone_is_restarted_without_losing_a_route(lab: labmod.Lab) -> None:
    n1 = lab.plan.nodes[0]
    exabgp = procs.descendants(lab.daemons[n1.name])[0]  # children come first
    watcher = RouteWatcher([n.netns for n in lab.plan.nodes])
    try:
        os.kill(exabgp.pid, signal.SIGKILL)

        def back() -> bool:
            status = fetch_status(n1.socket_path)
            return (
                status["speaker"]["restarts"] == 1
                and status["speaker"]["pid"] not in (None, exabgp.pid)
                and {p["state"] for p in status["peers"]} == {"established"}
                and status["peers"][0]["prefixesStale"] == 0
            )

        wait_for(back, 30, f"{n1.name}'s exabgp to be restarted and its sessions back")
        time.sleep(HOLD_TIME + 2)  # past every stale timer
    finally:
        watcher.stop()
    assert watcher.deleted == []
    assert_converged(lab)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill9"])
def test_restart_removes_no_route_anywhere(lab: labmod.Lab, kill: bool) -> None:
    watcher = RouteWatcher([n.netns for n in lab.plan.nodes])
    try:
        labmod.restart(lab, lab.plan.nodes[0].name, kill=kill, timeout=60, say=lambda _: None)
        time.sleep(HOLD_TIME + 2)  # past every stale and adoption timer
    finally:
        watcher.stop()
    assert watcher.deleted == []
    assert_converged(lab)
