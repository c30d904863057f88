"""Third-party BGP routers (BIRD 2, FRR, GoBGP) in network namespaces, for tests and the lab.

Entry points: `make_router(kind, ...)` (or `BirdRouter`, `FrrRouter`, `GobgpRouter`), the
`Router` protocol they implement, `NeighborConf` and `RouterError`. Each router runs its
daemons in the foreground inside one namespace with every file under a caller's directory,
and is stopped by recorded PID. Config rendering (`render_*`) is pure and unit-tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.routers.base import (
    DaemonRouter,
    NeighborConf,
    Role,
    Router,
    RouterError,
    RouterSpec,
)
from lab.routers.bird import BirdRouter
from lab.routers.frr import FrrRouter
from lab.routers.gobgp import GobgpRouter

KINDS: dict[str, type[DaemonRouter]] = {
    "bird": BirdRouter,
    "frr": FrrRouter,
    "gobgp": GobgpRouter,
}


def make_router(
    kind: str,
    *,
    netns: str,
    workdir: Path,
    router_id: str,
    asn: int,
    neighbors: Sequence[NeighborConf],
    role: Role,
    originate: Sequence[str] = (),
) -> DaemonRouter:
    """A router of `kind` (bird, frr or gobgp), not started yet."""
    cls = KINDS.get(kind)
    if cls is None:
        raise RouterError(f"router kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    return cls(netns, workdir, router_id, asn, neighbors, role, originate)


__all__ = [
    "KINDS",
    "BirdRouter",
    "DaemonRouter",
    "FrrRouter",
    "GobgpRouter",
    "NeighborConf",
    "Role",
    "Router",
    "RouterError",
    "RouterSpec",
    "make_router",
]
