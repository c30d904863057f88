"""The IPAM store in the API server (a ConfigMap written by compare-and-swap on its
resourceVersion) against the fake API server: racing nodes never share a block, a
corrupt document is refused, never reset."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from bgpd.kube.api import api_client
from bgpd.kube.ipam_store import KubeIpamStore
from ipam.allocator import ClusterPool
from ipam.store import StoreCorruptError, StoreError
from tests.k8s import apis
from tests.k8s.fake_apiserver import fake_apiserver

POOL = ClusterPool((ipaddress.ip_network("10.244.0.0/20"),), 24, 112)


async def test_racing_nodes_get_distinct_blocks_and_pod_ips(tmp_path: Path) -> None:
    with fake_apiserver() as server:
        kubeconfig = str(server.kubeconfig(tmp_path / "kubeconfig"))
        stores = [KubeIpamStore(api_client(kubeconfig)) for _ in range(4)]
        names = [f"n{i}" for i in range(12)]
        blocks = await asyncio.gather(
            *(stores[i % 4].allocate_node_blocks(POOL, name) for i, name in enumerate(names))
        )
        assert len({b for bs in blocks for b in bs}) == len(names)  # never one block twice
        assert await stores[0].allocate_node_blocks(POOL, "n3") == blocks[3]  # idempotent
        ips = await asyncio.gather(
            *(stores[i % 4].allocate_pod_ip(POOL, "n1", f"c{i}", "eth0") for i in range(8))
        )
        assert len(set(ips)) == 8
        state = await stores[1].snapshot()
        assert sorted(state.node_blocks) == sorted(names)
        # A write planned from an old resourceVersion is refused (409), not applied.
        old_state, old_version = await stores[0]._read()
        await stores[1].allocate_node_blocks(POOL, "late")
        assert not await stores[0]._write(old_state, old_version)
        assert "late" in (await stores[2].snapshot()).node_blocks
        assert server.errors.get(409, 0) >= 1
        for store in stores:
            await store.close()
        with pytest.raises(StoreError, match="closed"):
            await stores[0].snapshot()


async def test_corrupt_state_is_refused_not_reset(tmp_path: Path) -> None:
    with fake_apiserver() as server:
        api = api_client(str(server.kubeconfig(tmp_path / "kubeconfig")))
        body = {"metadata": {"name": "kroute-ipam"}, "data": {"state": "{not json"}}
        apis.core(api).create_namespaced_config_map("kroute-system", body)
        store = KubeIpamStore(api)
        with pytest.raises(StoreCorruptError, match="kubectl -n kroute-system edit configmap"):
            await store.allocate_node_blocks(POOL, "n1")
        cm = apis.core(api).read_namespaced_config_map("kroute-ipam", "kroute-system")
        assert cm.data["state"] == "{not json"
