"""Is the lab converged? Read each node's `GET /status` over its unix socket and compare.

A node counts as converged when every peer its daemon lists (the other nodes in a full
mesh, only the reflectors for a reflector client, plus the upstream) is established and
the kernel holds a current (not stale) route to every other node's pod CIDR, and to the
external subnet when the lab has an upstream: only then does a pod-to-pod (or
external-to-pod) ping work, which is what `lab up` and `lab restart` promise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bgpd.api.client import fetch_status
from common.errors import KrouteError
from lab.plan import LabError, LabPlan, NodePlan


def established(status: dict[str, Any]) -> int:
    """How many of the node's peers are established."""
    return sum(1 for p in status.get("peers", []) if p.get("state") == "established")


def problems(plan: LabPlan, node: NodePlan, status: dict[str, Any]) -> list[str]:
    """What keeps `node` from being converged, one line per peer or route (empty: converged)."""
    peers = {p.get("address"): p for p in status.get("peers", [])}
    routes = {r.get("prefix"): r for r in status.get("kernelRoutes", [])}
    names = {n.ip: n.name for n in plan.nodes}
    found = [
        f"node {node.name}: peer {name} ({ip}) is not configured"
        for ip, name in expected_peers(plan, node)
        if ip not in peers
    ]
    for address, peer in peers.items():
        if peer.get("state") != "established":
            name = names.get(address, peer.get("name") or "peer")
            info = f" ({peer['info']})" if peer.get("info") else ""
            found.append(f"node {node.name}: peer {name} ({address}) is {peer.get('state')}{info}")
    wanted = [(o.pod_cidr, f"{o.name}'s pods") for o in plan.nodes if o != node]
    if plan.upstream:
        wanted.append((plan.upstream.ext_subnet, "the external subnet"))
    for prefix, what in wanted:
        route = routes.get(prefix)
        if route is None or route.get("type") != "unicast":
            found.append(f"node {node.name}: no route to {what} {prefix}")
        elif route.get("stale"):
            found.append(f"node {node.name}: route to {prefix} is still stale")
    if status.get("datapath", {}).get("hostRouting") == "Starting":
        found.append(f"node {node.name}: the datapath is still loading")
    return found


def expected_peers(plan: LabPlan, node: NodePlan) -> list[tuple[str, str]]:
    """(address, name) of every peer `node` must have: the other nodes (all of them in a
    full mesh or on a reflector, only the reflectors on a client), plus the upstream."""
    others = [n for n in plan.nodes if n != node]
    if plan.reflectors and not plan.is_reflector(node):
        others = [n for n in others if plan.is_reflector(n)]
    found = [(n.ip, n.name) for n in others]
    if plan.upstream:
        found.append((plan.upstream.ip, "upstream"))
    return found


def wait_converged(
    plan: LabPlan,
    timeout: float,
    check_alive: Callable[[NodePlan], None],
    others: Callable[[], list[str]] = list,
) -> None:
    """Poll every node until all are converged; LabError naming what is still missing.

    `check_alive` raises when a node's daemon died, so a crash fails fast with its log;
    `others` lists what else is missing (the upstream router's routes), raising if it died.
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
        outside = others() if not pending else []
        if not pending and not outside:
            return
        if time.monotonic() >= deadline:
            if not pending:
                raise LabError(
                    f"lab {plan.name} did not converge within {timeout:g}s: " + "; ".join(outside)
                )
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
