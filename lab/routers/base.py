"""What every third-party router shares: its spec, process handling, errors and waits.

A router runs as foreground daemons started with `nsenter --net` in its namespace, every
file (config, pid file, control socket, log) under the caller's `workdir`, and is stopped
by the PIDs recorded at start (through `lab.procs`), never by name.
"""

from __future__ import annotations

import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from lab import health, net, procs
from lab.plan import LabError
from lab.procs import Proc

Role = Literal["upstream", "reflector"]
ROLES: tuple[Role, ...] = ("upstream", "reflector")
HOLD_TIME = 9  # seconds, like the lab's kroute nodes: sessions fail fast in tests
KEEPALIVE = 3
RESTART_TIME = 9
STOP_TIMEOUT = 10.0
START_TIMEOUT = 15.0


class RouterError(LabError):
    """A third-party router could not be configured, started, queried or stopped."""


@dataclass(frozen=True)
class NeighborConf:
    """One BGP neighbor of a router; `password` turns on TCP MD5 (RFC 2385)."""

    address: str
    asn: int
    password: str | None = None
    multihop: int | None = None
    rr_client: bool = False


@dataclass(frozen=True)
class RouterSpec:
    """Everything a router's config is rendered from: pure data, so rendering is testable."""

    netns: str
    workdir: Path
    router_id: str
    asn: int
    neighbors: tuple[NeighborConf, ...]
    role: Role
    originate: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise RouterError(f"router role {self.role!r} is unknown; use one of {ROLES}")
        if self.role == "reflector":
            ebgp = [n.address for n in self.neighbors if n.asn != self.asn]
            if ebgp:
                raise RouterError(
                    f"reflector {self.router_id} (AS {self.asn}) has eBGP neighbors "
                    f"{', '.join(ebgp)}; a route reflector peers only inside its own AS"
                )


class Router(Protocol):
    """A BGP router in a namespace that tests and the lab drive and inspect."""

    kind: str
    spec: RouterSpec
    procs: list[Proc]

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def routes(self) -> dict[str, list[str]]: ...
    def received_from(self, neighbor: str) -> list[str]: ...
    def neighbor_state(self, address: str) -> str: ...
    def wait_established(self, addresses: Sequence[str], timeout: float) -> None: ...
    def communities(self, prefix: str) -> list[str]: ...
    def as_path(self, prefix: str) -> list[int]: ...


