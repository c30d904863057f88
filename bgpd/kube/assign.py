"""The operator's decisions (pure): LB-IPAM over the API objects, and the status writes
that bring the objects to the result.

The allocation state is the services' own `status.loadBalancer.ingress`: whatever an
operator wrote is what the next one (after a failover or a restart) starts from, so a
service never changes address because the leader changed. `lbipam.allocate` keeps every
held address that is still valid and is deterministic for the rest.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bgpd.kube.api import Obj, key
from bgpd.kube.services import handled, ingress_ips, pool_docs, service_doc, valid
from lbipam import LbState, PoolStatus, Result, ServiceStatus, allocate, parse_pool, parse_service

ASSIGNED = "kroute.io/IPAssigned"
CONFLICT = "kroute.io/PoolConflict"


@dataclass(frozen=True)
class Plan:
    """The allocation and the status each object should have (only those that differ)."""

    result: Result
    services: dict[str, Obj]  # "namespace/name" -> new status
    pools: dict[str, Obj]  # name -> new status
    problems: tuple[str, ...] = ()


def condition(
    kind: str, ok: bool, reason: str, message: str, *, old: Iterable[Obj], stamp: str
) -> Obj:
    """A metav1.Condition; lastTransitionTime only moves when the status flips."""
    status = "True" if ok else "False"
    previous = next((c for c in old if c.get("type") == kind), None)
    since = (
        previous.get("lastTransitionTime")
        if previous and previous.get("status") == status
        else None
    )
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since or stamp}  # fmt: skip


def service_status(svc: Obj, status: ServiceStatus, stamp: str) -> Obj:
    old = svc.get("status") or {}
    ok = bool(status.ips) and not status.missing
    reason = status.reasons[0].code if status.reasons else ("Assigned" if ok else "Pending")
    message = "; ".join(r.message for r in status.reasons) or (
        "addresses assigned" if ok else "waiting for an address"
    )
    cond = condition(ASSIGNED, ok, reason, message, old=old.get("conditions") or [], stamp=stamp)
    others = [c for c in old.get("conditions") or [] if c.get("type") != ASSIGNED]
    return {
        "loadBalancer": {"ingress": [{"ip": str(ip)} for ip in status.ips]},
        "conditions": [*others, cond],
    }


def pool_status(pool: Obj, status: PoolStatus, stamp: str) -> Obj:
    old = pool.get("status") or {}
    conflict = status.conflicting_with
    message = f"overlaps pool {conflict}, which is older" if conflict else "no overlap"
    cond = condition(CONFLICT, conflict is not None, "Overlap" if conflict else "NoConflict",
                     message, old=old.get("conditions") or [], stamp=stamp)  # fmt: skip
    cond["observedGeneration"] = (pool.get("metadata") or {}).get("generation", 1)
    return {
        "conditions": [cond],
        "ipsTotal": status.total,
        "ipsUsed": status.used,
        "ipsAvailable": status.available,
        "disabled": status.disabled,
    }


def _same(old: Any, new: Obj) -> bool:
    def strip(doc: Any) -> Any:
        if not isinstance(doc, dict):
            return doc
        conds = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                 for c in doc.get("conditions") or []]  # fmt: skip
        return {**doc, "conditions": conds}

    return bool(strip(old or {}) == strip(new))


def plan(
    services: Iterable[Obj],
    slices: Iterable[Obj],
    pools: Iterable[Obj],
    *,
    default_class: bool,
    stamp: str,
    in_use: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> Plan:
    """Allocate for kroute's services; the status writes that differ from the objects."""
    problems: list[str] = []
    slices = list(slices)
    pool_objs = {str(p["metadata"]["name"]): p for p in pools}
    docs, found = pool_docs(pool_objs.values())
    problems.extend(found)
    parsed_pools = tuple(parse_pool(d) for d in docs)
    ours = {key(s): s for s in services if handled(s, default_class)}
    parsed, held = [], {}
    for k, svc in sorted(ours.items()):
        doc = service_doc(svc, slices)
        if not valid(doc, problems):
            continue
        parsed.append(parse_service(doc))
        ips = tuple(ipaddress.ip_address(ip) for ip in ingress_ips(svc))
        if ips and len({ip.version for ip in ips}) == len(ips):
            held[k] = ips
    result = allocate(LbState(held), parsed_pools, tuple(parsed), tuple(in_use))
    service_writes = {}
    for service in parsed:
        new = service_status(ours[service.key], result.services[service.key], stamp)
        if not _same(ours[service.key].get("status"), new):
            service_writes[service.key] = new
    pool_writes = {}
    for name, status in result.pools.items():
        new = pool_status(pool_objs[name], status, stamp)
        if not _same(pool_objs[name].get("status"), new):
            pool_writes[name] = new
    return Plan(result, service_writes, pool_writes, tuple(problems))
