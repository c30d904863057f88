"""kroute's datapath in the lab: pods made by kroute-cni, real daemons, real programs.

With the BPF datapath (the lab's default) the nodes run with net.ipv4.ip_forward=0, so
pods on different nodes reach each other only through kroute's tc programs; the legacy
datapath (kernel forwarding) must carry the same traffic. A kroute restart keeps the
programs attached and the pinned maps filled: a TCP transfer and a ping stream across it
lose nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from bgpd.api.client import call, fetch_status
from lab import lab as labmod
from lab import pods
from lab.plan import NodePlan
from tests.integration.conftest import LabFactory
from tests.kroute_node import wait_until
from tests.netns_fixtures import netns

pytestmark = [pytest.mark.netns, pytest.mark.exabgp, pytest.mark.bpf]

PORT = 8080
# Echoes one connection and prints the address it came from (is the pod's IP preserved?).
ECHO_SERVER = """
import socket, sys
with socket.create_server((sys.argv[1], 8080)) as srv:
    print("ready", flush=True)
    conn, peer = srv.accept()
    print(peer[0], flush=True)
    while data := conn.recv(65536):
        conn.sendall(data)
"""

# Sends 64 KiB chunks until the file argv[2] exists (so it spans whatever the test does
# meanwhile), then half-closes and checks the echo: "BYTES_SENT BYTES_BACK SAME_HASH".
STREAM_CLIENT = """
import hashlib, os, socket, sys, threading
conn = socket.create_connection((sys.argv[1], 8080), timeout=60)
chunk = bytes(range(256)) * 256
sent, back = hashlib.sha256(), hashlib.sha256()
counts = [0, 0]
def receive():
    while data := conn.recv(65536):
        back.update(data)
        counts[1] += len(data)
reader = threading.Thread(target=receive)
reader.start()
print("streaming", flush=True)
minimum = int(sys.argv[3])
while counts[0] < minimum or not os.path.exists(sys.argv[2]):
    conn.sendall(chunk)
    sent.update(chunk)
    counts[0] += len(chunk)
