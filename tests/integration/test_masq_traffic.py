"""Masquerade on real namespaces, the same traffic tests for both implementations (BPF
programs with forwarding off, nftables with kernel forwarding): pod a1 on node a talks
to an external host behind a router, which must see node a's IP; pod-to-pod traffic inside
the native routing CIDR keeps its source (tests/masq_fixtures.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.bpf_fixtures import EXTERNAL_IP, PYTHON, ROUTER_IP, Topology, nsenter, run
from tests.masq_fixtures import (
    CLOSED_PORT,
    IMPLEMENTATIONS,
    TCP_PORT,
    UDP_PORT,
    masquerader,
    masquerading,
    probe,
    spec,
)

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


@pytest.fixture(params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def masq(kind: str) -> Iterator[Topology]:
    with masquerading(kind) as t:
        yield t


def test_clear_stops_and_set_restarts_masquerading(masq: Topology, kind: str) -> None:
    a1 = masq.a.pods[0]
    m = masquerader(masq, kind)
    try:
        assert m.masquerade_status()["line"].startswith(("BPF [eth0]", "nftables [eth0]"))
        assert m.clear_masquerade()
        assert not m.clear_masquerade()
        assert m.masquerade_status()["line"] == "Disabled"
        # Unmasqueraded, the pod's packets get no answer (nobody routes pod IPs back).
        assert probe(a1, "udp", EXTERNAL_IP, UDP_PORT) == {"error": "TimeoutError"}
        m.set_masquerade(spec(masq))
        m.set_masquerade(spec(masq))  # idempotent
        assert probe(a1, "udp", EXTERNAL_IP, UDP_PORT)["peer"].startswith(f"{masq.a.ip}:")
        label = "BPF" if kind == "bpf" else "nftables"
        assert m.masquerade_status()["line"] == f"{label} [eth0] {masq.a.pod_cidr}"
    finally:
        close = getattr(m, "close", None)
        if close:
            close()


def nat_port(peer: str) -> int:
    return int(peer.rsplit(":", 1)[1])


def test_external_host_sees_the_node_ip_and_a_port_from_the_range(masq: Topology) -> None:
    a1 = masq.a.pods[0]
    for mode, port in (("tcp", TCP_PORT), ("udp", UDP_PORT)):
        peer = probe(a1, mode, EXTERNAL_IP, port)["peer"]
        assert peer.startswith(f"{masq.a.ip}:"), (mode, peer)
        assert 61000 <= nat_port(peer) <= 65535, (mode, peer)


def test_icmp_echo_through_the_nat(masq: Topology) -> None:
    assert masq.ping(masq.a.pods[0], EXTERNAL_IP) == 3
    assert masq.ping(masq.a.pods[1], EXTERNAL_IP) == 3


def test_port_unreachable_reaches_the_pod_socket(masq: Topology) -> None:
    got = probe(masq.a.pods[0], "udp", EXTERNAL_IP, CLOSED_PORT)
    assert got == {"error": "ConnectionRefusedError"}


def test_time_exceeded_from_the_router_reaches_the_pod(masq: Topology) -> None:
    """A traceroute-like probe: TTL 2 expires at the router behind the node."""
    got = probe(masq.a.pods[0], "ttl", EXTERNAL_IP, UDP_PORT)
    # SO_EE_ORIGIN_ICMP, ICMP_TIME_EXCEEDED, sent by the router's bridge address.
    assert got == {"origin": 2, "type": 11, "code": 0, "offender": ROUTER_IP}


def test_fragmentation_needed_reaches_the_pod(masq: Topology) -> None:
    """Path-MTU discovery through the NAT: the router's uplink carries only 1200 bytes."""
    assert masq.router and masq.external
    run(["ip", "-n", masq.router, "link", "set", "up0", "mtu", "1200"])
    run(["ip", "-n", masq.external, "link", "set", "eth0", "mtu", "1200"])
    assert probe(masq.a.pods[0], "pmtu", EXTERNAL_IP, UDP_PORT) == {"mtu": 1200}


def test_pod_to_pod_inside_the_native_cidr_keeps_its_source(masq: Topology) -> None:
    a1, b1 = masq.a.pods[0], masq.b.pods[0]
    for mode, port in (("tcp", TCP_PORT), ("udp", UDP_PORT)):
        peer = probe(a1, mode, b1.ip, port)["peer"]
        assert peer.split(":")[0] == a1.ip, (mode, peer)


# The external host answers a pod's datagram late, after the pod closed its socket: the
# pod's port unreachable must come back translated (node IP, NAT port) for the host's
# connected socket to see it.
LATE_PORT = 7100
LATE_REPLY = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(5)
print("ready", flush=True)
_, peer = s.recvfrom(100)
time.sleep(0.5)  # late: the pod's socket is closed by then
s.connect(peer)
s.send(b"late")
try:
    s.recv(100)
    print(peer[0], "answered")
except ConnectionRefusedError:
    print(peer[0], "refused")
except TimeoutError:
    print(peer[0], "timeout")
"""
SEND_AND_CLOSE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
s.close()
"""


def test_a_pods_port_unreachable_reaches_the_outside_translated(masq: Topology) -> None:
    assert masq.external is not None
    server = subprocess.Popen(
        [*nsenter(masq.external), PYTHON, "-c", LATE_REPLY, str(LATE_PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        pod = masq.a.pods[0]
        run([*nsenter(pod.ns), PYTHON, "-c", SEND_AND_CLOSE, EXTERNAL_IP, str(LATE_PORT)])
        out, _ = server.communicate(timeout=15)
    finally:
        server.kill()
        server.wait()
    assert out.split() == [masq.a.ip, "refused"]
