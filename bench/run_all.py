"""Run every benchmark and write bench/RESULTS.md: one table of each headline figure,
its baseline from the same run, and the ratio (`make bench`).

Each benchmark runs as its own process (they need root and build their own namespaces);
a benchmark that fails is listed as failed and the others still run. The soak runs last
and takes `--soak-minutes` (30 by default)."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ holds scripts named like kroute's packages (ipam.py, datapath.py, lbipam.py), and
# Python puts a script's directory first on sys.path: drop it so the packages are found.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from lab.bench_results import ENV, Figure, load

HERE = Path(__file__).resolve().parent
BENCHES = ["route_install", "convergence", "ipam", "lbipam", "datapath"]


def _value(x: float, unit: str) -> str:
    if unit == "s":
        return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"
    return f"{x:,.2f} {unit}" if abs(x) < 100 else f"{x:,.0f} {unit}"


def render(figures: list[Figure], failed: list[str], seconds: dict[str, float]) -> str:
    """RESULTS.md: the table, then which benchmarks failed and how long each took."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (bench/run_all.py) on {now}, {platform.node()}, "
        f"{os.cpu_count()} CPUs, kernel {platform.release()}. Every baseline ran in the same "
        "process or command as the figure it is compared with. Ratio = kroute / baseline; "
        "the last column says which way is better.",
        "",
        "| benchmark | figure | kroute | baseline | baseline value | ratio | better |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for f in figures:
        better = "higher" if f.higher_is_better else "lower"
        lines.append(
            f"| {f.bench} | {f.figure} | {_value(f.kroute, f.unit)} | {f.baseline_name} | "
            f"{_value(f.baseline, f.unit)} | {f.ratio:.2f} | {better} |"
        )
    lines += ["", "Run times: " + ", ".join(f"{b} {s:.0f} s" for b, s in seconds.items()) + "."]
    if failed:
        lines += ["", "Failed (no figures): " + ", ".join(failed) + "; see `make bench` output."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--soak-minutes", type=float, default=30.0)
    parser.add_argument("--only", nargs="*", help="run just these (names as in bench/)")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    runs: list[tuple[str, list[str]]] = [(b, []) for b in BENCHES] + [
        ("soak", ["--minutes", str(args.soak_minutes)])
    ]
    if args.only:
        runs = [(b, extra) for b, extra in runs if b in args.only]
    failed: list[str] = []
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kroute-bench-") as tmp:
        results = Path(tmp) / "results.jsonl"
        results.touch()
        for bench, extra in runs:
            print(f"\n=== bench/{bench}.py", flush=True)
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, str(HERE / f"{bench}.py"), *extra],
                env={**os.environ, ENV: str(results)},
                cwd=HERE.parent,
                check=False,
            )
            seconds[bench] = time.monotonic() - started
            if done.returncode != 0:
                failed.append(bench)
        text = render(load(str(results)), failed, seconds)
    Path(args.out).write_text(text)
    print(f"\n{text}\nwritten to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
