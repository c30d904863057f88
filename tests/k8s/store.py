"""The fake API server's object store: resources, resourceVersions, event history,
selectors and patches, with the errors the real API server returns (404, 409, 410, 422).

One global resourceVersion counter, as etcd's revision: every write bumps it and is kept
in a bounded history that watches replay from; `compact()` drops the history so a watch
from an older resourceVersion gets 410 Gone, exactly what a real server does after etcd
compaction.
"""

from __future__ import annotations

import builtins
import copy
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """One REST resource: `/api/v1/...` when group is "", else `/apis/GROUP/VERSION/...`."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool  # has a status subresource: spec writes keep status and vice versa

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


RESOURCES = (
    Resource("", "v1", "nodes", "Node", False, True),
    Resource("", "v1", "services", "Service", True, True),
    Resource("", "v1", "namespaces", "Namespace", False, True),
    Resource("", "v1", "configmaps", "ConfigMap", True, False),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, False),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, False),
    Resource("kroute.io", "v1alpha1", "loadbalancerippools", "LoadBalancerIPPool", False, True),
    Resource("kroute.io", "v1alpha1", "bgppeers", "BGPPeer", False, False),
)


class ApiError(Exception):
    """An error the server answers with a `Status` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass(frozen=True)
class Event:
    rv: int
    resource: Resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


@dataclass
class Store:
    """Every object of every resource; thread-safe (tests write from their own thread)."""

    history_limit: int = 10_000
    rv: int = 1
    objects: dict[tuple[str, str, str], Obj] = field(default_factory=dict)
    history: list[Event] = field(default_factory=list)
    oldest: int = 1  # watches from a resourceVersion below this get 410 Gone
    lock: threading.Lock = field(default_factory=threading.Lock)
    listeners: list[Callable[[Event], None]] = field(default_factory=list)

    # -- reads -------------------------------------------------------------------

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        with self.lock:
            obj = self.objects.get((res.plural, namespace, name))
            if obj is None:
                raise not_found(res, name)
            return copy.deepcopy(obj)

    def list(
        self, res: Resource, namespace: str | None, labels: str = "", fields: str = ""
    ) -> tuple[list[Obj], int]:
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self.objects.items())
                if plural == res.plural
                and (namespace is None or ns == namespace)
                and selected(obj, labels, fields)
            ]
            return items, self.rv

    def subscribe(
        self,
        res: Resource,
        namespace: str | None,
        rv: int | None,
        listener: Callable[[Event], None],
    ) -> builtins.list[Event]:
        """Register `listener` for every later event and return what the watch sends
        first: the events after `rv`, or (no rv) every current object as ADDED. Under
        the lock, so nothing is missed or sent twice between the two."""
        with self.lock:
            if rv is None:
                backlog = [
                    Event(self.rv, res, "ADDED", copy.deepcopy(obj))
                    for (plural, ns, _), obj in sorted(self.objects.items())
                    if plural == res.plural and (namespace is None or ns == namespace)
                ]
            elif rv < self.oldest - 1:
                raise ApiError(
                    410, "Expired", f"too old resource version: {rv} ({self.oldest - 1})"
                )
            else:
                backlog = [e for e in self.history if e.rv > rv and e.resource == res]
            self.listeners.append(listener)
            return backlog

    def unsubscribe(self, listener: Callable[[Event], None]) -> None:
        with self.lock:
            self.listeners.remove(listener)

    def compact(self) -> None:
        """Forget the history, like etcd compaction: older watches get 410 Gone."""
        with self.lock:
            self.history.clear()
            self.oldest = self.rv + 1

    # -- writes ------------------------------------------------------------------

    def create(self, res: Resource, namespace: str, body: Obj) -> Obj:
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
            raise ApiError(422, "Invalid", f"{res.kind} metadata.name: {name!r} is invalid")
        with self.lock:
            key = (res.plural, namespace, name)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
            obj = copy.deepcopy(body)
            obj["kind"], obj["apiVersion"] = res.kind, res.api_version
            obj["metadata"] = {
                **{k: v for k, v in meta.items() if k not in ("resourceVersion",)},
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now(),
                "generation": 1,
            }
            if res.namespaced:
                obj["metadata"]["namespace"] = namespace
            if res.status:
                obj.pop("status", None)  # status is written through the subresource only
            return self._commit(res, key, "ADDED", obj)

    def update(self, res: Resource, namespace: str, name: str, body: Obj, sub: str = "") -> Obj:
        """PUT: a resourceVersion in the body must be the current one (else 409)."""
        with self.lock:
            key = (res.plural, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(res, name)
            if (body.get("metadata") or {}).get("name", name) != name:
                raise ApiError(400, "BadRequest", "metadata.name does not match the URL")
            return self._replace(res, key, current, copy.deepcopy(body), sub)

    def patch(
        self, res: Resource, namespace: str, name: str, apply: Callable[[Obj], Obj], sub: str = ""
    ) -> Obj:
        with self.lock:
            key = (res.plural, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(res, name)
            patched = apply(copy.deepcopy(current))
            return self._replace(res, key, current, patched, sub)

    def delete(self, res: Resource, namespace: str, name: str) -> Obj:
        with self.lock:
            key = (res.plural, namespace, name)
            current = self.objects.pop(key, None)
            if current is None:
                raise not_found(res, name)
            return self._commit(res, key, "DELETED", copy.deepcopy(current), store=False)

    def _replace(
        self, res: Resource, key: tuple[str, str, str], current: Obj, new: Obj, sub: str
    ) -> Obj:
        wanted = (new.get("metadata") or {}).get("resourceVersion")
        if wanted not in (None, "") and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res.plural} "{key[2]}": the object has '
                "been modified; please apply your changes to the latest version and try again",
            )
        if sub == "status":  # only status changes; everything else is the current object
            obj = copy.deepcopy(current)
            obj["status"] = new.get("status", {})
        else:
            obj = new
            meta = {**(new.get("metadata") or {})}
            for fixed in ("uid", "creationTimestamp", "namespace", "generation", "name"):
                if fixed in current["metadata"]:
                    meta[fixed] = current["metadata"][fixed]
            obj["metadata"] = meta
            obj["kind"], obj["apiVersion"] = res.kind, res.api_version
            if res.status:
                if "status" in current:
                    obj["status"] = copy.deepcopy(current["status"])
                else:
                    obj.pop("status", None)
            if obj.get("spec") != current.get("spec"):
                meta["generation"] = current["metadata"].get("generation", 1) + 1
        if _same(obj, current):
            return copy.deepcopy(current)  # a no-op write bumps nothing, as in Kubernetes
        return self._commit(res, key, "MODIFIED", obj)

    def _commit(
        self, res: Resource, key: tuple[str, str, str], kind: str, obj: Obj, store: bool = True
    ) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if store:
            self.objects[key] = obj
        event = Event(self.rv, res, kind, copy.deepcopy(obj))
        self.history.append(event)
        if len(self.history) > self.history_limit:
            dropped = self.history.pop(0)
            self.oldest = dropped.rv + 1
        for listener in list(self.listeners):
            listener(event)
        return copy.deepcopy(obj)


