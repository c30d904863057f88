"""Is the lab converged? Read each node's `GET /status` over its unix socket and compare.

A node counts as converged when every other lab node is an established peer and the
kernel holds a current (not stale) route to every other node's pod CIDR: only then does
a pod-to-pod ping work, which is what `lab up` and `lab restart` promise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bgpd.client import fetch_status
from bgpd.errors import KrouteError
from lab.plan import LabError, LabPlan, NodePlan


def established(status: dict[str, Any]) -> int:
    """How many of the node's peers are established."""
    return sum(1 for p in status.get("peers", []) if p.get("state") == "established")


def problems(plan: LabPlan, node: NodePlan, status: dict[str, Any]) -> list[str]:
    """What keeps `node` from being converged, one line per peer or route (empty: converged)."""
    peers = {p.get("address"): p for p in status.get("peers", [])}
    routes = {r.get("prefix"): r for r in status.get("kernelRoutes", [])}
    found: list[str] = []
    for other in plan.nodes:
        if other == node:
            continue
        peer = peers.get(other.ip)
        if peer is None:
            found.append(f"node {node.name}: peer {other.name} ({other.ip}) is not configured")
        elif peer.get("state") != "established":
            info = f" ({peer['info']})" if peer.get("info") else ""
            found.append(
                f"node {node.name}: peer {other.name} ({other.ip}) is {peer.get('state')}{info}"
            )
        route = routes.get(other.pod_cidr)
        if route is None or route.get("type") != "unicast":
            found.append(f"node {node.name}: no route to {other.name}'s pods {other.pod_cidr}")
        elif route.get("stale"):
            found.append(f"node {node.name}: route to {other.pod_cidr} is still stale")
    return found


def wait_converged(
    plan: LabPlan,
    timeout: float,
    check_alive: Callable[[NodePlan], None],
) -> None:
    """Poll every node until all are converged; LabError naming what is still missing.

    `check_alive` raises when a node's daemon died, so a crash fails fast with its log.
    """
    deadline = time.monotonic() + timeout
    pending = list(plan.nodes)
    last: dict[str, list[str]] = {}
    while True:
        for node in list(pending):
            check_alive(node)
            try:
                issues = problems(plan, node, fetch_status(node.socket_path))
            except KrouteError as exc:
                issues = [f"node {node.name}: {exc}"]
            last[node.name] = issues
            if not issues:
                pending.remove(node)
        if not pending:
            return
        if time.monotonic() >= deadline:
            node = pending[0]
            raise LabError(
                f"lab {plan.name} did not converge within {timeout:g}s: "
                + "; ".join(last[node.name])
                + f"\n--- last lines of {node.log_path} ---\n{log_tail(node.log_path)}"
            )
        time.sleep(0.5)


def log_tail(path: str, lines: int = 25) -> str:
    """The end of a node's log, for error messages."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip() or "(empty)"
    except OSError as exc:
        return f"(cannot read: {exc.strerror})"
