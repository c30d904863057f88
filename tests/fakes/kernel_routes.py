"""In-memory `KernelRoutes` for unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from datapath.routes import ApplyResult, KernelRoute, Network, RouteChanges


@dataclass
class FakeKernelRoutes:
    """In-memory `KernelRoutes` for unit tests; `fail` maps a prefix to the error it gets."""

    routes: dict[Network, KernelRoute] = field(default_factory=dict)
    fail: dict[Network, str] = field(default_factory=dict)
    dump_calls: int = 0
    apply_calls: int = 0
    closed: bool = False

    @classmethod
    def holding(cls, routes: Iterable[KernelRoute]) -> FakeKernelRoutes:
        return cls(routes={r.prefix: r for r in routes})

    def dump(self) -> dict[Network, KernelRoute]:
        self.dump_calls += 1
        return dict(self.routes)

    def apply(self, changes: RouteChanges) -> ApplyResult:
        self.apply_calls += 1
        applied = 0
        failed: list[tuple[KernelRoute, str]] = []
        for route in changes.upserts:
            if route.prefix in self.fail:
                failed.append((route, self.fail[route.prefix]))
            else:
                self.routes[route.prefix] = route
                applied += 1
        for route in changes.deletes:
            if route.prefix in self.fail:
                failed.append((route, self.fail[route.prefix]))
            else:
                self.routes.pop(route.prefix, None)
                applied += 1
        return ApplyResult(applied, tuple(failed))

    def close(self) -> None:
        self.closed = True
