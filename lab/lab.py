"""A lab's lifecycle: build, start, inspect, restart and tear down, with state in lab.json.

lab.json is written before anything else is built and updated as each daemon starts (and
as nodes are added or removed), so `down` always knows what to remove, even after a
partial `up`. Pod CIDRs and pod IPs come from the lab's IPAM store (lab.build) after the
node namespaces exist and before the pods are wired and the daemons start. Labs register themselves
by directory under /run/kroute/lab; a new lab takes the lowest free index under a lock
on that directory, so concurrent `up`s never share addresses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import build, etcd, health, net, pods, procs, upstream
from lab.plan import (
    BPF_PIN_ROOT,
    LAB_ROOT,
    LabError,
    LabPlan,
    NodePlan,
    check_name,
    lowest_free_index,
    plan_lab,
)
from lab.procs import Proc
from lab.routers import DaemonRouter, RouterError
from lab.state import plan_from_dict, plan_to_dict

Say = Callable[[str], None]
STOP_TIMEOUT = 15.0
DAEMON_START_TIMEOUT = 60.0


@dataclass
class Lab:
    """A lab's plan plus the daemons it started (node name -> process), the upstream's
    processes and its etcd."""

    plan: LabPlan
    daemons: dict[str, Proc] = field(default_factory=dict)
    upstream_procs: list[Proc] = field(default_factory=list)
    etcd: Proc | None = None

    def save(self) -> None:
        data = plan_to_dict(self.plan)
        if data["upstream"]:
            data["upstream"]["pids"] = [[p.pid, p.start] for p in self.upstream_procs]
        if self.etcd is not None:
            data["store"]["pid"], data["store"]["pidStart"] = self.etcd.pid, self.etcd.start
        for node in data["nodes"]:
            proc = self.daemons.get(node["name"])
            node["pid"], node["pidStart"] = (proc.pid, proc.start) if proc else (None, None)
        path = Path(self.plan.state_path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, name: str, root: Path = LAB_ROOT) -> Lab | None:
        """The lab recorded under `root/name`, or None if there is none."""
        path = root / check_name(name) / "lab.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(
                f"{path}: unreadable ({exc}); remove the lab with `kroute lab down --name {name}`"
            ) from None
        daemons = {
            n["name"]: Proc(int(n["pid"]), int(n["pidStart"]))
            for n in data.get("nodes", [])
            if n.get("pid") is not None
        }
        upstream = [
            Proc(int(pid), int(start))
            for pid, start in (data.get("upstream") or {}).get("pids", [])
        ]
        store = data.get("store") or {}
        etcd_proc = Proc(int(store["pid"]), int(store["pidStart"])) if "pid" in store else None
        return cls(plan_from_dict(data), daemons, upstream, etcd_proc)

    def etcd_alive(self) -> bool:
        return self.etcd is not None and procs.is_alive(self.etcd)

    def router(self) -> DaemonRouter | None:
        """The upstream router, holding the PIDs recorded for it (None without one)."""
        return upstream.make(self.plan, self.upstream_procs)

    def upstream_problems(self) -> list[str]:
        return upstream.problems(self.plan, self.router())

    def node_alive(self, node: NodePlan) -> bool:
        proc = self.daemons.get(node.name)
        return proc is not None and procs.is_alive(proc)

    def require_alive(self, node: NodePlan) -> None:
        if not self.node_alive(node):
            raise LabError(
                f"kroute on node {node.name} is not running; see its log {node.log_path}:\n"
                + health.log_tail(node.log_path)
            )


def all_labs(root: Path = LAB_ROOT) -> list[Lab]:
    """Every lab registered under `root`, by name."""
    if not root.is_dir():
        return []
    labs = (Lab.load(d.name, root) for d in sorted(root.iterdir()) if (d / "lab.json").exists())
    return [lab for lab in labs if lab is not None]


def require_lab(name: str) -> Lab:
    lab = Lab.load(name)
    if lab is None:
        raise LabError(f"no lab named {name!r}; start one with `kroute lab up --name {name}`")
    return lab


@contextlib.contextmanager
def _registry_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("kroute lab needs root (network namespaces); run it with sudo")
    for tool in ("ip", "nsenter", "sysctl"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} not found on PATH; install iproute2, util-linux and procps")


def _kroute_argv(node: NodePlan) -> list[str]:
    """`kroute run` from this venv, in the node's namespace via nsenter."""
    exe = Path(sys.executable).parent / "kroute"
    kroute = str(exe) if exe.exists() else shutil.which("kroute")
    if kroute is None:
        raise LabError("the kroute command is not installed; run scripts/setup")
    return [*net.nsenter(node.netns), kroute, "run", "--config", node.config_path]


