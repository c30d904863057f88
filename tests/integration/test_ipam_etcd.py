"""EtcdIpamStore against a real etcd: idempotence, 10 competing processes, kill -9,
etcd outages, TLS with client certificates, and user/password auth."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import AllocationError
from ipam.allocator import ClusterPool, IpamState
from ipam.etcd_store import EtcdIpamStore, StoreUnavailableError
from tests.etcd_fixtures import EtcdServer, etcd_server, free_port

pytestmark = [
    pytest.mark.etcd,
]

WORKER = Path(__file__).resolve().parent.parent / "etcd_ipam_worker.py"
POOL = ClusterPool((ipaddress.ip_network("10.244.0.0/16"),), mask_v4=20)


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    with etcd_server() as server:
        yield server


@pytest.fixture
def etcd_tls() -> Iterator[EtcdServer]:
    with etcd_server(tls=True) as server:
        yield server


def store_for(
    server: EtcdServer,
    *,
    retry_for: float = 15.0,
    timeout: float = 5.0,
    username: str | None = None,
    password: str | None = None,
) -> EtcdIpamStore:
    return EtcdIpamStore(
        [server.endpoint],
        **server.client_kwargs(),
        retry_for=retry_for,
        timeout=timeout,
        username=username,
        password=password,
    )


def start_worker(server: EtcdServer, worker: int, count: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(WORKER), server.endpoint, "n1", str(worker), str(count)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)


def assert_consistent(state: IpamState) -> None:
    assert state.problems() == []
    ips = [ip for pods in state.pod_ips.values() for ip in pods.values()]
    assert len(ips) == len(set(ips))


async def test_allocate_release_idempotent(etcd: EtcdServer) -> None:
    store = store_for(etcd)
    try:
        blocks = await store.allocate_node_blocks(POOL, "n1")
        assert await store.allocate_node_blocks(POOL, "n1") == blocks
        other = await store.allocate_node_blocks(POOL, "n2")
        assert not blocks[0].overlaps(other[0])
        ip = await store.allocate_pod_ip(POOL, "n1", "c1", "eth0")
        assert ip in blocks[0]
        assert await store.allocate_pod_ip(POOL, "n1", "c1", "eth0") == ip
        ip2 = await store.allocate_pod_ip(POOL, "n1", "c2", "eth0")
        assert ip2 != ip
        assert await store.release_pod_ip("n1", "c1", "eth0") is True
        assert await store.release_pod_ip("n1", "c1", "eth0") is False
        assert await store.allocate_pod_ip(POOL, "n1", "c3", "eth0") == ip  # lowest free
        await store.release_node("n2")
        state = await store.snapshot()
        assert "n2" not in state.node_blocks
        assert_consistent(state)
    finally:
        await store.close()
    # A second store (another node, another process) sees the same document.
    again = store_for(etcd)
    try:
        assert (await again.snapshot()) == state
    finally:
        await again.close()


async def test_ten_processes_thousand_allocations_no_duplicate(etcd: EtcdServer) -> None:
    workers = [start_worker(etcd, w, 100) for w in range(10)]
    outputs = [p.communicate(timeout=240)[0] for p in workers]
    assert [p.returncode for p in workers] == [0] * 10
    allocated = dict(
        line.split() for out in outputs for line in out.splitlines() if line != "ready"
    )
    assert len(allocated) == 1000
    assert len(set(allocated.values())) == 1000
    store = store_for(etcd)
    try:
        state = await store.snapshot()
    finally:
        await store.close()
    assert_consistent(state)
    stored = {key.split("/")[0]: str(ip) for key, ip in state.pod_ips["n1"].items()}
    assert stored == allocated


async def test_kill_9_workers_leaves_consistent_state(etcd: EtcdServer) -> None:
    workers = [start_worker(etcd, w, 650) for w in range(6)]  # 3,900 of the /20's 4,094
    seen: dict[str, str] = {}
    for proc in workers:  # let every worker get well into its loop, then kill them all
        assert proc.stdout is not None
        for _ in range(20):
            line = proc.stdout.readline().split()
            if len(line) == 2:
                seen[line[0]] = line[1]
    for proc in workers:
        os.kill(proc.pid, signal.SIGKILL)
    for proc in workers:
        rest, _ = proc.communicate(timeout=30)
        seen.update(dict(line.split() for line in rest.splitlines() if line != "ready"))
    # On a loaded machine an early worker may finish before the kill; the rest must not.
    codes = [proc.returncode for proc in workers]
    assert set(codes) <= {0, -signal.SIGKILL}, codes
    assert codes.count(-signal.SIGKILL) >= len(workers) // 2, codes
    store = store_for(etcd)
    try:
        state = await store.snapshot()
        assert_consistent(state)
        stored = {key.split("/")[0]: str(ip) for key, ip in state.pod_ips["n1"].items()}
        # Every allocation a worker reported is stored; a write committed just before the
        # kill may be stored without its line having been printed.
        assert seen.items() <= stored.items()
        new = await store.allocate_pod_ip(POOL, "n1", "after-kill", "eth0")
        assert str(new) not in stored.values()
        assert_consistent(await store.snapshot())
    finally:
        await store.close()


async def test_etcd_down_fails_clearly_and_state_survives(etcd: EtcdServer) -> None:
    store = store_for(etcd, retry_for=2.0, timeout=1.0)
    try:
        await store.allocate_node_blocks(POOL, "n1")
        ip = await store.allocate_pod_ip(POOL, "n1", "c1", "eth0")
        before = await store.snapshot()
        etcd.stop()
        with pytest.raises(StoreUnavailableError) as caught:
            await store.allocate_pod_ip(POOL, "n1", "c2", "eth0")
        assert isinstance(caught.value, AllocationError)
        message = str(caught.value)
        assert etcd.endpoint in message and "unreachable" in message
        with pytest.raises(StoreUnavailableError):
            await store.release_pod_ip("n1", "c1", "eth0")
        etcd.start()
        assert await store.snapshot() == before
        assert await store.allocate_pod_ip(POOL, "n1", "c1", "eth0") == ip
        ip2 = await store.allocate_pod_ip(POOL, "n1", "c2", "eth0")
        assert ip2 != ip
    finally:
        await store.close()


async def test_tls_with_client_certificate(etcd_tls: EtcdServer) -> None:
    assert etcd_tls.endpoint.startswith("https://")
    store = store_for(etcd_tls)
    try:
        await store.allocate_node_blocks(POOL, "n1")
        assert await store.allocate_pod_ip(POOL, "n1", "c1", "eth0") in POOL.cidrs[0]
    finally:
        await store.close()
    assert etcd_tls.tls is not None
    no_cert = EtcdIpamStore([etcd_tls.endpoint], ca_file=str(etcd_tls.tls.ca), retry_for=1.0)
    try:
        with pytest.raises(StoreUnavailableError, match=r"https://127\.0\.0\.1"):
            await no_cert.snapshot()
    finally:
        await no_cert.close()


async def test_auth_password_and_token_renewal() -> None:
    # etcd drops an auth token after --auth-token-ttl seconds unused (default 300) and
    # aetcd never logs in again by itself: the store must, on "invalid auth token".
    with etcd_server(extra_args=("--auth-token-ttl=1",)) as etcd:
        await check_auth(etcd)


async def check_auth(etcd: EtcdServer) -> None:
    password = secrets.token_urlsafe(12)
    etcd.enable_auth(password)
    store = store_for(etcd, username="root", password=password)
    try:
        await store.allocate_node_blocks(POOL, "n1")
        ip = await store.allocate_pod_ip(POOL, "n1", "c1", "eth0")
        await asyncio.sleep(2.5)  # the token expires
        assert await store.allocate_pod_ip(POOL, "n1", "c1", "eth0") == ip
        etcd.stop()
        etcd.start()
        assert await store.allocate_pod_ip(POOL, "n1", "c2", "eth0") != ip
    finally:
        await store.close()
    wrong = store_for(etcd, username="root", password="not-" + password, retry_for=1.0)
    try:
        with pytest.raises(AllocationError) as caught:
            await wrong.snapshot()
        assert "password" in str(caught.value) and password not in str(caught.value)
    finally:
        await wrong.close()
    anonymous = store_for(etcd, retry_for=1.0)
    try:
        with pytest.raises(AllocationError, match="user"):
            await anonymous.snapshot()
    finally:
        await anonymous.close()


async def test_fails_over_to_a_live_endpoint_and_shares_one_connection(etcd: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = EtcdIpamStore([dead, etcd.endpoint])
    try:
        await store.allocate_node_blocks(POOL, "n1")
        # 50 concurrent requests on one store (one connection) still never collide.
        ips = await asyncio.gather(
            *(store.allocate_pod_ip(POOL, "n1", f"c{i}", "eth0") for i in range(50))
        )
        assert len(set(ips)) == 50
        assert_consistent(await store.snapshot())
    finally:
        await store.close()
