"""Reflector fan-out, part 1 of bench/convergence.py: a new /32 from an injector through a
kroute route reflector, then through a BIRD 2 reflector, into the same kroute clients'
kernels (see convergence.py's docstring for the set-up)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.harness import SETUP_TIMEOUT, quiet, say, stop
from bgpd.api.client import fetch_status
from common.errors import KrouteError
from lab import health, net, procs
from lab import lab as labmod
from lab.plan import ASN, NodePlan
from lab.procs import Proc
from lab.routers import NeighborConf
from lab.routers.bird import BirdRouter

SERVICE_RANGE = "10.97.0.0/16"  # added to cluster.serviceCIDRs; the injector's /32s live here
INJECTOR_HOST = 240  # last octets on the lab LAN of the injector and the BIRD reflector
BIRD_RR_HOST = 250


class Injector:
    """An exabgp speaker in its own namespace whose API process relays a FIFO we write."""

    def __init__(self, ns: str, address: str, neighbors: list[str], workdir: Path) -> None:
        self.ns, self.address, self.workdir = ns, address, workdir
        self.proc: Proc | None = None
        fifo = workdir / "feed.fifo"
        os.mkfifo(fifo)
        # read-write: opening never blocks and the feeder never sees EOF while we run
        self._fd = os.open(fifo, os.O_RDWR)
        feeder = workdir / "feed.py"
        feeder.write_text(
            "import sys\n"
            "with open(sys.argv[1]) as fifo:\n"
            "    for line in fifo:\n"
            "        sys.stdout.write(line)\n"
            "        sys.stdout.flush()\n"
        )
        blocks = [
            f"process feed {{\n    run {sys.executable} -u {feeder} {fifo};\n"
            "    encoder text;\n}\n"
        ]
        for peer in neighbors:
            blocks.append(
                f"neighbor {peer} {{\n    router-id {address};\n    local-address {address};\n"
                f"    local-as {ASN};\n    peer-as {ASN};\n    hold-time 9;\n"
                "    family { ipv4 unicast; }\n    api { processes [ feed ]; }\n}\n"
            )
        self.conf = workdir / "injector.conf"
        self.conf.write_text("".join(blocks))

    def start(self) -> None:
        env = {
            **os.environ,
            "exabgp_daemon_user": "root",
            "exabgp_daemon_drop": "false",
            "exabgp_daemon_daemonize": "false",
            "exabgp_api_cli": "false",
            "exabgp_api_ack": "false",
            "exabgp_api_respawn": "false",
            "exabgp_tcp_bind": self.address,
            "exabgp_log_destination": "stdout",
        }
        argv = [*net.nsenter(self.ns), sys.executable, "-m", "exabgp", "server", str(self.conf)]
        self.proc = procs.start(argv, str(self.workdir / "injector.log"), env, str(self.workdir))

    def send(self, command: str) -> None:
        os.write(self._fd, (command + "\n").encode())

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        os.close(self._fd)


class RouteMonitor:
    """`ip -n NS monitor route` per namespace; a reader thread per monitor stamps the first
    add and the first delete of each destination with time.monotonic()."""

    def __init__(self, namespaces: list[str]) -> None:
        self.added: dict[str, dict[str, float]] = {}
        self.deleted: dict[str, dict[str, float]] = {}
        self._cond = threading.Condition()
        self._procs: list[subprocess.Popen[str]] = []
        self._threads: list[threading.Thread] = []
        try:
            for ns in namespaces:
                proc = subprocess.Popen(
                    ["ip", "-n", ns, "monitor", "route"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    bufsize=1,
                )
                self._procs.append(proc)
                thread = threading.Thread(target=self._read, args=(ns, proc), daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop()
            raise
        time.sleep(0.5)  # let every monitor subscribe before anything happens

    def _read(self, ns: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic()
            words = line.split()
            if not words:
                continue
            table, dst = (
                (self.deleted, words[1])
                if words[0] == "Deleted" and len(words) > 1
                else (
                    self.added,
                    words[0],
                )
            )
            with self._cond:
                table.setdefault(dst, {}).setdefault(ns, now)
                self._cond.notify_all()

    def wait(
        self, table: dict[str, dict[str, float]], dst: str, namespaces: list[str], timeout: float
    ) -> dict[str, float]:
        """The stamps of `dst` in every one of `namespaces`; TimeoutError names the missing."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                seen = table.get(dst, {})
                missing = [ns for ns in namespaces if ns not in seen]
                if not missing:
                    return dict(seen)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{dst} not seen within {timeout:g}s in {missing}")
                self._cond.wait(left)

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


