"""FIB agent of an upstream GoBGP: GoBGP's best paths into its namespace's kernel.

GoBGP keeps its RIB to itself and its zebra client cannot talk to Debian's FRR 8.4 (see
lab/routers/gobgp.py), so this process does the kernel's side. Started by `GobgpRouter`
in the router's namespace as `python -m lab.routers.gobgp_fib --target unix://SOCK`, it
follows `gobgp --target unix://SOCK monitor global rib -a ipv4 --current -j`:

- the first line is the whole RIB at the moment the watch began (`[]` when empty), taken
  atomically with the watch, with every multipath path of each prefix; the agent makes the
  kernel match it, deleting its routes to prefixes that are gone;
- every later line carries, per prefix it names, GoBGP's full set of best (multi)paths,
  or a single path with `"withdrawal": true` when the prefix has none left.

(`gobgp global rib -j` marks only one path `best` even with multipath on, and a dump taken
beside the watch would race with it, so the snapshot comes from the watch itself.)

Each prefix learned over BGP becomes `ip route replace PREFIX proto 188 nexthop via A
nexthop via B ...` (one `via` for a single path), and goes with `ip route del` when GoBGP
withdraws it. Locally originated prefixes (next hop 0.0.0.0) are not installed. When
gobgpd goes away the agent keeps its routes and reconnects every second; the snapshot of
the new watch is authoritative (a restarted gobgpd starts with an empty RIB, so its
routes leave the kernel and come back as its sessions do). On SIGTERM it
removes every route it installed, like BIRD and FRR do when they stop.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from lab.routers.gobgp import path_nexthop

PROTO = 188
"""rtnetlink protocol of the agent's routes: not kroute's 186; iproute2 names it "ospf"."""
RETRY = 1.0  # seconds between attempts to reach gobgpd

log = logging.getLogger("gobgp-fib")

Hops = tuple[str, ...]


class StopSignalError(Exception):
    """SIGTERM or SIGINT arrived: clean up and exit."""


def parse_paths(paths: Iterable[dict[str, Any]]) -> dict[str, Hops]:
    """prefix -> sorted next hops of one `monitor ... -j` line; () means no BGP route.

    A prefix whose paths are all withdrawals, or which is originated here, maps to ()."""
    hops: dict[str, set[str]] = {}
    local: set[str] = set()
    for path in paths:
        prefix = str(path.get("nlri", {}).get("prefix", ""))
        if not prefix:
            continue
        found = hops.setdefault(prefix, set())
        if path.get("withdrawal"):
            continue
        hop = path_nexthop(path)
        if hop is None:
            local.add(prefix)
        else:
            found.add(hop)
    return {p: () if p in local else tuple(sorted(h)) for p, h in hops.items()}


def parse_line(line: str) -> dict[str, Hops]:
    """One line of `gobgp monitor global rib -j`; ValueError if it is no list of paths."""
    data = json.loads(line)
    if not isinstance(data, list):
        raise ValueError(f"not a list of paths: {line.strip()[:200]}")
    return parse_paths(p for p in data if isinstance(p, dict))


def route_argv(prefix: str, hops: Sequence[str]) -> list[str]:
    """The `ip route replace` for `prefix` over `hops` (ECMP when several)."""
    argv = ["ip", "route", "replace", prefix, "proto", str(PROTO)]
    if len(hops) == 1:
        return [*argv, "via", hops[0]]
    for hop in hops:
        argv += ["nexthop", "via", hop]
    return argv


def kernel_routes(out: str) -> dict[str, Hops]:
    """prefix -> sorted next hops of `ip -j route show proto 188`."""
    found: dict[str, Hops] = {}
    for route in json.loads(out or "[]"):
        gateways = [route.get("gateway")] + [n.get("gateway") for n in route.get("nexthops", [])]
        found[route["dst"]] = tuple(sorted(str(g) for g in gateways if g))
    return found


class Kernel:
    """The namespace's main table as far as the agent's routes go."""

    def __init__(self) -> None:
        self.installed: dict[str, Hops] = {}

    def _ip(self, argv: list[str]) -> bool:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log.warning("`%s` failed: %s", " ".join(argv), done.stderr.strip())
        return done.returncode == 0

    def load(self) -> None:
        """Read back the routes already there (from before a reconnect or a restart)."""
        done = subprocess.run(
            ["ip", "-j", "route", "show", "proto", str(PROTO)],
            capture_output=True,
            text=True,
            check=True,
        )
        self.installed = kernel_routes(done.stdout)

    def set(self, prefix: str, hops: Hops) -> None:
        """Route `prefix` over `hops`, or remove the agent's route to it when `hops` is ()."""
        if self.installed.get(prefix, ()) == hops:
            return
        if not hops:
            argv = ["ip", "route", "del", prefix, "proto", str(PROTO)]
            if self._ip(argv):
                log.info("removed %s", prefix)
            self.installed.pop(prefix, None)
        elif self._ip(route_argv(prefix, hops)):
            log.info("%s via %s", prefix, ", ".join(hops))
            self.installed[prefix] = hops

    def sync(self, rib: dict[str, Hops]) -> None:
        """Make the agent's routes exactly `rib`'s."""
        for prefix in sorted(set(self.installed) - set(rib)):
            self.set(prefix, ())
        for prefix, hops in sorted(rib.items()):
            self.set(prefix, hops)

    def flush(self) -> None:
        self._ip(["ip", "route", "flush", "proto", str(PROTO)])
        self.installed = {}


def follow(target: str, kernel: Kernel, ready: Path | None = None) -> None:
    """One watch of gobgpd: the snapshot, then every change, until the stream ends."""
    argv = ["gobgp", "--target", target, "monitor", "global", "rib", "-a", "ipv4"]
    with subprocess.Popen(
        [*argv, "--current", "-j"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as monitor:
        try:
            assert monitor.stdout is not None
            first = True
            for line in monitor.stdout:
                try:
                    changes = parse_line(line)
                except ValueError:
                    log.warning("gobgp monitor: %s", line.strip()[:300])
                    continue
                if first:
                    log.info("watching %s: %d prefixes in the RIB", target, len(changes))
                    kernel.sync(changes)
                    first = False
                    if ready is not None:
                        ready.touch()
                else:
                    for prefix, hops in changes.items():
                        kernel.set(prefix, hops)
        finally:
            if monitor.poll() is None:
                monitor.terminate()
            try:
                rc = monitor.wait(5)
            except subprocess.TimeoutExpired:
                monitor.kill()
                rc = monitor.wait()
    log.info("gobgp monitor exited %s", rc)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise StopSignalError(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.routers.gobgp_fib", description=__doc__)
    parser.add_argument("--target", required=True, help="gobgpd's API, unix:///path/to/sock")
    parser.add_argument("--ready", type=Path, help="a file to create after the first sync")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s gobgp-fib: %(message)s"
    )
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    kernel = Kernel()
    try:
        kernel.load()
        log.info(
            "started for %s, %d routes of proto %d there", args.target, len(kernel.installed), PROTO
        )
        while True:
            follow(args.target, kernel, args.ready)
            time.sleep(RETRY)
    except StopSignalError as why:
        log.info("%s: removing %d routes", why, len(kernel.installed))
        kernel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