def start_daemon(lab: Lab, node: NodePlan) -> Proc:
    """Start kroute in `node`'s namespace, record its PID in lab.json at once."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KROUTE_SOCKET": node.socket_path}
    with open(node.log_path, "a") as log:
        log.write(f"--- kroute lab: starting kroute on {node.name} at {time.ctime()} ---\n")
    proc = procs.start(_kroute_argv(node), node.log_path, env, node.run_dir)
    lab.daemons[node.name] = proc
    lab.save()
    return proc


def up(
    name: str,
    nodes: int,
    timeout: float,
    say: Say,
    *,
    upstream: str | None = None,
    reflectors: int = 0,
    store: str = "file",
    datapath: str = "bpf",
    subnets: int = 1,
    overlay: str = "never",
) -> Lab:
    """Build lab `name`, start its daemons and wait for the mesh; undo all on failure."""
    require_root()
    check_name(name)
    with _registry_lock(LAB_ROOT):
        if (LAB_ROOT / name).exists():
            raise LabError(
                f"lab {name!r} already exists; remove it with `kroute lab down --name {name}` "
                "or pick another --name"
            )
        used = {lab.plan.index for lab in all_labs()}
        index = lowest_free_index(used)
        plan = plan_lab(
            name,
            index,
            nodes,
            upstream=upstream,
            reflectors=reflectors,
            store=store,
            datapath=datapath,
            subnets=subnets,
            overlay=overlay,
        )
        lab = Lab(plan)
        taken = [ns for ns in lab.plan.namespaces() if net.netns_exists(ns)]
        if taken:
            raise LabError(
                f"namespaces {', '.join(taken)} already exist but belong to no lab; remove them "
                f"(`ip netns del {taken[0]}`) or pick another --name"
            )
        Path(lab.plan.state_dir).mkdir(parents=True)
        lab.save()
    try:
        say(
            f"lab {name}: underlay {plan.subnet}, pods {plan.pod_range} (cluster pool, "
            f"{store} store), state {plan.state_path}"
        )
        _build(lab, say)
        started = time.monotonic()
        say(f"lab {name}: waiting up to {timeout:g}s for the BGP sessions and routes")
        health.wait_converged(lab.plan, timeout, lab.require_alive, lab.upstream_problems)
        say(f"lab {name} is up: {nodes} nodes converged in {time.monotonic() - started:.1f}s")
    except BaseException:
        warnings = down(name, lambda _: None)  # first, so a broken stdout cannot skip it
        with contextlib.suppress(OSError):
            for line in [f"lab {name}: setup failed; removed what was built", *warnings]:
                say(line)
        raise
    return lab


def _build(lab: Lab, say: Say) -> None:
    """LAN, etcd, node namespaces and configs, allocation, pods, upstream, daemons."""
    plan = lab.plan
    net.build_lan(plan)
    if plan.store == "etcd":
        etcd.start(plan, lambda proc: _record_etcd(lab, proc), say)
    for node in plan.nodes:
        net.build_node(plan, node)
        build.write_config(plan, node)
    lab.plan = plan = build.allocate(plan, plan.nodes[0], plan.nodes)
    lab.save()
    if plan.upstream:
        _start_upstream(lab, say)
    started = [(node, start_daemon(lab, node)) for node in plan.nodes]
    for node, proc in started:
        pods.wait_for_daemon(node, DAEMON_START_TIMEOUT)
        pods.add_pod(node)  # through kroute-cni, as a container runtime would
        say(
            f"node {node.name}: {node.ip}, pods {node.pod_cidr}, pod {node.pod_ns} "
            f"{node.pod_ip} (kroute-cni, {plan.datapath} datapath), kroute pid {proc.pid}, "
            f"log {node.log_path}"
        )


def _record_etcd(lab: Lab, proc: Proc) -> None:
    lab.etcd = proc
    lab.save()


def _start_upstream(lab: Lab, say: Say) -> None:
    router = lab.router()
    assert router is not None

    def record(started: list[Proc]) -> None:
        lab.upstream_procs = started
        lab.save()

    upstream.start(lab.plan, router, record, say)


def down(name: str, say: Say) -> list[str]:
    """Stop the lab's daemons, remove its namespaces and files; returns warnings.

    Idempotent: a lab that is gone, or was only half built, is removed as far as it exists.
    """
    require_root()
    lab = Lab.load(name)
    namespaces = lab.plan.namespaces() if lab else _namespaces_by_pattern(name)
    warnings = _stop_all(lab, say) if lab is not None else []
    removed = 0
    for ns in namespaces:
        warnings += [
            f"warning: process {pid} ({_command(pid)}) still runs in namespace {ns}, which lives "
            "on until it exits; stop it with `kill` if you started it"
            for pid in net.netns_pids(ns)
        ]
        removed += net.del_netns(ns)
    shutil.rmtree(LAB_ROOT / name, ignore_errors=True)
    for node_name in (n.name for n in lab.plan.nodes) if lab else ():
        shutil.rmtree(f"{BPF_PIN_ROOT}/{node_name}", ignore_errors=True)
    say(f"lab {name}: removed {removed} namespaces and {LAB_ROOT / name}")
    return warnings


def _stop_all(lab: Lab, say: Say) -> list[str]:
    warnings = []
    router = lab.router()
    if router is not None and router.procs:
        say(f"upstream {router.kind}: stopping pids {router.pids()}")
        try:
            router.stop()
        except RouterError as exc:
            warnings.append(f"warning: {exc}")
    for node in lab.plan.nodes:
        try:
            stop_node(lab, node, signal.SIGTERM, say)
        except LabError as exc:
            warnings.append(f"warning: {exc}")
    if lab.etcd is not None:  # last: the nodes talk to it until they stop
        try:
            etcd.stop(lab.plan, lab.etcd, say)
        except LabError as exc:
            warnings.append(f"warning: {exc}")
    return warnings


def stop_node(lab: Lab, node: NodePlan, sig: signal.Signals, say: Say) -> None:
    """Stop `node`'s kroute and every process of its session (its exabgp, even orphaned).

    Each daemon leads its own session, so a process in the node's namespace whose session
    is the recorded daemon PID is that daemon's, even after the daemon itself died.
    """
    daemon = lab.daemons.get(node.name)
    if daemon is None:
        return
    if procs.is_alive(daemon):
        say(f"node {node.name}: sending {sig.name} to kroute pid {daemon.pid}")
        _stop(node, daemon, sig, say)
    for pid in net.netns_pids(node.netns):
        leftover = procs.observe(pid)
        if leftover is not None and procs.session(pid) == daemon.pid:
            say(f"node {node.name}: stopping leftover {_command(pid)} pid {pid}")
            _stop(node, leftover, signal.SIGTERM, say)


def _stop(node: NodePlan, proc: Proc, sig: signal.Signals, say: Say) -> None:
    names = {p.pid: _command(p.pid) for p in [proc, *procs.descendants(proc)]}
    stopped = procs.stop_tree(proc, sig, STOP_TIMEOUT)
    for p in stopped.forced:
        say(
            f"node {node.name}: {names.get(p.pid, '?')} pid {p.pid} still ran "
            f"{STOP_TIMEOUT:.0f}s after {sig.name} to kroute; sent it SIGKILL"
        )
    if stopped.stuck:
        pids = ", ".join(str(p.pid) for p in stopped.stuck)
        raise LabError(f"node {node.name}: processes {pids} survived SIGKILL; check `ps`")


def _namespaces_by_pattern(name: str) -> list[str]:
    """Namespaces of lab `name` when its lab.json is gone: NAME-lan, -up, -ext, -etcd, -nI,
    -nI-p1."""
    pattern = re.compile(rf"^{re.escape(name)}-(lan|up|ext|etcd|n\d+|n\d+-p1)$")
    if not net.NETNS_DIR.is_dir():
        return []
    found = [p.name for p in net.NETNS_DIR.iterdir() if pattern.match(p.name)]
    return sorted(found, key=lambda ns: (ns.endswith("lan"), not ns.endswith("-p1"), ns))


def _command(pid: int) -> str:
    """A short form of a process's command line, for messages."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [Path(w.decode(errors="replace")).name for w in argv[:3] if w]
    return " ".join(words) or "?"


def restart(lab: Lab, node_name: str, kill: bool, timeout: float, say: Say) -> None:
    """Stop one node's kroute (SIGTERM, or SIGKILL), start it again, wait for convergence."""
    require_root()
    node = lab.plan.node(node_name)
    proc = lab.daemons.get(node.name)
    if proc is None or not procs.is_alive(proc):
        say(f"node {node.name}: kroute was not running")
    stop_node(lab, node, signal.SIGKILL if kill else signal.SIGTERM, say)
    new = start_daemon(lab, node)
    say(f"node {node.name}: kroute restarted as pid {new.pid}; waiting for the mesh")
    health.wait_converged(lab.plan, timeout, lab.require_alive, lab.upstream_problems)
    say(f"node {node.name}: peers established and routes current again")
