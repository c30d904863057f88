"""The real `kroute-cni` binary, run inside a node namespace as a container runtime would.

A node netns (with an address, so it has a source for pings) and pod namespaces made by
the test; a kroute config with `ipam.mode: cluster-pool` and a file store in tmp_path
whose node block is allocated first, as the daemon does at start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipam.allocator import ClusterPool
from ipam.file_store import FileIpamStore
from tests.netns_fixtures import add_link, ip, netns

pytestmark = [
    pytest.mark.netns,
]

KROUTE_CNI = Path(sys.executable).with_name("kroute-cni")
V4, V6 = "10.244.0.0/16", "fd00:244::/48"
NODE_IP = "10.99.0.1"


class Node:
    """One node namespace with its kroute config; `cni()` runs the plugin there."""

    def __init__(self, ns: str, tmp_path: Path, cidrs: list[str], mode: str) -> None:
        self.ns, self.ipam_file = ns, tmp_path / "ipam.json"
        pool = ", ".join(cidrs)
        self.config = tmp_path / "kroute.yaml"
        self.config.write_text(
            f"node: {{name: node-a, ip: {NODE_IP}}}\n"
            "bgp: {asn: 64512}\n"
            f"ipam: {{mode: {mode}, clusterPool: {{cidrs: [{pool}]}}, file: {self.ipam_file}}}\n"
            f"status: {{listen: '', socket: {tmp_path / 'kroute.sock'}}}\n"
            f"runDir: {tmp_path / 'run'}\n"
        )
        if mode == "cluster-pool":
            store = FileIpamStore(self.ipam_file)
            pool_ = ClusterPool(tuple(ipaddress.ip_network(c) for c in cidrs))
            asyncio.run(store.allocate_node_blocks(pool_, "node-a"))

    def cni(
        self, command: str, cid: str, pod: str | None, **extra: Any
    ) -> tuple[int, dict[str, Any]]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": extra.pop("ifname", "eth0"),
            "CNI_PATH": "/opt/cni/bin",
        }
        if pod is not None:
            env["CNI_NETNS"] = f"/var/run/netns/{pod}"
        conf = {
            "cniVersion": "1.0.0",
            "name": "kroute",
            "type": "kroute-cni",
            "kroute": {"config": str(self.config)},
            **extra,
        }
        proc = subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{self.ns}", str(KROUTE_CNI)],
            input=json.dumps(conf),
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        out = json.loads(proc.stdout) if proc.stdout.strip() else {}
        if proc.returncode != 0:
            assert set(out) == {"cniVersion", "code", "msg", "details"}, proc.stderr
        return proc.returncode, out

    def pod_keys(self) -> dict[str, str]:
        state = asyncio.run(FileIpamStore(self.ipam_file).snapshot())
        return {k: str(v) for k, v in state.pod_ips.get("node-a", {}).items()}

    def ping(self, address: str, ns: str | None = None) -> bool:
        cmd = ["nsenter", f"--net=/var/run/netns/{ns or self.ns}", "ping", "-c1", "-W2", address]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Any]:
    with netns("kcn-") as ns:
        add_link(ns, v4=f"{NODE_IP}/24", v6="2001:db8:99::1/64")

        def make(cidrs: list[str] | None = None, mode: str = "cluster-pool") -> Node:
            return Node(ns, tmp_path, cidrs or [V4], mode)

        yield make


@pytest.fixture
def pods() -> Iterator[list[str]]:
    with netns("kcp-") as a, netns("kcp-") as b:
        yield [a, b]


def routes(ns: str, v6: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(
        ip("-n", ns, *(["-6"] if v6 else []), "-j", "route", "show") or "[]"
    )
    return out


def test_add_check_del(make_node: Any, pods: list[str]) -> None:
    node, (pod, pod2) = make_node(), pods
    code, result = node.cni("ADD", "c1", pod, mtu=1450)
    assert code == 0, result
    host = result["interfaces"][0]["name"]
    assert result["ips"] == [{"address": "10.244.0.1/32", "interface": 1, "gateway": "169.254.1.1"}]
    assert result["interfaces"][1]["sandbox"] == f"/var/run/netns/{pod}"

    (eth0,) = json.loads(ip("-n", pod, "-j", "addr", "show", "dev", "eth0"))
    assert eth0["mtu"] == 1450
    v4 = [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"]
    assert v4 == [("10.244.0.1", 32)]
    pod_routes = {(r["dst"], r.get("gateway"), r.get("scope")) for r in routes(pod)}
    assert ("default", "169.254.1.1", None) in pod_routes
    assert ("169.254.1.1", None, "link") in pod_routes
    node_routes = {(r["dst"], r["dev"]) for r in routes(node.ns)}
    assert ("10.244.0.1", host) in node_routes and ("169.254.1.1", "lo") in node_routes
    assert node.ping("10.244.0.1")
    assert node.ping(NODE_IP, ns=pod)  # proxy ARP answers for 169.254.1.1

    assert node.cni("ADD", "c1", pod, mtu=1450) == (0, result)  # idempotent
    assert node.cni("CHECK", "c1", pod, mtu=1450, prevResult=result) == (0, {})

    code, second = node.cni("ADD", "c2", pod2)
    assert code == 0
    assert second["ips"][0]["address"] == "10.244.0.2/32"
    assert node.ping("10.244.0.2") and node.ping("10.244.0.1")
    assert node.pod_keys() == {"c1/eth0/v4": "10.244.0.1", "c2/eth0/v4": "10.244.0.2"}

    ip("-n", pod, "route", "del", "default")  # CHECK notices drift
    code, err = node.cni("CHECK", "c1", pod, mtu=1450, prevResult=result)
    assert code != 0 and err["code"] == 102 and "default" in err["details"]

    assert node.cni("DEL", "c1", pod) == (0, {})
    assert ip("-n", node.ns, "link", "show", host, check=False) == ""
    assert ip("-n", pod, "link", "show", "eth0", check=False) == ""
    assert node.pod_keys() == {"c2/eth0/v4": "10.244.0.2"}
    assert node.cni("DEL", "c1", pod) == (0, {})  # again
    assert node.cni("DEL", "c1", None) == (0, {})  # without a netns
    assert node.cni("DEL", "gone", "no-such-netns") == (0, {})
    code, err = node.cni("CHECK", "c1", pod)
    assert code != 0 and err["code"] == 102
    assert node.ping("10.244.0.2")  # the other pod is untouched


def test_add_reuses_the_veth_after_partial_loss(make_node: Any, pods: list[str]) -> None:
    node, pod = make_node(), pods[0]
    code, result = node.cni("ADD", "c1", pod)
    assert code == 0
    ip("-n", pod, "addr", "flush", "dev", "eth0")
    ip("-n", node.ns, "route", "del", "10.244.0.1/32")
    assert node.cni("CHECK", "c1", pod, prevResult=result)[0] != 0
    assert node.cni("ADD", "c1", pod) == (0, result)  # same veth, same MACs
    assert node.cni("CHECK", "c1", pod, prevResult=result) == (0, {})
    assert node.ping("10.244.0.1")


def test_dual_stack(make_node: Any, pods: list[str]) -> None:
    node, pod = make_node([V4, V6]), pods[0]
    code, result = node.cni("ADD", "c1", pod)
    assert code == 0, result
    assert [a["address"] for a in result["ips"]] == ["10.244.0.1/32", "fd00:244::1/128"]
    assert node.ping("fd00:244::1") and node.ping("10.244.0.1")
    assert node.ping("2001:db8:99::1", ns=pod)  # via fe80::1 on the node side
    assert node.cni("CHECK", "c1", pod, prevResult=result) == (0, {})
    assert node.cni("DEL", "c1", pod) == (0, {})
    assert node.pod_keys() == {}


def test_bad_input_and_static_mode(make_node: Any, pods: list[str]) -> None:
    node = make_node()
    code, err = node.cni("ADD", "../x", pods[0])
    assert code != 0 and err["code"] == 4 and "CNI_CONTAINERID" in err["msg"]
    code, err = node.cni("ADD", "c1", pods[0], ifname="a-very-long-ifname")
    assert code != 0 and err["code"] == 4 and "CNI_IFNAME" in err["msg"]
    code, err = node.cni("ADD", "c1", "no-such-netns")
    assert code != 0 and err["code"] == 3
    assert node.pod_keys() == {}
    static = make_node(mode="static")
    code, err = static.cni("ADD", "c1", pods[0])
    assert code != 0 and err["code"] == 7 and "cluster-pool" in err["details"]
