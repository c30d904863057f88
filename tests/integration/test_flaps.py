"""100 session flaps of one peer: routes follow every time, and afterwards the daemon
holds the same routes, the same number of open file descriptors and about the same
memory as before (a leak per flap would show as growth here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import raw_bgp as r
from tests.kroute_node import wait_until
from tests.raw_bgp_session import ASN, RAW, Session, session

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]
__all__ = ["session"]  # the fixture

FLAPS = 100
PREFIXES = [f"198.18.{i}.0/24" for i in range(1, 51)]
ANNOUNCE_ALL = r.update(r.valid_attrs(ASN, RAW), b"".join(r.nlri(p) for p in PREFIXES))
RSS_SLACK_KB = 8 * 1024  # allocator noise; a leak of a few KB per flap would exceed it


def _learned(session: Session) -> int:
    return sum(f"via {RAW} " in line for line in session.node.kernel().splitlines())


def _usage(pid: int) -> tuple[int, int]:
    """(resident memory in kB, open file descriptors) of a process and its children."""
    rss = fds = 0
    for p in _family(pid):
        status = Path(f"/proc/{p}/status").read_text()
        rss += int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
        )
        fds += len(os.listdir(f"/proc/{p}/fd"))
    return rss, fds


def _family(pid: int) -> list[int]:
    """A process and all its descendants (kroute, exabgp, the bridge)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(p for kid in kids for p in _family(int(kid)))]


def _flap(session: Session) -> None:
    session.peer.send(ANNOUNCE_ALL)
    wait_until(lambda: _learned(session) == len(PREFIXES), 20, "every prefix installed")
    session.peer.close()
    wait_until(lambda: _learned(session) == 0, 20, "every prefix removed after the flap")
    session.reconnect()


def test_a_hundred_flaps_leave_routes_fds_and_memory_as_they_were(session: Session) -> None:
    for _ in range(5):  # warm up: first-use allocations are not leaks
        _flap(session)
    session.peer.send(ANNOUNCE_ALL)
    wait_until(lambda: _learned(session) == len(PREFIXES), 20, "every prefix installed")
    routes_before = session.node.kernel()
    rss_before, fds_before = _usage(session.node.pid)
    session.peer.close()
    session.reconnect()

    for _ in range(FLAPS):
        _flap(session)

    session.peer.send(ANNOUNCE_ALL)
    wait_until(lambda: _learned(session) == len(PREFIXES), 20, "every prefix installed")
    rss_after, fds_after = _usage(session.node.pid)
    assert session.node.kernel() == routes_before
    assert fds_after == fds_before, f"open fds {fds_before} -> {fds_after}"
    assert rss_after - rss_before < RSS_SLACK_KB, f"RSS {rss_before} kB -> {rss_after} kB"
    assert session.node.peer(RAW)["state"] == "established"
    print(f"flaps={FLAPS} rss_kb={rss_before}->{rss_after} fds={fds_before}->{fds_after}")
