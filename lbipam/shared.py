"""The cluster-wide LB-IPAM document and the pure steps that change it.

One document holds everything a node needs to allocate: the pools and services applied
with `kroute pool apply` / `kroute service apply` (as the documents given, validated on
the way in), when each config-file pool was first seen (its creation time, for AGE and
for "the newer overlapping pool loses"), and every assignment. A store keeps it under one
key (etcd) or in one file, and every change is one read-modify-write of the whole
document (etcd: txn on mod_revision; file: under flock), so an allocation is always
computed from the current assignments and no address is ever handed out twice.

Config-file pools and services are read-only here: applying or deleting one with the
same name is refused. Pure: no I/O, no clock (`now` is passed in).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from common.documents import load_versioned
from common.errors import KrouteError
from lbipam.allocator import Result, allocate
from lbipam.documents import DocumentError, pool_from_doc, service_from_doc
from lbipam.pools import Network, Pool, Service
from lbipam.state import LbState

DOCUMENT_VERSION = 1
CONFIG_ORDER_STEP = 1e-6  # config pools first seen together keep their order in the file
V = TypeVar("V")
Change = Literal["created", "configured", "unchanged", "deleted"]


class UnknownObjectError(KrouteError):
    """A pool or service to delete is not in the store."""


class ReadOnlyObjectError(KrouteError):
    """The pool or service comes from a node's config file: change it there."""


@dataclass(frozen=True)
class StoredPool:
    """An applied pool: its document (without `created`) and when it was first applied."""

    doc: Mapping[str, Any]
    created: float


