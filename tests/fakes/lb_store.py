"""In-memory `LbStore` for unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bgpd.lb.store import Step, T
from lbipam.shared import LbDocument


class MemoryLbStore:
    """The document in memory; every `changes()` iterator hears every write."""

    name = "memory"

    def __init__(self) -> None:
        self.document = LbDocument()
        self.writes = 0
        self._listeners: list[asyncio.Event] = []

    async def transact(self, step: Step[T]) -> T:
        new, result = step(self.document)
        if new != self.document:
            self.document, self.writes = new, self.writes + 1
            for event in self._listeners:
                event.set()
        return result

    async def changes(self) -> AsyncIterator[None]:
        event = asyncio.Event()
        self._listeners.append(event)
        try:
            yield None
            while True:
                await event.wait()
                event.clear()
                yield None
        finally:
            self._listeners.remove(event)

    async def close(self) -> None:
        return None
