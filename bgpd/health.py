"""Reconciler heartbeats: the one thing /livez, /readyz and the systemd watchdog read.

Each reconciler (kernel routes, advertisements, LB, membership, and whatever a
module registers later, e.g. the datapath) holds a `Heartbeat` and beats it every
time it completes a run. A reconciler that has not beaten within its timeout is
stuck or dead, and a restart is the cure: /livez fails and the watchdog goes quiet.
Peers being down, or a store being unreachable, is not death: reconcilers beat
while they retry those. Readiness is "every registered reconciler has completed
one run". Pure: the clock is injected, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import Histogram

from common.errors import KrouteError

Clock = Callable[[], float]
DurationObserver = Callable[[str, float], None]
RECONCILE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Check:
    """One line of /livez?verbose or /readyz?verbose."""

    name: str
    ok: bool
    reason: str = ""

    def line(self) -> str:
        return f"[+]{self.name} ok" if self.ok else f"[-]{self.name} failed: {self.reason}"


class Heartbeat:
    """One reconciler's handle: `beat()` after a completed run, or wrap a run in
    `track()`, which beats on success and records the error otherwise."""

    def __init__(self, name: str, timeout: float, health: Health) -> None:
        self.name = name
        self.timeout = timeout
        self.registered_at = health.clock()
        self.last_beat: float | None = None
        self.errors = 0
        self.last_error = ""
        self._health = health

    def beat(self) -> None:
        self.last_beat = self._health.clock()

    def failed(self, reason: str) -> None:
        """A run that did not complete: counted, and the heartbeat is not renewed."""
        self.errors += 1
        self.last_error = reason

    @contextmanager
    def track(self) -> Iterator[None]:
        """Time one run; beat when it completes, count the error when it raises."""
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            self.failed(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._health.observe(self.name, time.monotonic() - started)
        self.beat()

    def liveness(self, now: float) -> Check:
        since = self.last_beat if self.last_beat is not None else self.registered_at
        silent = now - since
        if silent <= self.timeout:
            return Check(self.name, True)
        what = "no completed run" if self.last_beat is None else "no heartbeat"
        reason = f"{what} for {silent:.0f}s (limit {self.timeout:g}s)"
        if self.last_error:
            reason += f"; last error: {self.last_error}"
        return Check(self.name, False, reason)

    def readiness(self) -> Check:
        if self.last_beat is not None:
            return Check(self.name, True)
        return Check(self.name, False, "first run not completed yet")


class Health:
    """The daemon's heartbeat registry."""

    def __init__(
        self, clock: Clock = time.monotonic, observe: DurationObserver | None = None
    ) -> None:
        self.clock = clock
        self._observe = observe
        self._beats: dict[str, Heartbeat] = {}

    def register(self, name: str, timeout: float) -> Heartbeat:
        """A new reconciler `name` that must beat at least every `timeout` seconds."""
        if name in self._beats:
            raise KrouteError(f"health: reconciler {name!r} is already registered")
        if timeout <= 0:
            raise KrouteError(f"health: reconciler {name!r}: timeout must be > 0 s")
        heartbeat = Heartbeat(name, timeout, self)
        self._beats[name] = heartbeat
        return heartbeat

    def unregister(self, name: str) -> None:
        self._beats.pop(name, None)

    def heartbeats(self) -> list[Heartbeat]:
        return [self._beats[name] for name in sorted(self._beats)]

    def observe(self, name: str, seconds: float) -> None:
        if self._observe is not None:
            self._observe(name, seconds)

    def liveness(self) -> list[Check]:
        now = self.clock()
        return [beat.liveness(now) for beat in self.heartbeats()]

    def readiness(self) -> list[Check]:
        return [beat.readiness() for beat in self.heartbeats()]

    def alive(self) -> bool:
        return all(check.ok for check in self.liveness())


def render(kind: str, checks: list[Check], *, verbose: bool) -> tuple[int, str]:
    """Status code and body in the Kubernetes API server's style: `ok` when every check
    passes (the list with `?verbose`), the list and `KIND check failed` otherwise."""
    ok = all(check.ok for check in checks)
    if ok and not verbose:
        return 200, "ok\n"
    lines = [check.line() for check in checks]
    lines.append(f"{kind} check passed" if ok else f"{kind} check failed")
    return (200 if ok else 503), "\n".join(lines) + "\n"


def reconcile_histogram() -> Histogram:
    """Reconcile run durations per reconciler, registered nowhere: the
    daemon's metrics collector yields it."""
    return Histogram(
        "kroute_reconcile_duration_seconds",
        "Duration of one reconcile run, by reconciler.",
        labelnames=["reconciler"],
        buckets=RECONCILE_BUCKETS,
        registry=None,
    )
