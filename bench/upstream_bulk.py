"""Upstream bulk, part 2 of bench/convergence.py: M /32s from a BIRD source into a kroute
node's kernel and into a BIRD sink's, timed by polling the kernels' route counts (see
convergence.py's docstring for the set-up)."""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from bench.harness import SETUP_TIMEOUT, say, stop
from lab import net, procs
from lab.plan import ASN, BRIDGE, NODE_IF
from lab.routers import NeighborConf, make_router
from lab.routers.bird import BirdRouter, render_bird

BULK_SUBNET = "10.98.0"  # the bulk LAN: source .1, kroute .2, sink .3
BULK_RANGE = "20.0.0.0/8"
BULK_FIRST = int(ipaddress.IPv4Address("20.0.0.0"))
SOURCE_ASN, SINK_ASN = 65000, 64513
POLL = 0.05


def attach(ns: str, lan_ns: str, address: str, prefix_len: int) -> None:
    """A new namespace `ns` with eth0 on the bridge in `lan_ns` at `address`."""
    lan_if = f"x{secrets.token_hex(3)}"
    net.add_netns(ns)
    net.add_veth(ns, NODE_IF, lan_ns, lan_if)
    net.run(["ip", "-n", lan_ns, "link", "set", lan_if, "master", BRIDGE, "up"])
    net.run(["ip", "-n", ns, "addr", "add", f"{address}/{prefix_len}", "dev", NODE_IF])
    net.run(["ip", "-n", ns, "link", "set", NODE_IF, "up"])


def kroute_exe() -> str:
    exe = Path(sys.executable).parent / "kroute"
    if not exe.exists():
        raise SystemExit(f"{exe} not found; run scripts/setup")
    return str(exe)


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
