"""`kroute lab add-node` and `remove-node`: a running lab grows or shrinks, no restarts.

With `--store etcd` the new node only registers itself in etcd and every daemon follows
the membership; a removed node's record expires with its lease. With the file store
(static node list) the other nodes' configs are rewritten with the new list and each
daemon reloads it (`kroute reload`, as SIGHUP). Either way the running daemons keep their
PIDs. Changes to one lab are serialized by a lock on its state directory, and lab.json
is updated before each step, so `lab down` always removes what was built.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import time
from collections.abc import Iterator

from lab import build, health, net, pods
from lab.lab import (
    DAEMON_START_TIMEOUT,
    Lab,
    Say,
    require_lab,
    require_root,
    start_daemon,
    stop_node,
)
from lab.plan import LabError, NodePlan, plan_added_node, plan_removed_node
from lab.render import pin_dir


@contextlib.contextmanager
def _locked(name: str) -> Iterator[Lab]:
    """The lab `name`, read under an exclusive lock on its state directory."""
    lab = require_lab(name)
    fd = os.open(lab.plan.state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield require_lab(name)  # again: another command may have changed it meanwhile
    finally:
        os.close(fd)


def add_node(name: str, timeout: float, say: Say) -> NodePlan:
    """Add the next node (namespace, LAN leg, config, allocation, pod, daemon) to lab
    `name` and wait until every node routes to every other; the new node's plan."""
    require_root()
    with _locked(name) as lab:
        lab.plan = plan_added_node(lab.plan)
        node = lab.plan.nodes[-1]
        taken = [ns for ns in (node.netns, node.pod_ns) if net.netns_exists(ns)]
        if taken:
            raise LabError(
                f"namespace {taken[0]} already exists but belongs to no lab node; remove it "
                f"(`ip netns del {taken[0]}`) and retry"
            )
        lab.save()  # first, so `lab down` removes whatever of the node gets built
        try:
            node = _build_node(lab, node, say)
            started = time.monotonic()
            health.wait_converged(lab.plan, timeout, lab.require_alive)
        except LabError as exc:
            raise LabError(
                f"{exc}\nnode {node.name} stays in lab {name} as far as it was built; "
                f"remove it with `kroute lab remove-node {node.name}`"
            ) from None
        say(f"lab {name}: {node.name} joined; converged in {time.monotonic() - started:.1f}s")
        return node


def _build_node(lab: Lab, node: NodePlan, say: Say) -> NodePlan:
    net.build_node(lab.plan, node)
    build.write_config(lab.plan, node)
    lab.plan = build.allocate(lab.plan, node, [node])
    lab.save()
    node = lab.plan.node(node.name)
    proc = start_daemon(lab, node)
    pods.wait_for_daemon(node, DAEMON_START_TIMEOUT)
    pods.add_pod(node)
    say(
        f"node {node.name}: {node.ip}, pods {node.pod_cidr}, pod {node.pod_ns} "
        f"{node.pod_ip}, kroute pid {proc.pid}, log {node.log_path}"
    )
    _reload_others(lab, node, say)
    return node


def remove_node(name: str, node_name: str, timeout: float, say: Say) -> None:
    """Stop `node_name`'s daemon, remove its namespaces and files, tell the others (etcd:
    its lease expires; file store: new node list and reload), release its blocks through
    another node, and wait until the others are converged without it."""
    require_root()
    with _locked(name) as lab:
        gone = lab.plan.node(node_name)
        lab.plan = plan_removed_node(lab.plan, gone.name)
        stop_node(lab, gone, signal.SIGTERM, say)
        for ns in (gone.pod_ns, gone.netns):
            net.del_netns(ns)
        shutil.rmtree(gone.run_dir, ignore_errors=True)
        shutil.rmtree(pin_dir(lab.plan, gone), ignore_errors=True)
        lab.daemons.pop(gone.name, None)
        lab.save()
        _reload_others(lab, None, say)
        via = lab.plan.nodes[0]
        took = build.release_node(via, gone.name, timeout)
        say(f"node {gone.name}: blocks and pod IP released through {via.name} after {took:.1f}s")
        health.wait_converged(lab.plan, timeout, lab.require_alive)
        say(f"lab {name}: {gone.name} removed; the other nodes are converged without it")


def _reload_others(lab: Lab, new: NodePlan | None, say: Say) -> None:
    """With the static node list: rewrite every other node's config and reload it."""
    if lab.plan.store == "etcd":
        return
    for node in lab.plan.nodes:
        if node == new:
            continue
        build.write_config(lab.plan, node)
        lab.require_alive(node)
        build.reload_daemon(node)
        say(f"node {node.name}: config rewritten with {len(lab.plan.nodes)} nodes and reloaded")
