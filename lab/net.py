"""Namespaces and the LAN bridge, built with plain `ip` and `nsenter` commands.

Every link is created inside its namespace (`ip -n NS link add ... peer ... netns OTHER`),
so nothing ever appears in the host namespace. Sysctls are written with `nsenter --net`
(`ip netns exec` would remount /sys and hide bpffs pins from anything it starts).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from lab.plan import (
    EXT_IF,
    NODE_IF,
    LabError,
    LabPlan,
    NodePlan,
    UpstreamPlan,
)
from lab.subnets import BRIDGES, HALF, other_half, prefix_len, router_ip, side

log = logging.getLogger(__name__)
NETNS_DIR = Path("/var/run/netns")


def run(argv: list[str]) -> str:
    """Run one setup command; a failure names the command and the kernel's complaint."""
    log.debug("run argv=%s", " ".join(argv))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} not found; install it (iproute2, util-linux)") from None
    if done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def netns_path(ns: str) -> str:
    return str(NETNS_DIR / ns)


def nsenter(ns: str) -> list[str]:
    """The command prefix that runs something in namespace `ns` without touching mounts."""
    return ["nsenter", f"--net={netns_path(ns)}", "--"]


def sysctl(ns: str, *settings: str) -> None:
    run([*nsenter(ns), "sysctl", "-q", "-w", *settings])


def netns_exists(ns: str) -> bool:
    return Path(netns_path(ns)).exists()


def add_netns(ns: str) -> None:
    """Create namespace `ns` with its loopback up; an existing one is an error, not reused."""
    if netns_exists(ns):
        raise LabError(
            f"namespace {ns} already exists; remove it (`ip netns del {ns}`) or use another --name"
        )
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def del_netns(ns: str) -> bool:
    """Remove namespace `ns` if it exists (its veths go with it); True if it existed."""
    if not netns_exists(ns):
        return False
    run(["ip", "netns", "del", ns])
    return True


def netns_pids(ns: str) -> list[int]:
    """PIDs of the processes living in namespace `ns`."""
    if not netns_exists(ns):
        return []
    return [int(p) for p in run(["ip", "netns", "pids", ns]).split()]


def add_veth(ns: str, name: str, peer_ns: str, peer_name: str) -> None:
    """A veth pair: `name` in `ns`, its peer `peer_name` in `peer_ns`."""
    run(
        [
            "ip",
            "-n",
            ns,
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer_name,
            "netns",
            peer_ns,
        ]
    )


def build_lan(plan: LabPlan) -> None:
    """The L2 segment: a bridge inside its own namespace; with two subnets a second
    bridge and the router namespace joining them (see lab.subnets)."""
    add_netns(plan.lan_ns)
    for bridge in BRIDGES[: plan.subnets]:
        run(["ip", "-n", plan.lan_ns, "link", "add", bridge, "type", "bridge"])
        run(["ip", "-n", plan.lan_ns, "link", "set", bridge, "up"])
    if plan.subnets == 2:
        add_netns(plan.router_ns)
        sysctl(plan.router_ns, "net.ipv4.ip_forward=1")
        for which, bridge in enumerate(BRIDGES):
            leg, lan_leg = f"eth{which}", f"rt{which}"
            add_veth(plan.router_ns, leg, plan.lan_ns, lan_leg)
            run(["ip", "-n", plan.lan_ns, "link", "set", lan_leg, "master", bridge, "up"])
            address = f"{router_ip(plan.index, which)}/{HALF}"
            run(["ip", "-n", plan.router_ns, "addr", "add", address, "dev", leg])
            run(["ip", "-n", plan.router_ns, "link", "set", leg, "up"])


def join_lan(plan: LabPlan, ns: str, lan_if: str, ip: str) -> None:
    """A new namespace `ns` on its LAN bridge with underlay address `ip` on eth0 (and,
    with two subnets, a route to the other one through the router)."""
    add_netns(ns)
    add_veth(ns, NODE_IF, plan.lan_ns, lan_if)
    bridge = BRIDGES[side(ip, plan.subnets)]
    run(["ip", "-n", plan.lan_ns, "link", "set", lan_if, "master", bridge, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{ip}/{prefix_len(plan.subnets)}", "dev", NODE_IF])
    run(["ip", "-n", ns, "link", "set", NODE_IF, "up"])
    if plan.subnets == 2:
        other, gateway = other_half(plan.index, ip)
        run(["ip", "-n", ns, "route", "add", other, "via", gateway])


def build_node(plan: LabPlan, node: NodePlan) -> None:
    """A node namespace on the LAN with the underlay address on eth0; forwarding only
    with the legacy datapath (BPF nodes forward with their programs, ip_forward=0)."""
    join_lan(plan, node.netns, node.lan_if, node.ip)
    forward = "0" if plan.datapath == "bpf" else "1"
    sysctl(node.netns, f"net.ipv4.ip_forward={forward}")


def build_upstream(plan: LabPlan, up: UpstreamPlan) -> None:
    """The upstream router's namespace on the LAN, and the external host behind it."""
    join_lan(plan, up.netns, up.lan_if, up.ip)
    sysctl(up.netns, "net.ipv4.ip_forward=1")
    add_netns(up.ext_ns)
    add_veth(up.netns, EXT_IF, up.ext_ns, "eth0")
    ext_prefix = up.ext_subnet.split("/")[1]
    run(["ip", "-n", up.netns, "addr", "add", f"{up.ext_gateway}/{ext_prefix}", "dev", EXT_IF])
    run(["ip", "-n", up.netns, "link", "set", EXT_IF, "up"])
    run(["ip", "-n", up.ext_ns, "addr", "add", f"{up.ext_ip}/{ext_prefix}", "dev", "eth0"])
    run(["ip", "-n", up.ext_ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", up.ext_ns, "route", "add", "default", "via", up.ext_gateway])
