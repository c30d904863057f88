"""Pools and services from YAML/JSON-shaped documents with kroute's camelCase keys.

`parse_pool` / `parse_service` (and their plural forms) report every problem at once as a
`DocumentError` (a `ConfigError`, also a ValueError) whose lines name the field path and
say what to do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

from common.errors import ConfigError
from lbipam.pools import (
    IPS_ANNOTATION,
    SHARING_KEY_ANNOTATION,
    Block,
    IPAddress,
    Pool,
    Service,
    parse_requested_ips,
)
from lbipam.selectors import parse_selector

T = TypeVar("T", Pool, Service)


class DocumentError(ConfigError, ValueError):
    """A pool or service document is invalid; `errors` has one line per problem."""


_POOL_KEYS = {"name", "blocks", "serviceSelector", "disabled", "allowFirstLastIPs", "created"}
_SERVICE_KEYS = {
    "namespace", "name", "labels", "ports", "ipFamilies", "trafficPolicy", "nodes",
    "annotations", "selector",
}  # fmt: skip


def _unknown(doc: dict[str, Any], known: set[str], path: str, errors: list[str]) -> None:
    for key in sorted(set(doc) - known, key=str):
        errors.append(f"{path}.{key}: unknown key; remove it or check its spelling")


def _flag(doc: dict[str, Any], key: str, path: str, errors: list[str]) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        errors.append(f"{path}.{key}: must be true or false, got {value!r}")
        return False
    return value


def _block(doc: Any, path: str, errors: list[str]) -> Block | None:
    if not isinstance(doc, dict) or not ({"cidr"} == set(doc) or {"start", "stop"} == set(doc)):
        errors.append(f"{path}: write {{cidr: 10.0.10.0/24}} or {{start: A, stop: B}}")
        return None
    try:
        if "cidr" in doc:
            try:
                return Block.from_cidr(ipaddress.ip_network(str(doc["cidr"])))
            except ValueError:
                loose = ipaddress.ip_network(str(doc["cidr"]), strict=False)
                errors.append(f"{path}.cidr: {doc['cidr']!r} has host bits set; use {loose}")
                return None
        return Block.from_range(str(doc["start"]), str(doc["stop"]))
    except ValueError as e:
        errors.append(f"{path}: {e}; write addresses like 10.0.10.5 or fd00::5")
        return None


def pool_from_doc(doc: Any, path: str, errors: list[str]) -> Pool | None:
    """A pool document, problems appended to `errors` (for parsing many at once)."""
    if not isinstance(doc, dict):
        errors.append(f"{path}: must be a mapping with name and blocks")
        return None
    count = len(errors)
    _unknown(doc, _POOL_KEYS, path, errors)
    blocks_doc = doc.get("blocks")
    if not isinstance(blocks_doc, list) or not blocks_doc:
        errors.append(f"{path}.blocks: required; list at least one {{cidr: ...}}")
        blocks_doc = []
    blocks = [_block(b, f"{path}.blocks[{i}]", errors) for i, b in enumerate(blocks_doc)]
    selector = parse_selector(doc.get("serviceSelector"), f"{path}.serviceSelector", errors)
    disabled = _flag(doc, "disabled", path, errors)
    allow = _flag(doc, "allowFirstLastIPs", path, errors)
    created = doc.get("created", 0.0)
    if not isinstance(created, int | float) or isinstance(created, bool):
        errors.append(f"{path}.created: must be a number (seconds since the epoch)")
        created = 0.0
    if "name" not in doc:
        errors.append(f"{path}.name: required; set it")
    if len(errors) > count:
        return None
    try:
        good = tuple(b for b in blocks if b is not None)
        return Pool(doc["name"], good, selector, disabled, allow, float(created))
    except ValueError as e:
        errors.append(f"{path}.{e}")
        return None


def service_from_doc(doc: Any, path: str, errors: list[str]) -> Service | None:
    """A service document; a bad `lbipam.kroute.io/ips` is not an error here but the
    service's `request_error` (reported in its status, like Cilium does)."""
    if not isinstance(doc, dict):
        errors.append(f"{path}: must be a mapping with namespace and name")
        return None
    count = len(errors)
    _unknown(doc, _SERVICE_KEYS, path, errors)
    ports: list[tuple[str, int]] = []
    for i, port in enumerate(doc.get("ports") or []):
        if not isinstance(port, dict) or "port" not in port or set(port) - {"port", "protocol"}:
            errors.append(f"{path}.ports[{i}]: write {{port: 80, protocol: TCP}}")
        else:
            ports.append((port.get("protocol", "TCP"), port["port"]))
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        errors.append(f"{path}.annotations: must be a mapping of strings")
        annotations = {}
    requested: tuple[IPAddress, ...] = ()
    request_error = None
    try:
        requested = parse_requested_ips(str(annotations.get(IPS_ANNOTATION, "")))
    except ValueError as e:
        request_error = f"annotation {IPS_ANNOTATION}: {e}"
    for key in ("namespace", "name"):
        if key not in doc:
            errors.append(f"{path}.{key}: required; set it")
    if len(errors) > count:
        return None
    try:
        return Service(
            namespace=doc["namespace"],
            name=doc["name"],
            labels=doc.get("labels") or {},
            ports=tuple(ports),
            ip_families=tuple(doc.get("ipFamilies") or ("IPv4",)),
            traffic_policy=doc.get("trafficPolicy", "Cluster"),
            nodes=tuple(doc.get("nodes") or ()),
            requested_ips=requested,
            sharing_key=str(annotations.get(SHARING_KEY_ANNOTATION) or "") or None,
            selector=doc.get("selector") or {},
            request_error=request_error,
        )
    except (TypeError, ValueError) as e:
        errors.append(f"{path}.{e}")
        return None


def parse_pools(docs: Any, path: str = "pools") -> tuple[Pool, ...]:
    """Every pool of a list of documents; DocumentError lists every problem."""
    if not isinstance(docs, list):
        raise DocumentError([f"{path}: must be a list of pools"])
    paths = [f"{path}[{i}]" for i in range(len(docs))]
    return _collect(docs, paths, pool_from_doc, lambda p: f"pool name {p.name!r}")


def parse_services(docs: Any, path: str = "services") -> tuple[Service, ...]:
    """Every service of a list of documents; DocumentError lists every problem."""
    if not isinstance(docs, list):
        raise DocumentError([f"{path}: must be a list of services"])
    paths = [f"{path}[{i}]" for i in range(len(docs))]
    return _collect(docs, paths, service_from_doc, lambda s: f"service {s.key}")


def parse_pool(doc: Any, path: str = "pool") -> Pool:
    """One pool document; DocumentError lists every problem."""
    return _collect([doc], [path], pool_from_doc, lambda p: p.name)[0]


def parse_service(doc: Any, path: str = "service") -> Service:
    """One service document; DocumentError lists every problem."""
    return _collect([doc], [path], service_from_doc, lambda s: s.key)[0]


def _collect(
    docs: list[Any],
    paths: list[str],
    parse: Callable[[Any, str, list[str]], T | None],
    ident: Callable[[T], str],
) -> tuple[T, ...]:
    errors: list[str] = []
    out: list[T] = []
    seen: dict[str, str] = {}
    for doc, path in zip(docs, paths, strict=True):
        value = parse(doc, path, errors)
        if value is not None:
            if ident(value) in seen:
                errors.append(f"{path}: {ident(value)} is also at {seen[ident(value)]}; keep one")
            seen.setdefault(ident(value), path)
            out.append(value)
    if errors:
        raise DocumentError(errors)
    return tuple(out)
