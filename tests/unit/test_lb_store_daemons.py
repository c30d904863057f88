"""Pools and services from the cluster store in running daemons: two daemons (node-a and
node-b) share one in-memory store; changes arrive through the control API as
`kroute pool|service apply|delete` sends them."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bgpd.api.status import build_app, status_report
from bgpd.bgp.events import PathAttributes, PeerState, RoutesUpdate
from bgpd.bgp.policy import NOT_ALLOWED
from bgpd.config.model import parse_config
from bgpd.config.stores import parse_lb_pools, parse_lb_services
from bgpd.daemon import Daemon
from bgpd.lb.allocation import LoadBalancers
from bgpd.lb.store import LbStoreError
from bgpd.lb.sync import LbSync
from lbipam import LbState
from lbipam.shared import LbDocument, apply_pools, apply_services
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.fakes.lb_store import MemoryLbStore
from tests.fakes.loopback import FakeLoopback
from tests.unit.conftest import NODE_B, FakeSpeaker, cluster_data, settle, stop_bounded

BLUE = {"name": "blue", "blocks": [{"cidr": "198.51.100.0/29"}]}
WWW = {"namespace": "web", "name": "www", "nodes": ["node-a", "node-b"]}
CONFIG_POOL = {
    "name": "red",
    "blocks": [{"cidr": "203.0.113.0/29"}],
    "serviceSelector": {"matchLabels": {"color": "red"}},
}


@pytest.fixture
async def pair(
    tmp_path: Path, fake_speaker_class: type[FakeSpeaker]
) -> AsyncIterator[tuple[Daemon, Daemon, MemoryLbStore]]:
    store = MemoryLbStore()
    daemons = []
    for name in ("node-a", "node-b"):
        data = cluster_data(tmp_path / name)
        data["node"]["name"] = name
        data["loadBalancer"] = {"pools": [CONFIG_POOL]}
        daemon = Daemon(
            parse_config(data, host_defaults=True),
            FakeKernelRoutes(),
            speaker_factory=fake_speaker_class,
            loopback=FakeLoopback(),
            lb_store=store,
        )
        await daemon.start()
        daemons.append(daemon)
    yield daemons[0], daemons[1], store
    for daemon in daemons:
        await stop_bounded(daemon)


async def post(daemon: Daemon, path: str, body: Any = None) -> tuple[int, Any]:
    async with TestClient(TestServer(build_app(daemon, control=True))) as client:
        response = await client.post(path, json=body)
        return response.status, await response.json()


def served(daemon: Daemon) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    return daemon.lb.view.served if daemon.lb.view is not None else ()


async def test_apply_on_one_node_is_served_by_both_and_delete_withdraws(pair: Any) -> None:
    a, b, store = pair
    assert await post(a, "/pools/apply", {"pools": [BLUE]}) == (
        200,
        {"changes": {"blue": "created"}},
    )
    status, answer = await post(b, "/services/apply", {"services": [WWW]})
    assert status == 200 and answer == {"changes": {"web/www": "created"}}
    ip = ipaddress.ip_address("198.51.100.1")
    prefix = ipaddress.ip_network(f"{ip}/32")
    for daemon in (a, b):
        assert await settle(lambda d=daemon: served(d) == (ip,), timeout=5)  # type: ignore[misc]
        assert await settle(lambda d=daemon: d.local_prefixes.get(prefix) == "loadBalancerIP")  # type: ignore[misc]
        assert await settle(lambda d=daemon: d.loopback.addresses == {ip})  # type: ignore[misc]
    assert store.document.assignments.assignments == {"web/www": (ip,)}
    assert await post(a, "/pools/delete?name=blue") == (200, {"changes": {"blue": "deleted"}})
    for daemon in (a, b):
        assert await settle(lambda d=daemon: served(d) == (), timeout=5)  # type: ignore[misc]
        assert await settle(lambda d=daemon: d.loopback.addresses == set())  # type: ignore[misc]
    assert store.document.assignments.assignments == {}


async def test_lb_ips_of_a_store_pool_are_taken_from_the_other_nodes(pair: Any) -> None:
    """An LB /32 node-b announces is refused by node-a until the pool is applied to the
    store; then the route node-b sent before is accepted without being sent again."""
    a, _, _ = pair
    prefix = ipaddress.ip_network("198.51.100.5/32")
    a.speaker.on_event(PeerState(NODE_B, "up"))
    a.speaker.on_event(RoutesUpdate(NODE_B, announced=((prefix, PathAttributes(next_hop=NODE_B)),)))
    assert await settle(lambda: a.rib.rejected().get(prefix) == [(NODE_B, NOT_ALLOWED)])
    assert (await post(a, "/pools/apply", {"pools": [BLUE]}))[0] == 200
    assert await settle(lambda: prefix in a.kernel_routes, timeout=5)
    assert a.rib.rejected() == {}
    assert (await post(a, "/pools/delete?name=blue"))[0] == 200
    assert await settle(lambda: prefix not in a.kernel_routes, timeout=5)


async def test_refusals_change_nothing(pair: Any) -> None:
    a, _, store = pair
    bad = {"name": "bad", "blocks": [{"cidr": "10.0.0.1/24"}]}
    status, answer = await post(a, "/pools/apply", {"pools": [BLUE, bad]})
    assert status == 422
    assert answer["errors"] == [
        "pool bad.blocks[0].cidr: '10.0.0.1/24' has host bits set; use 10.0.0.0/24"
    ]
    status, answer = await post(a, "/pools/apply", {"pools": [{**CONFIG_POOL}]})
    assert status == 422 and "read-only" in answer["errors"][0]
    assert (await post(a, "/pools/delete?name=red"))[0] == 409
    assert (await post(a, "/services/delete?name=web/nope"))[0] == 404
    assert (await post(a, "/pools/apply", {"nothing": 1}))[0] == 422
    assert store.document.pools == {} and store.document.services == {}


async def test_pools_show_config_and_store_pools_with_the_store_age(pair: Any) -> None:
    a, b, _ = pair
    await post(a, "/pools/apply", {"pools": [BLUE]})
    async with TestClient(TestServer(build_app(b, control=False))) as client:
        assert await settle(lambda: b.lb.view is not None and len(b.lb.view.round.pools) == 2)
        rows = await (await client.get("/pools")).json()
        assert [(r["name"], r["source"]) for r in rows] == [("blue", "store"), ("red", "config")]
        assert all(0 <= r["age"] < 60 for r in rows)
        assert (await client.post("/pools/apply", json={"pools": [BLUE]})).status == 405


class DownStore(MemoryLbStore):
    """A store that cannot be reached (etcd down): every transaction fails."""

    name = "down"

    async def transact(self, step: Any) -> Any:
        raise LbStoreError("LB-IPAM store: etcd is unreachable at http://192.0.2.1:2379")


async def test_an_unreachable_store_keeps_what_the_node_served(
    tmp_path: Path, fake_speaker_class: type[FakeSpeaker]
) -> None:
    """A node restarted while the store is down announces what it served before."""
    data = cluster_data(tmp_path)
    cache = LbDocument(assignments=LbState({"web/www": (ipaddress.ip_address("198.51.100.1"),)}))
    cache, _ = apply_pools(cache, [BLUE], 1.0, {})
    cache, _ = apply_services(cache, [WWW], {})
    (tmp_path / "lbipam.json").write_text(cache.to_json())
    daemon = Daemon(
        parse_config(data, host_defaults=True),
        FakeKernelRoutes(),
        speaker_factory=fake_speaker_class,
        loopback=FakeLoopback(),
        lb_store=DownStore(),
    )
    await daemon.start()
    try:
        assert await settle(lambda: bool(daemon.lb_sync.store_error), timeout=5)
        assert served(daemon) == (ipaddress.ip_address("198.51.100.1"),)
        report = status_report(daemon)["loadBalancer"]
        assert report == {"store": "down", "storeError": daemon.lb_sync.store_error}
        assert "etcd is unreachable" in report["storeError"]
    finally:
        await stop_bounded(daemon)


async def test_delete_and_apply_again_is_not_a_disagreement(pair: Any) -> None:
    a, b, _ = pair
    await post(a, "/pools/apply", {"pools": [BLUE]})
    for path, body in (
        ("/services/apply", {"services": [WWW]}),
        ("/services/delete?name=web/www", None),
        ("/services/apply", {"services": [WWW]}),
    ):
        assert (await post(b, path, body))[0] == 200
        await settle(lambda: False, timeout=0.3)  # let both nodes run their rounds
    ip = ipaddress.ip_address("198.51.100.1")
    assert await settle(lambda: served(a) == served(b) == (ip,), timeout=5)
    assert not a.lb_sync.disagreeing and not b.lb_sync.disagreeing


async def test_nodes_with_different_config_pools_are_told_and_slowed(tmp_path: Path) -> None:
    """n1's config has a pool n2's lacks: they undo each other's rounds. Each says so
    once, and rounds slow down instead of rewriting the store in a tight loop."""
    store = MemoryLbStore()
    syncs = []
    for name, pools in (("n1", [CONFIG_POOL]), ("n2", [])):
        lb = LoadBalancers(tmp_path / name / "lbipam.json", name)
        www = {**WWW, "labels": {"color": "red"}, "nodes": ["n1", "n2"]}
        lb.configure(parse_lb_pools(pools), parse_lb_services([www]), ["n1", "n2"])
        sync = LbSync(lb, store, lambda: None, time.time)
        sync.start()
        syncs.append(sync)
    try:
        assert await settle(lambda: any(s.disagreeing for s in syncs), timeout=10)
        writes = store.writes
        await settle(lambda: False, timeout=2.0)
        assert store.writes - writes <= 2
    finally:
        for sync in syncs:
            await sync.stop()


async def test_the_cache_is_encoded_and_fsynced_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoding and fsyncing a 10,000-service document takes a good part of a second:
    done on the loop it would stall sessions, timers and the status API."""
    import threading

    from bgpd.files import write_atomic

    writers: list[int] = []

    def recording_write(path: Path, text: str) -> None:
        writers.append(threading.get_ident())
        write_atomic(path, text)

    monkeypatch.setattr("bgpd.lb.allocation.write_atomic", recording_write)
    lb = LoadBalancers(tmp_path / "lbipam.json", "n1")
    lb.configure(parse_lb_pools([CONFIG_POOL]), parse_lb_services([WWW]), ["n1"])
    sync = LbSync(lb, MemoryLbStore(), lambda: None, time.time)
    sync.start()
    cache = tmp_path / "lbipam.json"

    def saved() -> bool:
        return (
            sync.rounds > 0
            and cache.exists()
            and LbDocument.from_json(cache.read_text()) == lb.cached
        )

    try:
        assert await settle(saved, timeout=5)
    finally:
        await sync.stop()
    assert writers and threading.get_ident() not in writers