conn.shutdown(socket.SHUT_WR)
reader.join()
print(counts[0], counts[1], sent.hexdigest() == back.hexdigest(), flush=True)
"""


def nsenter(ns: str) -> list[str]:
    return ["nsenter", f"--net=/var/run/netns/{ns}", "--"]


def sh(ns: str, *argv: str, check: bool = True) -> str:
    done = subprocess.run(
        [*nsenter(ns), *argv], capture_output=True, text=True, check=False, timeout=120
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} in {ns} failed: {done.stderr}")
    return done.stdout


def pings(src: NodePlan, dst: str, count: int = 3, interval: str = "0.2") -> int:
    opts = ["-n", "-q", "-c", str(count), "-i", interval, "-W", "1"]
    out = sh(src.pod_ns, "ping", *opts, dst, check=False)
    line = next(line for line in out.splitlines() if "received" in line)
    return int(line.split(",")[1].split()[0])


def popen(ns: str, *argv: str) -> subprocess.Popen[str]:
    """A process in namespace `ns` with its stdout (and stderr) piped as text."""
    return subprocess.Popen(
        [*nsenter(ns), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def tc_filters(ns: str, dev: str) -> str:
    return sh(ns, "tc", "filter", "show", "dev", dev, "ingress", check=False)


@contextlib.contextmanager
def echo_server(ns: str, ip: str) -> Iterator[Callable[[], str]]:
    """An echo server on `ip` in `ns`; yields what tells the address its client came from."""
    proc = popen(ns, sys.executable, "-c", ECHO_SERVER, ip)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc.stdout.readline
    finally:
        proc.kill()
        proc.wait()


def tcp_transfer(
    src: NodePlan, dst_ns: str, dst_ip: str, during: object = None, size: int = 4 << 20
) -> str:
    """Stream at least `size` bytes from `src`'s pod to an echo server on `dst_ip` in
    `dst_ns`, calling `during()` while the stream runs; the source IP the server saw."""
    with echo_server(dst_ns, dst_ip) as seen, tempfile.TemporaryDirectory() as tmp:
        stop = Path(tmp) / "stop"
        argv = [sys.executable, "-c", STREAM_CLIENT, dst_ip, str(stop), str(size)]
        client = popen(src.pod_ns, *argv)
        try:
            assert client.stdout is not None
            assert client.stdout.readline().strip() == "streaming"
            if callable(during):
                during()
            stop.touch()
            out, err = client.communicate(timeout=120)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        sent, back, same = out.split()
        assert int(sent) >= size and sent == back and same == "True", (out, err)
        return seen().strip()


def traceroute(ns: str, dst: str) -> list[str]:
    """The hops a UDP traceroute from `ns` sees ("*" where none answered)."""
    out = sh(ns, "traceroute", "-n", "-q", "1", "-w", "2", "-m", "8", dst)
    return [line.split()[1] for line in out.splitlines()[1:]]


def datapath_of(node: NodePlan) -> dict[str, object]:
    data = call(node.socket_path, "/datapath")
    assert isinstance(data, dict)
    return data


def kroute_cli(node: NodePlan, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "bgpd.cli", *args, "--socket", node.socket_path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def assert_pods_talk(lab: labmod.Lab) -> None:
    a, b = lab.plan.nodes[0], lab.plan.nodes[1]
    assert pings(a, b.pod_ip) == 3
    assert pings(b, a.pod_ip) == 3
    assert pings(a, b.ip) == 3  # another node's address, through the node's subnet
    assert pings(a, a.ip) == 3  # its own node
    # TCP both ways; the server sees the client pod's own address (no NAT between pods)
    assert tcp_transfer(a, b.pod_ns, b.pod_ip) == a.pod_ip
    assert tcp_transfer(b, a.pod_ns, a.pod_ip) == b.pod_ip


def test_bpf_pods_talk_across_nodes_with_forwarding_off(make_lab: LabFactory) -> None:
    lab = make_lab(2)
    a, b = lab.plan.nodes
    for node in (a, b):
        assert sh(node.netns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
    assert_pods_talk(lab)
    # Both nodes answer a traceroute with forwarding off: a as the pod's first hop, b for
    # a packet expiring on its way into its pod (sent back along b's route to a's pod).
    assert traceroute(a.pod_ns, b.pod_ip) == [a.ip, b.ip, b.pod_ip]
    # A burst of probes expiring at node a: its answers are limited as the kernel's are
    # (a burst of 6 per sender, one traceroute probe of which is spent already).
    before = datapath_of(a)["counters"]
    probes = ["ping", "-n", "-t", "1", "-c", "20", "-i", "0.002", "-W", "1", b.pod_ip]
    burst = sh(a.pod_ns, *probes, check=False)  # no echo reply comes back: ping exits 1
    answered = burst.count("Time to live exceeded")
    after = datapath_of(a)["counters"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert 4 <= answered <= 7, burst
    assert after["ttl_exceeded_sent"] - before["ttl_exceeded_sent"] == answered
    assert after["ttl_exceeded_rate_limited"] - before["ttl_exceeded_rate_limited"] == 20 - answered

    for node in (a, b):
        shown = datapath_of(node)
        assert shown["hostRouting"] == "BPF"
        attached = shown["attached"]
        assert isinstance(attached, dict)
        assert attached["eth0"] == "from_netdev"
        pod_veths = [i for i, p in attached.items() if p == "from_pod"]
        assert len(pod_veths) == 1 and "kroute_from_pod" in tc_filters(node.netns, pod_veths[0])
        assert "kroute_from_netdev" in tc_filters(node.netns, "eth0")
        counters = shown["counters"]
        assert isinstance(counters, dict)
        assert counters["forwarded_remote"] > 0 and counters["forwarded_local"] > 0
        assert counters["ttl_exceeded_sent"] > 0
        assert counters["dropped_redirect"] == 0 and counters["dropped_csum"] == 0
        maps = shown["maps"]
        assert isinstance(maps, dict)
        assert list(maps["local_pods"]["items"]) == [node.pod_ip]
        other = b if node is a else a
        assert other.pod_cidr in maps["remote_routes"]["items"]
    status = kroute_cli(a, "status")
    assert "Host Routing:  BPF" in status and "Masquerading:  Disabled" in status
    table = kroute_cli(a, "datapath")
    assert "from_netdev" in table and "forwarded_remote" in table
    assert json.loads(kroute_cli(a, "datapath", "-o", "json"))["hostRouting"] == "BPF"


def test_legacy_datapath_carries_the_same_traffic(make_lab: LabFactory) -> None:
    lab = make_lab(2, datapath="legacy")
    a, b = lab.plan.nodes
    for node in (a, b):
        assert sh(node.netns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
        assert "kroute_" not in tc_filters(node.netns, "eth0")
    assert_pods_talk(lab)
    dp = fetch_status(a.socket_path)["datapath"]
    assert dp["hostRouting"] == "Legacy" and dp["reason"] == "datapath.bpf.enabled=false"
    assert "Host Routing:  Legacy (datapath.bpf.enabled=false)" in kroute_cli(a, "status")


def test_kroute_restart_keeps_forwarding(make_lab: LabFactory) -> None:
    """Programs and pins stay across a restart: a TCP stream and a 20 ms ping stream from
    pod a to pod b lose nothing while node a's kroute is stopped and started again."""
    lab = make_lab(2)
    a, b = lab.plan.nodes
    before = datapath_of(a)
    ping = popen(a.pod_ns, "ping", "-n", "-q", "-i", "0.02", "-W", "1", b.pod_ip)

    def restart() -> None:
        labmod.restart(lab, a.name, kill=False, timeout=60, say=lambda _: None)
        # the programs never left (BGP is back before the new process has compiled)
        assert "kroute_from_netdev" in tc_filters(a.netns, "eth0")
        # the new process takes them over and reuses the pinned maps: counters kept counting
        wait_until(lambda: datapath_of(a)["attached"] == before["attached"], 60, "re-attach")
        after = datapath_of(a)
        counters_before, counters_after = before["counters"], after["counters"]
        assert isinstance(counters_before, dict) and isinstance(counters_after, dict)
        assert counters_after["forwarded_remote"] > counters_before["forwarded_remote"]

    try:
        assert tcp_transfer(a, b.pod_ns, b.pod_ip, during=restart) == a.pod_ip
    finally:
        ping.send_signal(2)  # SIGINT: ping prints its summary
        out, _ = ping.communicate(timeout=10)
    summary = next(line for line in out.splitlines() if "received" in line)
    sent, received = (int(part.split()[0]) for part in summary.split(",")[:2])
    # ping stops at once on SIGINT: only the echo in flight at that moment may be missing
    assert sent > 50 and received >= sent - 1, summary