@dataclass
class FanOut:
    """Per round: seconds from the injector's command to the route in each client's kernel
    (announce) and out of it again (withdraw); plus the reflector's own kernel, if any."""

    announce: list[list[float]] = field(default_factory=list)
    withdraw: list[list[float]] = field(default_factory=list)
    reflector_kernel: list[float] = field(default_factory=list)


def edit_config(node: NodePlan, change: Callable[[dict[str, Any]], None]) -> None:
    path = Path(node.config_path)
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def restart_nodes(lab: labmod.Lab, nodes: list[NodePlan]) -> None:
    """SIGTERM every node's kroute, then start them all again (one restart wave)."""
    for node in nodes:
        labmod.stop_node(lab, node, signal.SIGTERM, quiet)
    for node in nodes:
        labmod.start_daemon(lab, node)


def wait_bird_clients(lab: labmod.Lab, clients: list[NodePlan], rr_ip: str) -> None:
    """Every client has its one session (to the BIRD reflector) established and current
    (not stale) kernel routes to every other client's pod CIDR."""
    deadline = time.monotonic() + SETUP_TIMEOUT
    pending = list(clients)
    while pending:
        node = pending[0]
        lab.require_alive(node)
        with contextlib.suppress(KrouteError):
            status = fetch_status(node.socket_path)
            peers = [(p["address"], p["state"]) for p in status.get("peers", [])]
            routes = {r["prefix"]: r for r in status.get("kernelRoutes", [])}
            current = all(
                o.pod_cidr in routes
                and routes[o.pod_cidr].get("type") == "unicast"
                and not routes[o.pod_cidr].get("stale")
                for o in clients
                if o is not node
            )
            if peers == [(rr_ip, "established")] and current:
                pending.pop(0)
                continue
        if time.monotonic() > deadline:
            raise SystemExit(f"{node.name} did not converge on the BIRD reflector in time")
        time.sleep(0.3)


def run_rounds(
    injector: Injector,
    monitor: RouteMonitor,
    *,
    neighbor: str,
    prefixes: list[str],
    clients: list[str],
    reflector_ns: str | None,
    timeout: float,
) -> FanOut:
    result = FanOut()
    for prefix in prefixes:
        dst = prefix.removesuffix("/32")
        t0 = time.monotonic()
        injector.send(f"neighbor {neighbor} announce route {prefix} next-hop {injector.address}")
        seen = monitor.wait(monitor.added, dst, clients, timeout)
        result.announce.append([seen[ns] - t0 for ns in clients])
        if reflector_ns is not None:
            stamps = monitor.wait(monitor.added, dst, [reflector_ns], timeout)
            result.reflector_kernel.append(stamps[reflector_ns] - t0)
        time.sleep(0.3)
        t1 = time.monotonic()
        injector.send(f"neighbor {neighbor} withdraw route {prefix} next-hop {injector.address}")
        gone = monitor.wait(monitor.deleted, dst, clients, timeout)
        result.withdraw.append([gone[ns] - t1 for ns in clients])
        time.sleep(0.5)
    return result


