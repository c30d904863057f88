"""Kubernetes objects as the API server returns them, for kroute's tests."""

from __future__ import annotations

import json
from typing import Any

Obj = dict[str, Any]


def node(
    name: str,
    ip: str,
    pod_cidrs: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    return {
        "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"podCIDRs": pod_cidrs or []},
        "status": {"addresses": [{"type": "Hostname", "address": name},
                                 {"type": "InternalIP", "address": ip}]},
    }  # fmt: skip


def peers_annotation(*peers: Obj) -> dict[str, str]:
    return {"kroute.io/peers": json.dumps(list(peers))}


def service(
    namespace: str,
    name: str,
    *,
    policy: str = "Cluster",
    port: int = 80,
    lb_class: str | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    kind: str = "LoadBalancer",
) -> Obj:
    spec: Obj = {
        "type": kind,
        "ports": [{"port": port, "protocol": "TCP"}],
        "selector": {"app": name},
        "externalTrafficPolicy": policy,
        "ipFamilies": ["IPv4"],
    }
    if lb_class is not None:
        spec["loadBalancerClass"] = lb_class
    meta = {"name": name, "namespace": namespace, "labels": labels or {},
            "annotations": annotations or {}}  # fmt: skip
    return {"metadata": meta, "spec": spec}


def endpoint_slice(
    namespace: str, service_name: str, ready: dict[str, bool], suffix: str = "a"
) -> Obj:
    return {
        "metadata": {
            "name": f"{service_name}-{suffix}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [f"10.244.0.{i + 10}"], "nodeName": node_name,
             "conditions": {"ready": is_ready}}
            for i, (node_name, is_ready) in enumerate(sorted(ready.items()))
        ],
    }  # fmt: skip


def pool(name: str, *cidrs: str, selector: Obj | None = None, disabled: bool = False) -> Obj:
    spec: Obj = {"blocks": [{"cidr": c} for c in cidrs]}
    if selector is not None:
        spec["serviceSelector"] = selector
    if disabled:
        spec["disabled"] = True
    return {
        "apiVersion": "kroute.io/v1alpha1",
        "kind": "LoadBalancerIPPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def bgp_peer(name: str, address: str, asn: int, node_selector: dict[str, str] | None = None) -> Obj:
    spec: Obj = {"address": address, "asn": asn}
    if node_selector is not None:
        spec["nodeSelector"] = {"matchLabels": node_selector}
    return {"apiVersion": "kroute.io/v1alpha1", "kind": "BGPPeer", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def with_ingress(svc: Obj, *ips: str) -> Obj:
    return {**svc, "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}
