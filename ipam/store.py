"""The IPAM store interface: where allocations live, behind one async Protocol.

Every store (memory, file, etcd, kubernetes) keeps one `IpamState` document and changes
it only by read-modify-write: read the state, apply one pure function from
`ipam.allocator`, write the new state only if nobody changed it in between (file: the
whole cycle runs under `flock`; etcd: a txn comparing `mod_revision`; kubernetes:
`resourceVersion`), retry on conflict. So allocation logic exists once, in the pure
allocator, and no store can hand an address out twice.

`TransactionalStore` implements the whole Protocol on top of one method, `_transact`;
`transact()` is the compare-and-swap retry loop for stores that have no lock (etcd).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from common.errors import AllocationError
from ipam.allocator import (
    ClusterPool,
    Family,
    IPAddress,
    IpamState,
    Network,
    allocate_node_blocks,
    allocate_pod_ip,
    release_node,
    release_pod_ip,
)

T = TypeVar("T")
R = TypeVar("R")

Mutation = Callable[[IpamState], tuple[IpamState, T]]
"""A pure step: old state -> (new state, result). Must not do I/O; may raise."""


class StoreError(AllocationError):
    """The store itself failed: unreadable or corrupt state, lock timeout, lost races."""


class StoreCorruptError(StoreError):
    """The stored state is not a valid IPAM document. Never reset it silently."""


class IpamStore(Protocol):
    """Persistent, crash-safe IPAM. Every method is atomic and safe across processes.

    Allocation methods are idempotent: asking again for the same node (or the same
    container ID and interface) returns what was handed out before.
    """

    async def allocate_node_blocks(self, pool: ClusterPool, node: str) -> tuple[Network, ...]:
        """The node's blocks, one per family in `pool`; allocated on first call."""
        ...

    async def release_node(self, node: str) -> None:
        """Free the node's blocks and every pod IP in them. Only for a removed node."""
        ...

    async def allocate_pod_ip(
        self, pool: ClusterPool, node: str, container_id: str, ifname: str, family: Family = 4
    ) -> IPAddress:
        """An IP for (container_id, ifname) from the node's block of `family`."""
        ...

    async def release_pod_ip(self, node: str, container_id: str, ifname: str) -> bool:
        """Free the pod IP of (container_id, ifname); False when it held none."""
        ...

    async def snapshot(self) -> IpamState:
        """The current state, for status and consistency checks."""
        ...

    async def close(self) -> None:
        """Release the store's resources; later calls raise StoreError."""
        ...


class TransactionalStore(abc.ABC):
    """The IpamStore methods, given one atomic read-modify-write `_transact`."""

    @abc.abstractmethod
    async def _transact(self, fn: Mutation[T]) -> T:
        """Apply `fn` to the current state atomically and persist the new state.

        Skip the write when the new state equals the old one (idempotent requests).
        Exceptions raised by `fn` propagate and leave the stored state unchanged.
        """

    @abc.abstractmethod
    async def snapshot(self) -> IpamState: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def allocate_node_blocks(self, pool: ClusterPool, node: str) -> tuple[Network, ...]:
        return await self._transact(lambda s: allocate_node_blocks(s, pool, node))

    async def release_node(self, node: str) -> None:
        await self._transact(lambda s: (release_node(s, node), None))

    async def allocate_pod_ip(
        self, pool: ClusterPool, node: str, container_id: str, ifname: str, family: Family = 4
    ) -> IPAddress:
        return await self._transact(
            lambda s: allocate_pod_ip(s, node, container_id, ifname, family, pool=pool)
        )

    async def release_pod_ip(self, node: str, container_id: str, ifname: str) -> bool:
        return await self._transact(lambda s: release_pod_ip(s, node, container_id, ifname))


async def transact(
    read: Callable[[], Awaitable[tuple[IpamState, R]]],
    write_if_unchanged: Callable[[IpamState, R], Awaitable[bool]],
    fn: Mutation[T],
    *,
    store: str,
    attempts: int = 50,
) -> T:
    """Compare-and-swap loop for lock-free stores.

    `read` returns the state and a revision token (etcd: mod_revision, 0 when absent);
    `write_if_unchanged(new_state, token)` writes only if the revision is still `token`
    and says whether it did. An unchanged state is not written. `store` names the store
    in the error raised when every attempt lost a race.
    """
    for _ in range(attempts):
        state, token = await read()
        new_state, result = fn(state)
        if new_state == state or await write_if_unchanged(new_state, token):
            return result
    raise StoreError(
        f"IPAM store {store}: {attempts} attempts in a row lost a race with other writers; "
        "retry later, and check that no process rewrites the IPAM state in a loop"
    )