class DaemonRouter(ABC):
    """Start, watch and stop the daemons of one router; subclasses render and query."""

    kind = "router"

    def __init__(  # noqa: PLR0917 - the signature tests and the lab share
        self,
        netns: str,
        workdir: Path,
        router_id: str,
        asn: int,
        neighbors: Sequence[NeighborConf],
        role: Role,
        originate: Sequence[str] = (),
    ) -> None:
        self.spec = RouterSpec(
            netns, Path(workdir), router_id, asn, tuple(neighbors), role, tuple(originate)
        )
        self.procs: list[Proc] = []

    def __repr__(self) -> str:
        return f"{self.kind} {self.spec.role} {self.spec.router_id} in {self.spec.netns}"

    @property
    def log_path(self) -> Path:
        return self.spec.workdir / f"{self.kind}.log"

    def start(self) -> None:
        """Write the config, start the daemons, wait for the control socket; stop on failure."""
        if any(procs.is_alive(p) for p in self.procs):
            raise RouterError(f"{self} is already running (pids {self.pids()}); stop() it first")
        if not net.netns_exists(self.spec.netns):
            raise RouterError(f"{self}: namespace {self.spec.netns} does not exist; create it")
        self.spec.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    @abstractmethod
    def _start(self) -> None:
        """Write the config and launch the daemons; `start` undoes a partial start."""

    @abstractmethod
    def routes(self) -> dict[str, list[str]]:
        """Best routes: prefix -> sorted next hops ([] for a prefix originated here)."""

    @abstractmethod
    def received_from(self, neighbor_address: str) -> list[str]:
        """Prefixes received from that neighbor and accepted, sorted."""

    @abstractmethod
    def neighbor_state(self, address: str) -> str:
        """The session state, lowercase: "established", "active", "connect", "idle"..."""

    @abstractmethod
    def communities(self, prefix: str) -> list[str]:
        """Standard communities ("A:B", numeric order) on the best path to `prefix`."""

    @abstractmethod
    def as_path(self, prefix: str) -> list[int]:
        """The AS path of the best path to `prefix`."""

    def stop(self) -> None:
        """SIGTERM every recorded daemon (last started first), SIGKILL after a timeout."""
        stuck: list[Proc] = []
        for proc in reversed(self.procs):
            stuck += procs.stop_tree(proc, signal.SIGTERM, STOP_TIMEOUT).stuck
        self.procs = []
        if stuck:
            raise RouterError(f"{self}: pids {[p.pid for p in stuck]} survived SIGKILL")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def launch(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
        """Start one daemon in the router's namespace and record it before anything else;
        `env` adds to the daemon's environment (PATH only by default)."""
        with open(log, "a") as f:
            f.write(f"--- kroute lab: starting {argv[0]} at {time.ctime()} ---\n")
        proc = procs.start(
            [*net.nsenter(self.spec.netns), *argv],
            str(log),
            {"PATH": _PATH, **(env or {})},
            str(self.spec.workdir),
        )
        self.procs.append(proc)
        return proc

    def fail(self, what: str, log: Path | None = None) -> RouterError:
        """An error naming this router and what failed, with the end of its daemon's log."""
        path = log or self.log_path
        return RouterError(
            f"{self}: {what}\n--- last lines of {path} ---\n{health.log_tail(str(path))}"
        )

    def run(self, argv: list[str], what: str, in_netns: bool = False) -> str:
        """Run a control command (birdc, vtysh, gobgp); its failure names the router."""
        full = [*net.nsenter(self.spec.netns), *argv] if in_netns else argv
        try:
            done = subprocess.run(full, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self.fail(f"{what}: `{' '.join(argv)}` failed ({exc})") from None
        if done.returncode != 0:
            err = (done.stderr or done.stdout).strip()
            raise self.fail(f"{what}: `{' '.join(argv)}` exited {done.returncode}: {err}")
        return done.stdout

    def wait_ready(self, ready: Callable[[], bool], what: str) -> None:
        """Poll `ready` until true; fail fast with the log when a daemon exits meanwhile."""
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            dead = [p.pid for p in self.procs if not procs.is_alive(p)]
            if dead:
                raise self.fail(f"daemon pid {dead[0]} exited before {what}")
            if time.monotonic() > deadline:
                raise self.fail(f"{what} did not happen within {START_TIMEOUT:g}s")
            time.sleep(0.1)

    def wait_established(self, addresses: Sequence[str], timeout: float) -> None:
        """Wait until every session in `addresses` is established; RouterError lists the rest."""
        deadline = time.monotonic() + timeout
        while True:
            states = {a: self.neighbor_state(a) for a in addresses}
            pending = {a: s for a, s in states.items() if s != "established"}
            if not pending:
                return
            if time.monotonic() > deadline:
                listed = ", ".join(f"{a} is {s}" for a, s in pending.items())
                raise self.fail(f"sessions not established within {timeout:g}s: {listed}")
            time.sleep(0.2)


def neighbor(spec: RouterSpec, address: str) -> NeighborConf:
    """The configured neighbor at `address`; asking for an unknown one is a caller's bug."""
    for n in spec.neighbors:
        if n.address == address:
            return n
    known = ", ".join(n.address for n in spec.neighbors)
    raise RouterError(f"router {spec.router_id} has no neighbor {address}; it has {known}")


WELL_KNOWN = {
    "graceful-shutdown": "65535:0",
    "accept-own": "65535:1",
    "llgr-stale": "65535:6",
    "no-llgr": "65535:7",
    "blackhole": "65535:666",
    "no-export": "65535:65281",
    "no-advertise": "65535:65282",
    "local-AS": "65535:65283",
    "no-peer": "65535:65284",
}


def community_text(value: int | str) -> str:
    """A standard community as "A:B", from a 32-bit integer or a well-known name."""
    if isinstance(value, int):
        return f"{value >> 16}:{value & 0xFFFF}"
    return WELL_KNOWN.get(value, value)


def sorted_communities(values: Sequence[int | str]) -> list[str]:
    """Communities as "A:B" in numeric order: daemons differ in the order they print."""
    texts = {community_text(v) for v in values}
    return sorted(texts, key=lambda t: tuple(int(x) if x.isdigit() else -1 for x in t.split(":")))


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
