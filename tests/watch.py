"""Watching kernel routes while something happens: shared by the integration tests."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable

from lab.plan import NodePlan


def kernel_routes(ns: str) -> dict[str, str]:
    """`ip route show proto bgp` in `ns` as {prefix: description}."""
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "route", "show", "proto", "bgp"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    routes: dict[str, str] = {}
    for entry in json.loads(out or "[]"):
        kind = entry.get("type", "unicast")
        if kind == "blackhole":
            routes[entry["dst"]] = "blackhole"
        else:
            hops = (
                [entry["gateway"]]
                if "gateway" in entry
                else [h["gateway"] for h in entry["nexthops"]]
            )
            routes[entry["dst"]] = "via " + ",".join(sorted(hops))
    return routes


def expected_routes(plan_nodes: tuple[NodePlan, ...], me: NodePlan) -> dict[str, str]:
    return {n.pod_cidr: "blackhole" if n.name == me.name else f"via {n.ip}" for n in plan_nodes}


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Poll `predicate` until true; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _bgp_route(line: str) -> bool:
    return "proto bgp" in line


class RouteWatcher:
    """`ip monitor route` in every namespace given, collecting route deletions that
    `match` (default: kroute's, proto bgp)."""

    def __init__(self, namespaces: list[str], match: Callable[[str], bool] = _bgp_route) -> None:
        self.deleted: list[str] = []
        self._match = match
        self._procs = [
            subprocess.Popen(
                ["ip", "-n", ns, "monitor", "route"], stdout=subprocess.PIPE, text=True
            )
            for ns in namespaces
        ]
        self._threads = [
            threading.Thread(target=self._read, args=(ns, p), daemon=True)
            for ns, p in zip(namespaces, self._procs, strict=True)
        ]
        for thread in self._threads:
            thread.start()
        time.sleep(0.3)  # let every monitor subscribe before anything happens

    def _read(self, ns: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Deleted") and self._match(line):
                self.deleted.append(f"{ns}: {line.strip()}")

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
            proc.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
