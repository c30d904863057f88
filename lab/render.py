"""A lab node's kroute config, rendered from the lab plan."""

from __future__ import annotations

from typing import Any

import yaml

from lab.plan import (
    ASN,
    BPF_PIN_ROOT,
    LEASE_TTL,
    MASK_V4,
    STATUS_PORT,
    UPSTREAM_ASN,
    LabPlan,
    NodePlan,
)
from lab.subnets import prefix_len


def render_config(plan: LabPlan, node: NodePlan) -> str:
    """The kroute config of one node: iBGP over the LAN (full mesh, or through the route
    reflectors), plus an eBGP peer accepting only the external subnet with an upstream.
    Pod CIDRs come from the cluster pool; with etcd, so does the node list."""
    bgp: dict[str, Any] = {
        "asn": ASN,
        "holdTime": 9,
        "gracefulRestart": {"enabled": True, "restartTime": 9},
    }
    if plan.reflectors:
        bgp["mesh"] = "none"
    if plan.upstream:
        up = plan.upstream
        bgp["peers"] = [
            {
                "address": up.ip,
                "asn": UPSTREAM_ASN,
                "description": "upstream",
                "import": {"allow": [up.ext_subnet]},
            }
        ]
    ipam: dict[str, Any] = {
        "mode": "cluster-pool",
        "clusterPool": {"cidrs": [plan.pod_range], "maskSizeV4": MASK_V4},
        "store": plan.store,
    }
    if plan.store == "etcd":
        cluster: dict[str, Any] = {"source": "etcd", "leaseTTL": LEASE_TTL}
    else:
        ipam["file"] = plan.ipam_file
        cluster = {"nodes": [_cluster_node(plan, n) for n in plan.nodes]}
    data: dict[str, Any] = {
        "node": {"name": node.name, "ip": node.ip},
        "bgp": bgp,
        "cluster": cluster,
        "ipam": ipam,
        "status": {"listen": f"{node.ip}:{STATUS_PORT}", "socket": node.socket_path},
        "runDir": node.run_dir,
        "routing": _routing(plan),
        "datapath": {"bpf": {"enabled": plan.datapath == "bpf", "pinDir": pin_dir(plan, node)}},
    }
    if plan.store == "etcd":
        data["etcd"] = {"endpoints": [plan.etcd_url]}
    header = f"# kroute lab {plan.name}: node {node.name} on {node.ip}/{prefix_len(plan.subnets)}\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def _routing(plan: LabPlan) -> dict[str, Any]:
    if plan.overlay == "never":
        return {"mode": "native", "nativeRoutingCIDR": plan.pod_range}
    return {"mode": "vxlan", "overlay": plan.overlay, "nativeRoutingCIDR": plan.pod_range}


def pin_dir(plan: LabPlan, node: NodePlan) -> str:
    """Where `node` pins its BPF maps: bpffs is not split by network namespaces."""
    return f"{BPF_PIN_ROOT}/{node.name}"


def _cluster_node(plan: LabPlan, node: NodePlan) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": node.name, "ip": node.ip}
    if plan.is_reflector(node):
        entry["routeReflectorClusterId"] = plan.cluster_id
    return entry
