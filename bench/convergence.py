"""Convergence: how fast routes spread, kroute against BIRD, in the same run.

1. Reflector fan-out. A lab of 1 + N kroute nodes (`lab.lab.up(..., reflectors=1)`): node 1
   reflects for the N clients. An extra iBGP speaker, an exabgp "injector" fed commands
   through a FIFO, sits on the lab LAN as a route-reflector client of node 1. Each round it
   announces one new /32 inside `cluster.serviceCIDRs` (added to every node's config, so
   the clients' default iBGP import policy accepts it) with its own LAN address as next
   hop, then withdraws it. `ip -n NS monitor route` in every client, started before the
   first round, timestamps the route's arrival in (and removal from) each client's kernel.
   Baseline: the same N kroute clients, reconfigured (mesh none, one `bgp.peers` entry)
   as clients of a BIRD 2 reflector on the same LAN, with kroute node 1 stopped; the same
   injector announces to BIRD instead. Only the reflector differs, so the ratio is kroute
   reflector / BIRD reflector; the clients' own receive-and-install time is in both.

2. Upstream bulk. A BIRD "source" (AS 65000) originating M /32 `unreachable` statics
   (exported to BGP with next hop self), on one LAN with a kroute node (AS 64512, eBGP,
   `import.allow` the range) and a BIRD "sink" (AS 64513, kernel protocol). The static
   protocol starts disabled; t0 is `birdc enable`. Each kernel's route count (inside the
   range, proto bgp for kroute, proto bird for the sink) is polled every 50 ms until it
   holds all M routes; then `birdc disable` withdraws them and the same is timed down to
   zero. Baseline: the BIRD sink. Ratio kroute / BIRD.

Timings are printed, never asserted. Needs root. Every namespace made here carries one
random prefix (`kcvXXXXXX`) and is removed at the end, also on failure, Ctrl-C or
SIGTERM; processes are stopped by the PIDs started here.

    .venv/bin/python bench/convergence.py [--clients 20] [--prefixes 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

# bench/ holds scripts named like kroute's packages (ipam.py, datapath.py, lbipam.py), and
# Python puts a script's directory first on sys.path: drop it so the packages are found.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from bgpd.client import fetch_status
from bgpd.errors import KrouteError
from lab import health, net, procs
from lab import lab as labmod
from lab.bench_results import record
from lab.plan import ASN, BRIDGE, MAX_NODES, NODE_IF, NodePlan
from lab.procs import Proc
from lab.routers import NeighborConf, make_router
from lab.routers.bird import BirdRouter, render_bird

SERVICE_RANGE = "10.97.0.0/16"  # added to cluster.serviceCIDRs; the injector's /32s live here
INJECTOR_HOST = 240  # last octets on the lab LAN of the injector and the BIRD reflector
BIRD_RR_HOST = 250
BULK_SUBNET = "10.98.0"  # the bulk LAN: source .1, kroute .2, sink .3
BULK_RANGE = "20.0.0.0/8"
BULK_FIRST = int(ipaddress.IPv4Address("20.0.0.0"))
SOURCE_ASN, SINK_ASN = 65000, 64513
POLL = 0.05
SETUP_TIMEOUT = 180.0

_started = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


def quiet(_: str) -> None:
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`, like Ctrl-C


# -- namespaces and processes -----------------------------------------------------------


def attach(ns: str, lan_ns: str, address: str, prefix_len: int) -> None:
    """A new namespace `ns` with eth0 on the bridge in `lan_ns` at `address`."""
    lan_if = f"x{secrets.token_hex(3)}"
    net.add_netns(ns)
    net.add_veth(ns, NODE_IF, lan_ns, lan_if)
    net.run(["ip", "-n", lan_ns, "link", "set", lan_if, "master", BRIDGE, "up"])
    net.run(["ip", "-n", ns, "addr", "add", f"{address}/{prefix_len}", "dev", NODE_IF])
    net.run(["ip", "-n", ns, "link", "set", NODE_IF, "up"])


def stop(proc: Proc) -> None:
    procs.stop_tree(proc, signal.SIGTERM, 10.0)


def kroute_exe() -> str:
    exe = Path(sys.executable).parent / "kroute"
    if not exe.exists():
        raise SystemExit(f"{exe} not found; run scripts/setup")
    return str(exe)


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


# -- 1. reflector fan-out -----------------------------------------------------------------


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
        prefix_len = int(plan.subnet.split("/")[1])
        inj_ns, bird_ns = f"{name}-inj", f"{name}-rr"
        for ns, address in ((inj_ns, inj_ip), (bird_ns, bird_ip)):
            own_ns.append(ns)
            attach(ns, plan.lan_ns, address, prefix_len)
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


# -- 2. upstream bulk -----------------------------------------------------------------------


class SourceBird(BirdRouter):
    """The lab's BIRD upstream with its originating static protocol disabled at start, so
    `birdc enable static_originate` is the moment the prefixes appear."""

    def _start(self) -> None:
        marker = "protocol static static_originate {\n"
        text = render_bird(self.spec)
        assert marker in text, "lab.routers.bird renders the static protocol differently now"
        self.conf_path.write_text(text.replace(marker, marker + "  disabled;\n"))
        self.socket_path.unlink(missing_ok=True)
        argv = ["bird", "-f", "-c", str(self.conf_path), "-s", str(self.socket_path)]
        self.launch([*argv, "-P", str(self.spec.workdir / "bird.pid")], self.log_path)
        self.wait_ready(self._answers, f"birdc answering on {self.socket_path}")


def count_routes(ns: str, proto: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "-4", "route", "show", "proto", proto, "root", BULK_RANGE],
        check=True,
        capture_output=True,
    ).stdout
    return out.count(b"\n")


def time_until(targets: dict[str, tuple[str, int]], timeout: float) -> dict[str, float]:
    """Poll every POLL s; seconds until each namespace's count equals its target."""
    t0 = time.monotonic()
    done: dict[str, float] = {}
    while len(done) < len(targets):
        for ns, (proto, want) in targets.items():
            if ns not in done and count_routes(ns, proto) == want:
                done[ns] = time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            late = [ns for ns in targets if ns not in done]
            raise TimeoutError(f"route counts not reached within {timeout:g}s in {late}")
        time.sleep(POLL)
    return done


