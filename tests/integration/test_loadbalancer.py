"""LoadBalancer IPs in the lab with a real upstream router: allocation, announcement by
the serving nodes only (ECMP at the upstream), a host process reached from outside,
serving nodes changed and pool deleted by reload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.api.client import call
from lab import lab as labmod
from tests.integration.conftest import LabFactory
from tests.watch import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp, pytest.mark.peers]

POOL = {"name": "blue", "blocks": [{"cidr": "198.51.100.0/28"}]}
SERVICE = {"namespace": "web", "name": "www", "ports": [{"port": 8080, "protocol": "TCP"}]}


def set_load_balancers(lab: labmod.Lab, pools: list[Any], services: list[Any]) -> None:
    """Same pools and services on every node, applied by SIGHUP (no restarts)."""
    for node in lab.plan.nodes:
        path = Path(node.config_path)
        config = yaml.safe_load(path.read_text())
        config["loadBalancer"] = {"pools": pools, "services": services}
        path.write_text(yaml.safe_dump(config))
        os.kill(lab.daemons[node.name].pid, signal.SIGHUP)


def upstream_hops(lab: labmod.Lab, prefix: str) -> list[str]:
    router = lab.router()
    assert router is not None
    return router.routes().get(prefix, [])


def test_service_served_by_two_nodes_is_ecmp_upstream_and_reachable(
    make_lab: LabFactory,
) -> None:
    lab = make_lab(3, upstream="bird")
    n1, n2, n3 = lab.plan.nodes
    set_load_balancers(lab, [POOL], [{**SERVICE, "nodes": [n1.name, n2.name]}])
    services = wait_for_ip(n1.socket_path)
    ip = services[0]["ips"][0]
    assert ip == "198.51.100.1"  # lowest usable address of the pool
    prefix = f"{ip}/32"
    wait_for(lambda: upstream_hops(lab, prefix) == sorted([n1.ip, n2.ip]), 30, "two hops")
    servers = [
        subprocess.Popen(
            [
                "nsenter",
                f"--net=/var/run/netns/{node.netns}",
                sys.executable,
                "-m",
                "http.server",
                "8080",
                "--bind",
                ip,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        for node in (n1, n2)
    ]
    try:
        assert lab.plan.upstream is not None
        url = f"http://{ip}:8080/"

        ext_ns = lab.plan.upstream.ext_ns

        def fetch() -> bool:
            done = subprocess.run(
                [
                    "nsenter",
                    f"--net=/var/run/netns/{ext_ns}",
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                    url,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            return done.stdout == "200"

        wait_for(fetch, 20, f"HTTP from the external host to {url}")
        pools = call(n1.socket_path, "/pools")
        assert pools[0]["used"] == 1 and pools[0]["name"] == "blue"
        # Move the service to n3 alone: the upstream follows.
        set_load_balancers(lab, [POOL], [{**SERVICE, "nodes": [n3.name]}])
        wait_for(lambda: upstream_hops(lab, prefix) == [n3.ip], 30, "the hop to move to n3")
        assert call(n3.socket_path, "/services")[0]["servedHere"] == [ip]
        # Delete the pool: the address is revoked and withdrawn everywhere.
        set_load_balancers(lab, [], [{**SERVICE, "nodes": [n3.name]}])
        wait_for(lambda: not upstream_hops(lab, prefix), 30, "the route to go")
        reasons = call(n3.socket_path, "/services")[0]["reasons"]
        assert any("NoMatchingPool" in r for r in reasons), reasons
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=5)


def wait_for_ip(socket: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        services: list[dict[str, Any]] = call(socket, "/services")
        if services and services[0]["ips"]:
            return services
        time.sleep(0.2)
    raise AssertionError(f"no LoadBalancer IP allocated: {call(socket, '/services')}")
