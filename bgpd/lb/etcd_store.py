"""The LB-IPAM document in etcd: one key, changed only by compare-and-swap.

`transact` reads the key with its mod_revision, applies the pure step, and writes in a
txn that succeeds only while the key is still at that revision (or still absent).
Decoding, the step (an allocation round: 0.3 s at 10,000 services) and encoding run in a
worker thread, so the event loop keeps serving sessions, timers and the status API. The
node that loses the race reads again and recomputes from what the winner wrote, so
every node may allocate and none can hand out an address someone else just took.
`changes` is a watch on the key that re-reads and resumes after etcd outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aetcd
import grpc

from bgpd.lb.store import LbStoreError, Step, T
from ipam.etcd_store import EtcdAccess, EtcdConnection, EtcdError, backoff
from lbipam.shared import LbDocument

log = logging.getLogger(__name__)

DEFAULT_KEY = "/kroute/lbipam/state"
ATTEMPTS = 100  # lost races in a row before giving up


class EtcdLbStore:
    def __init__(
        self, access: EtcdAccess, key: str = DEFAULT_KEY, *, retry_for: float = 15.0
    ) -> None:
        self._conn = EtcdConnection(access, retry_for=retry_for)
        self._key = key.encode()
        self._attempts = ATTEMPTS
        self.name = f"etcd {self._conn.where()} key {key}"

    async def _call(self, op: Any, what: str) -> Any:
        try:
            return await self._conn.call(op, f"{what} {self._key.decode()}")
        except EtcdError as e:
            raise LbStoreError(f"LB-IPAM store: {e}") from e

    async def _read(self) -> tuple[bytes | None, int]:
        kv = await self._call(lambda c: c.get(self._key), "reading LB-IPAM")
        return (None, 0) if kv is None else (bytes(kv.value), kv.mod_revision)

    def _decode(self, value: bytes | None) -> LbDocument:
        if value is None:
            return LbDocument()
        try:
            return LbDocument.from_json(value.decode())
        except (UnicodeDecodeError, ValueError) as e:
            raise LbStoreError(
                f"LB-IPAM document in {self.name} is corrupt ({e}); restore it from a "
                "backup; kroute never resets it"
            ) from None

    async def transact(self, step: Step[T]) -> T:
        for attempt in range(self._attempts):
            value, revision = await self._read()
            result, data = await asyncio.to_thread(self._plan, value, step)
            if data is None:
                return result

            async def swap(client: Any, revision: int = revision, data: bytes = data) -> bool:
                t = client.transactions
                same = t.mod(self._key) == revision if revision else t.version(self._key) == 0
                ok, _ = await client.transaction(
                    compare=[same], success=[t.put(self._key, data)], failure=[]
                )
                return bool(ok)

            if await self._call(swap, "writing LB-IPAM"):
                return result
            await asyncio.sleep(backoff(attempt + 1, base=0.005, cap=0.25))
        raise LbStoreError(
            f"LB-IPAM store {self.name}: {self._attempts} attempts in a row lost a race "
            "with other writers; retry later"
        )

    def _plan(self, value: bytes | None, step: Step[T]) -> tuple[T, bytes | None]:
        """Decode, step, encode: the result and the bytes to write (None: unchanged)."""
        old = self._decode(value)
        new, result = step(old)
        return result, None if new == old else new.to_json().encode()

    async def read(self) -> LbDocument:
        value = (await self._read())[0]
        return await asyncio.to_thread(self._decode, value)

    async def changes(self) -> AsyncIterator[None]:
        """Yields at start and on every change; after an outage it yields once more (a
        change may have been missed) and resumes. Ends on `close()`."""
        failures = 0
        while not self._conn.closed:
            watch = client = None
            try:

                async def start(c: Any) -> tuple[Any, Any]:
                    return c, await c.watch(self._key)

                # Yield only once the watch exists: the reader then sees every later write.
                client, watch = await self._conn.once(start, "watching LB-IPAM")
                yield None
                failures = 0
                async for _event in watch:
                    yield None
                raise EtcdError("the LB-IPAM watch ended")
            except (EtcdError, aetcd.ClientError, grpc.RpcError) as e:
                if self._conn.closed:
                    return
                failures += 1
                await self._pause_after(e, client, failures)
            finally:
                if watch is not None:
                    with contextlib.suppress(Exception):
                        await watch.cancel()

    async def _pause_after(self, error: Exception, client: Any, failures: int) -> None:
        """A broken stream gets a fresh connection; the first failure is logged."""
        if not isinstance(error, EtcdError):
            await self._conn.reset(client)
        if failures == 1:
            log.warning("event=lb-watch-interrupted store=%s error=%s", self.name, error)
        await asyncio.sleep(backoff(failures, 0.2))

    async def close(self) -> None:
        await self._conn.close()
