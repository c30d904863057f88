"""MemoryIpamStore: the Protocol's semantics, which the file and etcd stores share."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from common.errors import AllocationError
from ipam import ClusterPool, IpamStore, StoreError, transact
from ipam.allocator import IpamState, allocate_node_blocks
from tests.fakes.ipam_store import MemoryIpamStore

POOL = ClusterPool((ipaddress.ip_network("10.244.0.0/16"), ipaddress.ip_network("fd00::/104")))


async def test_store_round_trip_and_idempotence() -> None:
    store = MemoryIpamStore()
    s: IpamStore = store  # the Protocol is satisfied
    blocks = await s.allocate_node_blocks(POOL, "a")
    assert blocks == (ipaddress.ip_network("10.244.0.0/24"), ipaddress.ip_network("fd00::/112"))
    assert await s.allocate_node_blocks(POOL, "a") == blocks
    v4 = await s.allocate_pod_ip(POOL, "a", "c1", "eth0")
    v6 = await s.allocate_pod_ip(POOL, "a", "c1", "eth0", family=6)
    assert await s.allocate_pod_ip(POOL, "a", "c1", "eth0") == v4
    assert (str(v4), str(v6)) == ("10.244.0.1", "fd00::1")
    assert store.writes == 3  # repeated requests write nothing
    assert await s.release_pod_ip("a", "c1", "eth0") is True
    assert await s.release_pod_ip("a", "c1", "eth0") is False
    await s.release_node("a")
    assert await s.snapshot() == IpamState()
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.allocate_node_blocks(POOL, "a")


async def test_errors_leave_the_state_unchanged() -> None:
    store = MemoryIpamStore()
    await store.allocate_node_blocks(POOL, "a")
    before = await store.snapshot()
    with pytest.raises(AllocationError, match="container ID"):
        await store.allocate_pod_ip(POOL, "a", "../x", "eth0")
    with pytest.raises(AllocationError, match="node b has no IPv4 block"):
        await store.allocate_pod_ip(POOL, "b", "c1", "eth0")
    assert await store.snapshot() == before


async def test_concurrent_tasks_get_distinct_ips() -> None:
    store = MemoryIpamStore()
    await store.allocate_node_blocks(POOL, "a")
    ips = await asyncio.gather(
        *(store.allocate_pod_ip(POOL, "a", f"c{i}", "eth0") for i in range(200))
    )
    assert len(set(ips)) == 200


async def test_transact_retries_lost_races_and_gives_up_clearly() -> None:
    doc = {"state": IpamState(), "rev": 0}
    losses = {"left": 2}

    async def read() -> tuple[IpamState, int]:
        return doc["state"], doc["rev"]  # type: ignore[return-value]

    async def write(state: IpamState, rev: int) -> bool:
        if losses["left"]:
            losses["left"] -= 1
            doc["rev"] = rev + 1  # somebody else wrote meanwhile
            return False
        if rev != doc["rev"]:
            return False
        doc["state"], doc["rev"] = state, rev + 1
        return True

    blocks = await transact(read, write, lambda s: allocate_node_blocks(s, POOL, "a"), store="t")
    assert doc["rev"] == 3 and blocks
    losses["left"] = 10**6
    with pytest.raises(StoreError, match="IPAM store t: 5 attempts"):
        await transact(
            read, write, lambda s: allocate_node_blocks(s, POOL, "b"), store="t", attempts=5
        )
