"""In-memory `LoopbackAddresses` for the daemon's unit tests."""

from __future__ import annotations

from collections.abc import Iterable

from datapath.loopback import IPAddress


class FakeLoopback:
    """In memory, for unit tests."""

    def __init__(self) -> None:
        self.addresses: set[IPAddress] = set()

    def sync(self, wanted: Iterable[IPAddress]) -> None:
        self.addresses = set(wanted)
