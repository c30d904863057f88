"""In-memory membership (etcd's twin) for the daemon's unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bgpd.cluster.membership import Member


class FakeMembership:
    """In-memory membership; instances sharing `cluster` see each other's members."""

    def __init__(self, cluster: FakeCluster | None = None) -> None:
        self.cluster = cluster if cluster is not None else FakeCluster()
        self._name: str | None = None

    async def register(self, member: Member) -> None:
        self._name = member.name
        self.cluster.set(member)

    async def deregister(self) -> None:
        if self._name is not None:
            self.cluster.expire(self._name)
            self._name = None

    async def members(self) -> dict[str, Member]:
        return dict(self.cluster.members)

    async def watch(self) -> AsyncIterator[dict[str, Member]]:
        queue: asyncio.Queue[dict[str, Member]] = asyncio.Queue()
        self.cluster.watchers.append(queue)
        try:
            yield dict(self.cluster.members)
            while True:
                yield await queue.get()
        finally:
            self.cluster.watchers.remove(queue)

    async def close(self) -> None:
        self._name = None  # like a crashed node: the record stays until `expire`


@dataclass
class FakeCluster:
    """The shared state behind `FakeMembership`; tests call `expire` to kill a node."""

    members: dict[str, Member] = field(default_factory=dict)
    watchers: list[asyncio.Queue[dict[str, Member]]] = field(default_factory=list)

    def set(self, member: Member) -> None:
        if self.members.get(member.name) != member:
            self.members[member.name] = member
            self._notify()

    def expire(self, name: str) -> None:
        if self.members.pop(name, None) is not None:
            self._notify()

    def _notify(self) -> None:
        for queue in self.watchers:
            queue.put_nowait(dict(self.members))
