"""Keeps a node's LB view in step with the cluster's LB-IPAM store.

Who writes: every node, one transaction at a time. When anything an allocation depends
on changes (the store document, the config, members, routes the network uses), the
node runs an allocation round inside the store's transaction. Rounds are deterministic
and idempotent, so after one node wrote, the others compute the same document and write
nothing. We chose this over an elected leader (an etcd lease): correctness comes from
the compare-and-swap alone (no round is ever computed from a stale document), there is
no failover gap while a lease expires, and the file store needs no election at all.
The price is that nodes must agree on their inputs; pools and services from the store
are the same for all, config-file ones must be kept identical on every node.

When the store cannot be reached the node keeps its last view (announcements and
loopback addresses stay), says so in `storeError`, and retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bgpd.lb.allocation import LoadBalancers
from bgpd.lb.store import LbStore
from common.errors import KrouteError
from lbipam.shared import (
    Change,
    LbDocument,
    Round,
    apply_pools,
    apply_services,
    delete_pool,
    delete_service,
)

log = logging.getLogger(__name__)

RETRY_MAX = 10.0
FLAP_PAUSE = 5.0  # seconds between rounds while nodes undo each other's writes


class LbSync:
    def __init__(
        self,
        lb: LoadBalancers,
        store: LbStore,
        on_change: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self.lb = lb
        self.store = store
        self._on_change = on_change
        self._clock = clock
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.store_error = ""
        self.rounds = 0
        self.disagreeing = False
        lb.on_inputs = self._wanted.set

    def start(self) -> None:
        """Serve the cached view now; follow the store from here on."""
        self.lb.from_cache(self._clock())
        self._tasks = [
            asyncio.create_task(self._follow(), name="lb-watch"),
            asyncio.create_task(self._rounds(), name="lb-rounds"),
        ]

    async def _follow(self) -> None:
        async for _ in self.store.changes():
            self._wanted.set()

    async def _rounds(self) -> None:
        failures = 0
        await asyncio.to_thread(self.lb.save_cache)  # what `start` took from the cache
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                done = await self.store.transact(self.lb.round_step(self._clock()))
            except Exception as exc:  # the rounds must outlive any one failure
                failures += 1
                if self.store_error != str(exc):
                    log.error("event=lb-store-failed store=%s error=%s", self.store.name, exc,
                              exc_info=not isinstance(exc, KrouteError))  # fmt: skip
                self.store_error = str(exc)
                await asyncio.sleep(min(RETRY_MAX, 0.5 * 2 ** min(failures, 5)))
                self._wanted.set()
                continue
            if self.store_error:
                log.info("event=lb-store-recovered store=%s", self.store.name)
            failures, self.store_error = 0, ""
            self.rounds += 1
            self.lb.accept(done)
            self._on_change()
            await asyncio.to_thread(self.lb.save_cache)
            if self._disagrees(done):
                await asyncio.sleep(FLAP_PAUSE)

    def _disagrees(self, done: Round) -> bool:
        """Whether this round undid another node's round over the same store inputs:
        nodes whose own inputs differ (config-file pools or services) undo each other.
        Said once per episode; rounds then slow down."""
        if done.undid and not self.disagreeing:
            log.error(
                "event=lb-nodes-disagree node=%s error=%r", self.lb.node,
                "this node and another keep undoing each other's LB allocation; make "
                "loadBalancer.pools and loadBalancer.services identical on every node, or "
                "move them to the store with kroute pool|service apply",
            )  # fmt: skip
        if done.wrote:
            self.disagreeing = done.undid
        return done.undid

    async def _change(self, what: str, step: Any) -> dict[str, Change]:
        changes: dict[str, Change] = await self.store.transact(step)
        for name, change in changes.items():
            log.info("event=lb-%s %s=%s change=%s", what, what, name, change)
        self._wanted.set()
        return changes

    async def apply_pools(self, docs: Any) -> dict[str, Change]:
        now, reserved = self._clock(), self.lb.reserved_pools()
        return await self._change("pool", lambda d: apply_pools(d, docs, now, reserved))

    async def apply_services(self, docs: Any) -> dict[str, Change]:
        reserved = self.lb.reserved_services()
        return await self._change("service", lambda d: apply_services(d, docs, reserved))

    async def delete_pool(self, name: str) -> dict[str, Change]:
        return await self._delete("pool", delete_pool, name, self.lb.reserved_pools())

    async def delete_service(self, key: str) -> dict[str, Change]:
        return await self._delete("service", delete_service, key, self.lb.reserved_services())

    async def _delete(
        self, what: str, delete: Any, name: str, reserved: dict[str, str]
    ) -> dict[str, Change]:
        def step(document: LbDocument) -> tuple[LbDocument, dict[str, Change]]:
            new, change = delete(document, name, reserved)
            return new, {name: change}

        return await self._change(what, step)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # each ends cancelled
        await self.store.close()
