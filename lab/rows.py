"""What `kroute lab status` and `kroute lab exec` read: one row per node, and which lab
owns a namespace. Kept apart from lab.lab, which changes labs; this only looks."""

from __future__ import annotations

import contextlib
from typing import Any

from bgpd.api.client import fetch_status
from common.errors import KrouteError
from lab import health
from lab.lab import Lab, all_labs
from lab.plan import LabError, LabPlan, NodePlan


def store_row(lab: Lab) -> dict[str, Any]:
    """Where the lab's pod CIDRs (and, with etcd, its membership) live."""
    plan = lab.plan
    if plan.store == "etcd":
        return {
            "kind": "etcd",
            "namespace": plan.etcd_ns,
            "url": plan.etcd_url,
            "pid": lab.etcd.pid if lab.etcd else None,
            "alive": lab.etcd_alive(),
        }
    return {"kind": "file", "file": plan.ipam_file, "alive": True}


def node_rows(lab: Lab) -> list[dict[str, Any]]:
    """One status row per node: where it lives, its daemon, its sessions."""
    rows = []
    store = store_row(lab)
    for node in lab.plan.nodes:
        proc = lab.daemons.get(node.name)
        alive = lab.node_alive(node)
        established: int | None = None
        peers = None
        if alive:
            with contextlib.suppress(KrouteError):
                status = fetch_status(node.socket_path)
                established, peers = health.established(status), len(status.get("peers", []))
        rows.append(
            {
                "lab": lab.plan.name,
                "node": node.name,
                "namespace": node.netns,
                "ip": node.ip,
                "podCIDR": node.pod_cidr,
                "pod": node.pod_ns,
                "podIP": node.pod_ip,
                "pid": proc.pid if proc else None,
                "alive": alive,
                "role": _role(lab.plan, node),
                "established": established,
                "peers": peers,
                "log": node.log_path,
                "store": store,
            }
        )
    return rows


def _role(plan: LabPlan, node: NodePlan) -> str:
    if not plan.reflectors:
        return "mesh"
    return "reflector" if plan.is_reflector(node) else "client"


def find_namespace(ns: str) -> tuple[Lab, NodePlan | None]:
    """The lab owning namespace `ns`, and the node when `ns` is a node's namespace."""
    for lab in all_labs():
        if ns in lab.plan.namespaces():
            return lab, next((n for n in lab.plan.nodes if n.netns == ns), None)
    raise LabError(f"namespace {ns!r} belongs to no lab; `kroute lab status` lists them")
