"""The IPAM store in the API server (`ipam.store: kubernetes`): the `IpamState` document
in the ConfigMap `kroute-system/kroute-ipam` (key `state`), changed only by
compare-and-swap on its resourceVersion (`ipam.store.transact`): a write planned from an
old version gets 409 Conflict and the step is re-run on the new state. Never two nodes
with one block, never a state overwritten. A ConfigMap holds up to 1 MiB, some
thousands of nodes' blocks and pod IPs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bgpd.kube.api import MERGE_PATCH, REQUEST_TIMEOUT, raw
from ipam.allocator import IpamState
from ipam.store import Mutation, StoreCorruptError, StoreError, T, TransactionalStore, transact

NAMESPACE, NAME, KEY = "kroute-system", "kroute-ipam", "state"


class KubeIpamStore(TransactionalStore):
    def __init__(self, api: client.ApiClient, namespace: str = NAMESPACE, name: str = NAME) -> None:
        self._core = client.CoreV1Api(api)
        self.namespace, self.name = namespace, name
        self.where = f"ConfigMap {namespace}/{name}"
        self._closed = False

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise StoreError(f"IPAM store {self.where} is closed; open a new one")
        try:
            return await asyncio.to_thread(fn, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreError(
                f"IPAM store {self.where}: API server unreachable while {what} ({exc!r}); "
                "kroute retries"
            ) from None

    async def _read(self) -> tuple[IpamState, str | None]:
        try:
            read = self._core.read_namespaced_config_map
            reply = await self._call("reading", read, self.name, self.namespace,
                                     _preload_content=False)  # fmt: skip
            doc = raw(reply)
        except ApiException as exc:
            if exc.status == 404:
                return IpamState(), None
            raise StoreError(f"IPAM store {self.where}: HTTP {exc.status} {exc.reason}") from None
        text = (doc.get("data") or {}).get(KEY, "")
        try:
            state = IpamState.from_json(text) if text else IpamState()
        except ValueError as exc:
            raise StoreCorruptError(
                f"IPAM state in {self.where} is corrupt ({exc}); restore it from a backup or "
                f"fix it by hand (kubectl -n {self.namespace} edit configmap {self.name}); "
                "kroute never resets it"
            ) from None
        return state, str(doc["metadata"]["resourceVersion"])

    async def _write(self, state: IpamState, version: str | None) -> bool:
        """Write only over `version` (None: create); False when someone was first."""
        data = {KEY: state.to_json()}
        try:
            if version is None:
                body: Any = {"metadata": {"name": self.name, "namespace": self.namespace},
                             "data": data}  # fmt: skip
                await self._call("creating", self._core.create_namespaced_config_map,
                                 self.namespace, body)  # fmt: skip
            else:
                patch = {"metadata": {"resourceVersion": version}, "data": data}
                await self._call("writing", self._core.patch_namespaced_config_map, self.name,
                                 self.namespace, patch, _content_type=MERGE_PATCH)  # fmt: skip
        except ApiException as exc:
            if exc.status == 409:
                return False  # a newer version (or a concurrent create): run the step again
            raise StoreError(f"IPAM store {self.where}: HTTP {exc.status} {exc.reason}") from None
        return True

    async def _transact(self, fn: Mutation[T]) -> T:
        return await transact(self._read, self._write, fn, store=self.where)

    async def snapshot(self) -> IpamState:
        state, _ = await self._read()
        return state

    async def close(self) -> None:
        self._closed = True
