"""Reload (SIGHUP and `kroute reload`) on real daemons: peers follow the file, the
others stay undisturbed, and a bad file changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.api.client import fetch_status
from lab import lab as labmod
from tests.watch import RouteWatcher, kernel_routes, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]


def peer_addresses(socket: str) -> list[str]:
    return [p["address"] for p in fetch_status(socket)["peers"]]


def kroute_reload(socket: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgpd.cli", "reload", "--socket", socket],
        capture_output=True,
        text=True,
        check=False,
    )


def test_reload_removes_and_adds_a_peer_without_disturbing_the_others(lab: labmod.Lab) -> None:
    n1, n2, n3 = lab.plan.nodes
    path = Path(n1.config_path)
    original = path.read_text()
    config: dict[str, Any] = yaml.safe_load(original)
    config["cluster"]["nodes"] = [n for n in config["cluster"]["nodes"] if n["name"] != n3.name]
    path.write_text(yaml.safe_dump(config))
    watcher = RouteWatcher([n1.netns, n2.netns], match=lambda line: n3.pod_cidr not in line)
    try:
        os.kill(lab.daemons[n1.name].pid, signal.SIGHUP)
        wait_for(lambda: peer_addresses(n1.socket_path) == [n2.ip], 10, "n3 to leave n1's peers")
        wait_for(lambda: n3.pod_cidr not in kernel_routes(n1.netns), 15, "n3's route to go")
        path.write_text(original)
        assert kroute_reload(n1.socket_path).returncode == 0
        wait_for(
            lambda: kernel_routes(n1.netns).get(n3.pod_cidr) == f"via {n3.ip}",
            30,
            "n3 back in n1's kernel",
        )
    finally:
        watcher.stop()
    assert watcher.deleted == []  # nothing but n3's route moved, anywhere
    assert kernel_routes(n2.netns)[n1.pod_cidr] == f"via {n1.ip}"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["bgp"].update(asn=0), "bgp.asn: must be 1-4294967295, got 0"),
        (lambda c: c["bgp"].update(holdTimer=9), "bgp.holdTimer: unknown key"),
        (lambda c: c["node"].update(ip="172.31.99.9"), "node.ip: "),
        (lambda c: c["bgp"].update(mesh="none"), "bgp.mesh: changed from full to none; "),
    ],
    ids=["invalid-asn", "unknown-key", "needs-restart", "mesh-full-to-none"],
)
def test_bad_reload_is_refused_and_changes_nothing(
    lab: labmod.Lab, edit: Any, message: str
) -> None:
    n1 = lab.plan.nodes[0]
    path = Path(n1.config_path)
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    before = fetch_status(n1.socket_path)
    done = kroute_reload(n1.socket_path)
    assert done.returncode == 1
    assert message in done.stderr
    after = fetch_status(n1.socket_path)
    assert [(p["address"], p["state"]) for p in after["peers"]] == [
        (p["address"], p["state"]) for p in before["peers"]
    ]
    assert after["asn"] == before["asn"]
    assert after["speaker"]["pid"] == before["speaker"]["pid"]
