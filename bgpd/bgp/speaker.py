"""The BGP speaker: an ExaBGP child process driven through the bridge socket.

The daemon says *what* to advertise (`set_advertisements`, declarative, as MetalLB's
`Session.Set`); the speaker turns differences into exabgp commands, replays everything
to a neighbor whose session comes up (then sends End-of-RIB, since exabgp runs with
`manual-eor`: an EoR from an empty RIB would make peers flush our routes), and replays
everything to a restarted exabgp. Events flow back through `on_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bgpd.bgp.advertise import PeerAdvertisements
from bgpd.bgp.events import Ack, Event, Malformed, PeerState, parse_line
from bgpd.bgp.exabgp_commands import (
    announce_commands,
    eor_command,
    teardown_command,
    withdraw_commands,
)
from bgpd.bgp.exabgp_conf import SpeakerSpec, render_config, render_env
from common.errors import PeerError

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
EventHandler = Callable[[Event], None]

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
LINE_LIMIT = 64 << 20  # one exabgp JSON line per UPDATE; extended messages make them long


@dataclass(frozen=True)
class SpeakerInfo:
    running: bool
    pid: int | None
    restarts: int
    malformed_lines: int
    command_errors: int


@dataclass(frozen=True)
class SpeakerConfig:
    """A spec with its exabgp.conf rendered: prepared (and checked) before a reload
    changes anything, applied by `Speaker.reconfigure`."""

    spec: SpeakerSpec
    text: str


class Speaker(Protocol):
    """What the daemon needs from a BGP speaker."""

    async def start(self) -> None: ...

    def set_advertisements(self, advertisements: PeerAdvertisements) -> None: ...

    def teardown(self, peer: IPAddress, cease_subcode: int) -> None: ...

    def prepare(self, spec: SpeakerSpec) -> SpeakerConfig:
        """Render exabgp.conf for `spec`; raises ValueError, changes nothing."""
        ...

    def reconfigure(self, config: SpeakerConfig) -> None:
        """Apply a prepared config; raises PeerError, with nothing changed, if the
        file cannot be written."""
        ...

    def info(self) -> SpeakerInfo: ...

    async def stop(self) -> None: ...


class ExaBGPSpeaker:
    """Supervises one exabgp process: restart with backoff, never orphaned."""

    def __init__(self, spec: SpeakerSpec, run_dir: Path, on_event: EventHandler) -> None:
        self._spec = spec
        self._text = ""  # exabgp.conf as written
        self._run_dir = run_dir
        self._on_event = on_event
        self._socket_path = run_dir / "exabgp.sock"
        self._config_path = run_dir / "exabgp.conf"
        self._pid_path = run_dir / "exabgp.pid"
        self._wanted: PeerAdvertisements = {}
        self._announced: PeerAdvertisements = {}
        self._up: set[IPAddress] = set()
        self._writer: asyncio.StreamWriter | None = None
        self._pending: deque[str] = deque()
        self._process: asyncio.subprocess.Process | None = None
        self._server: asyncio.Server | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._restarts = 0
        self._malformed = 0
        self._command_errors = 0

    async def start(self) -> None:
        self._run_dir.mkdir(parents=True, exist_ok=True)
        self._end_leftover_exabgp()
        self._text = self.prepare(self._spec).text
        self._write_config(self._text)
        with contextlib.suppress(FileNotFoundError):
            self._socket_path.unlink()
        self._server = await asyncio.start_unix_server(
            self._on_bridge, str(self._socket_path), limit=LINE_LIMIT
        )
        os.chmod(self._socket_path, 0o600)
        self._supervisor = asyncio.create_task(self._supervise(), name="exabgp-supervisor")

    def set_advertisements(self, advertisements: PeerAdvertisements) -> None:
        """What each neighbor should hold; differences go out to established ones."""
        self._wanted = {peer: dict(advs) for peer, advs in advertisements.items()}
        for peer in sorted(self._up, key=lambda a: (a.version, a)):
            self._sync(peer)

    def teardown(self, peer: IPAddress, cease_subcode: int) -> None:
        self._send([teardown_command(peer, cease_subcode)])

    def prepare(self, spec: SpeakerSpec) -> SpeakerConfig:
        return SpeakerConfig(spec, render_config(spec, str(self._socket_path)))

    def reconfigure(self, config: SpeakerConfig) -> None:
        """New neighbors or neighbor settings: rewrite exabgp.conf and have exabgp
        reload it (SIGUSR1). exabgp leaves unchanged neighbors alone, closes removed
        ones with Cease (peer de-configured) and re-establishes changed ones."""
        spec = config.spec
        if spec == self._spec and config.text == self._text:
            return  # the text too: a password file's new content is a change
        try:
            self._write_config(config.text)
        except OSError as exc:
            raise PeerError(
                f"runDir: cannot write {self._config_path}: {exc.strerror}; nothing was "
                "changed (check the disk and the directory)"
            ) from None
        kept = {p.address for p in spec.neighbors}
        for gone in [a for a in self._wanted if a not in kept]:
            self._wanted.pop(gone, None)
            self._announced.pop(gone, None)
            self._up.discard(gone)
        self._spec, self._text = spec, config.text
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGUSR1)
            log.info("event=exabgp-reload neighbors=%d", len(spec.neighbors))

    def _write_config(self, text: str) -> None:
        """exabgp.conf holds MD5 passwords: created 0600, replaced atomically."""
        tmp = self._config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, self._config_path)

    def info(self) -> SpeakerInfo:
        process = self._process
        running = process is not None and process.returncode is None
        return SpeakerInfo(
            running=running,
            pid=process.pid if process is not None and running else None,
            restarts=self._restarts,
            malformed_lines=self._malformed,
            command_errors=self._command_errors,
        )

    async def stop(self) -> None:
        """Terminate exabgp. With graceful restart negotiated it closes sessions without
        a NOTIFICATION, so peers keep our routes while we restart."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._terminate_process()
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self._socket_path.unlink()

    # -- process supervision -------------------------------------------------

    async def _supervise(self) -> None:
        backoff = BACKOFF_START
        while not self._stopping:
            started = time.monotonic()
            await self._spawn()
            assert self._process is not None
            code = await self._process.wait()
            self._pid_path.unlink(missing_ok=True)
            self._drop_connection()
            if self._stopping:
                return
            self._restarts += 1
            if time.monotonic() - started > STABLE_AFTER:
                backoff = BACKOFF_START
            log.warning("event=exabgp-exited code=%s restart_in=%.1fs", code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _spawn(self) -> None:
        env = dict(os.environ)
        env.update(render_env(self._spec))
        logfile = open(self._run_dir / "exabgp.log", "ab")  # noqa: SIM115 - child owns it
        try:
            self._process = await asyncio.create_subprocess_exec(
                # exabgp gets SIGTERM when kroute dies, even by kill -9: never orphaned
                # (it does not notice the bridge going away by itself).
                "setpriv",
                "--pdeathsig",
                "TERM",
                "--",
                sys.executable,
                "-m",
                "bgpd.bgp.exabgp_main",  # exabgp, sending a Cease for API teardowns
                "server",
                str(self._config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                env=env,
                cwd=str(self._run_dir),
            )
        finally:
            logfile.close()
        self._pid_path.write_text(f"{self._process.pid}\n")
        log.info("event=exabgp-started pid=%d", self._process.pid)

    async def _terminate_process(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=5)
        except TimeoutError:
            process.kill()
            await process.wait()
        self._pid_path.unlink(missing_ok=True)

    def _end_leftover_exabgp(self) -> None:
        """An exabgp our previous life started (kill -9 of kroute) may still hold the
        port for a moment; end it, by the PID we recorded, if it runs our config."""
        try:
            pid = int(self._pid_path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self._config_path).encode() not in cmdline:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        log.info("event=exabgp-leftover-ended pid=%d", pid)

    # -- the bridge connection -----------------------------------------------

    async def _on_bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            log.warning("event=bridge-duplicate action=closing-old")
            self._drop_connection()
        self._writer = writer
        self._announced = {}
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                self._handle_line(line.decode("utf-8", "replace"))
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.warning("event=bridge-read-failed error=%s", exc)
        finally:
            if self._writer is writer:
                self._drop_connection()

    def _drop_connection(self) -> None:
        """exabgp is gone: its sessions are too. Tell the daemon, as if each peer had
        closed without NOTIFICATION, so the routes they sent turn stale and are swept by
        End-of-RIB once the restarted exabgp has its sessions back."""
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._pending.clear()
        self._announced = {}
        for peer in sorted(self._up, key=lambda a: (a.version, a)):
            if not self._stopping:
                self._on_event(PeerState(peer, "down", reason="exabgp restarting"))
        self._up = set()

    def _handle_line(self, line: str) -> None:
        event = parse_line(line)
        if isinstance(event, Ack):
            command = self._pending.popleft() if self._pending else "?"
            if not event.ok:
                self._command_errors += 1
                log.error("event=exabgp-command-failed command=%r", command[:200])
            return
        if isinstance(event, Malformed):
            self._malformed += 1
            log.warning("event=exabgp-line-malformed reason=%r line=%r", event.reason, event.line)
        elif isinstance(event, PeerState):
            if event.state == "up":
                self._up.add(event.peer)
                self._replay_to(event.peer)
            else:
                self._up.discard(event.peer)
                self._announced.pop(event.peer, None)
        self._on_event(event)

    def _send(self, commands: Iterable[str]) -> None:
        if self._writer is None:
            return
        for command in commands:
            self._pending.append(command)
            self._writer.write(command.encode() + b"\n")

    def _sync(self, peer: IPAddress) -> None:
        wanted = self._wanted.get(peer, {})
        have = self._announced.setdefault(peer, {})
        gone = [prefix for prefix in have if prefix not in wanted]
        changed = [adv for prefix, adv in wanted.items() if have.get(prefix) != adv]
        self._send(withdraw_commands(peer, gone))
        self._send(announce_commands(peer, changed))
        self._announced[peer] = dict(wanted)

    def _replay_to(self, peer: IPAddress) -> None:
        """Everything we advertise to `peer`, then End-of-RIB: the order graceful
        restart needs (exabgp runs with manual-eor). Only for the session's family,
        the one exabgp.conf gives it: exabgp refuses an EoR of another."""
        self._announced.pop(peer, None)
        self._sync(peer)
        self._send([eor_command(peer, peer.version)])
