"""Per-node pod CIDRs and per-pod IPs, never handed out twice, whatever crashes.

A cluster pool (`ClusterPool`: several IPv4/IPv6 CIDRs, a node mask size per family)
gives each node one block per family when it starts; the node keeps its blocks across
restarts and gives them back only when it is removed (`release_node`). Pod IPs come from
the node's block, keyed by container ID and interface (host-local style), idempotent.

Two layers:
- `ipam.allocator`: pure, deterministic functions over an immutable `IpamState`
  (`allocate_node_blocks`, `release_node`, `allocate_pod_ip`, `release_pod_ip`, `usage`).
- `ipam.store`: the `IpamStore` Protocol every backend implements with an atomic
  read-modify-write (`TransactionalStore` helps). Backends: `FileIpamStore` (one JSON
  file under flock; the default and the lab's) and
  `ipam.etcd_store` (import it explicitly; it needs an etcd client).

Errors are `common.errors.AllocationError` (exhaustion, bad names) and its subclasses
`StoreError` / `StoreCorruptError` (the store failed; the stored state is never reset).
"""

from ipam.allocator import (
    ClusterPool,
    Family,
    IPAddress,
    IpamState,
    Network,
    Usage,
    allocate_node_blocks,
    allocate_pod_ip,
    release_node,
    release_pod_ip,
    usage,
)
from ipam.file_store import FileIpamStore
from ipam.store import IpamStore, StoreCorruptError, StoreError, TransactionalStore, transact

__all__ = [
    "ClusterPool",
    "Family",
    "FileIpamStore",
    "IPAddress",
    "IpamState",
    "IpamStore",
    "Network",
    "StoreCorruptError",
    "StoreError",
    "TransactionalStore",
    "Usage",
    "allocate_node_blocks",
    "allocate_pod_ip",
    "release_node",
    "release_pod_ip",
    "transact",
    "usage",
]
