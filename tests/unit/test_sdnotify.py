"""The systemd notify protocol (bgpd.api.sdnotify): addresses, the watchdog interval, what
is said when, and real datagrams to path and abstract sockets the test owns."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd.api.sdnotify import Notifier, send, socket_address, watchdog_interval
from bgpd.health import Health
from common.errors import KrouteError
from tests.unit.test_health import FakeClock


def test_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@kroute/notify") == "\0kroute/notify"
    with pytest.raises(KrouteError, match="NOTIFY_SOCKET='vsock:2:1'"):
        socket_address("vsock:2:1")


def test_watchdog_interval_is_half_and_only_for_the_named_process() -> None:
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"}, 42) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}, 42) is None


def test_ready_once_then_status_changes_and_watchdog_only_while_fresh() -> None:
    clock = FakeClock()
    health = Health(clock)
    kernel = health.register("kernel-routes", 90)
    summary = ["starting: peers 0/1 established, 0 kernel routes, drain none"]
    notifier = Notifier(health, lambda: summary[0], lambda _: None, watchdog=15.0)

    assert notifier.tick() == f"STATUS={summary[0]}\nWATCHDOG=1"  # alive, not ready yet
    assert notifier.period() < 1
    kernel.beat()
    summary[0] = "ready: peers 0/1 established, 1 kernel routes, drain none"
    assert notifier.tick() == f"READY=1\nSTATUS={summary[0]}\nWATCHDOG=1"
    assert notifier.tick() == "WATCHDOG=1"  # READY=1 once; STATUS= only when it changes
    assert notifier.period() == 5.0
    clock.now += 91  # the kernel reconciler stopped beating: systemd must restart us
    assert notifier.tick() is None
    kernel.beat()
    assert notifier.tick() == "WATCHDOG=1"


def test_without_a_watchdog_only_ready_and_status() -> None:
    health = Health(FakeClock())
    health.register("lb", 90).beat()
    notifier = Notifier(health, lambda: "ready", lambda _: None, watchdog=None)
    assert notifier.tick() == "READY=1\nSTATUS=ready"
    assert notifier.tick() is None


@pytest.fixture
def datagram_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_send_to_a_path_socket(datagram_socket: tuple[socket.socket, str]) -> None:
    sock, path = datagram_socket
    send(path, "READY=1\nSTATUS=ready")
    assert sock.recv(4096) == b"READY=1\nSTATUS=ready"


def test_send_to_an_abstract_socket() -> None:
    name = f"kroute-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        send("@" + name, "WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
