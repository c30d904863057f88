"""Processes the lab started, identified by PID plus start time so a reused PID is never hit.

Signals go only to recorded PIDs and their descendants (found through
/proc/PID/task/*/children before signalling), never to processes found by name. A
zombie counts as gone: the lab's daemons outlive the CLI that started them and are
reaped by whoever adopts them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    """A process as the lab recorded it: PID and start time (clock ticks since boot)."""

    pid: int
    start: int


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None without such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the command name may hold spaces


def observe(pid: int) -> Proc | None:
    """The running process `pid` as a Proc, or None if it is gone or a zombie."""
    stat = _stat(pid)
    if stat is None or stat[0] in "ZX":
        return None
    return Proc(pid, int(stat[19]))


def session(pid: int) -> int | None:
    """The session id of `pid`; a daemon the lab started leads its own session."""
    stat = _stat(pid)
    return int(stat[3]) if stat is not None else None


def is_alive(proc: Proc) -> bool:
    """True while the very process recorded (same start time) runs and is not a zombie."""
    return observe(proc.pid) == proc


def descendants(proc: Proc) -> list[Proc]:
    """Every live descendant of `proc`, children before grandchildren."""
    found: list[Proc] = []
    queue = [proc.pid] if is_alive(proc) else []
    while queue:
        pid = queue.pop(0)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for text in children:
                child = observe(int(text))
                if child is not None and child not in found:
                    found.append(child)
                    queue.append(child.pid)
    return found


def send(proc: Proc, sig: signal.Signals) -> None:
    """Signal `proc` if it is still the process recorded; a gone process is fine."""
    if is_alive(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    """Wait up to `timeout` seconds for `procs` to exit; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if is_alive(p)]
    _reap(procs)
    return alive


@dataclass(frozen=True)
class Stopped:
    """How a stop went: processes that needed SIGKILL after the timeout, and survivors."""

    forced: list[Proc]
    stuck: list[Proc]


def stop_tree(proc: Proc, sig: signal.Signals, timeout: float) -> Stopped:
    """Signal `proc`, wait for it and its descendants; SIGKILL whatever outlives `timeout`."""
    tree = [proc, *descendants(proc)]
    send(proc, sig)
    forced = wait_gone(tree, timeout)
    for p in forced:
        send(p, signal.SIGKILL)
    return Stopped(forced, wait_gone(forced, 5.0))


def start(argv: list[str], log_path: str, env: dict[str, str], cwd: str) -> Proc:
    """Start a detached process (own session) appending its output to `log_path`."""
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    proc = observe(child.pid)
    return proc if proc is not None else Proc(child.pid, -1)


def _reap(procs: list[Proc]) -> None:
    """Collect those of `procs` that are exited children of this process (when the CLI or a
    test started them itself), so they do not linger as zombies; others are left alone."""
    for proc in procs:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, os.WNOHANG)