def test_pods_reach_outside_through_learned_and_default_routes(make_lab: LabFactory) -> None:
    """With forwarding off: the external subnet the upstream announces (a learned route)
    and an address only the node's own default route covers (a route kroute did not
    install) are both reached from a pod through the programs, with the pod's address."""
    lab = make_lab(2, upstream="bird")
    a = lab.plan.nodes[0]
    up = lab.plan.upstream
    assert up is not None
    assert pings(a, up.ext_ip) == 3
    assert tcp_transfer(a, up.ext_ns, up.ext_ip) == a.pod_ip  # no NAT: the upstream routes pods

    beyond = "198.51.100.1"  # on the upstream itself; no BGP route covers it
    sh(up.netns, "ip", "addr", "add", f"{beyond}/32", "dev", "lo")
    assert pings(a, beyond, count=2) == 0  # no route on the node yet: the stack drops it
    sh(a.netns, "ip", "route", "add", "default", "via", up.ip)
    call(a.socket_path, "/reload", method="POST")  # a reconcile now, not at the next resync

    def items() -> dict[str, dict[str, str]]:
        maps = datapath_of(a)["maps"]
        assert isinstance(maps, dict)
        return maps["remote_routes"]["items"]  # type: ignore[no-any-return]

    wait_until(lambda: "0.0.0.0/0" in items(), 30, "the default route in remote_routes")
    assert items()["0.0.0.0/0"]["nextHop"] == up.ip
    assert pings(a, beyond) == 3
    assert pings(a, a.ip) == 3  # its own node still answers (a /32 to lo)
    assert sh(a.netns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"


def test_cni_add_makes_a_pod_reachable_at_once_and_del_removes_it(make_lab: LabFactory) -> None:
    """A second pod on node a, added and deleted with kroute-cni as a runtime would: the
    pod on node b reaches it right after ADD returns (no sync to wait for), and DEL takes
    it out of node a's map."""
    lab = make_lab(2)
    a, b = lab.plan.nodes
    with netns("kdp-") as ns:
        extra = dataclasses.replace(a, pod_ns=ns)  # its container ID follows the netns
        result = pods.cni(extra, "ADD")
        address = str(result["ips"][0]["address"]).split("/")[0]
        assert address != a.pod_ip
        assert pings(b, address) == 3
        local = datapath_of(a)["maps"]["local_pods"]["items"]  # type: ignore[index]
        assert sorted(local) == sorted([a.pod_ip, address])
        assert pods.cni(extra, "DEL") == {}
        local = datapath_of(a)["maps"]["local_pods"]["items"]  # type: ignore[index]
        assert list(local) == [a.pod_ip]
        assert pings(b, address, count=2) == 0
        assert pings(b, a.pod_ip) == 3


def test_switching_a_node_to_legacy_removes_its_programs(make_lab: LabFactory) -> None:
    """datapath.bpf.enabled: false and a restart: node a's programs are gone (stale maps
    must not forward), its kernel forwards, node b keeps BPF, and pods still talk."""
    lab = make_lab(2)
    a, b = lab.plan.nodes
    config = Path(a.config_path)
    data = yaml.safe_load(config.read_text())
    data["datapath"]["bpf"]["enabled"] = False
    config.write_text(yaml.safe_dump(data))
    labmod.restart(lab, a.name, kill=False, timeout=60, say=lambda _: None)
    assert "kroute_" not in tc_filters(a.netns, "eth0")
    assert sh(a.netns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    assert datapath_of(a)["hostRouting"] == "Legacy"
    assert "kroute_from_netdev" in tc_filters(b.netns, "eth0")
    assert pings(a, b.pod_ip) == 3 and pings(b, a.pod_ip) == 3


def test_vxlan_always_carries_pods_through_the_overlay_with_forwarding_off(
    make_lab: LabFactory,
) -> None:
    """routing.mode vxlan, overlay always (`kroute lab up --overlay always`): the routes
    to the other node's pods, on the same LAN, go onto kroute.vxlan (`via OVERLAY_IP dev
    kroute.vxlan onlink`), the BPF maps follow, and pods talk with forwarding off. etcd
    membership: it tells every node the others' pod CIDRs, which give their overlay
    addresses. (crossSubnet across a router: test_overlay_lab.py.)"""
    lab = make_lab(2, store="etcd", overlay="always")
    a, b = lab.plan.nodes
    for node, other in ((a, b), (b, a)):
        wait_until(
            lambda n=node, o=other: "dev kroute.vxlan" in route_to(n, o.pod_cidr),
            60,
            f"{node.name}: {other.pod_cidr} over the overlay",
        )
        wait_until(lambda n=node: datapath_of(n)["hostRouting"] == "BPF", 60, "BPF loaded")
    vxlan_index = json.loads(sh(a.netns, "ip", "-j", "link", "show", "kroute.vxlan"))[0]["ifindex"]
    wait_until(
        lambda: remote_items(a).get(b.pod_cidr, {}).get("ifindex") == vxlan_index,
        60,
        "node a's map routing node b's pods to kroute.vxlan",
    )
    assert pings(a, b.pod_ip) == 3 and pings(b, a.pod_ip) == 3
    assert tcp_transfer(a, b.pod_ns, b.pod_ip) == a.pod_ip
    assert sh(a.netns, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
    assert "Routing:       vxlan (overlay always): 0 native, 1 overlay" in kroute_cli(a, "status")


def route_to(node: NodePlan, prefix: str) -> str:
    return sh(node.netns, "ip", "route", "show", prefix)


def remote_items(node: NodePlan) -> dict[str, dict[str, object]]:
    maps = datapath_of(node).get("maps")
    return maps["remote_routes"]["items"] if isinstance(maps, dict) else {}


@pytest.mark.parametrize("datapath", ["bpf", "legacy"])
def test_pod_to_external_is_masqueraded_to_the_node_ip(make_lab: LabFactory, datapath: str) -> None:
    """datapath.masquerade on node a (nativeRoutingCIDR = the lab's pod range): the
    external host sees node a's address, BPF SNAT or nftables by the datapath; pod to pod
    keeps its source."""
    lab = make_lab(2, upstream="bird", datapath=datapath)
    a, b = lab.plan.nodes
    up = lab.plan.upstream
    assert up is not None
    config = Path(a.config_path)
    data = yaml.safe_load(config.read_text())
    data["datapath"]["masquerade"] = {"enabled": True}
    config.write_text(yaml.safe_dump(data))
    labmod.restart(lab, a.name, kill=False, timeout=60, say=lambda _: None)
    kind = "BPF" if datapath == "bpf" else "nftables"
    wanted = f"{kind} [eth0] {a.pod_cidr}"
    wait_until(lambda: kroute_cli(a, "status").count(wanted) == 1, 60, wanted)
    sh(up.ext_ns, "ethtool", "-K", "eth0", "tx", "off")  # a wrong checksum must not hide
    assert tcp_transfer(a, up.ext_ns, up.ext_ip) == a.ip
    assert pings(a, up.ext_ip) == 3
    # Every hop answers, the node first: BPF itself with forwarding off, else the kernel.
    assert traceroute(a.pod_ns, up.ext_ip) == [a.ip, up.ip, up.ext_ip]
    assert tcp_transfer(a, b.pod_ns, b.pod_ip) == a.pod_ip
