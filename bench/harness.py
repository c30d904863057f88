"""What the convergence benchmark's parts share: progress lines on stderr, stopping what
they started, and how long setup may take."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

from lab import procs
from lab.procs import Proc

SETUP_TIMEOUT = 180.0

_started = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


def quiet(_: str) -> None:
    pass


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`, like Ctrl-C


def stop(proc: Proc) -> None:
    procs.stop_tree(proc, signal.SIGTERM, 10.0)
