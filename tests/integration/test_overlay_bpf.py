"""The eBPF forward path over the VXLAN overlay: does forward.c's remote_routes entry
(ifindex, next hop) with bpf_redirect_neigh work when the ifindex is kroute.vxlan and the
next hop the remote node's overlay address? Uses the existing loader (tests.bpf_fixtures'
agent), nodes a and c with ip_forward=0; only the router between them forwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.bpf_fixtures import PYTHON, REPO, nsenter, run
from tests.integration.test_overlay_netns import CROSS, DEV, Lab, lab, serve

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


def agent(t: Lab, pins: str, name: str, *args: str) -> dict[str, object]:
    node = t.nodes[name]
    argv = [*nsenter(node.ns), PYTHON, "-m", "tests.bpf_fixtures", "agent"]
    argv += ["--pin-dir", f"{pins}/{name}", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_redirect_neigh_to_the_vxlan_device_with_the_overlay_next_hop() -> None:
    with lab(CROSS) as t:
        pins = f"/sys/fs/bpf/kroute-test-{t.prefix}"
        try:
            t.sync(CROSS, ["a", "b", "c"])
            for name in ("a", "c"):
                run([*nsenter(t.nodes[name].ns), "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
                run([*nsenter(t.nodes[name].pod_ns), "ethtool", "-K", "eth0", "tx", "off"])
            # Forwarding off: the kernel path is gone, so the test can fail.
            assert t.ping("a", "c") == 0
            other = {"a": "c", "c": "a"}
            for name in ("a", "c"):
                remote = t.nodes[other[name]]
                args = ["--pod", f"{t.nodes[name].pod_ip}=pod0"]
                args += ["--route", f"{remote.pod_cidr}={DEV},{remote.pod_cidr.split('/')[0]}"]
                for netdev in ("eth0", DEV):  # from_netdev on the underlay and the overlay
                    agent(t, pins, name, "setup", "--netdev", netdev, *args)
            assert t.ping("a", "c") == 3 and t.ping("c", "a") == 3
            assert t.ping("a", "c", size=1422) == 3
            serve(t, "a", "c")
            assert t.tcp("a", "c") == "ok" and t.tcp("c", "a") == "ok"
            for name in ("a", "c"):
                counters = agent(t, pins, name, "show")["counters"]
                assert isinstance(counters, dict)
                assert counters["forwarded_remote"] >= 9, counters  # pod -> kroute.vxlan
                assert counters["forwarded_local"] >= 9, counters  # kroute.vxlan -> pod
                assert counters["dropped_redirect"] == 0, counters
            seen = t.counters()
            assert seen["router_vxlan"] >= 18 and seen["router_plain"] == 0, seen
        finally:
            shutil.rmtree(pins, ignore_errors=True)
