"""EtcdMembership against a real etcd: registrations, deregistration, a node that stops
renewing its lease, lost leases, etcd restarts under a running watch, TLS; and the
in-memory FakeMembership, which needs no etcd."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import aetcd
import pytest

from bgpd.cluster.membership import EtcdMembership, Member
from tests.etcd_fixtures import EtcdServer, etcd_server
from tests.fakes.membership import FakeCluster, FakeMembership

N1 = Member("n1", "10.0.0.1", "10.0.0.1", 65000, ("10.244.1.0/24",))
N2 = Member("n2", "10.0.0.2", "10.0.0.2", 65000, ("10.244.2.0/24", "fd00:2::/64"))
N3 = Member("n3", "10.0.0.3", "10.0.0.3", 65000)


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    with etcd_server() as server:
        yield server


class Seen:
    """Collects what a watch yields, in a task; `until` waits for a matching map."""

    def __init__(self, maps: AsyncIterator[dict[str, Member]]) -> None:
        self.maps: list[dict[str, Member]] = []
        self.task = asyncio.create_task(self._collect(maps))

    async def _collect(self, maps: AsyncIterator[dict[str, Member]]) -> None:
        async for current in maps:
            self.maps.append(current)

    async def until(self, want: Callable[[dict[str, Member]], bool], timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not (self.maps and want(self.maps[-1])):
                assert not self.task.done(), self.task
                await asyncio.sleep(0.05)

    async def names(self, *names: str, timeout: float = 30) -> None:
        await self.until(lambda m: sorted(m) == sorted(names), timeout)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def membership(server: EtcdServer, ttl: int = 3) -> EtcdMembership:
    return EtcdMembership([server.endpoint], ttl=ttl, **server.client_kwargs())


def test_member_json_round_trip() -> None:
    assert Member.from_json(N2.to_json()) == N2
    with pytest.raises(ValueError, match="malformed"):
        Member.from_json(b'{"name": "n1"}')
    with pytest.raises(ValueError, match="member name"):
        Member("../etc", "10.0.0.9", "10.0.0.9", 65000)


async def test_fake_membership_same_api() -> None:
    cluster = FakeCluster()
    one, two, watcher = FakeMembership(cluster), FakeMembership(cluster), FakeMembership(cluster)
    seen = Seen(watcher.watch())
    await one.register(N1)
    await two.register(N2)
    await seen.names("n1", "n2")
    await two.deregister()
    await seen.names("n1")
    await one.close()  # a crash: the record stays until its "lease" expires
    assert sorted(await watcher.members()) == ["n1"]
    cluster.expire("n1")
    await seen.names()
    await seen.stop()


@pytest.mark.etcd
@pytest.mark.etcd
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_registrations_seen_and_deregister_removes(tls: bool) -> None:
    with etcd_server(tls=tls) as server:
        one, two, watcher = membership(server), membership(server), membership(server)
        seen = Seen(watcher.watch())
        try:
            await seen.names()
            await one.register(N1)
            await two.register(N2)
            await seen.names("n1", "n2")
            assert seen.maps[-1] == {"n1": N1, "n2": N2}
            assert await watcher.members() == {"n1": N1, "n2": N2}
            await two.deregister()
            await seen.names("n1")
        finally:
            await seen.stop()
            for m in (one, two, watcher):
                await m.close()


@pytest.mark.etcd
@pytest.mark.etcd
async def test_member_without_keepalive_disappears_after_ttl(etcd: EtcdServer) -> None:
    alive, dying, watcher = membership(etcd), membership(etcd, ttl=2), membership(etcd)
    seen = Seen(watcher.watch())
    try:
        await alive.register(N1)
        await dying.register(N2)
        await seen.names("n1", "n2")
        await dying.close()  # the node dies: no deregister, its lease is no longer renewed
        await seen.names("n1", timeout=20)
        # n1 keeps renewing across several of its TTLs
        await asyncio.sleep(4)
        assert sorted(await watcher.members()) == ["n1"]
    finally:
        await seen.stop()
        for m in (alive, watcher):
            await m.close()


@pytest.mark.etcd
@pytest.mark.etcd
async def test_lost_lease_is_registered_again(etcd: EtcdServer) -> None:
    node, watcher = membership(etcd), membership(etcd)
    seen = Seen(watcher.watch())
    try:
        await node.register(N1)
        await seen.names("n1")
        async with aetcd.Client(port=etcd.client_port, timeout=5) as raw:
            kv = await raw.get(b"/kroute/nodes/n1")
            await raw.revoke_lease(kv.lease)  # what a long outage does to a lease
        await seen.names()
        await seen.names("n1")
        count = len(seen.maps)
        await asyncio.sleep(2)
        assert len(seen.maps) == count  # a record renewed in place is not a change
    finally:
        await seen.stop()
        for m in (node, watcher):
            await m.close()


@pytest.mark.etcd
@pytest.mark.etcd
async def test_watch_survives_etcd_restart(etcd: EtcdServer) -> None:
    first, later, watcher = membership(etcd), membership(etcd), membership(etcd)
    seen = Seen(watcher.watch())
    try:
        await first.register(N1)
        await seen.names("n1")
        etcd.stop()
        await asyncio.sleep(2)  # the watch and the keepalive both hit a dead etcd
        assert not seen.task.done()
        etcd.start()
        await later.register(N3)
        await seen.names("n1", "n3")
        await later.deregister()
        await seen.names("n1")
        etcd.kill()  # and once more the hard way
        etcd.start()
        await later.register(N2)
        await seen.names("n1", "n2")
        assert seen.maps[-1]["n2"] == N2
    finally:
        await seen.stop()
        for m in (first, later, watcher):
            await m.close()


@pytest.mark.etcd
@pytest.mark.etcd
async def test_watch_ends_on_close(etcd: EtcdServer) -> None:
    watcher = membership(etcd)
    seen = Seen(watcher.watch())
    await seen.names()
    await watcher.close()  # the watch must end, not retry forever
    async with asyncio.timeout(20):
        await seen.task


@pytest.mark.etcd
@pytest.mark.etcd
async def test_malformed_records_are_ignored(etcd: EtcdServer) -> None:
    node, watcher = membership(etcd), membership(etcd)
    seen = Seen(watcher.watch())
    try:
        async with aetcd.Client(port=etcd.client_port, timeout=5) as raw:
            await raw.put(b"/kroute/nodes/garbage", b"{not json")
            await raw.put(b"/kroute/nodes/other-name", N3.to_json().encode())
            await node.register(N1)
            await seen.names("n1")
            assert await watcher.members() == {"n1": N1}
            before = len(seen.maps)
            await raw.put(b"/kroute/nodes/n1", b"[]")  # a record broken in place is dropped
            async with asyncio.timeout(30):
                while {} not in seen.maps[before:]:
                    await asyncio.sleep(0.05)
            await seen.names("n1")  # and the node's keepalive writes it again
    finally:
        await seen.stop()
        for m in (node, watcher):
            await m.close()
