"""The eBPF forwarding datapath (datapath/bpf/forward.c + datapath/loader.py) on real
namespaces: two nodes with forwarding off, pods wired Calico style (tests/bpf_fixtures.py).

Each node is driven by an agent process run with `nsenter --net=` (as kroute runs inside
a node's namespace); a second agent run is a restarted kroute reusing the pinned maps.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from common.errors import DatapathError
from tests.bpf_fixtures import PYTHON, Topology, nsenter, ready_process, run, topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.bpf,
]


@pytest.fixture
def topo() -> Iterator[Topology]:
    with topology() as t:
        yield t


def attach_all(t: Topology) -> None:
    for node in (t.a, t.b):
        t.agent(node, *t.setup_args(node))


def ping_ttl(t: Topology, src_ns: str, dst: str) -> int:
    out = run([*nsenter(src_ns), "ping", "-n", "-c", "1", "-W", "2", dst]).stdout
    m = re.search(r"ttl=(\d+)", out)
    assert m, out
    return int(m.group(1))


def tc_filters(ns: str, dev: str) -> list[str]:
    out = run(["tc", "-n", ns, "filter", "show", "dev", dev, "ingress"], check=False).stdout
    return [line for line in out.splitlines() if "handle" in line]


def test_pods_on_two_nodes_talk_with_forwarding_off_only_through_the_programs(
    topo: Topology,
) -> None:
    a1, _ = topo.a.pods
    b1 = topo.b.pods[0]
    for node in (topo.a, topo.b):
        fwd = run([*nsenter(node.ns), "sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
        assert fwd == "0"
    # Without the programs the nodes do not forward: the test can fail.
    assert topo.ping(a1, b1.ip, count=2) == 0

    attach_all(topo)
    assert topo.ping(a1, b1.ip) == 3
    assert topo.ping(b1, a1.ip) == 3
    # Two routed hops (node a, node b), each decremented the TTL and fixed the checksum.
    assert ping_ttl(topo, a1.ns, b1.ip) == 62

    for node in (topo.a, topo.b):
        shown = topo.agent(node, "show")
        counters = shown["counters"]
        assert isinstance(counters, dict)
        assert counters["forwarded_remote"] >= 6, counters  # pod -> underlay
        assert counters["forwarded_local"] >= 6, counters  # underlay -> pod
        assert counters["arp_replies"] >= 1, counters  # the pod's gateway, answered in BPF
        assert counters["dropped_redirect"] == 0
        assert counters["dropped_csum"] == 0

    # Detach everywhere: filters gone, traffic stops again.
    for node in (topo.a, topo.b):
        ifs = ["eth0", *(p.host_if for p in node.pods)]
        shown = topo.agent(node, "detach", *ifs)
        assert shown["attached"] == {}
        for dev in ifs:
            assert tc_filters(node.ns, dev) == []
    assert topo.ping(a1, b1.ip, count=2) == 0


def test_two_pods_on_one_node_talk_through_local_pods(topo: Topology) -> None:
    a1, a2 = topo.a.pods
    assert topo.ping(a1, a2.ip, count=2) == 0
    topo.agent(topo.a, *topo.setup_args(topo.a))
    before = topo.agent(topo.a, "show")["counters"]
    assert topo.ping(a1, a2.ip) == 3
    assert topo.ping(a2, a1.ip) == 3
    assert ping_ttl(topo, a1.ns, a2.ip) == 63
    after = topo.agent(topo.a, "show")["counters"]
    assert isinstance(before, dict) and isinstance(after, dict)
    # 6 echo requests + 6 replies (+1 for the TTL probe and its reply), none remote.
    assert after["forwarded_local"] - before["forwarded_local"] >= 12
    assert after["forwarded_remote"] == before["forwarded_remote"]


ECHO_SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 8080))
srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
while data := conn.recv(65536):
    conn.sendall(data)
conn.close()
"""

ECHO_CLIENT = """
import hashlib, socket, sys, threading
size = int(sys.argv[2])
payload = bytes(range(256)) * (size // 256)
conn = socket.create_connection((sys.argv[1], 8080), timeout=20)
def send():
    conn.sendall(payload)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=send).start()
got = hashlib.sha256()
n = 0
while data := conn.recv(65536):
    got.update(data)
    n += len(data)
print(n, got.hexdigest() == hashlib.sha256(payload).hexdigest())
"""


def test_tcp_between_pods_on_two_nodes(topo: Topology) -> None:
    """4 MiB each way over one TCP connection (an echo server in pod b1)."""
    a1 = topo.a.pods[0]
    b1 = topo.b.pods[0]
    attach_all(topo)
    with ready_process(b1.ns, ECHO_SERVER, b1.ip):
        size = 4 * 1024 * 1024
        out = run([*nsenter(a1.ns), PYTHON, "-c", ECHO_CLIENT, b1.ip, str(size)]).stdout
        assert out.split() == [str(size), "True"], out
    for node in (topo.a, topo.b):
        counters = topo.agent(node, "show")["counters"]
        assert isinstance(counters, dict)
        assert counters["forwarded_remote"] > 100, counters  # many segments each way
        assert counters["forwarded_local"] > 100, counters
        assert counters["dropped_redirect"] == 0


