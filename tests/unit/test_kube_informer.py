"""The informer (blocking client in a thread feeding the loop) against the fake API
server: first list, watch events, an outage that keeps the cache, resume from the
resourceVersion, and a relist after 410 Gone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bgpd.kube.api import api_client
from bgpd.kube.informer import Informer
from tests.k8s import apis
from tests.k8s.fake_apiserver import FakeApiServer, fake_apiserver
from tests.k8s.objects import node
from tests.k8s.store import RESOURCES


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with fake_apiserver(bookmark_interval=0.2) as srv:
        yield srv


async def until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


def count_lists(server: FakeApiServer) -> int:
    return sum(1 for m, p in server.requests if p.startswith("/api/v1/nodes") and "watch" not in p)


async def test_informer_follows_resumes_and_relists(server: FakeApiServer, tmp_path: Path) -> None:
    api = api_client(str(server.kubeconfig(tmp_path / "kubeconfig")))
    core = apis.core(api)
    core.create_node(node("n1", "10.0.0.1"))
    changed = asyncio.Event()
    informer = Informer("nodes", core.list_node, changed)
    informer.start()
    try:
        await until(lambda: informer.synced, "first list")
        assert sorted(informer.objects) == ["n1"]
        changed.clear()
        await asyncio.to_thread(core.create_node, node("n2", "10.0.0.2"))
        await until(lambda: "n2" in informer.objects, "a watch event")
        assert changed.is_set()
        lists = count_lists(server)

        server.down()  # an outage: the cache stays as it was
        await asyncio.sleep(1.5)
        assert sorted(informer.objects) == ["n1", "n2"]
        assert not informer.connected
        server.store.delete(RES_NODES, "", "n1")  # changed while we could not see it
        server.up()
        await until(lambda: sorted(informer.objects) == ["n2"], "resume from the resourceVersion")

        server.down()
        server.store.create(RES_NODES, "", node("n3", "10.0.0.3"))
        server.store.compact()  # the resourceVersion we hold is gone: 410, then a relist
        server.up()
        await until(lambda: sorted(informer.objects) == ["n2", "n3"], "a relist after 410")
        assert count_lists(server) == lists + 1
    finally:
        await informer.close()


RES_NODES = next(r for r in RESOURCES if r.plural == "nodes")
