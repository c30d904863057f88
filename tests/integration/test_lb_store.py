"""The LB-IPAM stores for real: a real etcd (compare-and-swap on mod_revision) and the
file store (flock), with several nodes racing allocation rounds and changes; a restarted
node (a fresh LoadBalancers over the same store) keeps every address."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aetcd
import pytest

from bgpd.config.stores import parse_lb_pools
from bgpd.lb.allocation import LoadBalancers
from bgpd.lb.etcd_store import DEFAULT_KEY, EtcdLbStore
from bgpd.lb.store import FileLbStore, LbStore, LbStoreError
from ipam.etcd_store import EtcdAccess
from lbipam.shared import LbDocument, apply_pools, apply_services
from tests.etcd_fixtures import EtcdServer, etcd_server

POOL = {"name": "blue", "blocks": [{"cidr": "198.51.100.0/27"}]}
NODES = ("n1", "n2", "n3")


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    with etcd_server() as server:
        yield server


StoreFactory = Callable[[], LbStore]


@pytest.fixture(params=["etcd", "file"])
async def stores(request: Any, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Makes store clients that share one document (each its own connection or fd)."""
    made: list[LbStore] = []
    with contextlib.ExitStack() as stack:
        if request.param == "etcd":
            server = stack.enter_context(etcd_server())

            def make() -> LbStore:
                made.append(EtcdLbStore(EtcdAccess((server.endpoint,))))
                return made[-1]
        else:

            def make() -> LbStore:
                made.append(FileLbStore(tmp_path / "lbipam.json"))
                return made[-1]

        yield make
        for store in made:
            await store.close()


def node(tmp_path: Path, name: str) -> LoadBalancers:
    lb = LoadBalancers(tmp_path / name / "lbipam.json", name)
    lb.configure((), (), NODES)
    lb.set_in_use(())
    return lb


async def round_on(lb: LoadBalancers, store: LbStore, now: float = 100.0) -> None:
    lb.accept(await store.transact(lb.round_step(now)))


def holders(doc: LbDocument) -> list[str]:
    return [str(ip) for ips in doc.assignments.assignments.values() for ip in ips]


