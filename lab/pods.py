"""Lab pods, made the way a container runtime makes them: an empty network namespace,
then `kroute-cni ADD` run in the node's namespace with the lab node's kroute config.

The plugin takes the pod's IP from the lab's IPAM store (the lab allocated it already,
under the same container ID and interface, so the plugin gets the same address back)
and, on BPF nodes, has the node's kroute map the pod and attach its program before it
returns; so the node's daemon must be answering on its socket first (`wait_for_daemon`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bgpd.api.client import call
from common.errors import KrouteError
from lab import net
from lab.ipam_tool import POD_IFNAME
from lab.plan import LabError, NodePlan

CNI_TIMEOUT = 60.0


def cni_binary() -> str:
    exe = Path(sys.executable).parent / "kroute-cni"
    if not exe.exists():
        raise LabError(f"{exe} not found; the kroute package is not installed in this venv")
    return str(exe)


def cni(node: NodePlan, command: str) -> dict[str, Any]:
    """Run `kroute-cni` COMMAND for `node`'s pod in the node's namespace; its JSON result."""
    env = {
        **os.environ,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": node.container_id,
        "CNI_NETNS": net.netns_path(node.pod_ns),
        "CNI_IFNAME": POD_IFNAME,
        "CNI_PATH": str(Path(cni_binary()).parent),
    }
    conf = {
        "cniVersion": "1.0.0",
        "name": "kroute-lab",
        "type": "kroute-cni",
        "kroute": {"config": node.config_path},
    }
    done = subprocess.run(
        [*net.nsenter(node.netns), cni_binary()],
        input=json.dumps(conf),
        env=env,
        capture_output=True,
        text=True,
        timeout=CNI_TIMEOUT,
        check=False,
    )
    try:
        out: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
    except ValueError:
        out = {"msg": done.stdout.strip()}
    if done.returncode != 0:
        raise LabError(
            f"pod {node.pod_ns}: kroute-cni {command} failed (code {out.get('code')}): "
            f"{out.get('msg')}: {out.get('details', '')} {done.stderr.strip()[-500:]}"
        )
    return out


def wait_for_daemon(node: NodePlan, timeout: float) -> None:
    """Until `node`'s kroute answers on its unix socket (it took its config and block)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call(node.socket_path, "/status", timeout=2.0)
            return
        except KrouteError as exc:
            if time.monotonic() >= deadline:
                raise LabError(
                    f"node {node.name}: kroute did not answer on {node.socket_path} within "
                    f"{timeout:g}s ({exc}); see {node.log_path}"
                ) from None
        time.sleep(0.1)


def add_pod(node: NodePlan) -> None:
    """The node's pod: a namespace, wired by kroute-cni with the IP the lab allocated."""
    if not node.pod_ip:
        raise LabError(f"pod {node.pod_ns} has no IP yet; allocate it from the IPAM store first")
    if not net.netns_exists(node.pod_ns):
        net.add_netns(node.pod_ns)
    result = cni(node, "ADD")
    got = [str(entry.get("address", "")) for entry in result.get("ips", [])]
    if f"{node.pod_ip}/32" not in got:
        raise LabError(
            f"pod {node.pod_ns}: kroute-cni gave {got}, the lab allocated {node.pod_ip}; "
            "the plugin and the lab disagree on the IPAM store"
        )
