"""The lab end to end: up, pod-to-pod across every pair of nodes, status, restart, down;
pod CIDRs and pod IPs from the IPAM store; nodes added and removed from the CLI."""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import kroute

pytestmark = pytest.mark.e2e
LabUp = Callable[[int], str]


def status(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        kroute("lab", "status", "--name", name, "-o", "json").stdout
    )
    return rows


def ping_every_pair(rows: list[dict[str, Any]]) -> None:
    failed = []
    for src in rows:
        for dst in rows:
            if src is dst:
                continue
            ping = ["ping", "-c", "2", "-i", "0.2", "-W", "2", dst["podIP"]]
            done = kroute("lab", "exec", src["pod"], "--", *ping, check=False)
            if done.returncode != 0:
                failed.append(f"{src['pod']} -> {dst['pod']} {dst['podIP']}: {done.stdout}")
    assert not failed, "\n".join(failed)


def netns_list() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout


def processes_of(pids: set[int]) -> list[str]:
    """Live processes that are, or share a session with, one of `pids` (the lab's daemons)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if fields[0] not in "ZX" and (pid in pids or int(fields[3]) in pids):
            found.append(f"{pid}: {fields}")
    return found


def test_lab_up_pods_reach_each_other_and_down_removes_everything(lab_up: LabUp) -> None:
    name = lab_up(3)
    rows = status(name)
    assert [r["node"] for r in rows] == [f"{name}-n{i}" for i in (1, 2, 3)]
    assert all(r["alive"] and r["established"] == 2 for r in rows)
    ping_every_pair(rows)

    table = kroute("lab", "status", "--name", name).stdout
    assert all(r["node"] in table and r["podCIDR"] in table for r in rows)
    assert "2/2 established" in table
    assert f"IPAM store file /run/kroute/lab/{name}/ipam.json" in table
    assert_allocated(name, rows)
    sock = kroute("lab", "exec", f"{name}-n2", "--", "sh", "-c", "echo $KROUTE_SOCKET").stdout
    assert sock.strip() == f"/run/kroute/lab/{name}/{name}-n2/kroute.sock"
    peers = kroute("lab", "exec", f"{name}-n1", "--", "kroute", "peers", "-o", "json").stdout
    assert peers.strip()
    assert (
        kroute("lab", "exec", f"{name}-n1", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    )

    again = kroute("lab", "up", "--name", name, check=False)
    assert again.returncode != 0 and "already exists" in again.stderr

    pids = {r["pid"] for r in rows}
    kroute("lab", "down", "--name", name)
    assert not [ns for ns in netns_list().split() if ns.startswith(f"{name}-")]
    assert processes_of(pids) == []
    assert not Path(f"/run/kroute/lab/{name}").exists()
    kroute("lab", "down", "--name", name)  # idempotent


def test_two_labs_run_at_once(lab_up: LabUp) -> None:
    first, second = lab_up(2), lab_up(2)
    rows_first, rows_second = status(first), status(second)
    assert rows_first[0]["ip"] != rows_second[0]["ip"]
    assert rows_first[0]["podCIDR"] != rows_second[0]["podCIDR"]
    ping_every_pair(rows_first)
    ping_every_pair(rows_second)
    kroute("lab", "down", "--name", first)
    assert all(r["alive"] and r["established"] == 1 for r in status(second))
    ping_every_pair(rows_second)


def assert_allocated(name: str, rows: list[dict[str, Any]]) -> None:
    """Blocks are /24s of the lab's pod range in node order; each pod holds the lowest IP
    of its node's block, recorded in the store under the pod's container ID."""
    blocks = [ipaddress.ip_network(r["podCIDR"]) for r in rows]
    assert [b.prefixlen for b in blocks] == [24] * len(rows)
    assert blocks == sorted(blocks) and len(set(blocks)) == len(rows)
    assert [str(ipaddress.ip_address(r["podIP"])) for r in rows] == [
        str(b.network_address + 1) for b in blocks
    ]
    out = kroute("lab", "exec", f"{name}-n1", "--", "kroute", "ipam", "-o", "json").stdout
    pods = json.loads(out)["state"]["podIPs"]
    for r in rows:
        assert pods[r["node"]] == {f"lab-{r['pod']}/eth0/v4": r["podIP"]}


@pytest.fixture
def named_lab() -> Iterator[str]:
    name = f"e2e{secrets.token_hex(2)}"
    yield name
    kroute("lab", "down", "--name", name, check=False)


@pytest.mark.parametrize(
    "store", ["file", pytest.param("etcd", marks=pytest.mark.etcd)], ids=["file", "etcd"]
)
def test_add_and_remove_a_node_from_the_cli(named_lab: str, store: str) -> None:
    name = named_lab
    kroute("lab", "up", "--name", name, "--nodes", "2", "--store", store)
    pids = {r["node"]: r["pid"] for r in status(name)}
    added = kroute("lab", "add-node", "--name", name).stdout
    assert f"{name}-n3 joined" in added
    rows = status(name)
    assert [r["node"] for r in rows] == [f"{name}-n{i}" for i in (1, 2, 3)]
    assert all(r["alive"] and r["established"] == 2 for r in rows)
    assert {r["node"]: r["pid"] for r in rows[:2]} == pids  # nobody restarted
    assert rows[0]["store"]["kind"] == store
    ping_every_pair(rows)
    assert_allocated(name, rows)

    removed = kroute("lab", "remove-node", f"{name}-n2").stdout
    assert "blocks and pod IP released" in removed
    rows = status(name)
    assert [r["node"] for r in rows] == [f"{name}-n1", f"{name}-n3"]
    assert all(r["alive"] and r["established"] == 1 for r in rows)
    ping_every_pair(rows)
    assert not [ns for ns in netns_list().split() if ns.startswith(f"{name}-n2")]
    last = kroute("lab", "remove-node", f"{name}-n3", "--name", name, check=False)
    assert last.returncode == 0
    refused = kroute("lab", "remove-node", f"{name}-n1", "--name", name, check=False)
    assert refused.returncode == 1 and "last node" in refused.stderr
    kroute("lab", "down", "--name", name)
    assert not [ns for ns in netns_list().split() if ns.startswith(f"{name}-")]
    assert processes_of(set(pids.values())) == []


@pytest.mark.parametrize("how", [[], ["--kill"]], ids=["sigterm", "sigkill"])
def test_restart_brings_the_node_back(lab_up: LabUp, how: list[str]) -> None:
    name = lab_up(3)
    before = {r["node"]: r["pid"] for r in status(name)}
    kroute("lab", "restart", f"{name}-n2", *how)
    rows = status(name)
    assert rows[1]["pid"] != before[f"{name}-n2"]
    assert rows[0]["pid"] == before[f"{name}-n1"]
    assert processes_of({before[f"{name}-n2"]}) == []
    ping_every_pair(rows)


def test_failed_up_leaves_nothing_and_touches_no_foreign_namespace() -> None:
    name = f"e2e{secrets.token_hex(2)}"
    foreign = f"{name}-n2"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        done = kroute("lab", "up", "--name", name, check=False)
        assert done.returncode != 0 and foreign in done.stderr
        assert [ns for ns in netns_list().split() if ns.startswith(f"{name}-")] == [foreign]
        assert not Path(f"/run/kroute/lab/{name}").exists()
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)
        kroute("lab", "down", "--name", name, check=False)
