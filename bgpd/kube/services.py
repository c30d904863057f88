"""LoadBalancer Services, EndpointSlices and LoadBalancerIPPools -> the pool and service
documents `lbipam` parses (pure functions; the adapter stays thin).

Only services of type LoadBalancer whose `spec.loadBalancerClass` is `kroute.io/bgp`, or
unset when kroute is the cluster's default (`kubernetes.defaultLoadBalancerClass`), are
kroute's. A Local service (`externalTrafficPolicy: Local`) is announced by the nodes
with a ready endpoint in its EndpointSlices; a Cluster one by every node. Pools are
ordered by creationTimestamp (then name): the newer of two overlapping pools conflicts.
"""

from __future__ import annotations

import calendar
import ipaddress
import logging
import time
from collections.abc import Iterable
from typing import Any

from bgpd.kube.api import LB_CLASS, Obj
from lbipam import IPS_ANNOTATION, SHARING_KEY_ANNOTATION, DocumentError, parse_pool, parse_service

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def created(obj: Obj) -> float:
    """creationTimestamp as seconds since the epoch (0 when missing or malformed)."""
    text = str((obj.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return 0.0


def handled(svc: Obj, default_class: bool) -> bool:
    spec = svc.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return False
    cls = spec.get("loadBalancerClass")
    return cls == LB_CLASS or (cls is None and default_class)


def pool_docs(objects: Iterable[Obj]) -> tuple[list[Obj], list[str]]:
    """Valid pool documents, oldest first (a later one loses an overlap)."""
    docs: list[Obj] = []
    problems: list[str] = []
    for obj in sorted(objects, key=lambda o: (created(o), str(o["metadata"]["name"]))):
        spec = obj.get("spec") or {}
        name = str(obj["metadata"]["name"])
        doc = {"name": name, "created": created(obj)}
        doc.update({k: spec[k] for k in ("blocks", "serviceSelector", "disabled",
                                          "allowFirstLastIPs") if k in spec})  # fmt: skip
        try:
            parse_pool(doc, f"LoadBalancerIPPool {name}: spec")
        except DocumentError as exc:
            problems.extend(exc.errors)
            continue
        docs.append(doc)
    return docs, problems


def ready_nodes(svc: Obj, slices: Iterable[Obj]) -> tuple[str, ...]:
    """Nodes with a ready endpoint of `svc` (a missing `ready` condition counts as ready)."""
    meta = svc.get("metadata") or {}
    nodes: set[str] = set()
    for es in slices:
        es_meta = es.get("metadata") or {}
        if es_meta.get("namespace") != meta.get("namespace"):
            continue
        if (es_meta.get("labels") or {}).get(SERVICE_NAME_LABEL) != meta.get("name"):
            continue
        for endpoint in es.get("endpoints") or []:
            ready = (endpoint.get("conditions") or {}).get("ready") is not False
            if ready and endpoint.get("nodeName"):
                nodes.add(str(endpoint["nodeName"]))
    return tuple(sorted(nodes))


def ingress_ips(svc: Obj) -> tuple[str, ...]:
    """The addresses in `status.loadBalancer.ingress` (what the operator assigned)."""
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    out = []
    for entry in ingress:
        try:
            out.append(str(ipaddress.ip_address(entry.get("ip", ""))))
        except ValueError:
            continue
    return tuple(out)


def service_doc(svc: Obj, slices: Iterable[Obj]) -> Obj:
    """The lbipam service document of a Service; requests come from the
    `lbipam.kroute.io/ips` annotation, else the deprecated `spec.loadBalancerIP`."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    annotations = meta.get("annotations") or {}
    keep = {k: str(annotations[k]) for k in (IPS_ANNOTATION, SHARING_KEY_ANNOTATION)
            if k in annotations}  # fmt: skip
    if IPS_ANNOTATION not in keep and spec.get("loadBalancerIP"):
        keep[IPS_ANNOTATION] = str(spec["loadBalancerIP"])
    policy = "Local" if spec.get("externalTrafficPolicy") == "Local" else "Cluster"
    doc: dict[str, Any] = {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "labels": dict(meta.get("labels") or {}),
        "ports": [
            {"port": p.get("port"), "protocol": p.get("protocol", "TCP")}
            for p in spec.get("ports") or []
        ],
        "ipFamilies": list(spec.get("ipFamilies") or ["IPv4"]),
        "trafficPolicy": policy,
        "annotations": keep,
        "selector": dict(spec.get("selector") or {}),
    }
    if policy == "Local":
        doc["nodes"] = list(ready_nodes(svc, slices))
    return doc


def valid(doc: Obj, problems: list[str]) -> bool:
    try:
        parse_service(doc, f"Service {doc.get('namespace')}/{doc.get('name')}")
    except DocumentError as exc:
        problems.extend(exc.errors)
        return False
    return True


def announced_service_docs(
    services: Iterable[Obj], slices: Iterable[Obj], default_class: bool
) -> tuple[list[Obj], list[str]]:
    """What an agent announces: kroute's services that have an assigned address, each
    requesting exactly its `status.loadBalancer.ingress` addresses (agents never pick
    an address themselves; the operator does)."""
    slices = list(slices)
    docs: list[Obj] = []
    problems: list[str] = []
    for svc in services:
        ips = ingress_ips(svc)
        if not handled(svc, default_class) or not ips:
            continue
        doc = service_doc(svc, slices)
        doc["annotations"][IPS_ANNOTATION] = ",".join(ips)
        doc["ipFamilies"] = sorted({f"IPv{ipaddress.ip_address(ip).version}" for ip in ips})
        if valid(doc, problems):
            docs.append(doc)
    docs.sort(key=lambda d: (d["namespace"], d["name"]))
    return docs, problems