@pytest.mark.etcd
async def test_racing_nodes_never_give_one_ip_to_two_services(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Three nodes, each with its own store client, apply 24 services and run rounds
    concurrently; every write is one transaction on the latest document."""
    clients = [stores() for _ in NODES]
    await clients[0].transact(lambda d: apply_pools(d, [POOL], 1.0, {}))
    lbs = [node(tmp_path, name) for name in NODES]

    async def work(i: int) -> None:
        lb, store = lbs[i], clients[i]
        for k in range(8):
            svc = {"namespace": "web", "name": f"s{i}-{k}"}
            await store.transact(lambda d, svc=svc: apply_services(d, [svc], {}))  # type: ignore[misc]
            await round_on(lb, store)

    await asyncio.gather(*(work(i) for i in range(len(NODES))))
    for lb, store in zip(lbs, clients, strict=True):
        await round_on(lb, store)
    final = await clients[0].transact(lambda d: (d, d))
    ips = holders(final)
    assert len(ips) == 24 and len(set(ips)) == 24
    views = [lb.view.round.document for lb in lbs if lb.view is not None]
    assert views == [final] * 3  # every node agrees with the store


@pytest.mark.etcd
async def test_restart_keeps_every_address(stores: StoreFactory, tmp_path: Path) -> None:
    store = stores()
    await store.transact(lambda d: apply_pools(d, [POOL], 1.0, {}))
    services = [{"namespace": "web", "name": f"s{k}"} for k in range(5)]
    first = node(tmp_path, "n1")
    for svc in reversed(services):  # applied in an order that is not the sorted one
        await store.transact(lambda d, svc=svc: apply_services(d, [svc], {}))  # type: ignore[misc]
        await round_on(first, store)
    before = (await store.transact(lambda d: (d, d))).assignments
    restarted = node(tmp_path, "n1")  # a new process: same runDir, fresh client
    again = stores()
    await round_on(restarted, again, now=500.0)
    assert restarted.view is not None
    assert restarted.view.round.document.assignments == before


class Counted:
    """Counts what a store's `changes()` yields, in a task."""

    def __init__(self, store: LbStore) -> None:
        self.seen = 0
        self.task = asyncio.create_task(self._count(store))

    async def _count(self, store: LbStore) -> None:
        async for _ in store.changes():
            self.seen += 1

    async def reach(self, count: int, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while self.seen < count:
                assert not self.task.done(), self.task
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.mark.etcd
async def test_watch_reports_changes_made_elsewhere(stores: StoreFactory) -> None:
    watcher, writer = stores(), stores()
    counted = Counted(watcher)
    try:
        await counted.reach(1)
        await writer.transact(lambda d: apply_pools(d, [POOL], 1.0, {}))
        await counted.reach(2)
    finally:
        await counted.stop()


@pytest.mark.etcd
async def test_config_pools_seen_first_by_one_node_are_as_old_everywhere(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    store = EtcdLbStore(EtcdAccess((etcd.endpoint,)))
    try:
        pools = parse_lb_pools([POOL])
        ages = []
        for now, name in ((10.0, "n1"), (99.0, "n2")):
            lb = node(tmp_path, name)
            lb.configure(pools, (), NODES)
            lb.set_in_use(())
            await round_on(lb, store, now)
            assert lb.view is not None
            ages.append(lb.view.round.pools[0].created)
        assert ages == [10.0, 10.0]
    finally:
        await store.close()


@pytest.mark.etcd
async def test_a_corrupt_document_is_refused_never_reset(etcd: EtcdServer, tmp_path: Path) -> None:
    async with aetcd.Client(port=etcd.client_port, timeout=5) as raw:
        await raw.put(DEFAULT_KEY.encode(), b"{broken")
    store = EtcdLbStore(EtcdAccess((etcd.endpoint,)), retry_for=2)
    try:
        with pytest.raises(LbStoreError, match="corrupt"):
            await round_on(node(tmp_path, "n1"), store)
        async with aetcd.Client(port=etcd.client_port, timeout=5) as raw:
            kv = await raw.get(DEFAULT_KEY.encode())
            assert kv.value == b"{broken"
    finally:
        await store.close()


@pytest.mark.etcd
async def test_rounds_and_watch_survive_an_etcd_restart(etcd: EtcdServer, tmp_path: Path) -> None:
    watcher, writer = (
        EtcdLbStore(EtcdAccess((etcd.endpoint,))),
        EtcdLbStore(EtcdAccess((etcd.endpoint,))),
    )
    counted = Counted(watcher)
    try:
        await writer.transact(lambda d: apply_pools(d, [POOL], 1.0, {}))
        etcd.kill()
        await asyncio.sleep(2)  # the watch hits a dead etcd
        assert not counted.task.done()
        etcd.start()
        before = counted.seen
        lb = node(tmp_path, "n1")
        await writer.transact(lambda d: apply_services(d, [{"namespace": "a", "name": "b"}], {}))
        await round_on(lb, writer)
        await counted.reach(before + 1)
        assert lb.view is not None and lb.view.result.services["a/b"].ips
    finally:
        await counted.stop()
        await watcher.close()
        await writer.close()


@pytest.mark.etcd
async def test_a_round_runs_off_the_event_loop(stores: StoreFactory, tmp_path: Path) -> None:
    """The allocation step (0.3 s at 10,000 services) and the document's decoding and
    encoding run in a worker thread, for both stores: the loop keeps serving BGP."""
    import threading

    store = stores()
    await store.transact(lambda d: apply_pools(d, [POOL], 1.0, {}))
    await store.transact(lambda d: apply_services(d, [{"namespace": "web", "name": "s"}], {}))
    lb = node(tmp_path, "n1")
    step = lb.round_step(100.0)
    threads: list[int] = []

    def watched(document: LbDocument) -> Any:
        threads.append(threading.get_ident())
        return step(document)

    lb.accept(await store.transact(watched))
    assert threads and threading.get_ident() not in threads
    assert lb.view is not None and len(holders(lb.view.round.document)) == 1