def test_restart_keeps_entries_and_programs_keep_forwarding(topo: Topology) -> None:
    a1 = topo.a.pods[0]
    b1 = topo.b.pods[0]
    attach_all(topo)
    first = {n.ns: topo.agent(n, "show") for n in (topo.a, topo.b)}
    pinger = subprocess.Popen(
        [*nsenter(a1.ns), "ping", "-n", "-q", "-c", "150", "-i", "0.02", "-W", "1", b1.ip],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for node in (topo.a, topo.b):
            # A new process: compiles again, reuses the pinned maps, finds the entries.
            shown = topo.agent(node, "show")
            assert shown["local_pods"] == first[node.ns]["local_pods"]
            assert shown["remote_routes"] == first[node.ns]["remote_routes"]
            assert shown["attached"] == first[node.ns]["attached"]
            # ...then re-attaches its own programs over the running ones.
            again = topo.agent(node, *topo.setup_args(node))
            assert again["local_pods"] == first[node.ns]["local_pods"]
        out, _ = pinger.communicate(timeout=60)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    assert "150 received" in out, out
    # Replaced in place, never duplicated.
    for node in (topo.a, topo.b):
        for dev in ["eth0", *(p.host_if for p in node.pods)]:
            assert len(tc_filters(node.ns, dev)) == 1, tc_filters(node.ns, dev)


def test_map_operations_and_route_sync(topo: Topology) -> None:
    """The API in-process, for namespace `netns` (the agent covers the nsenter way)."""
    from datapath.bpf_maps import RemoteRoute
    from datapath.loader import BpfDatapath

    a1 = topo.a.pods[0]
    b1 = topo.b.pods[0]
    topo.agent(topo.b, *topo.setup_args(topo.b))
    dp = BpfDatapath(topo.a.pin_dir, netns=topo.a.ns)
    try:
        dp.attach("eth0", "from_netdev")
        dp.attach("eth0", "from_netdev")  # idempotent
        dp.attach("p1", "from_pod")
        assert dp.attached() == {"eth0": "from_netdev", "p1": "from_pod"}
        pod = dp.set_local_pod(a1.ip, "p1")
        assert dp.local_pods() == {pod.ip: pod}
        assert pod.host_mac != b"\0" * 6
        eth0 = dp.ifindex("eth0")

        # Nothing towards node b yet: the pod's traffic goes to the (non-forwarding) stack.
        assert topo.ping(a1, b1.ip, count=2) == 0
        changes = dp.sync_remote_routes({topo.b.pod_cidr: ("eth0", topo.b.ip)})
        assert (changes.upserted, changes.deleted) == (1, 0)
        assert topo.ping(a1, b1.ip) == 3
        # Same desired state: nothing written.
        same = dp.sync_remote_routes(
            {topo.b.pod_cidr: RemoteRoute.of(topo.b.pod_cidr, eth0, topo.b.ip)}
        )
        assert (same.upserted, same.deleted) == (0, 0)
        # Longest prefix wins. Without a next hop the kernel's FIB picks the neighbour:
        # there is no kernel route yet, so the packet is dropped, then there is.
        dp.set_remote_route(f"{b1.ip}/32", "eth0", None)
        assert topo.ping(a1, b1.ip, count=2) == 0
        run(["ip", "-n", topo.a.ns, "route", "add", topo.b.pod_cidr, "via", topo.b.ip])
        assert topo.ping(a1, b1.ip) == 3
        assert dp.del_remote_route(f"{b1.ip}/32")
        assert not dp.del_remote_route(f"{b1.ip}/32")
        gone = dp.sync_remote_routes({})
        assert (gone.upserted, gone.deleted) == (0, 1)
        assert dp.remote_routes() == {}
        assert topo.ping(a1, b1.ip, count=2) == 0

        dp.set_remote_route(topo.b.pod_cidr, eth0, topo.b.ip)
        assert topo.ping(a1, b1.ip) == 3
        # Without its local_pods entry the reply from node b has nowhere to go.
        assert dp.del_local_pod(a1.ip)
        assert not dp.del_local_pod(a1.ip)
        assert topo.ping(a1, b1.ip, count=2) == 0
        counters = dp.counters()
        assert counters["forwarded_remote"] > 0
        assert counters["to_stack"] > 0

        assert dp.detach("p1")
        assert not dp.detach("p1")
        assert dp.detach("eth0")
        assert dp.attached() == {}
    finally:
        dp.close()


def test_refuses_a_pinned_map_of_another_shape(topo: Topology) -> None:
    from bcc import BPF

    from datapath.loader import BpfDatapath

    pin_dir = f"{topo.pin_root}/stale"
    os.makedirs(pin_dir)
    stale = BPF(
        text=f'BPF_TABLE_PINNED("hash", u32, u64, local_pods, 16, "{pin_dir}/local_pods");'.encode()
    )
    del stale
    with pytest.raises(DatapathError, match="local_pods"):
        BpfDatapath(pin_dir, netns=topo.a.ns)
