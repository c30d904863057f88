"""In-memory IpamStore for unit tests of the daemon: same semantics, no persistence."""

from __future__ import annotations

from ipam.allocator import IpamState
from ipam.store import Mutation, StoreError, T, TransactionalStore


class MemoryIpamStore(TransactionalStore):
    """Holds one IpamState; each operation is atomic because it never awaits midway."""

    def __init__(self, state: IpamState | None = None) -> None:
        self._state = state if state is not None else IpamState()
        self._closed = False
        self.writes = 0  # how many operations changed the state (tests check idempotence)

    async def _transact(self, fn: Mutation[T]) -> T:
        if self._closed:
            raise StoreError("IPAM memory store is closed; open a new one")
        new_state, result = fn(self._state)
        if new_state != self._state:
            self._state = new_state
            self.writes += 1
        return result

    async def snapshot(self) -> IpamState:
        return self._state

    async def close(self) -> None:
        self._closed = True
