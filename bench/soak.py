"""Soak: a lab under churn for `--minutes` (30 by default), sampled every `--every` s.

Three long-lived nodes (n1-n3). Round-robin churn, one action every
few seconds: a fourth node joins and later leaves; a LoadBalancer pool and service are
added to every node's config and reloaded, later removed; a node's exabgp is killed
(every session of that node flaps; kroute restarts it). Samples: each long-lived
daemon's resident memory and open fds, its reconcile time (from /metrics), and kernel
drift: the routes in the kernel (proto bgp) against what kroute says it installed, and
against the lab's truth (every other node's pod CIDR). At the end, after the churn
settles: no drift, and memory compared with the first sample after warm-up: one full
round of every churn action, so what a daemon opens or allocates lazily on its first
join, reload or exabgp restart is in the baseline, not counted as growth.

Timings are printed, never asserted. Root only. `make bench` runs it through
bench/run_all.py, which puts its figures in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# bench/ holds scripts named like kroute's packages (ipam.py, datapath.py, lbipam.py), and
# Python puts a script's directory first on sys.path: drop it so the packages are found.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from bgpd.api.client import call, fetch_status, request
from common.errors import KrouteError
from lab import health, nodes, procs
from lab import lab as labmod
from lab.bench_results import record
from lab.plan import NodePlan

LB_POOL = {"name": "soak", "blocks": [{"cidr": "198.51.100.0/28"}]}
LB_SERVICE = {"namespace": "soak", "name": "web", "ports": [{"port": 80}]}


@dataclass
class Sample:
    at: float
    rss_kb: dict[str, int]
    fds: dict[str, int]
    reconcile_ms: dict[str, float]
    drift: list[str]


@dataclass
class Soak:
    lab: labmod.Lab
    stable: list[NodePlan]
    samples: list[Sample] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    extra: str | None = None  # the name of the node that joins and leaves
    lb_on: bool = False


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _usage(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _reconcile_seconds(node: NodePlan) -> float:
    """Mean reconcile time so far, from the kernel reconciler's histogram."""
    text = _metrics(node)
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("kroute_reconcile_duration_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("kroute_reconcile_duration_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total / count if count else 0.0


def _metrics(node: NodePlan) -> str:
    status, body = request(node.socket_path, "/metrics")
    if status != 200:
        raise KrouteError(f"{node.name}: /metrics answered HTTP {status}")
    return body.decode()


def _kernel_bgp(node: NodePlan) -> set[str]:
    out = subprocess.run(
        ["ip", "-n", node.netns, "route", "show", "proto", "bgp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[0] if line.split()[0] != "blackhole" else line.split()[1]
            for line in out.splitlines() if line.strip()}  # fmt: skip


def drift(soak: Soak, node: NodePlan) -> list[str]:
    """What differs between the kernel, kroute's view and the lab's truth for `node`."""
    status = fetch_status(node.socket_path)
    said = {r["prefix"] for r in status["kernelRoutes"]}
    kernel = _kernel_bgp(node)
    problems = [f"{node.name}: in the kernel, not in status: {p}" for p in kernel - said]
    problems += [f"{node.name}: in status, not in the kernel: {p}" for p in said - kernel]
    for other in soak.lab.plan.nodes:
        if other.name != node.name and other.pod_cidr not in kernel:
            problems.append(f"{node.name}: no route to {other.name}'s pods {other.pod_cidr}")
    return problems


def sample(soak: Soak, started: float) -> Sample:
    rss, fds, reconcile, problems = {}, {}, {}, []
    for node in soak.stable:
        pid = soak.lab.daemons[node.name].pid
        rss[node.name], fds[node.name] = _usage(pid)
        reconcile[node.name] = _reconcile_seconds(node) * 1000
        problems += drift(soak, node)
    return Sample(time.monotonic() - started, rss, fds, reconcile, problems)


def _set_lb(soak: Soak, on: bool) -> None:
    for node in soak.lab.plan.nodes:
        config = yaml.safe_load(Path(node.config_path).read_text())
        lb = config.setdefault("loadBalancer", {})
        lb["pools"] = [LB_POOL] if on else []
        service = {**LB_SERVICE, "nodes": [n.name for n in soak.stable]}
        lb["services"] = [service] if on else []
        Path(node.config_path).write_text(yaml.safe_dump(config))
        call(node.socket_path, "/reload", method="POST")
    soak.lb_on = on


def _flap(soak: Soak, node: NodePlan) -> None:
    exabgp = procs.descendants(soak.lab.daemons[node.name])[0]
    os.kill(exabgp.pid, signal.SIGKILL)


def churn_actions(soak: Soak) -> list[tuple[str, Callable[[], None]]]:
    name = soak.lab.plan.name

    def join_or_leave() -> None:
        if soak.extra is None:
            soak.extra = nodes.add_node(name, 120, lambda _: None).name
        else:
            nodes.remove_node(name, soak.extra, 120, lambda _: None)
            soak.extra = None
        soak.lab = labmod.require_lab(name)

    return [
        ("node join/leave", join_or_leave),
        ("LB pool+service add/remove", lambda: _set_lb(soak, not soak.lb_on)),
        *[(f"exabgp kill on {n.name}", lambda n=n: _flap(soak, n)) for n in soak.stable],
    ]


def settle(soak: Soak) -> None:
    """Undo the churn's open state and wait until the lab is converged."""
    if soak.extra is not None:
        nodes.remove_node(soak.lab.plan.name, soak.extra, 120, lambda _: None)
        soak.lab = labmod.require_lab(soak.lab.plan.name)
    if soak.lb_on:
        _set_lb(soak, False)
    health.wait_converged(soak.lab.plan, 120, soak.lab.require_alive, soak.lab.upstream_problems)
    time.sleep(15)  # past every stale and adoption timer


def report(soak: Soak, minutes: float, warm: Sample, last: Sample) -> None:
    print(f"\nSoak: {minutes:g} min, {len(soak.samples)} samples, actions: " + ", ".join(
        f"{what} x{n}" for what, n in soak.actions.items()))  # fmt: skip
    print(f"{'node':<14}{'RSS warm kB':>13}{'RSS end kB':>12}{'fds warm':>10}{'fds end':>9}"
          f"{'reconcile ms (mean)':>21}")  # fmt: skip
    for node in soak.stable:
        print(
            f"{node.name:<14}{warm.rss_kb[node.name]:>13,}{last.rss_kb[node.name]:>12,}"
            f"{warm.fds[node.name]:>10}{last.fds[node.name]:>9}"
            f"{last.reconcile_ms[node.name]:>21.2f}"
        )
    during = sum(1 for s in soak.samples if s.drift)
    print(f"samples with drift during churn (converging): {during} of {len(soak.samples)}")
    print("drift at the end: " + ("none" if not last.drift else "; ".join(last.drift)))
    growth = statistics.mean(last.rss_kb[n.name] - warm.rss_kb[n.name] for n in soak.stable)
    record("soak", "daemon RSS after the soak (mean of nodes)", "kB",
           statistics.mean(last.rss_kb.values()), baseline_name="after warm-up",
           baseline=statistics.mean(warm.rss_kb.values()), higher_is_better=False)  # fmt: skip
    record("soak", "open fds after the soak (mean of nodes)", "fds",
           statistics.mean(last.fds.values()), baseline_name="after warm-up",
           baseline=statistics.mean(warm.fds.values()), higher_is_better=False)  # fmt: skip
    print(f"mean RSS growth after warm-up: {growth:,.0f} kB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--action-every", type=float, default=8.0)
    args = parser.parse_args(argv)
    name = f"soak{os.getpid() % 10000}"
    lab = labmod.up(name, 3, timeout=120, say=_say)  # no upstream: add-node needs none
    try:
        soak = Soak(lab, list(lab.plan.nodes))
        started = time.monotonic()
        every_action = churn_actions(soak)
        actions = itertools.cycle(every_action)
        next_sample = next_action = started
        done = 0  # actions run: the baseline is taken after the first full round
        warm: Sample | None = None
        while time.monotonic() - started < args.minutes * 60:
            now = time.monotonic()
            if now >= next_action:
                what, act = next(actions)
                try:
                    act()
                    soak.actions[what] = soak.actions.get(what, 0) + 1
                except (KrouteError, OSError, subprocess.SubprocessError) as exc:
                    _say(f"action {what} failed: {exc}")
                done += 1
                next_action = now + args.action_every
            if now >= next_sample:
                soak.samples.append(sample(soak, started))
                if warm is None and done >= len(every_action):
                    warm = soak.samples[-1]
                next_sample = now + args.every
            time.sleep(0.5)
        settle(soak)
        last = sample(soak, started)
        report(soak, args.minutes, warm or soak.samples[0], last)
        return 1 if last.drift else 0
    finally:
        labmod.down(name, say=lambda _: None)


if __name__ == "__main__":
    sys.exit(main())
