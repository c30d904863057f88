"""The official client, configured once: a kubeconfig file, else in-cluster credentials."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config

from common.errors import KrouteError

GROUP, VERSION = "kroute.io", "v1alpha1"
POOLS, PEERS = "loadbalancerippools", "bgppeers"
LB_CLASS = "kroute.io/bgp"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 10.0

Obj = dict[str, Any]


class KubeError(KrouteError):
    """The Kubernetes API cannot be used (no credentials, a refused request)."""


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """A client from `kubeconfig`, or the pod's service account when None."""
    try:
        if kubeconfig:
            api: client.ApiClient = config.new_client_from_config(kubeconfig)
            return api
        config.load_incluster_config()
        return client.ApiClient()
    except (config.ConfigException, OSError) as exc:
        where = kubeconfig or "in-cluster service account"
        raise KubeError(
            f"kubernetes: cannot load credentials from {where}: {exc}; set "
            "kubernetes.kubeconfig or run in a pod with a service account"
        ) from None


def raw(response: Any) -> Obj:
    """The JSON body of a `_preload_content=False` response."""
    doc: Obj = json.loads(response.data)
    return doc


def key(obj: Obj) -> str:
    """ "namespace/name" (cluster-scoped: "name")."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))