@dataclass(frozen=True)
class LbDocument:
    """Applied pools (name -> StoredPool) and services (key -> document), config pools'
    first-seen times, and the assignments of every service."""

    pools: Mapping[str, StoredPool] = field(default_factory=dict)
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pools_seen: Mapping[str, float] = field(default_factory=dict)
    assignments: LbState = field(default_factory=LbState)

    def to_json(self) -> str:
        doc = {
            "version": DOCUMENT_VERSION,
            "pools": {
                n: {"pool": dict(p.doc), "created": p.created}
                for n, p in sorted(self.pools.items())
            },
            "services": {k: dict(v) for k, v in sorted(self.services.items())},
            "poolsSeen": dict(sorted(self.pools_seen.items())),
            "assignments": self.assignments.to_mapping(),
        }
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LbDocument:
        """Parse a stored document; ValueError says what is wrong with it."""
        doc = load_versioned(text, DOCUMENT_VERSION)
        pools, services, seen = (doc.get(k, {}) for k in ("pools", "services", "poolsSeen"))
        if not all(isinstance(x, dict) for x in (pools, services, seen)):
            raise ValueError("pools, services and poolsSeen must be objects")
        try:
            stored = {
                str(n): StoredPool(dict(p["pool"]), float(p["created"])) for n, p in pools.items()
            }
            return cls(
                pools=stored,
                services={str(k): dict(v) for k, v in services.items()},
                pools_seen={str(n): float(t) for n, t in seen.items()},
                assignments=LbState.from_mapping(doc.get("assignments", {})),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed pool or service entry ({e!r})") from None


def _path(kind: str, doc: Any, index: int, ident: str | None) -> str:
    return f"{kind} {ident}" if ident else f"{kind}s[{index}]"


def _pool_name(doc: Any) -> str | None:
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and name else None


def _service_key(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    ns, name = doc.get("namespace"), doc.get("name")
    return f"{ns}/{name}" if isinstance(ns, str) and isinstance(name, str) else None


def _check(
    docs: Any, kind: str, ident: Any, parse: Any, reserved: Mapping[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """Validate every document; DocumentError lists every problem (nothing is applied)."""
    if not isinstance(docs, list) or not docs:
        raise DocumentError([f"{kind}s: give one {kind} document or a list of them"])
    errors: list[str] = []
    seen: dict[str, str] = {}
    out = []
    for i, doc in enumerate(docs):
        key = ident(doc)
        path = _path(kind, doc, i, key)
        if kind == "pool" and isinstance(doc, dict) and "created" in doc:
            errors.append(f"{path}.created: set by the store when first applied; remove it")
        if parse(doc, path, errors) is None or key is None:
            continue
        if key in reserved:
            errors.append(
                f"{path}: {kind} {key} comes from {reserved[key]}, which is read-only here; "
                f"pick another name, or change it in that file and reload"
            )
        if key in seen:
            errors.append(f"{path}: given twice (also {kind}s[{seen[key]}]); keep one")
        seen.setdefault(key, str(i))
        out.append((key, dict(doc)))
    if errors:
        raise DocumentError(errors)
    return out


def apply_pools(
    state: LbDocument, docs: Any, now: float, reserved: Mapping[str, str]
) -> tuple[LbDocument, dict[str, Change]]:
    """Create or replace pools. `reserved`: config pool name -> where it is defined.
    A replaced pool keeps its creation time (it stays as old as it was)."""
    checked = _check(docs, "pool", _pool_name, pool_from_doc, reserved)
    pools = dict(state.pools)
    changes: dict[str, Change] = {}
    for name, doc in checked:
        old = pools.get(name)
        if old is None:
            pools[name], changes[name] = StoredPool(doc, now), "created"
        elif dict(old.doc) == doc:
            changes[name] = "unchanged"
        else:
            pools[name], changes[name] = StoredPool(doc, old.created), "configured"
    return replace(state, pools=pools), changes


def apply_services(
    state: LbDocument, docs: Any, reserved: Mapping[str, str]
) -> tuple[LbDocument, dict[str, Change]]:
    """Create or replace services. `reserved`: config service key -> where it is defined."""
    checked = _check(docs, "service", _service_key, service_from_doc, reserved)
    services = dict(state.services)
    changes: dict[str, Change] = {}
    for key, doc in checked:
        old = services.get(key)
        changes[key] = "created" if old is None else "unchanged" if old == doc else "configured"
        services[key] = doc
    return replace(state, services=services), changes


def delete_pool(
    state: LbDocument, name: str, reserved: Mapping[str, str]
) -> tuple[LbDocument, Change]:
    """Remove an applied pool; its addresses are revoked by the next allocation."""
    pools = _without(state.pools, "pool", name, reserved, "`kroute pools` lists them")
    return replace(state, pools=pools), "deleted"


def delete_service(
    state: LbDocument, key: str, reserved: Mapping[str, str]
) -> tuple[LbDocument, Change]:
    """Remove an applied service; its addresses are released by the next allocation."""
    hint = "write NAMESPACE/NAME as `kroute services` shows"
    return replace(state, services=_without(state.services, "service", key, reserved, hint)), (
        "deleted"
    )


def _without(
    objects: Mapping[str, V], kind: str, name: str, reserved: Mapping[str, str], hint: str
) -> dict[str, V]:
    if name in reserved:
        raise ReadOnlyObjectError(
            f"{kind} {name} comes from {reserved[name]}; remove it there and reload"
        )
    if name not in objects:
        raise UnknownObjectError(f"{kind} {name} is not in the store; {hint}")
    return {k: v for k, v in objects.items() if k != name}


_PARSED: dict[tuple[str, str], Any] = {}  # (path, document as JSON) -> value; values are frozen
_PARSED_MAX = 200_000


def _parsed(parse: Any, doc: Mapping[str, Any], path: str, errors: list[str]) -> Any:
    """`parse(doc, path, errors)`, remembered: a round re-reads every stored document,
    and parsing 10,000 services costs several times the allocation itself."""
    key = (path, json.dumps(doc, sort_keys=True))
    if key not in _PARSED:
        found: list[str] = []
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = (parse(doc, path, found), found)
    value, found = _PARSED[key]
    errors.extend(found)
    return value


@dataclass(frozen=True)
class Round:
    """One allocation over the document: the new document to write (equal to the old
    one when nothing changed), the allocator's result, the pools and services it used,
    and stored documents it could not read (written by a newer kroute, say)."""

    document: LbDocument
    result: Result
    pools: tuple[Pool, ...]
    services: tuple[Service, ...]
    problems: tuple[str, ...] = ()
    wrote: bool = False  # set by the caller: the document differed from the stored one
    undid: bool = False  # ... and it overwrote another node's round over the same inputs


def touching(networks: Iterable[Network], pools: Iterable[Pool]) -> frozenset[Network]:
    """The routed networks sharing an address with a block of `pools`: the only ones
    that can matter to allocation (an upstream's thousands of other routes cannot)."""
    spans = [(b.version, *b.span()) for pool in pools for b in pool.blocks]
    found: list[Network] = []
    for net in networks:
        lo = int(net.network_address)
        hi = lo + net.num_addresses - 1
        version = net.version
        if any(v == version and first <= hi and lo <= last for v, first, last in spans):
            found.append(net)
    return frozenset(found)


def allocation_round(
    state: LbDocument,
    *,
    config_pools: Iterable[Pool],
    config_services: Iterable[Service],
    every_node: Iterable[str],
    in_use: Iterable[Network],
    now: float,
) -> Round:
    """Allocate over config pools and services plus the applied ones. Config pools
    without `created` get their first-seen time from the document (stamped `now` when
    new, in file order);
    a Cluster service without `nodes` is served by `every_node`."""
    config_pools = tuple(config_pools)
    seen = {  # an explicit `created` (a Kubernetes creationTimestamp) is kept as it is
        p.name: p.created or state.pools_seen.get(p.name, now + i * CONFIG_ORDER_STEP)
        for i, p in enumerate(config_pools)
    }
    pools = [replace(p, created=seen[p.name]) for p in config_pools]
    problems: list[str] = []
    for name, stored in sorted(state.pools.items()):
        if name in seen:
            problems.append(f"pool {name}: the config file's pool of that name is used")
            continue
        errors: list[str] = []
        pool = _parsed(pool_from_doc, stored.doc, f"pool {name}", errors)
        if pool is None:
            problems.extend(errors)
        else:
            pools.append(replace(pool, created=stored.created))
    services = list(config_services)
    keys = {s.key for s in services}
    for key, doc in sorted(state.services.items()):
        errors = []
        svc = None if key in keys else _parsed(service_from_doc, doc, f"service {key}", errors)
        problems.extend(errors)
        if svc is not None:
            services.append(svc)
        elif key in keys:
            problems.append(f"service {key}: the config file's service of that name is used")
    nodes = tuple(sorted(every_node))
    services = [
        replace(s, nodes=nodes) if s.traffic_policy == "Cluster" and not s.nodes else s
        for s in services
    ]
    result = allocate(state.assignments, pools, services, tuple(touching(in_use, pools)))
    document = replace(state, pools_seen=seen, assignments=result.state)
    return Round(document, result, tuple(pools), tuple(services), tuple(problems))
