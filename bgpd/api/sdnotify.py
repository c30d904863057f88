"""The systemd notify protocol (sd_notify(3)) for `Type=notify` and the watchdog.

`READY=1` once every reconciler has completed its first run (what /readyz says),
`WATCHDOG=1` every half `WATCHDOG_USEC` but only while every heartbeat is fresh (what
/livez says: a stuck reconciler makes systemd restart kroute), `STATUS=` a one-line
summary whenever it changes, `STOPPING=1` on the way out. Datagrams go to
`NOTIFY_SOCKET`: a path, or `@name` for an abstract socket. Without `NOTIFY_SOCKET`
(not under systemd) nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bgpd.health import Health
from common.errors import KrouteError

if TYPE_CHECKING:
    from bgpd.daemon import Daemon

log = logging.getLogger(__name__)

STATUS_PERIOD = 5.0  # how often STATUS= may change when there is no watchdog
STARTING_PERIOD = 0.2  # how often readiness is looked at before READY=1


def socket_address(value: str) -> str:
    """`NOTIFY_SOCKET` as an AF_UNIX address: `@name` is the abstract `\\0name`."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise KrouteError(
        f"NOTIFY_SOCKET={value!r}: kroute speaks only to unix socket paths and @abstract names"
    )


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half of `WATCHDOG_USEC`), when the watchdog is
    meant for this process (`WATCHDOG_PID` unset or ours)."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and int(owner) != pid:
        return None
    return int(usec) / 1_000_000 / 2


def send(address: str, message: str) -> None:
    """One notification datagram (several `KEY=value` lines) to `address`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(socket_address(address))
        sock.sendall(message.encode())


def status_line(daemon: Daemon) -> str:
    """The one-line STATUS= summary `systemctl status kroute` shows."""
    peers = daemon.peers.values()
    up = sum(1 for p in peers if p.state == "established")
    state = "ready" if all(c.ok for c in daemon.health.readiness()) else "starting"
    return (
        f"{state}: peers {up}/{len(peers)} established, "
        f"{len(daemon.kernel_routes)} kernel routes, drain {daemon.drain_state}"
    )


class Notifier:
    """Decides what to tell systemd; `tick()` is one look, `run()` repeats it."""

    def __init__(
        self,
        health: Health,
        summary: Callable[[], str],
        emit: Callable[[str], None],
        watchdog: float | None,
    ) -> None:
        self._health = health
        self._summary = summary
        self._emit = emit
        self.watchdog = watchdog
        self.ready_sent = False
        self._status = ""

    def tick(self) -> str | None:
        """The datagram to send now (None: nothing to say)."""
        lines = []
        if not self.ready_sent and all(c.ok for c in self._health.readiness()):
            self.ready_sent = True
            lines.append("READY=1")
        status = self._summary()
        if status != self._status:
            self._status = status
            lines.append(f"STATUS={status}")
        if self.watchdog is not None and self._health.alive():
            lines.append("WATCHDOG=1")
        return "\n".join(lines) if lines else None

    def period(self) -> float:
        if not self.ready_sent:
            return STARTING_PERIOD
        return min(self.watchdog or STATUS_PERIOD, STATUS_PERIOD)

    async def run(self) -> None:
        while True:
            message = self.tick()
            if message is not None:
                self._emit(message)
            await asyncio.sleep(self.period())

    def stopping(self) -> None:
        self._emit("STOPPING=1\nSTATUS=stopping")


def notifier_for(daemon: Daemon, env: Mapping[str, str] = os.environ) -> Notifier | None:
    """A notifier when systemd asked for notifications (NOTIFY_SOCKET set)."""
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return None
    socket_address(address)  # a bad value fails here, at start, not on every send
    failed = False

    def emit(message: str) -> None:
        nonlocal failed
        try:
            send(address, message)
        except OSError as exc:
            if not failed:  # log the first failure only: systemd may be restarting
                log.warning("event=sd-notify-failed socket=%s error=%s", address, exc)
            failed = True
        else:
            failed = False

    interval = watchdog_interval(env, os.getpid())
    log.info("event=sd-notify socket=%s watchdog_interval=%s", address, interval)
    return Notifier(daemon.health, lambda: status_line(daemon), emit, interval)
