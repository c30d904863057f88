"""The lab's upstream router: built from the plan, started, checked and shown.

The router is a `lab.routers` router of the kind chosen with `--upstream`, in namespace
NAME-up at 172.31.K.254, AS 65000, peering eBGP with every node and originating the
external subnet. Its PIDs live in lab.json, so any later `kroute lab` command can stop it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import net, procs
from lab.plan import ASN, UPSTREAM_ASN, LabPlan
from lab.procs import Proc
from lab.routers import DaemonRouter, NeighborConf, RouterError, make_router


def make(plan: LabPlan, recorded: list[Proc]) -> DaemonRouter | None:
    """The upstream of `plan` as configured, holding the `recorded` PIDs."""
    up = plan.upstream
    if up is None:
        return None
    router = make_router(
        up.kind,
        netns=up.netns,
        workdir=Path(up.workdir),
        router_id=up.ip,
        asn=UPSTREAM_ASN,
        neighbors=[NeighborConf(n.ip, ASN) for n in plan.nodes],
        role="upstream",
        originate=[up.ext_subnet],
    )
    router.procs = list(recorded)
    return router


def start(
    plan: LabPlan,
    router: DaemonRouter,
    record: Callable[[list[Proc]], None],
    say: Callable[[str], None],
) -> None:
    """Build the upstream's and the external host's namespaces and start the router;
    `record` stores its PIDs, also when the start fails half way."""
    up = plan.upstream
    assert up is not None
    net.build_upstream(plan, up)
    Path(up.workdir).mkdir(parents=True, exist_ok=True)
    try:
        router.start()
    finally:
        record(list(router.procs))
    say(
        f"upstream {up.kind}: {up.netns} {up.ip} AS {UPSTREAM_ASN}, pids {router.pids()}, "
        f"external host {up.ext_ns} {up.ext_ip} on {up.ext_subnet}, files {up.workdir}"
    )


def problems(plan: LabPlan, router: DaemonRouter | None) -> list[str]:
    """What the upstream still lacks (a route to some node's pods); raises if it died."""
    if router is None:
        return []
    if not router.procs or not all(procs.is_alive(p) for p in router.procs):
        raise router.fail("is not running")
    try:
        routes = router.routes()
    except RouterError as exc:
        return [str(exc).splitlines()[0]]
    return [
        f"upstream {router.kind}: no route to {n.name}'s pods {n.pod_cidr}"
        for n in plan.nodes
        if n.pod_cidr not in routes
    ]


def row(plan: LabPlan, router: DaemonRouter | None) -> dict[str, Any] | None:
    """The upstream's status: where it lives, its PIDs, its sessions with the nodes."""
    up = plan.upstream
    if router is None or up is None:
        return None
    alive = bool(router.procs) and all(procs.is_alive(p) for p in router.procs)
    established = None
    if alive:
        with contextlib.suppress(RouterError):
            states = [router.neighbor_state(n.ip) for n in plan.nodes]
            established = states.count("established")
    return {
        "kind": up.kind,
        "namespace": up.netns,
        "ip": up.ip,
        "asn": UPSTREAM_ASN,
        "pids": router.pids(),
        "alive": alive,
        "established": established,
        "peers": len(plan.nodes),
        "extNamespace": up.ext_ns,
        "extIP": up.ext_ip,
        "extSubnet": up.ext_subnet,
        "workdir": up.workdir,
    }