def fan_out(clients: int, rounds: int, prefix: str, workdir: Path) -> tuple[FanOut, FanOut]:
    """(kroute reflector, BIRD reflector) measurements over the same N kroute clients."""
    name = prefix
    say(f"fan-out: lab {name} with 1 kroute reflector + {clients} kroute clients")
    lab = labmod.up(name, clients + 1, timeout=SETUP_TIMEOUT, say=quiet, reflectors=1)
    own_ns: list[str] = []
    injector: Injector | None = None
    bird: BirdRouter | None = None
    monitor: RouteMonitor | None = None
    try:
        plan = lab.plan
        rr, nodes = plan.nodes[0], list(plan.nodes[1:])
        base = plan.subnet.rsplit(".", 1)[0]
        inj_ip, bird_ip = f"{base}.{INJECTOR_HOST}", f"{base}.{BIRD_RR_HOST}"
        inj_ns, bird_ns = f"{name}-inj", f"{name}-rr"
        for ns, address in ((inj_ns, inj_ip), (bird_ns, bird_ip)):
            own_ns.append(ns)
            net.join_lan(plan, ns, f"x{secrets.token_hex(3)}", address)
        (workdir / "inj").mkdir()
        injector = Injector(inj_ns, inj_ip, [rr.ip, bird_ip], workdir / "inj")
        injector.start()

        def add_service_range(config: dict[str, Any]) -> None:
            config["cluster"]["serviceCIDRs"] = [SERVICE_RANGE]
            if config["node"]["name"] == rr.name:
                peer = {"address": inj_ip, "asn": ASN, "routeReflectorClient": True}
                config["bgp"]["peers"] = [peer]

        for node in plan.nodes:
            edit_config(node, add_service_range)
        say("fan-out: restarting every node with serviceCIDRs and the injector as rr client")
        restart_nodes(lab, list(plan.nodes))
        health.wait_converged(plan, SETUP_TIMEOUT, lab.require_alive)
        monitor = RouteMonitor([n.netns for n in plan.nodes])
        client_ns = [n.netns for n in nodes]
        net_base = ipaddress.IPv4Network(SERVICE_RANGE).network_address
        say(f"fan-out: {rounds} rounds through the kroute reflector")
        kroute = run_rounds(
            injector,
            monitor,
            neighbor=rr.ip,
            prefixes=[f"{net_base + 256 + r + 1}/32" for r in range(rounds)],
            clients=client_ns,
            reflector_ns=rr.netns,
            timeout=30.0,
        )

        say("fan-out: moving the same clients to a BIRD reflector, kroute reflector stopped")
        labmod.stop_node(lab, rr, signal.SIGTERM, quiet)

        def to_bird(config: dict[str, Any]) -> None:
            config["bgp"]["mesh"] = "none"
            config["bgp"]["peers"] = [{"address": bird_ip, "asn": ASN}]
            for entry in config["cluster"]["nodes"]:
                entry.pop("routeReflectorClusterId", None)

        for node in nodes:
            edit_config(node, to_bird)
        (workdir / "bird-rr").mkdir()
        peers = [NeighborConf(n.ip, ASN, rr_client=True) for n in nodes]
        bird = BirdRouter(
            bird_ns,
            workdir / "bird-rr",
            bird_ip,
            ASN,
            [*peers, NeighborConf(inj_ip, ASN, rr_client=True)],
            "reflector",
        )
        bird.start()
        restart_nodes(lab, nodes)
        bird.wait_established([n.ip for n in nodes] + [inj_ip], SETUP_TIMEOUT)
        wait_bird_clients(lab, nodes, bird_ip)
        say(f"fan-out: {rounds} rounds through the BIRD reflector")
        baseline = run_rounds(
            injector,
            monitor,
            neighbor=bird_ip,
            prefixes=[f"{net_base + 512 + r + 1}/32" for r in range(rounds)],
            clients=client_ns,
            reflector_ns=None,
            timeout=30.0,
        )
        return kroute, baseline
    finally:
        if monitor is not None:
            monitor.stop()
        if injector is not None:
            injector.close()
        if bird is not None:
            bird.stop()
        for line in labmod.down(name, quiet):
            say(line)
        for ns in own_ns:
            net.del_netns(ns)