def bulk(
    count: int, rounds: int, prefix: str, workdir: Path
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Per round (announce s, withdraw s) for the kroute node and for the BIRD sink."""
    lan, src_ns, kr_ns, sink_ns = (f"{prefix}-{s}" for s in ("blan", "bsrc", "bkr", "bsnk"))
    src_ip, kr_ip, sink_ip = (f"{BULK_SUBNET}.{i}" for i in (1, 2, 3))
    made: list[str] = []
    started: list[Callable[[], None]] = []
    try:
        made.append(lan)
        net.add_netns(lan)
        net.run(["ip", "-n", lan, "link", "add", BRIDGE, "type", "bridge"])
        net.run(["ip", "-n", lan, "link", "set", BRIDGE, "up"])
        for ns, address in ((src_ns, src_ip), (kr_ns, kr_ip), (sink_ns, sink_ip)):
            made.append(ns)
            attach(ns, lan, address, 24)

        kr_dir = workdir / "bulk-kroute"
        kr_dir.mkdir()
        config = {
            "node": {"name": "bulk", "ip": kr_ip},
            "bgp": {
                "asn": ASN,
                "holdTime": 9,
                "gracefulRestart": {"enabled": True, "restartTime": 9},
                "peers": [
                    {
                        "address": src_ip,
                        "asn": SOURCE_ASN,
                        "import": {"allow": [BULK_RANGE], "maxPrefix": 0},
                    }
                ],
            },
            "cluster": {"nodes": [{"name": "bulk", "ip": kr_ip, "podCIDRs": ["10.250.1.0/24"]}]},
            "status": {"listen": "", "socket": str(kr_dir / "kroute.sock")},
            "runDir": str(kr_dir),
        }
        (kr_dir / "kroute.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        argv = [*net.nsenter(kr_ns), kroute_exe(), "run", "--config", str(kr_dir / "kroute.yaml")]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        kroute = procs.start(argv, str(kr_dir / "kroute.log"), env, str(kr_dir))
        started.append(lambda: stop(kroute))

        sink = make_router(
            "bird",
            netns=sink_ns,
            workdir=workdir / "bulk-sink",
            router_id=sink_ip,
            asn=SINK_ASN,
            neighbors=[NeighborConf(src_ip, SOURCE_ASN)],
            role="upstream",
        )
        started.append(sink.stop)
        sink.start()
        originate = [f"{ipaddress.IPv4Address(BULK_FIRST + i)}/32" for i in range(count)]
        source = SourceBird(
            src_ns,
            workdir / "bulk-source",
            src_ip,
            SOURCE_ASN,
            [NeighborConf(kr_ip, ASN), NeighborConf(sink_ip, SINK_ASN)],
            "upstream",
            originate,
        )
        started.append(source.stop)
        source.start()
        source.wait_established([kr_ip, sink_ip], SETUP_TIMEOUT)
        time.sleep(2.0)  # let both sides finish their initial exchange (EoR, kernel sync)

        kroute_times: list[tuple[float, float]] = []
        bird_times: list[tuple[float, float]] = []
        timeout = max(120.0, count / 200)
        for r in range(rounds):
            say(f"bulk: round {r + 1}/{rounds}: enable {count} statics on the source")
            source.birdc("enable static_originate")
            up = time_until({kr_ns: ("bgp", count), sink_ns: ("bird", count)}, timeout)
            time.sleep(1.0)
            source.birdc("disable static_originate")
            down = time_until({kr_ns: ("bgp", 0), sink_ns: ("bird", 0)}, timeout)
            kroute_times.append((up[kr_ns], down[kr_ns]))
            bird_times.append((up[sink_ns], down[sink_ns]))
            time.sleep(1.0)
        return kroute_times, bird_times
    finally:
        for stop_one in reversed(started):
            try:
                stop_one()
            except Exception as exc:  # keep cleaning up
                say(f"warning: {exc}")
        for ns in reversed(made):
            net.del_netns(ns)


# -- output ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def row(figure: str, kroute: float, base: float, unit: Callable[[float], str]) -> None:
    ratio = kroute / base if base > 0 else float("inf")
    print(f"{figure:<44}{unit(kroute):>12}{unit(base):>12}{ratio:>8.2f}")
    record(
        "convergence",
        figure,
        "s",
        kroute,
        baseline_name="BIRD 2",
        baseline=base,
        higher_is_better=False,
    )


def header(title: str) -> None:
    print(f"\n{title}")
    print(f"{'figure':<44}{'kroute':>12}{'baseline':>12}{'ratio':>8}")


def report_fan_out(clients: int, kr: FanOut, base: FanOut) -> None:
    print(f"\nReflector fan-out, {clients} kroute clients, {len(kr.announce)} rounds")
    print(
        f"{'round':<7}{'kroute RR median':>18}{'max':>10}{'BIRD RR median':>18}{'max':>10}"
        f"{'kroute RR own kernel':>22}"
    )
    for r, (mine, theirs) in enumerate(zip(kr.announce, base.announce, strict=True)):
        own = ms(kr.reflector_kernel[r]) if r < len(kr.reflector_kernel) else "-"
        print(
            f"{r + 1:<7}{ms(statistics.median(mine)):>18}{ms(max(mine)):>10}"
            f"{ms(statistics.median(theirs)):>18}{ms(max(theirs)):>10}{own:>22}"
        )
    header("Reflector fan-out (announce = new /32 from the injector into every client's kernel)")
    for what, k, b in (
        ("announce", kr.announce, base.announce),
        ("withdraw", kr.withdraw, base.withdraw),
    ):
        k_all, b_all = [x for r in k for x in r], [x for r in b for x in r]
        row(
            f"{what}, median over all clients and rounds",
            statistics.median(k_all),
            statistics.median(b_all),
            ms,
        )
        row(
            f"{what}, median of per-round max",
            statistics.median(max(r) for r in k),
            statistics.median(max(r) for r in b),
            ms,
        )
        row(f"{what}, max over all", max(k_all), max(b_all), ms)
    print(
        "baseline: the same kroute clients peering with a BIRD 2 route reflector on the same\n"
        "LAN instead of kroute node 1 (stopped meanwhile); same injector, same kind of /32.\n"
        "So the ratio isolates the reflector; both columns include exabgp's API latency in the\n"
        "injector and the clients' (kroute's) receive-and-install time."
    )
    if kr.reflector_kernel:
        print(
            "kroute reflector's own kernel install, median: "
            f"{ms(statistics.median(kr.reflector_kernel))} (BIRD RR installs nothing)"
        )


def report_bulk(count: int, kr: list[tuple[float, float]], base: list[tuple[float, float]]) -> None:
    header(f"Upstream bulk: {count:,} /32s from a BIRD upstream (eBGP), median of {len(kr)} rounds")

    def secs(s: float) -> str:
        return f"{s:.2f} s"

    for i, what in enumerate(("announce: all in the kernel", "withdraw: all gone from the kernel")):
        row(what, statistics.median(r[i] for r in kr), statistics.median(r[i] for r in base), secs)
    k_up = statistics.median(r[0] for r in kr)
    print(f"kroute install rate: {count / k_up:,.0f} routes/s end to end (BGP + kernel)")
    print(
        "baseline: a BIRD 2 sink (eBGP from the same source, kernel protocol) in the same run;\n"
        f"t0 = `birdc enable`/`disable` of the source's static protocol; kernel route counts\n"
        f"polled every {POLL * 1000:.0f} ms (so +-{POLL * 1000:.0f} ms resolution)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="reflector clients (N)")
    parser.add_argument("--prefixes", type=int, default=10_000, help="bulk prefixes (M)")
    parser.add_argument("--rounds", type=int, default=5, help="fan-out rounds (R)")
    parser.add_argument("--bulk-rounds", type=int, default=3, help="bulk rounds")
    parser.add_argument("--skip-fan-out", action="store_true")
    parser.add_argument("--skip-bulk", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_NODES - 1:
        parser.error(f"--clients must be 1..{MAX_NODES - 1} (a lab has at most {MAX_NODES} nodes)")
    if not 1 <= args.prefixes <= 1 << 24 or args.rounds < 1 or args.bulk_rounds < 1:
        parser.error("--prefixes must be 1..16777216, --rounds and --bulk-rounds at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    prefix = f"kcv{secrets.token_hex(3)}"
    say(f"namespaces of this run start with {prefix}")
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        fan = None if args.skip_fan_out else fan_out(args.clients, args.rounds, prefix, workdir)
        bulk_times = (
            None if args.skip_bulk else bulk(args.prefixes, args.bulk_rounds, prefix, workdir)
        )
    if fan is not None:
        report_fan_out(args.clients, *fan)
    if bulk_times is not None:
        report_bulk(args.prefixes, *bulk_times)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
