"""A kroute node with one raw BGP speaker peering with it (see tests/raw_bgp.py).

`session` is a pytest fixture: import it into a test module to use it.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import raw_bgp as r
from tests.kroute_node import NodeUnderTest, node_with_injectors, wait_until
from tests.netns_fixtures import ip

RAW, ASN = "10.88.0.5", 65099
ALLOWED = "198.18.0.0/15"
PEERS = [{"address": RAW, "asn": ASN, "import": {"allow": [ALLOWED]}}]
_sentinels = (f"198.19.{i // 256}.{i % 256}/32" for i in itertools.count())


@dataclass
class Session:
    node: NodeUnderTest
    listener: socket.socket
    peer: r.RawPeer

    def announce(self, prefix: str) -> None:
        self.peer.send(r.update(r.valid_attrs(ASN, RAW), r.nlri(prefix)))

    def handled(self) -> None:
        """Wait until kroute has handled everything sent so far: announce a fresh
        sentinel and wait for it in the kernel (UPDATEs are handled in order)."""
        sentinel = next(_sentinels)
        self.announce(sentinel)
        wait_until(lambda: sentinel.split("/")[0] in self.node.kernel(), 20, sentinel)

    def reconnect(self) -> None:
        self.peer = r.accept_session(self.listener, ASN, RAW, timeout=60)
        wait_until(lambda: self.node.peer(RAW)["state"] == "established", 30, "session up")


@pytest.fixture
def session() -> Iterator[Session]:
    with node_with_injectors([], PEERS) as node:
        ip("-n", node.injector_ns, "addr", "add", f"{RAW}/24", "dev", "kri0")
        with r.raw_listener(node.injector_ns, RAW) as listener:
            peer = r.accept_session(listener, ASN, RAW, timeout=60)
            wait_until(lambda: node.peer(RAW)["state"] == "established", 30, "session up")
            yield Session(node, listener, peer)


def installed(session: Session, prefix: str) -> bool:
    return f"{prefix} via" in session.node.kernel()
