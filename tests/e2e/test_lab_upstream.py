"""The lab with an upstream router, as a user drives it: external host to every pod.

`kroute lab up --upstream KIND` adds NAME-up (BIRD, FRR or GoBGP, AS 65000) and the
external host NAME-ext behind it; kroute's nodes peer with the upstream (`bgp.peers`) and
accept only the external subnet from it. GoBGP's routes reach its kernel through the FIB
agent it runs beside gobgpd (lab/routers/gobgp_fib.py).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from lab import procs
from tests.e2e.conftest import kroute

pytestmark = [pytest.mark.e2e, pytest.mark.peers]


@pytest.fixture
def lab_name() -> Iterator[str]:
    name = f"e2u{secrets.token_hex(2)}"
    yield name
    kroute("lab", "down", "--name", name, check=False)


def status(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        kroute("lab", "status", "--name", name, "-o", "json").stdout
    )
    return rows


def kernel_routes(ns: str) -> set[str]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "route", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {r["dst"] for r in json.loads(out or "[]")}


def ping_from(ns: str, targets: list[str]) -> list[str]:
    failed = []
    for ip in targets:
        done = kroute("lab", "exec", ns, "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", ip,
                      check=False)  # fmt: skip
        if done.returncode != 0:
            failed.append(f"{ns} -> {ip}: {done.stdout}{done.stderr}")
    return failed


@pytest.mark.parametrize(
    ("kind", "reflectors"), [("bird", 0), ("frr", 0), ("gobgp", 0), ("bird", 1)]
)
def test_external_host_reaches_every_pod_through_the_upstream(
    lab_name: str, kind: str, reflectors: int
) -> None:
    kroute("lab", "up", "--name", lab_name, "--nodes", "3", "--upstream", kind,
           "--reflectors", str(reflectors))  # fmt: skip
    rows = status(lab_name)
    up = rows[0]["upstream"]
    assert up["kind"] == kind and up["alive"] and up["established"] == 3
    assert {r["established"] for r in rows} == {r["peers"] for r in rows}
    if reflectors:
        assert [r["role"] for r in rows] == ["reflector", "client", "client"]
        assert [r["peers"] for r in rows] == [3, 2, 2]  # clients: the reflector + upstream
    upstream_kernel = kernel_routes(up["namespace"])
    missing = [r["podCIDR"] for r in rows if r["podCIDR"] not in upstream_kernel]
    assert not missing, f"upstream {kind} has no kernel route to {missing}"
    for row in rows:
        assert up["extSubnet"] in kernel_routes(row["namespace"]), row["node"]
    assert not ping_from(up["extNamespace"], [r["podIP"] for r in rows])
    assert not ping_from(rows[-1]["pod"], [r["podIP"] for r in rows[:-1]] + [up["extIP"]])

    kroute("lab", "down", "--name", lab_name)
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert lab_name not in namespaces
    alive = [pid for pid in up["pids"] if procs.observe(pid) is not None]  # zombies are gone
    assert not alive, f"upstream pids {alive} survived lab down"
