"""Kubernetes label selectors for pools: which services a pool hands addresses to.

Semantics are Kubernetes' (`metav1.LabelSelector`): every `matchLabels` pair and every
`matchExpressions` requirement must hold; an empty selector selects every service.
`NotIn` also matches a service without the key, as in Kubernetes. Two virtual labels,
`io.kubernetes.service.namespace` and `io.kubernetes.service.name` (Cilium's), select by
namespace and name; they override a real label of the same key, so a service cannot
claim another namespace through its own labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast, get_args

NAMESPACE_LABEL = "io.kubernetes.service.namespace"
NAME_LABEL = "io.kubernetes.service.name"

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: tuple[str, ...] = get_args(Operator)

_LABEL_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.\-]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*")


def label_key_problem(key: object) -> str | None:
    """Why `key` is not a Kubernetes label key ([prefix/]name), or None when it is."""
    if not isinstance(key, str):
        return f"label key {key!r} must be a string"
    prefix, _, name = key.rpartition("/")
    if "/" in key and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"label key {key!r}: the prefix must be a DNS subdomain like example.com"
    if not _LABEL_NAME.fullmatch(name):
        return (
            f"label key {key!r}: the name must be 1-63 letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: object) -> str | None:
    """Why `value` is not a Kubernetes label value (may be empty), or None when it is."""
    if not isinstance(value, str):
        return f"label value {value!r} must be a string; quote it in YAML"
    if value and not _LABEL_NAME.fullmatch(value):
        return (
            f"label value {value!r} must be at most 63 letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit"
        )
    return None


def frozen_labels(labels: Mapping[str, str], what: str) -> Mapping[str, str]:
    """A read-only copy of `labels` after validation; ValueError names the bad entry."""
    if not isinstance(labels, Mapping):
        raise ValueError(f"{what}: must be a mapping of label key to value")
    for key, value in labels.items():
        problem = label_key_problem(key) or label_value_problem(value)
        if problem:
            raise ValueError(f"{what}: {problem}")
    return MappingProxyType(dict(sorted(labels.items())))


@dataclass(frozen=True)
class Requirement:
    """One `matchExpressions` entry: key, operator and (for In/NotIn) values."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = label_key_problem(self.key)
        if problem:
            raise ValueError(f"key: {problem}")
        if self.operator not in OPERATORS:
            raise ValueError(f"operator: {self.operator!r} is not one of {', '.join(OPERATORS)}")
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values: {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values: {self.operator} takes no values; remove them")
        for value in self.values:
            problem = label_value_problem(value)
            if problem:
                raise ValueError(f"values: {problem}")
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        inside = present and labels[self.key] in self.values
        return inside if self.operator == "In" else not inside


@dataclass(frozen=True)
class Selector:
    """A pool's `serviceSelector`; `matches` says whether it selects a service."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "match_labels", frozen_labels(self.match_labels, "matchLabels"))
        object.__setattr__(self, "match_expressions", tuple(self.match_expressions))

    def matches(self, labels: Mapping[str, str], namespace: str, name: str) -> bool:
        effective = {**labels, NAMESPACE_LABEL: namespace, NAME_LABEL: name}
        return all(effective.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(effective) for r in self.match_expressions
        )

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels.items()]
        for r in self.match_expressions:
            values = f" ({','.join(r.values)})" if r.values else ""
            parts.append(f"{r.key} {r.operator}{values}")
        return ", ".join(parts) or "(everything)"


def parse_selector(doc: Any, path: str, errors: list[str]) -> Selector | None:
    """A `serviceSelector` document; appends one line per problem (named by path)."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        errors.append(f"{path}: must be a mapping with matchLabels and/or matchExpressions")
        return None
    ok = True
    for key in doc:
        if key not in ("matchLabels", "matchExpressions"):
            errors.append(f"{path}.{key}: unknown key; use matchLabels or matchExpressions")
            ok = False
    labels = doc.get("matchLabels") or {}
    if not isinstance(labels, dict):
        errors.append(f"{path}.matchLabels: must be a mapping of label key to value")
        labels, ok = {}, False
    for key, value in labels.items():
        problem = label_key_problem(key) or label_value_problem(value)
        if problem:
            errors.append(f"{path}.matchLabels: {problem}")
            ok = False
    exprs = doc.get("matchExpressions") or []
    if not isinstance(exprs, list):
        errors.append(f"{path}.matchExpressions: must be a list of {{key, operator, values}}")
        exprs, ok = [], False
    requirements = []
    for i, expr in enumerate(exprs):
        req = _parse_requirement(expr, f"{path}.matchExpressions[{i}]", errors)
        ok = ok and req is not None
        if req is not None:
            requirements.append(req)
    return Selector(labels, tuple(requirements)) if ok else None


def _parse_requirement(doc: Any, path: str, errors: list[str]) -> Requirement | None:
    if not isinstance(doc, dict):
        errors.append(f"{path}: must be a mapping with key, operator and values")
        return None
    unknown = sorted(set(doc) - {"key", "operator", "values"})
    for key in unknown:
        errors.append(f"{path}.{key}: unknown key; use key, operator or values")
    if "key" not in doc or "operator" not in doc:
        errors.append(f"{path}: key and operator are required; set them")
        return None
    values = doc.get("values") or []
    if not isinstance(values, list):
        errors.append(f"{path}.values: must be a list of strings")
        return None
    try:
        req = Requirement(doc["key"], cast(Operator, doc["operator"]), tuple(values))
    except ValueError as e:
        errors.append(f"{path}.{e}")
        return None
    return None if unknown else req
