"""Route install speed: kroute's bulk netlink against `ip -batch`, on the same routes.

Installs and then deletes N /32 routes (one next hop on a connected subnet) in a fresh
network namespace, both ways, in the same run, and prints routes/s and the ratio
kroute / ip-batch. Needs root. The namespace is removed at the end, also on failure.

    .venv/bin/python bench/route_install.py [--routes 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# bench/ holds scripts named like kroute's packages (ipam.py, datapath.py, lbipam.py), and
# Python puts a script's directory first on sys.path: drop it so the packages are found.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from datapath.netlink import NetlinkKernelRoutes
from datapath.routes import KernelRoute, KernelRouteReconciler, Network
from lab.bench_results import record

GATEWAY = "10.99.0.2"
FIRST = int(ipaddress.IPv4Address("20.0.0.0"))


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def make_netns() -> str:
    name = f"krt-bench-{secrets.token_hex(4)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ip("-n", name, "link", "set", "v0", "up")
        ip("-n", name, "link", "set", "v1", "up")
        ip("-n", name, "addr", "add", "10.99.0.1/24", "dev", "v0")
    except BaseException:
        subprocess.run(["ip", "netns", "del", name], check=False)
        raise
    return name


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_kroute(ns: str, desired: dict[Network, KernelRoute]) -> tuple[float, float]:
    """Seconds to reconcile empty -> desired (dump, diff, apply) and back to empty."""
    with NetlinkKernelRoutes(ns) as kernel:
        reconciler = KernelRouteReconciler(kernel)
        add = timed(lambda: reconciler.reconcile(desired))
        assert reconciler.last_result is not None and reconciler.last_result.ok
        assert len(kernel.dump()) == len(desired), "kroute add: routes missing"
        delete = timed(lambda: reconciler.reconcile({}))
        assert reconciler.last_result is not None and reconciler.last_result.ok
        assert kernel.dump() == {}, "kroute delete: routes left"
    return add, delete


def run_ip_batch(ns: str, prefixes: list[str], workdir: Path) -> tuple[float, float]:
    """Seconds for `ip -n NS -batch FILE` to add the routes, then to delete them."""
    add_file, del_file = workdir / "add.batch", workdir / "del.batch"
    add_file.write_text("".join(f"route add {p} via {GATEWAY} proto 186\n" for p in prefixes))
    del_file.write_text("".join(f"route del {p} proto 186\n" for p in prefixes))
    add = timed(lambda: ip("-n", ns, "-batch", str(add_file)))
    with NetlinkKernelRoutes(ns) as kernel:
        assert len(kernel.dump()) == len(prefixes), "ip -batch add: routes missing"
        delete = timed(lambda: ip("-n", ns, "-batch", str(del_file)))
        assert kernel.dump() == {}, "ip -batch delete: routes left"
    return add, delete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=100_000, help="routes to install")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    n: int = args.routes
    if n < 1 or n > 1 << 24 or args.rounds < 1:
        parser.error("--routes must be 1..16777216 and --rounds at least 1")
    gw = ipaddress.IPv4Address(GATEWAY)
    nets = [ipaddress.IPv4Network((FIRST + i, 32)) for i in range(n)]
    desired: dict[Network, KernelRoute] = {p: KernelRoute(p, (gw,)) for p in nets}
    prefixes = [str(p) for p in nets]
    best = {"kroute": [float("inf")] * 2, "ip -batch": [float("inf")] * 2}

    ns = make_netns()
    try:
        with tempfile.TemporaryDirectory(prefix="krt-bench-") as tmp:
            for _ in range(args.rounds):
                for name, secs in (
                    ("kroute", run_kroute(ns, desired)),
                    ("ip -batch", run_ip_batch(ns, prefixes, Path(tmp))),
                ):
                    best[name] = [min(a, b) for a, b in zip(best[name], secs, strict=True)]
            with NetlinkKernelRoutes(ns) as kernel:
                KernelRouteReconciler(kernel).reconcile(desired)
                dump_secs = min(timed(kernel.dump) for _ in range(args.rounds))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)

    rates = {name: (n / add, n / delete) for name, (add, delete) in best.items()}
    print(f"{n} /32 routes, one next hop, best of {args.rounds} rounds")
    print(f"{'method':<22}{'add routes/s':>14}{'delete routes/s':>17}")
    for name, (add_rate, del_rate) in rates.items():
        print(f"{name:<22}{add_rate:>14,.0f}{del_rate:>17,.0f}")
    (ka, kd), (ia, idel) = rates["kroute"], rates["ip -batch"]
    print(f"{'ratio kroute/ip-batch':<22}{ka / ia:>14.2f}{kd / idel:>17.2f}")
    for what, k, i in (("add", ka, ia), ("delete", kd, idel)):
        figure = f"{what} {n:,} /32 kernel routes"
        record(
            "route_install",
            figure,
            "routes/s",
            k,
            baseline_name="ip -batch",
            baseline=i,
            higher_is_better=True,
        )
    print(f"kroute dump of {n} routes: {dump_secs:.3f} s ({n / dump_secs:,.0f} routes/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