def _same(a: Obj, b: Obj) -> bool:
    strip = ("resourceVersion",)
    ma = {k: v for k, v in a.get("metadata", {}).items() if k not in strip}
    mb = {k: v for k, v in b.get("metadata", {}).items() if k not in strip}
    return ma == mb and {**a, "metadata": None} == {**b, "metadata": None}


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.plural} "{name}" not found')


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- selectors ---------------------------------------------------------------------

_SET = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def labels_match(labels: dict[str, str], selector: str) -> bool:
    """Kubernetes label selector syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
    `a notin (x)`. A malformed selector is a 400, as on a real server."""
    for term in _split(selector):
        for op in ("!=", "==", "="):
            if op in term:
                key, _, value = (s.strip() for s in term.partition(op))
                ok = labels.get(key) == value
                if (op == "!=") == ok:
                    return False
                break
        else:
            m = _SET.match(term)
            if not m:
                raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
            neg, key, op, values = m.groups()
            if op is None:
                if (key in labels) == bool(neg):
                    return False
                continue
            allowed = {v.strip() for v in values.split(",")}
            if (labels.get(key) in allowed) != (op == "in"):
                return False
    return True


def field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def selected(obj: Obj, labels: str, fields: str) -> bool:
    if labels and not labels_match(obj.get("metadata", {}).get("labels") or {}, labels):
        return False
    for term in _split(fields):
        op = "!=" if "!=" in term else ("==" if "==" in term else "=")
        key, _, value = (s.strip() for s in term.partition(op))
        if (field_value(obj, key) == value) == (op == "!="):
            return False
    return True


# -- patches -------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic merge patches: kroute's
    clients never depend on strategic list merging)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 add, replace, remove and test; a failed test is a 422, as on a server."""
    doc: Any = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            value = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if value != op["value"]:
                raise ApiError(422, "Invalid", f"the test of {op['path']} failed")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise ApiError(400, "BadRequest", f"json patch op {kind!r} is not supported")
    result: Obj = doc
    return result
