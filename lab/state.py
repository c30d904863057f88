"""The JSON form of a lab plan, as lab.json stores it (camelCase, like the daemon's config).

Kept apart from the plan so the plan module stays about addresses and configs; reading
takes names and addresses as stored, so a lab keeps what it was built with.
"""

from __future__ import annotations

from typing import Any

from lab.plan import UPSTREAM_ASN, LabError, LabPlan, NodePlan, UpstreamPlan


def plan_to_dict(plan: LabPlan) -> dict[str, Any]:
    """The JSON form stored in lab.json; unallocated pod CIDRs and IPs are null."""
    store: dict[str, Any] = {"kind": plan.store}
    if plan.store == "etcd":
        store.update(namespace=plan.etcd_ns, url=plan.etcd_url, dataDir=plan.etcd_dir)
    else:
        store["file"] = plan.ipam_file
    return {
        "name": plan.name,
        "index": plan.index,
        "subnet": plan.subnet,
        "podRange": plan.pod_range,
        "lanNamespace": plan.lan_ns,
        "stateDir": plan.state_dir,
        "reflectors": plan.reflectors,
        "datapath": plan.datapath,
        "subnets": plan.subnets,
        "routerNamespace": plan.router_ns if plan.subnets == 2 else None,
        "overlay": plan.overlay,
        "store": store,
        "upstream": _upstream_to_dict(plan.upstream) if plan.upstream else None,
        "nodes": [
            {
                "name": n.name,
                "index": n.index,
                "namespace": n.netns,
                "ip": n.ip,
                "podCIDR": n.pod_cidr or None,
                "podNamespace": n.pod_ns,
                "podIP": n.pod_ip or None,
                "lanInterface": n.lan_if,
                "runDir": n.run_dir,
                "config": n.config_path,
                "log": n.log_path,
                "socket": n.socket_path,
            }
            for n in plan.nodes
        ],
    }


def plan_from_dict(data: dict[str, Any]) -> LabPlan:
    """Read back what `plan_to_dict` wrote; names and addresses are taken as stored."""
    try:
        nodes = tuple(
            NodePlan(
                name=n["name"],
                index=int(n["index"]),
                ip=n["ip"],
                pod_ns=n["podNamespace"],
                lan_if=n["lanInterface"],
                run_dir=n["runDir"],
                pod_cidr=n.get("podCIDR") or "",
                pod_ip=n.get("podIP") or "",
            )
            for n in data["nodes"]
        )
        return LabPlan(
            name=data["name"],
            index=int(data["index"]),
            subnet=data["subnet"],
            pod_range=data["podRange"],
            lan_ns=data["lanNamespace"],
            state_dir=data["stateDir"],
            nodes=nodes,
            upstream=_upstream_from_dict(data["upstream"]) if data.get("upstream") else None,
            reflectors=int(data.get("reflectors", 0)),
            datapath=str(data.get("datapath", "bpf")),
            subnets=int(data.get("subnets", 1)),
            overlay=str(data.get("overlay", "never")),
            store=str((data.get("store") or {}).get("kind", "file")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabError(f"lab state is missing or has a bad field ({exc!r})") from None


def _upstream_to_dict(up: UpstreamPlan) -> dict[str, Any]:
    return {
        "kind": up.kind,
        "namespace": up.netns,
        "ip": up.ip,
        "asn": UPSTREAM_ASN,
        "lanInterface": up.lan_if,
        "extNamespace": up.ext_ns,
        "extSubnet": up.ext_subnet,
        "extGateway": up.ext_gateway,
        "extIP": up.ext_ip,
        "workdir": up.workdir,
    }


def _upstream_from_dict(data: dict[str, Any]) -> UpstreamPlan:
    return UpstreamPlan(
        kind=data["kind"],
        netns=data["namespace"],
        ip=data["ip"],
        lan_if=data["lanInterface"],
        ext_ns=data["extNamespace"],
        ext_subnet=data["extSubnet"],
        ext_gateway=data["extGateway"],
        ext_ip=data["extIP"],
        workdir=data["workdir"],
    )
