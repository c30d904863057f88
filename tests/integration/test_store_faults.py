"""The cluster store in trouble, with traffic flowing: etcd frozen for a minute (every
lease runs out while it is gone) and the state directory's disk full. Nothing may be
withdrawn or corrupted, status must say what is wrong, and all must recover."""

from __future__ import annotations

import os
import signal
import time

import pytest

from bgpd.client import fetch_status
from lab import lab as labmod
from tests.integration.conftest import LabFactory
from tests.traffic import Pinger
from tests.watch import RouteWatcher, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp, pytest.mark.etcd, pytest.mark.bpf]

OUTAGE = 60.0


def _store_error(node: labmod.NodePlan) -> str:
    return str(fetch_status(node.socket_path)["ipam"]["storeError"])


def test_etcd_frozen_for_a_minute_withdraws_nothing_and_recovers(make_lab: LabFactory) -> None:
    lab = make_lab(3, store="etcd")
    assert lab.etcd is not None
    n1, n2, _ = lab.plan.nodes
    ping = Pinger(n1.pod_ns, n2.pod_ip)
    watcher = RouteWatcher([n.netns for n in lab.plan.nodes])
    os.kill(lab.etcd.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE / 2)
        for node in lab.plan.nodes:  # status answers, and says what is wrong
            assert "did not answer" in _store_error(node) or "unreachable" in _store_error(node)
        time.sleep(OUTAGE / 2)
    finally:
        os.kill(lab.etcd.pid, signal.SIGCONT)  # every lease (TTL 3 s) has long run out

    def recovered() -> bool:
        return all(
            _store_error(n) == ""
            and fetch_status(n.socket_path)["ipam"]["membersWithoutRecord"] == []
            and {p["state"] for p in fetch_status(n.socket_path)["peers"]} == {"established"}
            for n in lab.plan.nodes
        )

    try:
        wait_for(recovered, 30, "every node to re-register and report a healthy store")
        time.sleep(2)
    finally:
        watcher.stop()
        sent, received = ping.stop()
    assert watcher.deleted == []
    assert received == sent, f"lost {sent - received} of {sent} pings"
    for node in lab.plan.nodes:
        assert len(fetch_status(node.socket_path)["peers"]) == 2
