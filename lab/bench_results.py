"""Where every benchmark (bench/*.py) leaves its headline figures for bench/RESULTS.md.

A benchmark calls `record(...)` for each figure it measured next to a baseline from the
same run; when `KROUTE_BENCH_RESULTS` names a file (bench/run_all.py sets it), each call
appends one JSON line there. Run alone, a benchmark just prints its own table."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

ENV = "KROUTE_BENCH_RESULTS"


@dataclass(frozen=True)
class Figure:
    bench: str
    figure: str
    unit: str
    kroute: float
    baseline_name: str
    baseline: float
    higher_is_better: bool

    @property
    def ratio(self) -> float:
        """kroute / baseline: above 1 means kroute measured more of `unit`."""
        return self.kroute / self.baseline if self.baseline else float("inf")


def record(
    bench: str,
    figure: str,
    unit: str,
    kroute: float,
    *,
    baseline_name: str,
    baseline: float,
    higher_is_better: bool,
) -> None:
    """Keep one figure for RESULTS.md (a no-op unless bench/run_all.py runs us)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = Figure(bench, figure, unit, kroute, baseline_name, baseline, higher_is_better)
    with open(path, "a") as out:
        out.write(json.dumps(asdict(line)) + "\n")


def load(path: str) -> list[Figure]:
    with open(path) as lines:
        return [Figure(**json.loads(line)) for line in lines if line.strip()]
