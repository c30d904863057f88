"""LoadBalancer IP allocation (Cilium's LB-IPAM, MetalLB): pools, selectors, sharing,
and conflicts with the network. Pure and deterministic: no I/O, no clock, no asyncio.

Inputs (frozen, validated values; `lbipam.pools`, `lbipam.selectors`):
- `Pool(name, blocks, selector, disabled, allow_first_last_ips, created)`; a `Block` is a
  CIDR (`Block.from_cidr`) or a start-stop range (`Block.from_range`), IPv4 or IPv6.
  A CIDR skips its network address (IPv4: and broadcast) unless `allow_first_last_ips`
  (/31, /32, /127, /128 skip nothing); a range hands out every address.
- `Selector(match_labels, match_expressions)`: Kubernetes label-selector semantics plus
  the virtual labels `io.kubernetes.service.namespace` / `io.kubernetes.service.name`.
- `Service(namespace, name, labels, ports, ip_families, traffic_policy, nodes,
  requested_ips, sharing_key, selector, request_error)`, `key` = "namespace/name".
- Documents (camelCase, as in kroute's config): `parse_pool(s)`, `parse_service(s)`,
  `parse_requested_ips`; errors are `DocumentError` (a `common.errors.ConfigError` and a
  ValueError) with one line per problem naming the field path.

Allocation (`lbipam.allocator`):
- `allocate(state, pools, services, in_use=()) -> Result`: `state` is the previous
  `LbState` (persist `result.state`, JSON via `to_json`/`from_json`), `in_use` the
  prefixes learned from upstream peers. `Result` has the new `state`, `services`
  (key -> `ServiceStatus`: ips, pools, shared_with, reasons, conflicting, missing),
  `pools` (name -> `PoolStatus`: disabled, conflicting_with, total, used, available) and
  `revoked` (key -> addresses it lost; withdraw them unless still advertised).
- `advertisements(result, services)`: address -> nodes that announce it as a /32 or /128.

The cluster-wide document (`lbipam.shared`): `LbDocument` (applied pools and services,
config pools' first-seen times, assignments; JSON), `apply_pools`, `apply_services`,
`delete_pool`, `delete_service` (validation errors name the object and field), and
`allocation_round`, one allocation over it, run inside a store's transaction.

Rules:
- Never one address to two services, except services that may share it: the same
  `lbipam.kroute.io/sharing-key`, the same namespace, no common (protocol, port), the same
  traffic policy, and for Local the same pod selector (or the same nodes when one has
  none). See `sharing_conflict`.
- Overlapping pools: the newer (by `created`, then name) is conflicting, allocates
  nothing, and its addresses are revoked. The caller stamps `created` (the Kubernetes
  creationTimestamp, or when a config-file pool was first seen, kept in the store):
  with all 0.0 a new pool with a smaller name would win an overlap. Deleting or
  shrinking a pool, or changing its selector so it no longer selects a service, revokes
  the addresses it no longer covers.
  A disabled pool hands out nothing new; services keep what they hold there (Cilium).
- Never a new address inside `in_use`; a service already holding one keeps it and is
  flagged `conflicting` with an `InUseByNetwork` reason naming the prefix.
- Deterministic: services by namespace/name, pools by (created, name), lowest free
  address; a held address stays while valid, so `allocate` is idempotent and survives
  restarts through `LbState` JSON. Reason codes: `ReasonCode`.
"""

from lbipam.allocator import (
    PoolStatus,
    Reason,
    ReasonCode,
    Result,
    ServiceStatus,
    advertisements,
    allocate,
)
from lbipam.documents import DocumentError, parse_pool, parse_pools, parse_service, parse_services
from lbipam.pools import (
    IPS_ANNOTATION,
    SHARING_KEY_ANNOTATION,
    Block,
    IPAddress,
    Network,
    Pool,
    Service,
    parse_requested_ips,
    sharing_conflict,
)
from lbipam.selectors import NAME_LABEL, NAMESPACE_LABEL, Requirement, Selector
from lbipam.state import LbState

__all__ = [
    "IPS_ANNOTATION",
    "NAMESPACE_LABEL",
    "NAME_LABEL",
    "SHARING_KEY_ANNOTATION",
    "Block",
    "DocumentError",
    "IPAddress",
    "LbState",
    "Network",
    "Pool",
    "PoolStatus",
    "Reason",
    "ReasonCode",
    "Requirement",
    "Result",
    "Selector",
    "Service",
    "ServiceStatus",
    "advertisements",
    "allocate",
    "parse_pool",
    "parse_pools",
    "parse_requested_ips",
    "parse_service",
    "parse_services",
    "sharing_conflict",
]
