"""Traffic through a masquerading node, the same for the BPF and the nftables
implementation: the `outside` topology of tests/bpf_fixtures.py, node a masquerading its
pods towards the external host, and small programs run in the namespaces that report what
the other end saw.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from datapath.masq import Masquerader, MasqueradeSpec
from datapath.nft_masq import NftMasquerade
from tests.bpf_fixtures import PYTHON, Pod, Topology, nsenter, ready_process, run, topology

IMPLEMENTATIONS = ("bpf", "nftables")
NATIVE_CIDR = "10.78.0.0/16"
UDP_PORT, TCP_PORT, CLOSED_PORT = 7000, 7001, 7999

PEER_SERVER = """
import socket, sys, threading
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", int(sys.argv[1])))
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", int(sys.argv[2])))
tcp.listen(16)
def serve_udp():
    while True:
        data, peer = udp.recvfrom(2048)
        try:
            udp.sendto(f"{peer[0]}:{peer[1]}".encode(), peer)
        except OSError:  # an unmasqueraded pod source: no route back
            pass
def serve_tcp():
    while True:
        conn, peer = tcp.accept()
        threading.Thread(target=echo, args=(conn, peer), daemon=True).start()
def echo(conn, peer):
    conn.sendall(f"{peer[0]}:{peer[1]}\\n".encode())
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.close()
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
serve_tcp()
"""

# python -c PROBE MODE DST PORT: prints one JSON line.
PROBE = """
import json, select, socket, struct, sys
mode, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
if mode == "tcp":
    c = socket.create_connection((dst, port), timeout=5)
    out["peer"] = c.makefile().readline().strip()
elif mode == "udp":  # optional 4th argument: the source port
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[4]) if len(sys.argv) > 4 else 0))
    s.settimeout(3)
    s.connect((dst, port))
    s.send(b"hi")
    try:
        out["peer"] = s.recv(100).decode()
    except (TimeoutError, ConnectionRefusedError) as exc:
        out["error"] = type(exc).__name__
elif mode == "ttl":  # UDP with TTL 2: the hop after the node answers time exceeded
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, socket.IP_TTL, 2)
    s.setsockopt(socket.SOL_IP, 11, 1)  # IP_RECVERR
    s.connect((dst, port))
    s.send(b"probe")
    select.select([s], [], [], 3)  # a queued error makes the socket readable (POLLERR)
    try:
        _, anc, _, _ = s.recvmsg(512, 512, socket.MSG_ERRQUEUE)
        for level, kind, data in anc:
            errno_, origin, typ, code = struct.unpack("=IBBB", data[:7])
            offender = socket.inet_ntoa(data[16 + 4 : 16 + 8])
            out.update(origin=origin, type=typ, code=code, offender=offender)
    except BlockingIOError:
        out["error"] = "no ICMP error"
elif mode == "pmtu":  # 1400 bytes with DF: a smaller link answers fragmentation needed
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    s.setsockopt(socket.SOL_IP, 11, 1)  # IP_RECVERR
    s.connect((dst, port))
    s.send(b"x" * 1400)
    select.select([s], [], [], 3)
    out["mtu"] = s.getsockopt(socket.SOL_IP, 14)  # IP_MTU: the path MTU the pod learned
print(json.dumps(out))
"""


# python -c TRANSFER DST PORT CHUNKS: streams CHUNKS x 64 KiB slowly (20 ms apart) through
# the echo server, after printing "ready" and the peer the server saw; then byte count and
# whether the echo matched.
TRANSFER = """
import hashlib, socket, sys, threading, time
chunks = int(sys.argv[3])
chunk = bytes(range(256)) * 256
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
f = conn.makefile("rb")
print("ready", f.readline().decode().strip(), flush=True)
def send():
    for _ in range(chunks):
        conn.sendall(chunk)
        time.sleep(0.02)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=send).start()
got, n = hashlib.sha256(), 0
while data := f.read1(65536):
    got.update(data)
    n += len(data)
print(n, got.hexdigest() == hashlib.sha256(chunk * chunks).hexdigest(), flush=True)
"""


def probe(pod: Pod, mode: str, dst: str, port: int, *extra: str) -> dict[str, Any]:
    out = run([*nsenter(pod.ns), PYTHON, "-c", PROBE, mode, dst, str(port), *extra]).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def peer_server(ns: str) -> contextlib.AbstractContextManager[None]:
    """PEER_SERVER in `ns`: UDP_PORT and TCP_PORT answer with the address they saw."""
    return ready_process(ns, PEER_SERVER, str(UDP_PORT), str(TCP_PORT))


def spec(t: Topology, **kw: Any) -> MasqueradeSpec:
    """Node a masquerades its pods (and only them) out of eth0."""
    return MasqueradeSpec.of(
        node_ip=t.a.ip,
        egress_interfaces=["eth0"],
        pod_cidrs=[t.a.pod_cidr],
        native_routing_cidr=NATIVE_CIDR,
        **kw,
    )


def masq_args(t: Topology, **kw: Any) -> list[str]:
    """Agent arguments for node a: attach everything, fill the maps, set masquerade."""
    return ["--masq", json.dumps(spec(t, **kw).as_dict()), *t.setup_args(t.a)]


def masquerader(t: Topology, kind: str) -> Masquerader:
    """The `kind` implementation for node a, in this process (close a BpfDatapath)."""
    if kind == "bpf":
        from datapath.loader import BpfDatapath

        return BpfDatapath(t.a.pin_dir, netns=t.a.ns)
    return NftMasquerade(t.a.ns)


def start_masquerade(t: Topology, kind: str) -> None:
    """Pod-to-pod forwarding on both nodes, masquerade on node a, with `kind`'s datapath."""
    if kind == "bpf":
        t.agent(t.a, *masq_args(t))
        t.agent(t.b, *t.setup_args(t.b))
        return
    for node, other in ((t.a, t.b), (t.b, t.a)):  # kernel forwarding instead of programs
        run(["ip", "-n", node.ns, "route", "add", other.pod_cidr, "via", other.ip])
        run([*nsenter(node.ns), "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    NftMasquerade(t.a.ns).set_masquerade(spec(t))


@contextlib.contextmanager
def masquerading(kind: str) -> Iterator[Topology]:
    """The outside topology masquerading with `kind`, peer servers on the external host
    and in pod b1."""
    with topology(outside=True) as t:
        assert t.external
        start_masquerade(t, kind)
        with peer_server(t.external), peer_server(t.b.pods[0].ns):
            yield t
