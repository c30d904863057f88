"""A real kroute daemon as systemd runs it: only the unit's capabilities (setpriv
with systemd/kroute.service's bounding and ambient sets), NOTIFY_SOCKET and
WATCHDOG_USEC pointing at a datagram socket this test owns."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kroute_node import NODE_CIDR, Injector, node_with_injectors, wait_until
from tests.unit.test_systemd_unit import capabilities

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

INJECTOR = Injector("10.88.0.2", 65010, ("10.20.0.0/24 next-hop 10.88.0.2",))
PEERS = [{"address": "10.88.0.2", "asn": 65010, "import": {"allow": ["10.20.0.0/16"]}}]


def setpriv() -> tuple[str, ...]:
    """The unit's capabilities as setpriv flags: root keeps only these."""
    caps = ",".join("+" + cap.removeprefix("CAP_").lower() for cap in capabilities())
    return (
        "setpriv",
        f"--bounding-set=-all,{caps}",
        f"--inh-caps=-all,{caps}",
        f"--ambient-caps=-all,{caps}",
        "--",
    )


class NotifySocket:
    """The test's side of NOTIFY_SOCKET: collects every datagram kroute sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self._sock.recv(65536).decode())
            except TimeoutError:
                return self.messages

    def lines(self) -> list[str]:
        return [line for message in self.drain() for line in message.splitlines()]

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    tmp_path.chmod(0o755)
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()


def test_notify_protocol_and_least_capabilities(notify: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    with node_with_injectors([INJECTOR], PEERS, env=env, wrapper=setpriv()) as node:
        wait_until(lambda: "READY=1" in notify.lines(), 60, "READY=1")
        wait_until(lambda: "10.20.0.0/24 via 10.88.0.2" in node.kernel(), 60, "the learned route")
        wait_until(
            lambda: any(
                line.startswith("STATUS=ready: peers 1/1 established, 2 kernel routes, drain none")
                for line in notify.lines()
            ),
            30,
            "STATUS= with the session up and both routes",
        )
        assert NODE_CIDR in node.kernel()  # the blackhole: CAP_NET_ADMIN was enough
        listening = subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{node.node_ns}", "ss", "-Hltn", "sport", "= :179"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "LISTEN" in listening  # exabgp bound port 179: CAP_NET_BIND_SERVICE
        lines = notify.lines()
        ready = lines.index("READY=1")
        assert "WATCHDOG=1" in lines[ready:]  # pinged while every heartbeat is fresh
        before = lines.count("WATCHDOG=1")
        time.sleep(3)  # the interval is 1 s (half of WATCHDOG_USEC)
        assert notify.lines().count("WATCHDOG=1") > before

        pid = kroute_pid(node.workdir)
        assert effective_capabilities(pid) == sum(1 << CAP_BITS[cap] for cap in capabilities())
        os.kill(pid, signal.SIGHUP)  # what ExecReload does
        wait_until(lambda: "event=config-reloaded" in log_of(node.workdir), 20, "the reload")
        assert node.status()["peers"][0]["state"] == "established"
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: "STOPPING=1" in notify.lines(), 30, "STOPPING=1")
        assert notify.lines().count("READY=1") == 1


CAP_BITS = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_BPF": 39}


def effective_capabilities(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("CapEff:")]
    return int(line.split()[1], 16)


def log_of(workdir: Path) -> str:
    return (workdir / "kroute.log").read_text()


def kroute_pid(workdir: Path) -> int:
    """kroute's own PID (the node runs it under nsenter and setpriv, which exec)."""
    status = subprocess.run(
        ["pgrep", "-f", f"bgpd.cli run --config {workdir}/kroute.yaml"],
        capture_output=True,
        text=True,
        check=True,
    )
    (pid,) = status.stdout.split()
    return int(pid)


@pytest.mark.bpf
def test_the_bpf_datapath_runs_with_the_units_capabilities(tmp_path: Path) -> None:
    """bcc compiles, loads, pins and attaches kroute's programs with CAP_BPF
    and CAP_NET_ADMIN alone: the unit needs neither CAP_SYS_ADMIN nor CAP_PERFMON."""
    pin_dir = Path("/sys/fs/bpf") / f"kroute-caps-{tmp_path.name[-10:]}"

    def bpf(config: dict[str, Any], _: Path) -> None:
        config["datapath"] = {"bpf": {"enabled": True, "pinDir": str(pin_dir)}}

    try:
        with node_with_injectors([INJECTOR], PEERS, wrapper=setpriv(), edit=bpf) as node:
            wait_until(lambda: node.status()["ready"], 60, "the first reconcile")
            wait_until(lambda: node.status()["datapath"]["hostRouting"] == "BPF", 60, "BPF routing")
            datapath = node.status()["datapath"]
            assert datapath["lastError"] is None
            assert datapath["attached"], datapath  # programs on the node's interfaces
            assert any(pin_dir.iterdir())  # maps pinned
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)
