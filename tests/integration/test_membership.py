"""Nodes joining and leaving a running lab, with real daemons, exabgp and kernel routes.

A fourth node joins (`lab.nodes.add_node`) and every node routes to its pods without a
restart; then it leaves (`remove_node`) and its route goes from every other kernel and
its blocks from the store. With `--store etcd` the others follow etcd membership (lease
TTL 3 s); with the file store they follow their rewritten config through a reload. Each
test has its own lab, taken down in teardown even on failure, and checks that nothing
(namespace or process) is left.
"""

from __future__ import annotations

import concurrent.futures
import functools
import subprocess
import time
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from bgpd.api.client import call
from lab import lab as labmod
from lab import nodes, procs
from lab.plan import LEASE_TTL
from tests.watch import expected_routes, kernel_routes, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

RESTART_TIME = 9  # the lab's graceful-restart time (and hold time)
MARGIN = 5


def quiet(_: str) -> None:
    pass


@pytest.fixture
def lab_name(unique_name: str) -> Iterator[str]:
    yield unique_name
    labmod.down(unique_name, say=quiet)


def ping(src_ns: str, ip: str) -> bool:
    done = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{src_ns}", "ping", "-c", "2", "-i", "0.2", "-W", "2",
         ip],
        capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def all_routes_present(lab: labmod.Lab) -> bool:
    return all(kernel_routes(n.netns) == expected_routes(lab.plan.nodes, n) for n in lab.plan.nodes)


def lacks_route(ns: str, prefix: str) -> bool:
    return prefix not in kernel_routes(ns)


def lab_namespaces(name: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(f"{name}-")]


@pytest.mark.parametrize(
    "store", [pytest.param("etcd", marks=pytest.mark.etcd), "file"], ids=["etcd", "file"]
)
def test_node_joins_and_leaves_without_restarts(lab_name: str, store: str) -> None:
    lab = labmod.up(lab_name, 3, timeout=60, say=quiet, store=store)
    before = dict(lab.daemons)
    assert len(before) == 3 and all(procs.is_alive(p) for p in before.values())

    started = time.monotonic()
    new = nodes.add_node(lab_name, timeout=60, say=quiet)
    lab = labmod.require_lab(lab_name)
    wait_for(lambda: all_routes_present(lab), 30, "every kernel to route to every block")
    joined = time.monotonic() - started
    n1 = lab.plan.nodes[0]
    assert new.name == f"{lab_name}-n4" and ip_address(new.pod_ip) in ip_network(new.pod_cidr)
    assert ping(n1.pod_ns, new.pod_ip), f"{n1.pod_ns} cannot reach {new.pod_ip}"
    assert ping(new.pod_ns, n1.pod_ip), f"{new.pod_ns} cannot reach {n1.pod_ip}"
    assert {k: v for k, v in lab.daemons.items() if k in before} == before  # no restarts
    assert all(procs.is_alive(p) for p in before.values())
    listed = call(n1.socket_path, "/nodes")["nodes"]
    assert {row["name"] for row in listed} == {n.name for n in lab.plan.nodes}

    others = [n for n in lab.plan.nodes if n != new]
    removal = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    started = time.monotonic()
    done = removal.submit(nodes.remove_node, lab_name, new.name, 60, quiet)
    gone: list[float] = []
    try:
        for node in others:  # seconds from the start of the removal
            wait_for(
                functools.partial(lacks_route, node.netns, new.pod_cidr),
                LEASE_TTL + RESTART_TIME + MARGIN * 2,
                f"{new.pod_cidr} to leave {node.name}'s kernel",
            )
            gone.append(time.monotonic() - started)
        done.result(timeout=90)
    finally:
        removal.shutdown(wait=True)
    left = time.monotonic() - started
    route_gone = max(gone)
    print(
        f"\n[{store}] join: all routes in {joined:.1f}s; leave: route gone within "
        f"{route_gone:.1f}s of the removal starting, remove-node done in {left:.1f}s"
    )
    assert route_gone <= LEASE_TTL + RESTART_TIME + MARGIN
    lab = labmod.require_lab(lab_name)
    assert all_routes_present(lab)
    assert lab.daemons == before
    state: dict[str, Any] = call(n1.socket_path, "/ipam")["state"]
    assert new.name not in state["nodeBlocks"] and new.name not in state.get("podIPs", {})
    assert sorted(state["nodeBlocks"]) == sorted(before)
    assert new.netns not in lab_namespaces(lab_name) and new.pod_ns not in lab_namespaces(lab_name)

    recorded = [*before.values(), *([lab.etcd] if lab.etcd else [])]
    labmod.down(lab_name, say=quiet)
    assert lab_namespaces(lab_name) == []
    assert [p for p in recorded if procs.is_alive(p)] == []
