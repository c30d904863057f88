"""Two nodes and three pods in network namespaces for the eBPF datapath tests, and the
agent that drives `datapath.loader.BpfDatapath` inside a node.

Topology (every name starts with a unique prefix; everything is removed on exit):

    pod a1 10.78.1.10 --p1--+                          +--p1-- pod b1 10.78.2.10
    pod a2 10.78.1.11 --p2--+- node a eth0 10.77.0.1 --- eth0 10.77.0.2 node b

With `outside=True` the nodes' eth0 meet on bridge br0 (10.77.0.254) of a router
namespace, whose uplink 198.51.100.1 leads to an external host 198.51.100.10 that routes
only the node subnet back (so only masqueraded traffic gets answers); nodes default via
the router.

Nodes have `net.ipv4.ip_forward=0` (all interfaces), pods are wired Calico style as in
`lab/net.py` (POD_IP/32 on eth0, default via 169.254.1.1, node route POD_IP/32 dev pN,
proxy ARP on pN: which answers nothing with forwarding off). Pods have tx checksum
offload off so a wrong checksum cannot hide.

The agent runs as `nsenter --net=/var/run/netns/NODE -- python -m tests.bpf_fixtures
agent ...` (a process per call, as a restarted kroute would be) and prints JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GATEWAY = "169.254.1.1"
NODE_NET = "10.77.0.0/24"
ROUTER_IP = "10.77.0.254"
UPLINK_IP = "198.51.100.1"
EXTERNAL_IP = "198.51.100.10"


def run(
    argv: list[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def nsenter(ns: str) -> list[str]:
    """Enter only the network namespace: bpffs pins stay visible (`ip netns exec` hides them)."""
    return ["nsenter", f"--net=/var/run/netns/{ns}", "--"]


@dataclass
class Pod:
    ns: str
    ip: str
    host_if: str  # host-side veth in the node


@dataclass
class Node:
    ns: str
    ip: str
    pod_cidr: str
    pin_dir: str
    pods: list[Pod] = field(default_factory=list)


@dataclass
class Topology:
    prefix: str
    pin_root: str
    a: Node
    b: Node
    router: str | None = None  # with `outside`: a bridge for the nodes, a routed uplink
    external: str | None = None  # ... and a host beyond it that knows no pod routes

    @property
    def namespaces(self) -> list[str]:
        outside = [ns for ns in (self.router, self.external) if ns]
        nodes = [n.ns for n in (self.a, self.b)]
        return outside + nodes + [p.ns for n in (self.a, self.b) for p in n.pods]

    def agent(self, node: Node, *args: str, check: bool = True) -> dict[str, Any]:
        """Run the agent in `node` (a new process: a fresh compile reusing the pins)."""
        argv = [*nsenter(node.ns), PYTHON, "-m", "tests.bpf_fixtures", "agent"]
        argv += ["--pin-dir", node.pin_dir, *args]
        proc = subprocess.run(
            argv, capture_output=True, text=True, cwd=REPO, timeout=120, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"agent {' '.join(args)} in {node.ns} failed: {proc.stderr}")
        return json.loads(proc.stdout or "{}")  # type: ignore[no-any-return]

    def setup_args(self, node: Node) -> list[str]:
        """Agent arguments that attach everything in `node` and fill its maps."""
        other = self.b if node is self.a else self.a
        args = ["setup", "--netdev", "eth0"]
        for pod in node.pods:
            args += ["--pod", f"{pod.ip}={pod.host_if}"]
        args += ["--route", f"{other.pod_cidr}=eth0,{other.ip}"]
        return args

    def ping(self, pod: Pod, dst: str, *, count: int = 3, interval: str = "0.2") -> int:
        """Replies received by `count` pings from `pod` to `dst`."""
        opts = ["-n", "-q", "-c", str(count), "-i", interval, "-W", "1"]
        proc = run([*nsenter(pod.ns), "ping", *opts, dst], check=False)
        return received(proc.stdout)


def received(ping_output: str) -> int:
    for line in ping_output.splitlines():
        if "received" in line:
            return int(line.split(",")[1].split()[0])
    return 0


def _ip(*args: str) -> None:
    run(["ip", *args])


def _sysctl(ns: str, *settings: str) -> None:
    run([*nsenter(ns), "sysctl", "-q", "-w", *settings])


def _add_pod(node: Node, pod: Pod) -> None:
    _ip("netns", "add", pod.ns)
    _ip("-n", pod.ns, "link", "set", "lo", "up")
    peer = ["peer", "name", "eth0", "netns", pod.ns]  # created in the pod: nodes have an eth0
    _ip("-n", node.ns, "link", "add", pod.host_if, "type", "veth", *peer)
    _ip("-n", node.ns, "link", "set", pod.host_if, "up")
    _sysctl(
        node.ns,
        f"net.ipv4.conf.{pod.host_if}.proxy_arp=1",
        f"net.ipv4.neigh.{pod.host_if}.proxy_delay=0",
    )
    _ip("-n", node.ns, "route", "add", f"{pod.ip}/32", "dev", pod.host_if, "scope", "link")
    _ip("-n", pod.ns, "addr", "add", f"{pod.ip}/32", "dev", "eth0")
    _ip("-n", pod.ns, "link", "set", "eth0", "up")
    _ip("-n", pod.ns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link")
    _ip("-n", pod.ns, "route", "add", "default", "via", GATEWAY, "dev", "eth0")
    run([*nsenter(pod.ns), "ethtool", "-K", "eth0", "tx", "off"])


def _veth_to_eth0(ns: str, name: str, peer_ns: str) -> None:
    """A veth `name` in `ns` whose peer is `eth0` in `peer_ns`."""
    _ip("-n", ns, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", peer_ns)


@contextlib.contextmanager
def ready_process(ns: str, code: str, *args: str) -> Iterator[None]:
    """`python -c code args` in `ns`, once it printed "ready"; killed on exit."""
    proc = subprocess.Popen(
        [*nsenter(ns), PYTHON, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


def _build_outside(topo: Topology, router: str, external: str) -> None:
    """Router: bridge br0 (ROUTER_IP) joining the nodes' eth0, uplink to the external host
    (EXTERNAL_IP), forwarding on. The external host routes only to the node subnet."""
    for ns in (router, external):
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", router, "link", "add", "br0", "type", "bridge")
    for i, node in enumerate((topo.a, topo.b)):
        port = f"n{i}"
        _veth_to_eth0(router, port, node.ns)
        _ip("-n", router, "link", "set", port, "master", "br0", "up")
    _ip("-n", router, "addr", "add", f"{ROUTER_IP}/24", "dev", "br0")
    _ip("-n", router, "link", "set", "br0", "up")
    _veth_to_eth0(router, "up0", external)
    _ip("-n", router, "addr", "add", f"{UPLINK_IP}/24", "dev", "up0")
    _ip("-n", router, "link", "set", "up0", "up")
    _sysctl(router, "net.ipv4.ip_forward=1")
    _ip("-n", external, "addr", "add", f"{EXTERNAL_IP}/24", "dev", "eth0")
    _ip("-n", external, "link", "set", "eth0", "up")
    _ip("-n", external, "route", "add", NODE_NET, "via", UPLINK_IP)
    run([*nsenter(external), "ethtool", "-K", "eth0", "tx", "off"])


def _build(topo: Topology) -> None:
    a, b = topo.a, topo.b
    for node in (a, b):
        _ip("netns", "add", node.ns)
        _ip("-n", node.ns, "link", "set", "lo", "up")
    if topo.router and topo.external:
        _build_outside(topo, topo.router, topo.external)
    else:
        _veth_to_eth0(a.ns, "eth0", b.ns)
    for node in (a, b):
        _ip("-n", node.ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        _ip("-n", node.ns, "link", "set", "eth0", "up")
        _sysctl(node.ns, "net.ipv4.ip_forward=0", "net.ipv4.conf.all.forwarding=0")
        run([*nsenter(node.ns), "ethtool", "-K", "eth0", "tx", "off"])
        # The node's own pod CIDR: what no local pod owns goes nowhere (as kroute does).
        _ip("-n", node.ns, "route", "add", "blackhole", node.pod_cidr)
        if topo.router:
            _ip("-n", node.ns, "route", "add", "default", "via", ROUTER_IP)
        for pod in node.pods:
            _add_pod(node, pod)


@contextlib.contextmanager
def topology(prefix: str | None = None, *, outside: bool = False) -> Iterator[Topology]:
    """Build the two-node topology (with `outside`: nodes on a router's bridge, and an
    external host behind the router); remove namespaces and pins on exit, also on failure."""
    p = prefix or f"kb{secrets.token_hex(3)}"
    pin_root = f"/sys/fs/bpf/kroute-test-{p}"
    a = Node(f"{p}na", "10.77.0.1", "10.78.1.0/24", f"{pin_root}/a")
    b = Node(f"{p}nb", "10.77.0.2", "10.78.2.0/24", f"{pin_root}/b")
    a.pods = [Pod(f"{p}a1", "10.78.1.10", "p1"), Pod(f"{p}a2", "10.78.1.11", "p2")]
    b.pods = [Pod(f"{p}b1", "10.78.2.10", "p1")]
    topo = Topology(p, pin_root, a, b)
    if outside:
        topo.router, topo.external = f"{p}r", f"{p}x"
    try:
        _build(topo)
        yield topo
    finally:
        for ns in reversed(topo.namespaces):
            if os.path.exists(f"/var/run/netns/{ns}"):
                for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), 9)
                run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(pin_root, ignore_errors=True)


# -- the agent (runs inside a node's network namespace) ---------------------------------


def _agent(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests.bpf_fixtures agent")
    parser.add_argument("--pin-dir", required=True)
    parser.add_argument("--max-nat", type=int, default=65536, help="NAT table size")
    parser.add_argument("--masq", help="a MasqueradeSpec as JSON (as_dict): set it")
    parser.add_argument("--hold", action="store_true", help="then print and sleep (kill me)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    setup = sub.add_parser("setup", help="attach programs and fill the maps")
    setup.add_argument("--netdev", required=True)
    setup.add_argument("--pod", action="append", default=[], help="IP=HOST_VETH")
    setup.add_argument("--route", action="append", default=[], help="PREFIX=DEV,NEXTHOP")
    show = sub.add_parser("show", help="print attachments, entries and counters")
    show.add_argument("--expire-in", type=float, help="first sweep NAT as if N s from now")
    detach = sub.add_parser("detach", help="detach from the given interfaces")
    detach.add_argument("ifnames", nargs="+")
    args = parser.parse_args(argv)

    from datapath.loader import BpfDatapath
    from datapath.masq import MasqueradeSpec

    dp = BpfDatapath(args.pin_dir, max_nat_entries=args.max_nat)
    try:
        if args.cmd == "setup":
            dp.attach(args.netdev, "from_netdev")
            for spec in args.pod:
                ip, host_if = spec.split("=")
                dp.attach(host_if, "from_pod")
                dp.set_local_pod(ip, host_if)
            routes = {}
            for spec in args.route:
                prefix, rest = spec.split("=")
                dev, nh = rest.split(",")
                routes[prefix] = (dev, nh)
            dp.sync_remote_routes(routes)
        elif args.cmd == "detach":
            for ifname in args.ifnames:
                dp.detach(ifname)
        if args.masq:
            dp.set_masquerade(MasqueradeSpec.from_dict(json.loads(args.masq)))
        expired = 0
        if getattr(args, "expire_in", None) is not None:
            expired = dp.expire_nat(time.monotonic() + args.expire_in)
        out = {
            "attached": dp.attached(),
            "local_pods": {str(k): v.ifindex for k, v in dp.local_pods().items()},
            "remote_routes": {
                str(k): [v.ifindex, str(v.next_hop)] for k, v in dp.remote_routes().items()
            },
            "counters": dp.counters(),
            "attached_egress": dp.describe()["attachedEgress"],
            "nat": [e.as_dict() for e in dp.nat_entries()],
            "expired": expired,
        }
        print(json.dumps(out), flush=True)
        while args.hold:  # a loader that keeps running until killed
            time.sleep(3600)
    finally:
        dp.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["agent"]:
        sys.exit("usage: python -m tests.bpf_fixtures agent --pin-dir DIR {setup,show,detach} ...")
    sys.exit(_agent(sys.argv[2:]))
