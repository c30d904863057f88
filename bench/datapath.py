"""Pod traffic: kroute's BPF forwarding and masquerade against the kernel's, same run.

Two labs are built one after the other (`kroute lab up --nodes 2 --upstream bird`, pods
made by kroute-cni, datapath.masquerade on node 1): one with the BPF datapath (nodes at
ip_forward=0, tc programs forward and SNAT), one with `--datapath legacy` (the kernel
forwards, nftables masquerades). In each, from the pod on node 1 to the pod on node 2
(forwarding) and to the external host behind the upstream router (`masq_*`, through the
masquerade):

- TCP throughput: `iperf3 -c POD2 -t SECONDS -J` (one stream), bits/s received;
- request/response: a Python client doing 1-byte request / 1-byte answer round trips on
  one TCP connection for SECONDS (TCP_NODELAY), transactions/s. Python's own cost is
  in both figures, so compare them as a ratio only.

Each figure is the best of --rounds runs; ratio = BPF / legacy (above 1: BPF faster).
Timings are printed, never asserted. Root only (network namespaces).

    .venv/bin/python bench/datapath.py [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Python puts this script's directory first on sys.path, where bench/ipam.py would shadow
# the ipam package: drop it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import yaml

from bgpd.api.client import fetch_status
from lab import lab as labmod
from lab.bench_results import record
from lab.plan import NodePlan

RR_SERVER = """
import socket, sys
with socket.create_server((sys.argv[1], 9090)) as srv:
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(1):
            conn.sendall(data)
        conn.close()
"""

RR_CLIENT = """
import socket, sys, time
conn = socket.create_connection((sys.argv[1], 9090))
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    conn.sendall(b"x")
    conn.recv(1)
    n += 1
print(n / float(sys.argv[2]))
"""


def nsenter(ns: str) -> list[str]:
    return ["nsenter", f"--net=/var/run/netns/{ns}", "--"]


def listening(ns: str, port: int) -> bool:
    argv = [*nsenter(ns), "ss", "-Hltn", f"sport = :{port}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    return bool(out.strip())


@contextmanager
def server(ns: str, argv: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        [*nsenter(ns), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not listening(ns, port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"server {argv[0]} in {ns} did not listen on {port}")
            time.sleep(0.05)
        yield
    finally:
        proc.kill()
        proc.wait()


def throughput(src_ns: str, dst_ns: str, dst_ip: str, seconds: float) -> float:
    with server(dst_ns, ["iperf3", "-s", "-B", dst_ip, "-1"], 5201):
        out = subprocess.run(
            [*nsenter(src_ns), "iperf3", "-c", dst_ip, "-t", str(seconds), "-J"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])


def request_response(src_ns: str, dst_ns: str, dst_ip: str, seconds: float) -> float:
    with server(dst_ns, [sys.executable, "-c", RR_SERVER, dst_ip], 9090):
        out = subprocess.run(
            [*nsenter(src_ns), sys.executable, "-c", RR_CLIENT, dst_ip, str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return float(out)


def masquerade_on(lab: labmod.Lab, node: NodePlan) -> None:
    """datapath.masquerade on `node` (BPF SNAT with the BPF datapath, nftables without)."""
    config = Path(node.config_path)
    data = yaml.safe_load(config.read_text())
    data["datapath"]["masquerade"] = {"enabled": True}
    config.write_text(yaml.safe_dump(data))
    labmod.restart(lab, node.name, kill=False, timeout=90, say=lambda _: None)
    deadline = time.monotonic() + 60
    while node.pod_cidr not in str(fetch_status(node.socket_path)["datapath"]["masquerade"]):
        if time.monotonic() > deadline:
            raise SystemExit(f"masquerade did not become active on {node.name}")
        time.sleep(0.5)


def measure(datapath: str, seconds: float, rounds: int) -> dict[str, float]:
    """Pod to pod across nodes (forwarding), and pod to the external host through the
    upstream router (masquerade: BPF SNAT, or nftables with the legacy datapath)."""
    name = f"bdp{secrets.token_hex(2)}"
    print(f"lab {name}: 2 nodes, {datapath} datapath, BIRD upstream", flush=True)
    lab = labmod.up(name, 2, timeout=90, say=lambda _: None, datapath=datapath, upstream="bird")
    try:
        a, b = lab.plan.nodes
        up = lab.plan.upstream
        assert up is not None
        masquerade_on(lab, a)
        figures: dict[str, Callable[[], float]] = {
            "tcp_throughput_gbit_s": lambda: (
                throughput(a.pod_ns, b.pod_ns, b.pod_ip, seconds) / 1e9
            ),
            "tcp_rr_per_s": lambda: request_response(a.pod_ns, b.pod_ns, b.pod_ip, seconds),
            "masq_tcp_throughput_gbit_s": lambda: (
                throughput(a.pod_ns, up.ext_ns, up.ext_ip, seconds) / 1e9
            ),
            "masq_tcp_rr_per_s": lambda: request_response(a.pod_ns, up.ext_ns, up.ext_ip, seconds),
        }
        return {key: max(run() for _ in range(rounds)) for key, run in figures.items()}
    finally:
        labmod.down(name, say=lambda _: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bpf = measure("bpf", args.seconds, args.rounds)
    legacy = measure("legacy", args.seconds, args.rounds)
    print(f"\nbest of {args.rounds} x {args.seconds:g}s; masq_*: pod to external host, BPF")
    print("SNAT against nftables masquerade; the others: pod to pod, BPF against kernel")
    print(f"{'figure':<24}{'BPF':>12}{'legacy':>12}{'BPF/legacy':>12}")
    for key in bpf:
        ratio = bpf[key] / legacy[key] if legacy[key] else float("nan")
        print(f"{key:<24}{bpf[key]:>12.2f}{legacy[key]:>12.2f}{ratio:>12.2f}")
        record(
            "datapath",
            key,
            "Gbit/s" if "gbit" in key else "1/s",
            bpf[key],
            baseline_name="nftables masquerade" if key.startswith("masq") else "kernel forwarding",
            baseline=legacy[key],
            higher_is_better=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
