"""Drain: announce our prefixes with GRACEFUL_SHUTDOWN and the lowest local preference so
peers move traffic away, then withdraw them. The state is recorded in runDir before it
takes effect, so a restarted kroute stays drained, and a state that cannot be recorded
is refused with the reason."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from bgpd.files import write_atomic
from common.errors import KrouteError

log = logging.getLogger(__name__)

DRAIN_STATES = ("none", "draining", "drained")


class Drain:
    """The drain state ("none", "draining", "drained"); `on_change` after every change."""

    def __init__(self, path: Path, on_change: Callable[[], None]) -> None:
        self._path = path
        self._on_change = on_change
        self._timer: asyncio.TimerHandle | None = None
        self.state = self._load()

    def start(self, wait: float) -> None:
        """Draining now, withdrawn after `wait` seconds (already draining: no change)."""
        if self.state != "none":
            return
        self._set("draining")
        self._timer = asyncio.get_running_loop().call_later(wait, self._withdraw)

    def stop(self) -> None:
        self.close()
        self._set("none")

    def close(self) -> None:
        """No withdrawal pending any more; the state stays (a restart withdraws at once)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _withdraw(self) -> None:
        try:
            self._set("drained")
        except KrouteError as exc:  # withdraw all the same: the operator asked for it
            log.error("event=drain-state-not-saved error=%r", str(exc))
            self.state = "drained"
            self._on_change()

    def _set(self, state: str) -> None:
        try:
            write_atomic(self._path, state + "\n")
        except OSError as exc:
            raise KrouteError(
                f"drain: cannot record the drain state in {self._path}: {exc.strerror}; "
                "free space or fix permissions in runDir, then retry"
            ) from None
        log.info("event=drain-state state=%s", state)
        self.state = state
        self._on_change()

    def _load(self) -> str:
        try:
            state = self._path.read_text().strip()
        except OSError:
            return "none"
        return "drained" if state in ("draining", "drained") else "none"
