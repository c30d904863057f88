"""Steps shared by `lab up` and `lab add-node|remove-node`: write node configs, allocate
pod CIDRs and pod IPs from the lab's IPAM store, reload running daemons.

Allocation runs `python -m lab.ipam_tool` inside a lab node's namespace, with that
node's config, so it uses the very store and pool the daemons use (and reaches the lab's
etcd, which lives on the lab LAN only). Nodes are allocated in the order given, before
their daemons start; a daemon's own allocation is idempotent and returns the same block.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bgpd.api.client import call
from common.errors import KrouteError
from lab import net
from lab.plan import LabError, LabPlan, NodePlan, with_allocations
from lab.render import render_config


def write_config(plan: LabPlan, node: NodePlan) -> None:
    """Write `node`'s kroute.yaml (replacing it atomically: a daemon may be reading it)."""
    Path(node.run_dir).mkdir(parents=True, exist_ok=True)
    path = Path(node.config_path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_config(plan, node))
    tmp.replace(path)


def allocate(plan: LabPlan, via: NodePlan, nodes: Sequence[NodePlan]) -> LabPlan:
    """`plan` with the blocks and pod IPs of `nodes`, asked for in `via`'s namespace with
    `via`'s config (already written)."""
    argv = [*net.nsenter(via.netns), sys.executable, "-m", "lab.ipam_tool", via.config_path]
    argv += [f"{n.name}={n.container_id}" for n in nodes]
    try:
        out = net.run(argv)
    except LabError as exc:
        raise LabError(f"lab {plan.name}: allocating pod CIDRs failed: {exc}") from None
    try:
        data = json.loads(out)
        allocated = {name: (str(d["podCIDR"]), str(d["podIP"])) for name, d in data.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LabError(f"lab.ipam_tool printed something unexpected ({exc!r}): {out!r}") from None
    return with_allocations(plan, allocated)


def reload_daemon(node: NodePlan) -> None:
    """`kroute reload` (as SIGHUP, with the errors answered): the daemon re-reads its file."""
    try:
        call(node.socket_path, "/reload", method="POST")
    except KrouteError as exc:
        raise LabError(f"node {node.name}: reload refused or failed: {exc}") from None


def release_node(via: NodePlan, name: str, timeout: float) -> float:
    """`kroute node remove NAME` against `via`'s socket until it succeeds; the seconds it
    took. With etcd membership this succeeds only once the node's lease expired."""
    started = time.monotonic()
    while True:
        try:
            call(via.socket_path, f"/nodes/remove?name={name}", method="POST")
            return time.monotonic() - started
        except KrouteError as exc:
            if time.monotonic() - started >= timeout:
                raise LabError(
                    f"node {name}: releasing its blocks through {via.name} failed for "
                    f"{timeout:g}s: {exc}; retry with `kroute lab exec {via.name} -- "
                    f"kroute node remove {name}`"
                ) from None
        time.sleep(0.5)
