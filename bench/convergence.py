"""Convergence: how fast routes spread, kroute against BIRD, in the same run.

1. Reflector fan-out. A lab of 1 + N kroute nodes (`lab.lab.up(..., reflectors=1)`): node 1
   reflects for the N clients. An extra iBGP speaker, an exabgp "injector" fed commands
   through a FIFO, sits on the lab LAN as a route-reflector client of node 1. Each round it
   announces one new /32 inside `cluster.serviceCIDRs` (added to every node's config, so
   the clients' default iBGP import policy accepts it) with its own LAN address as next
   hop, then withdraws it. `ip -n NS monitor route` in every client, started before the
   first round, timestamps the route's arrival in (and removal from) each client's kernel.
   Baseline: the same N kroute clients, reconfigured (mesh none, one `bgp.peers` entry)
   as clients of a BIRD 2 reflector on the same LAN, with kroute node 1 stopped; the same
   injector announces to BIRD instead. Only the reflector differs, so the ratio is kroute
   reflector / BIRD reflector; the clients' own receive-and-install time is in both.

2. Upstream bulk. A BIRD "source" (AS 65000) originating M /32 `unreachable` statics
   (exported to BGP with next hop self), on one LAN with a kroute node (AS 64512, eBGP,
   `import.allow` the range) and a BIRD "sink" (AS 64513, kernel protocol). The static
   protocol starts disabled; t0 is `birdc enable`. Each kernel's route count (inside the
   range, proto bgp for kroute, proto bird for the sink) is polled every 50 ms until it
   holds all M routes; then `birdc disable` withdraws them and the same is timed down to
   zero. Baseline: the BIRD sink. Ratio kroute / BIRD.

Timings are printed, never asserted. Needs root. Every namespace made here carries one
random prefix (`kcvXXXXXX`) and is removed at the end, also on failure, Ctrl-C or
SIGTERM; processes are stopped by the PIDs started here.

    .venv/bin/python bench/convergence.py [--clients 20] [--prefixes 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# bench/ holds scripts named like kroute's packages (ipam.py, datapath.py, lbipam.py), and
# Python puts a script's directory first on sys.path: put the repository root there instead,
# so the packages are found and this script's parts import as bench.*.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import on_sigterm, say
from bench.reflector_fan_out import FanOut, fan_out
from bench.upstream_bulk import POLL, bulk
from lab.bench_results import record
from lab.plan import MAX_NODES

# -- output ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def row(figure: str, kroute: float, base: float, unit: Callable[[float], str]) -> None:
    ratio = kroute / base if base > 0 else float("inf")
    print(f"{figure:<44}{unit(kroute):>12}{unit(base):>12}{ratio:>8.2f}")
    record(
        "convergence",
        figure,
        "s",
        kroute,
        baseline_name="BIRD 2",
        baseline=base,
        higher_is_better=False,
    )


def header(title: str) -> None:
    print(f"\n{title}")
    print(f"{'figure':<44}{'kroute':>12}{'baseline':>12}{'ratio':>8}")


def report_fan_out(clients: int, kr: FanOut, base: FanOut) -> None:
    print(f"\nReflector fan-out, {clients} kroute clients, {len(kr.announce)} rounds")
    print(
        f"{'round':<7}{'kroute RR median':>18}{'max':>10}{'BIRD RR median':>18}{'max':>10}"
        f"{'kroute RR own kernel':>22}"
    )
    for r, (mine, theirs) in enumerate(zip(kr.announce, base.announce, strict=True)):
        own = ms(kr.reflector_kernel[r]) if r < len(kr.reflector_kernel) else "-"
        print(
            f"{r + 1:<7}{ms(statistics.median(mine)):>18}{ms(max(mine)):>10}"
            f"{ms(statistics.median(theirs)):>18}{ms(max(theirs)):>10}{own:>22}"
        )
    header("Reflector fan-out (announce = new /32 from the injector into every client's kernel)")
    for what, k, b in (
        ("announce", kr.announce, base.announce),
        ("withdraw", kr.withdraw, base.withdraw),
    ):
        k_all, b_all = [x for r in k for x in r], [x for r in b for x in r]
        row(
            f"{what}, median over all clients and rounds",
            statistics.median(k_all),
            statistics.median(b_all),
            ms,
        )
        row(
            f"{what}, median of per-round max",
            statistics.median(max(r) for r in k),
            statistics.median(max(r) for r in b),
            ms,
        )
        row(f"{what}, max over all", max(k_all), max(b_all), ms)
    print(
        "baseline: the same kroute clients peering with a BIRD 2 route reflector on the same\n"
        "LAN instead of kroute node 1 (stopped meanwhile); same injector, same kind of /32.\n"
        "So the ratio isolates the reflector; both columns include exabgp's API latency in the\n"
        "injector and the clients' (kroute's) receive-and-install time."
    )
    if kr.reflector_kernel:
        print(
            "kroute reflector's own kernel install, median: "
            f"{ms(statistics.median(kr.reflector_kernel))} (BIRD RR installs nothing)"
        )


def report_bulk(count: int, kr: list[tuple[float, float]], base: list[tuple[float, float]]) -> None:
    header(f"Upstream bulk: {count:,} /32s from a BIRD upstream (eBGP), median of {len(kr)} rounds")

    def secs(s: float) -> str:
        return f"{s:.2f} s"

    for i, what in enumerate(("announce: all in the kernel", "withdraw: all gone from the kernel")):
        row(what, statistics.median(r[i] for r in kr), statistics.median(r[i] for r in base), secs)
    k_up = statistics.median(r[0] for r in kr)
    print(f"kroute install rate: {count / k_up:,.0f} routes/s end to end (BGP + kernel)")
    print(
        "baseline: a BIRD 2 sink (eBGP from the same source, kernel protocol) in the same run;\n"
        f"t0 = `birdc enable`/`disable` of the source's static protocol; kernel route counts\n"
        f"polled every {POLL * 1000:.0f} ms (so +-{POLL * 1000:.0f} ms resolution)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="reflector clients (N)")
    parser.add_argument("--prefixes", type=int, default=10_000, help="bulk prefixes (M)")
    parser.add_argument("--rounds", type=int, default=5, help="fan-out rounds (R)")
    parser.add_argument("--bulk-rounds", type=int, default=3, help="bulk rounds")
    parser.add_argument("--skip-fan-out", action="store_true")
    parser.add_argument("--skip-bulk", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_NODES - 1:
        parser.error(f"--clients must be 1..{MAX_NODES - 1} (a lab has at most {MAX_NODES} nodes)")
    if not 1 <= args.prefixes <= 1 << 24 or args.rounds < 1 or args.bulk_rounds < 1:
        parser.error("--prefixes must be 1..16777216, --rounds and --bulk-rounds at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    prefix = f"kcv{secrets.token_hex(3)}"
    say(f"namespaces of this run start with {prefix}")
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        fan = None if args.skip_fan_out else fan_out(args.clients, args.rounds, prefix, workdir)
        bulk_times = (
            None if args.skip_bulk else bulk(args.prefixes, args.bulk_rounds, prefix, workdir)
        )
    if fan is not None:
        report_fan_out(args.clients, *fan)
    if bulk_times is not None:
        report_bulk(args.prefixes, *bulk_times)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
